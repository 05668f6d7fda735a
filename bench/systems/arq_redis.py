"""arq: the worker CLI (`arq bench.apps.arq_app.WorkerSettings`) on Redis DB 13 (flushed
before every run); jobs enqueued one at a time with ArqRedis.enqueue_job (arq has no bulk
enqueue)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import ClassVar

import redis
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix, result_key_prefix

from bench import stores
from bench.harness import BIN, Producer, QueueSystem, Unverified, async_producer

DB = 13
BEST_MAX_JOBS = 10  # arq's default
POLL_DELAY = 0.01


@asynccontextmanager
async def client() -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(stores.redis_url(DB)))
    try:
        yield pool
    finally:
        await pool.aclose()


async def send(pool: ArqRedis, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
    committed = []
    for i in ids:
        await pool.enqueue_job(job, i)
        committed.append(time.time())
    return committed


class Arq(QueueSystem):
    key = "arq"
    label = "arq"
    package = "arq"
    no_bulk = "arq has no bulk enqueue (ArqRedis.enqueue_job adds one job per call)"
    settings: ClassVar[dict[str, str]] = {
        "worker": "arq --custom-log-dict bench.apps.arq_app.QUIET "
        f"bench.apps.arq_app.WorkerSettings (max_jobs={BEST_MAX_JOBS}, poll_delay={POLL_DELAY}; "
        "QUIET is arq's log config at WARNING)",
        "processes": "2 processes = two `arq` workers on the same Redis DB",
        "store": f"Redis DB {DB}, arq defaults (results kept 3,600 s)",
        "why": "max_jobs bounds the jobs one worker runs at once: 10 (the default) and 100 were "
        "as fast for no-op jobs in trial runs here; a worker whose max_jobs slots are all busy "
        "stops reading and waits out poll_delay (default 0.5 s): 1 ms jobs at max_jobs=1 then "
        f"ran at 2 jobs/s, so poll_delay is {POLL_DELAY} s (no-op burn-down was about as fast "
        "with either); concurrency N for the 1 ms jobs = max_jobs N",
        "docs": "arq docs, Worker (max_jobs, poll_delay, queue_read_limit, keep_result)",
    }

    def start(self, work: Path) -> None:
        super().start(work)
        self.redis = redis.Redis.from_url(stores.redis_url(DB))

    def stop(self) -> None:
        super().stop()
        stores.flush_redis(DB)
        self.redis.close()

    def fresh(self) -> None:
        stores.flush_redis(DB)

    def producer(self) -> AbstractContextManager[Producer]:
        return async_producer(client, send)

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        return {
            "BENCH_ARQ_REDIS": stores.redis_url(DB),
            "BENCH_ARQ_MAX_JOBS": str(concurrency or BEST_MAX_JOBS),
            "BENCH_ARQ_POLL_DELAY": str(POLL_DELAY),
        }

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        command = [str(BIN / "arq"), "--custom-log-dict", "bench.apps.arq_app.QUIET",
                   "bench.apps.arq_app.WorkerSettings"]  # fmt: skip
        return [command] * processes

    def count(self, prefix: str) -> int:
        return len(self.redis.keys(f"{prefix}*"))  # a DB of its own: KEYS is fine here

    def queued(self) -> int:
        return int(self.redis.zcard(default_queue_name))

    def check_finished(self, total: int) -> None:
        left = self.redis.zcard(default_queue_name)
        running = self.count(in_progress_key_prefix)
        results = self.count(result_key_prefix)
        if left or running or results != total:
            raise Unverified(
                f"expected {total} results, arq has {results}, {left} queued, {running} running"
            )
