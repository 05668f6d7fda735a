"""Celery: `celery worker --pool threads` with a Redis broker (DB 14, flushed before every
run) and no result backend; jobs sent one at a time with Task.delay (Celery has no bulk
enqueue: a group is published one message per task, so it is not measured as bulk)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import ClassVar

import redis
from celery import Celery as CeleryApp

from bench import stores
from bench.apps.celery_app import make
from bench.harness import BIN, Producer, QueueSystem, Unverified

DB = 14
QUEUE = "celery"  # the default queue: a Redis list of that name
BEST_CONCURRENCY = 2  # celery's default: the number of CPUs
PREFETCH = 64


class CeleryProducer:
    def __init__(self, app: CeleryApp) -> None:
        self.tasks = {name: app.tasks[name] for name in ("noop", "sleep")}

    def enqueue(self, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
        task, committed = self.tasks[job], []
        for i in ids:
            task.delay(i)
            committed.append(time.time())
        return committed


class Celery(QueueSystem):
    key = "celery"
    label = "Celery (threads)"
    package = "celery"
    no_bulk = (
        "Celery has no bulk enqueue (a group(...).apply_async() publishes one message per "
        "task, each visible to workers before the call returns)"
    )
    settings: ClassVar[dict[str, str]] = {
        "worker": "celery -A bench.apps.celery_app worker --pool threads --concurrency "
        f"{BEST_CONCURRENCY} --prefetch-multiplier {PREFETCH} --without-gossip "
        "--without-mingle --without-heartbeat --loglevel WARNING",
        "processes": "2 processes = two workers (-n w1@%h, w2@%h) on the same broker",
        "store": f"Redis broker DB {DB}, no result backend (task_ignore_result)",
        "why": "the Optimizing guide: for many short tasks a large prefetch multiplier (64 or "
        "128); threads pool; --concurrency 2 (the default, one per CPU) was the fastest of 2, "
        "10 and 100 for no-op jobs in trial runs here; gossip, mingle and heartbeat off "
        "(worker options: a lone node needs none); WARNING log level skips the two log lines "
        "per task",
        "docs": "Celery docs, Optimizing (Prefetch Limits), Workers Guide (concurrency, pool), "
        "celery worker command-line options",
    }

    def start(self, work: Path) -> None:
        super().start(work)
        self.redis = redis.Redis.from_url(stores.redis_url(DB))
        self.app = make(stores.redis_url(DB))

    def stop(self) -> None:
        super().stop()
        stores.flush_redis(DB)
        self.redis.close()

    def fresh(self) -> None:
        stores.flush_redis(DB)

    def producer(self) -> AbstractContextManager[Producer]:
        return nullcontext(CeleryProducer(self.app))

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        return {"BENCH_CELERY_BROKER": stores.redis_url(DB)}

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        return [
            [str(BIN / "celery"), "-A", "bench.apps.celery_app", "worker",
             "--pool", "threads", "--concurrency", str(concurrency or BEST_CONCURRENCY),
             "--prefetch-multiplier", str(PREFETCH), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "WARNING", "-n", f"w{n + 1}@%h"]
            for n in range(processes)
        ]  # fmt: skip

    def queued(self) -> int:
        return int(self.redis.llen(QUEUE))

    def check_finished(self, total: int) -> None:
        left, unacked = self.redis.llen(QUEUE), self.redis.hlen("unacked")
        if left or unacked:
            raise Unverified(f"{left} messages still queued, {unacked} unacknowledged")
