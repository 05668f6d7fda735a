"""Celery's benchmark tasks: `celery -A bench.apps.celery_app worker --pool threads …`,
broker from BENCH_CELERY_BROKER; the harness builds its own app with make()."""

from __future__ import annotations

import functools
import os
from typing import Any

from celery import Celery

from bench import jobs


def make(broker: str) -> Celery:
    app = Celery("bench", broker=broker, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,  # no result backend: completion is checked on the broker
        broker_connection_retry_on_startup=True,
    )
    app.task(name="noop")(jobs.noop)
    app.task(name="sleep")(jobs.sleep)
    return app


@functools.cache
def worker_app() -> Celery:
    return make(os.environ["BENCH_CELERY_BROKER"])


def __getattr__(name: str) -> Any:
    if name == "app":  # what `celery -A bench.apps.celery_app` loads
        return worker_app()
    raise AttributeError(name)
