"""wizd on SQLite: the real daemon as a subprocess (the command of bench/daemon.py), jobs
enqueued through `wizd.connect`, one fresh SQLite file per run.

Settings: --log-level warning (every system here runs without per-job log lines);
--concurrency 200 per daemon (bench/daemon.py and the README measure 1, 10 and 100; for no-op
jobs more slots are faster, since one claim then refills many of them: 200 against 100 was
1.04-1.14x on one daemon, SQLite and PostgreSQL alike, in interleaved trial runs of
2026-11-23); two processes are two
daemons on the same file. Everything else is wizd's default (synchronous=NORMAL in WAL mode,
poll interval 1 s with wake-ups on new work).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar

import wizd
from bench.apps.wizd_app import QUEUE
from bench.harness import Producer, QueueSystem, Unverified, async_producer, chunks

BEST_CONCURRENCY = 200


async def send(q: wizd.Queue, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
    committed: list[float] = []
    if bulk:
        for chunk in chunks(ids):
            await q.enqueue_many(
                [{"name": job, "payload": {"i": i}, "queue": QUEUE} for i in chunk]
            )
            committed += [time.time()] * len(chunk)
    else:
        for i in ids:
            await q.enqueue(job, {"i": i}, queue=QUEUE)
            committed.append(time.time())
    return committed


class WizdSqlite(QueueSystem):
    key = "wizd-sqlite"
    label = "wizd (SQLite)"
    package = "wizd"
    bulk = "Queue.enqueue_many, 1,000 jobs per call"
    settings: ClassVar[dict[str, str]] = {
        "worker": "wizd --agent bench --app bench.apps.wizd_app:agent --database DB "
        "--metrics-port 0 --log-format json --log-level warning "
        f"--concurrency {BEST_CONCURRENCY} (bench/daemon.py's command, with warning-level "
        "logs as every system here runs with its per-job log lines off)",
        "processes": "2 processes = two daemons on the same database",
        "store": "one SQLite file, wizd defaults (WAL, synchronous=NORMAL)",
        "why": "bench/daemon.py measures concurrency 1, 10 and 100; more slots are faster for "
        "no-op jobs (one claim refills more of them): 200 against 100 was 1.04-1.14x on one "
        "daemon, SQLite and PostgreSQL alike, in trial runs here",
        "docs": "README.md (The daemon, Performance), bench/daemon.py",
    }

    files = 0
    db: Path | None = None
    probe: wizd.SyncQueue | None = None

    def url(self) -> str:
        assert self.db is not None
        return str(self.db)

    def fresh(self) -> None:
        self.probe = None
        if self.db is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.files += 1
        self.db = self.work / f"wizd-{self.files}.db"

    def producer(self) -> AbstractContextManager[Producer]:
        return async_producer(lambda: wizd.connect(self.url()), send)

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        command = [
            sys.executable, "-c", "from wizd.cli import main; main()",
            "--agent", QUEUE, "--app", "bench.apps.wizd_app:agent", "--database", self.url(),
            "--metrics-port", "0", "--log-format", "json", "--log-level", "warning",
            "--concurrency", str(concurrency or BEST_CONCURRENCY),
        ]  # fmt: skip
        return [command] * processes

    def counts(self) -> dict[str, int]:
        if self.probe is None:
            self.probe = self.hold(wizd.connect_sync(self.url()))
        return dict(self.probe.counts(QUEUE))

    def queued(self) -> int:
        return self.counts()["pending"]

    def check_finished(self, total: int) -> None:
        counts = self.counts()
        others = {status: n for status, n in counts.items() if n and status != "completed"}
        if counts["completed"] != total or others:
            raise Unverified(f"expected {total} completed jobs, the store counts {counts}")
