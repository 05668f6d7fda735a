"""huey with SqliteHuey: the consumer (`huey_consumer … -w N -k thread`) on one fresh SQLite
file per run; jobs enqueued by calling the task (huey has no bulk enqueue)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import ClassVar

from huey import Huey
from huey.api import TaskWrapper

from bench.apps.huey_app import make
from bench.harness import BIN, Producer, QueueSystem, Unverified

BEST_WORKERS = 1
CONSUMER = "bench.apps.huey_app.huey"
NO_BULK = "huey has no bulk enqueue (TaskWrapper.map() calls enqueue once per job)"
DOCS = "huey docs, Consuming Tasks (consumer options -w, -k, -d, -m, -b, -q)"


class HueyProducer:
    def __init__(self, tasks: dict[str, TaskWrapper]) -> None:
        self.tasks = tasks

    def enqueue(self, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
        task, committed = self.tasks[job], []
        for i in ids:
            task(i)
            committed.append(time.time())
        return committed


class HueySqlite(QueueSystem):
    key = "huey-sqlite"
    label = "huey (SqliteHuey)"
    package = "huey"
    no_bulk = NO_BULK
    storage = "sqlite"
    settings: ClassVar[dict[str, str]] = {
        "worker": f"huey_consumer {CONSUMER} -w {BEST_WORKERS} -k thread -n -b 1.1 -m 1.0 -q",
        "processes": "2 processes = two consumers on the same file",
        "store": "SqliteHuey defaults (WAL, cache 8 MB; no synchronous PRAGMA, so SQLite's "
        "default FULL), one fresh file per run",
        "why": "thread workers (the consumer's default); -w 1 (the default) was the fastest of "
        "1, 10 and 100 threads for no-op jobs in trial runs here; -b 1.1 -m 1.0 is the docs' "
        "example of a short polling interval; -q logs errors only; -n: no periodic tasks",
        "docs": DOCS,
    }

    files = 0
    location = ""
    huey: Huey | None = None

    def fresh(self) -> None:
        if self.location:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.location}{suffix}").unlink(missing_ok=True)
        self.files += 1
        self.location = str(self.work / f"huey-{self.files}.db")
        self.huey, self.tasks = make(self.storage, self.location)

    def producer(self) -> AbstractContextManager[Producer]:
        return nullcontext(HueyProducer(self.tasks))

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        return {"BENCH_HUEY_STORAGE": self.storage, "BENCH_HUEY_LOCATION": self.location}

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        workers = str(concurrency or BEST_WORKERS)
        command = [str(BIN / "huey_consumer"), CONSUMER, "-w", workers, "-k", "thread", "-n",
                   "-b", "1.1", "-m", "1.0", "-q"]  # fmt: skip
        return [command] * processes

    def queued(self) -> int:
        assert self.huey is not None
        return int(self.huey.pending_count())

    def check_finished(self, total: int) -> None:
        assert self.huey is not None
        pending, scheduled = self.huey.pending_count(), self.huey.scheduled_count()
        if pending or scheduled:
            raise Unverified(f"{pending} jobs still queued and {scheduled} scheduled")
