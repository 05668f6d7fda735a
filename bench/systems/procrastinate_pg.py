"""procrastinate: the worker CLI (`procrastinate --app=… worker --concurrency N`) on a
PostgreSQL database of its own (bench_procrastinate, created with procrastinate's schema,
its tables emptied before every run); jobs deferred with defer_async, in bulk with
batch_defer_async."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import ClassVar

import psycopg
from procrastinate import App
from procrastinate.schema import SchemaManager

from bench import stores
from bench.apps.procrastinate_app import make
from bench.harness import BIN, Producer, QueueSystem, Unverified, async_producer, chunks

DATABASE = "bench_procrastinate"
BEST_CONCURRENCY = 100
APP = "bench.apps.procrastinate_app.app"


async def send(app: App, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
    task, committed = app.tasks[job], []
    if bulk:
        for chunk in chunks(ids):
            await task.batch_defer_async(*[{"i": i} for i in chunk])
            committed += [time.time()] * len(chunk)
    else:
        for i in ids:
            await task.defer_async(i=i)
            committed.append(time.time())
    return committed


class Procrastinate(QueueSystem):
    key = "procrastinate"
    label = "procrastinate"
    package = "procrastinate"
    bulk = "Task.batch_defer_async, 1,000 jobs per call"
    settings: ClassVar[dict[str, str]] = {
        "worker": f"procrastinate --log-level=warning --app={APP} worker "
        f"--concurrency={BEST_CONCURRENCY}",
        "processes": "2 processes = two workers on the same database",
        "store": f"PostgreSQL database {DATABASE}, procrastinate defaults (LISTEN/NOTIFY, "
        "jobs kept after completion)",
        "why": "async tasks, so sub-workers (--concurrency) are the documented way to run "
        "jobs at once in one process; 10 and 100 were within noise of each other for no-op "
        "jobs in trial runs here (1,500 and 3,000 jobs)",
        "docs": "procrastinate docs, How-to: Launch a worker, Execute multiple jobs at the "
        "same time, Batch defer multiple jobs",
    }

    url = ""

    def start(self, work: Path) -> None:
        super().start(work)
        self.url = stores.recreate_database(DATABASE)
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(SchemaManager.get_schema())

    def stop(self) -> None:
        super().stop()
        stores.drop_database(DATABASE)

    def fresh(self) -> None:
        self.db = self.hold(psycopg.connect(self.url, autocommit=True))
        stores.empty_tables(self.db)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[App]:
        app = make(self.url)
        async with app.open_async():
            yield app

    def producer(self) -> AbstractContextManager[Producer]:
        return async_producer(self.client, send)

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        return {"BENCH_PROCRASTINATE_DSN": self.url}

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        concurrency = concurrency or BEST_CONCURRENCY
        command = [str(BIN / "procrastinate"), "--log-level=warning", f"--app={APP}",
                   "worker", f"--concurrency={concurrency}"]  # fmt: skip
        return [command] * processes

    def statuses(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status"
        ).fetchall()
        return {status: int(n) for status, n in rows}

    def queued(self) -> int:
        return self.statuses().get("todo", 0)

    def check_finished(self, total: int) -> None:
        statuses = self.statuses()
        if statuses != {"succeeded": total}:
            raise Unverified(f"expected {total} succeeded jobs, procrastinate has {statuses}")
