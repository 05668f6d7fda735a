"""pgqueuer: `pgq run bench.apps.pgqueuer_app:main` on a PostgreSQL database of its own
(bench_pgqueuer, set up with `pgq install` and `pgq autovac`, its tables emptied before every
run); jobs enqueued with Queries.enqueue, in bulk with its list form.

`pgq run` needs typer < 0.29 (with 0.29 its --log-level option fails with AttributeError
before the worker starts), hence the typer bound in the bench extra."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import ClassVar

import asyncpg
import psycopg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from bench import stores
from bench.harness import BIN, Producer, QueueSystem, Unverified, async_producer, chunks

DATABASE = "bench_pgqueuer"
BEST_BATCH = 100
APP = "bench.apps.pgqueuer_app:main"


async def send(queries: Queries, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
    committed: list[float] = []
    if bulk:
        for chunk in chunks(ids):
            n = len(chunk)
            await queries.enqueue([job] * n, [str(i).encode() for i in chunk], [0] * n)
            committed += [time.time()] * n
    else:
        for i in ids:
            await queries.enqueue(job, str(i).encode())
            committed.append(time.time())
    return committed


class PgQueuer(QueueSystem):
    key = "pgqueuer"
    label = "pgqueuer"
    package = "pgqueuer"
    bulk = "Queries.enqueue with lists, 1,000 jobs per call"
    settings: ClassVar[dict[str, str]] = {
        "worker": f"pgq run {APP} --log-level WARNING --batch-size {BEST_BATCH}",
        "processes": "2 processes = two `pgq run` on the same database",
        "store": f"PostgreSQL database {DATABASE}, `pgq install` (durable) then `pgq autovac`",
        "concurrency N (1 ms jobs)": "--max-concurrent-tasks N --batch-size N/2 (pgqueuer "
        "requires max_concurrent_tasks >= 2 x batch_size); N = 1: the entrypoints' "
        "concurrency_limit=1 instead",
        "why": "the Performance Tuning guide: raise batch_size for short jobs, run `pgq "
        "autovac`; the durable default is kept (as every system keeps its durable default); "
        "batch size 100 was 2-3 times as fast as the default 10 for no-op jobs in trial runs "
        "here, and 500 or 1,000 no faster; no concurrency cap (pgqueuer's default)",
        "docs": "pgqueuer docs, Performance Tuning, Quick Start, CLI reference (pgq run)",
    }

    url = ""

    def start(self, work: Path) -> None:
        super().start(work)
        self.url = stores.recreate_database(DATABASE)
        for command in ("install", "autovac"):
            subprocess.run(
                [str(BIN / "pgq"), "--pg-dsn", self.url, command],
                check=True,
                capture_output=True,
            )

    def stop(self) -> None:
        super().stop()
        stores.drop_database(DATABASE)

    def fresh(self) -> None:
        self.db = self.hold(psycopg.connect(self.url, autocommit=True))
        stores.empty_tables(self.db)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Queries]:
        connection = await asyncpg.connect(self.url)
        try:
            yield Queries(AsyncpgDriver(connection))
        finally:
            await connection.close()

    def producer(self) -> AbstractContextManager[Producer]:
        return async_producer(self.client, send)

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        env = {"BENCH_PGQUEUER_DSN": self.url}
        if concurrency == 1:
            env["BENCH_PGQUEUER_LIMIT"] = "1"
        return env

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        command = [str(BIN / "pgq"), "run", APP, "--log-level", "WARNING"]
        if concurrency is None or concurrency == 1:
            command += ["--batch-size", str(BEST_BATCH if concurrency is None else 1)]
        else:
            command += ["--max-concurrent-tasks", str(concurrency),
                        "--batch-size", str(max(1, concurrency // 2))]  # fmt: skip
        return [command] * processes

    def count(self, query: str) -> int:
        row = self.db.execute(query).fetchone()
        return int(row[0]) if row else 0

    def queued(self) -> int:
        return self.count("SELECT count(*) FROM pgqueuer WHERE status = 'queued'")

    def check_finished(self, total: int) -> None:
        left = self.count("SELECT count(*) FROM pgqueuer")
        if left:
            raise Unverified(f"{left} jobs still in the pgqueuer table")
