"""huey's benchmark tasks: `huey_consumer bench.apps.huey_app.huey -w N -k thread`.

The consumer's instance is built on first access from BENCH_HUEY_STORAGE (sqlite or redis)
and BENCH_HUEY_LOCATION (a file name or a Redis URL); the harness builds its own with make().
"""

from __future__ import annotations

import functools
import os
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from bench import jobs

NAME = "bench"


def make(storage: str, location: str) -> tuple[Huey, dict[str, TaskWrapper]]:
    """A huey instance on a SQLite file or a Redis URL, and its two tasks by name."""
    huey: Huey = (
        SqliteHuey(NAME, filename=location)
        if storage == "sqlite"
        else RedisHuey(NAME, url=location)
    )
    tasks = {
        "noop": huey.task(name="noop")(jobs.noop),
        "sleep": huey.task(name="sleep")(jobs.sleep),
    }
    return huey, tasks


@functools.cache
def consumer_instance() -> Huey:
    huey, _ = make(os.environ["BENCH_HUEY_STORAGE"], os.environ["BENCH_HUEY_LOCATION"])
    return huey


def __getattr__(name: str) -> Any:
    if name == "huey":  # what huey_consumer loads
        return consumer_instance()
    raise AttributeError(name)
