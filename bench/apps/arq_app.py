"""arq's benchmark functions: `arq bench.apps.arq_app.WorkerSettings`, configured by the
environment (BENCH_ARQ_REDIS, BENCH_ARQ_MAX_JOBS, BENCH_ARQ_POLL_DELAY); everything else
is arq's default."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import RedisSettings
from arq.logs import default_log_config

from bench import jobs


async def noop(ctx: dict[str, Any], i: int) -> None:
    await jobs.noop_async(i)


async def sleep(ctx: dict[str, Any], i: int) -> None:
    await jobs.sleep_async(i)


# `arq --custom-log-dict bench.apps.arq_app.QUIET`: arq's own logging at WARNING, so the
# worker does not write two lines per job (as the other systems run with errors-only logs)
QUIET = default_log_config(verbose=False)
QUIET["handlers"]["arq.standard"]["level"] = QUIET["loggers"]["arq"]["level"] = "WARNING"


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, sleep]
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_ARQ_REDIS", "redis://127.0.0.1:6379/13")
    )
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.5"))
