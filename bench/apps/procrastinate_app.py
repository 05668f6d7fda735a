"""procrastinate's benchmark tasks: `procrastinate --app=bench.apps.procrastinate_app.app
worker --concurrency N`, database from BENCH_PROCRASTINATE_DSN; the harness builds its own
app with make()."""

from __future__ import annotations

import functools
import os
from typing import Any

from procrastinate import App, PsycopgConnector

from bench import jobs


def make(dsn: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))
    app.task(name="noop")(jobs.noop_async)
    app.task(name="sleep")(jobs.sleep_async)
    return app


@functools.cache
def worker_app() -> App:
    return make(os.environ["BENCH_PROCRASTINATE_DSN"])


def __getattr__(name: str) -> Any:
    if name == "app":
        return worker_app()
    raise AttributeError(name)
