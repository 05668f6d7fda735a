"""RQ: SimpleWorker processes (`rq worker -w rq.worker.SimpleWorker`), Redis DB 12 (flushed
before every run); jobs enqueued with Queue.enqueue, or Queue.enqueue_many in bulk.

An RQ worker runs one job at a time (no in-process concurrency), so "concurrency N" for the
1 ms jobs is N SimpleWorkers forked by `rq worker-pool -n N`, RQ's own way to run N workers
from one command.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import ClassVar

import redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from bench import jobs, stores
from bench.harness import BIN, Producer, QueueSystem, Unverified, chunks

DB = 12
QUEUE = "bench"
FUNCTIONS = {"noop": jobs.noop, "sleep": jobs.sleep}
WORKER = "rq.worker.SimpleWorker"


class RQProducer:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def enqueue(self, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
        func, committed = FUNCTIONS[job], []
        if bulk:
            for chunk in chunks(ids):
                self.queue.enqueue_many([Queue.prepare_data(func, (i,)) for i in chunk])
                committed += [time.time()] * len(chunk)
        else:
            for i in ids:
                self.queue.enqueue(func, i)
                committed.append(time.time())
        return committed


class RQ(QueueSystem):
    key = "rq"
    label = "RQ (SimpleWorker)"
    package = "rq"
    bulk = "Queue.enqueue_many of Queue.prepare_data, 1,000 jobs per call (one pipeline)"
    settings: ClassVar[dict[str, str]] = {
        "worker": f"rq worker -w {WORKER} --url redis://…/{DB} --quiet {QUEUE}",
        "processes": "2 processes = two `rq worker` processes; concurrency N for the 1 ms "
        f"jobs = `rq worker-pool -w {WORKER} -n N`",
        "store": f"Redis DB {DB}, RQ defaults (results kept 500 s)",
        "why": "SimpleWorker runs jobs in the worker process instead of forking a work horse "
        "per job (the fork per job is RQ's isolation, and its main cost for short jobs); "
        "--quiet logs less; each worker runs one job at a time",
        "docs": "RQ docs, Workers (SimpleWorker, Performance Notes, Worker Pool); Jobs "
        "(enqueue_many)",
    }

    def start(self, work: Path) -> None:
        super().start(work)
        self.redis = redis.Redis.from_url(stores.redis_url(DB))
        self.queue = Queue(QUEUE, connection=self.redis)

    def stop(self) -> None:
        super().stop()
        stores.flush_redis(DB)
        self.redis.close()

    def fresh(self) -> None:
        stores.flush_redis(DB)

    def producer(self) -> AbstractContextManager[Producer]:
        return nullcontext(RQProducer(self.queue))

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        url = stores.redis_url(DB)
        if concurrency and concurrency > 1:
            return [[str(BIN / "rq"), "worker-pool", "-w", WORKER, "-n", str(concurrency),
                     "-u", url, "--quiet", QUEUE]] * processes  # fmt: skip
        return [[str(BIN / "rq"), "worker", "-w", WORKER, "-u", url, "--quiet", QUEUE]] * processes

    def queued(self) -> int:
        return int(self.queue.count)

    def check_finished(self, total: int) -> None:
        left = self.queue.count
        started = StartedJobRegistry(queue=self.queue).count
        failed = FailedJobRegistry(queue=self.queue).count
        finished = FinishedJobRegistry(queue=self.queue).count
        if left or started or failed or finished != total:
            raise Unverified(
                f"expected {total} finished jobs, RQ has {finished} finished, {left} queued, "
                f"{started} started, {failed} failed"
            )
