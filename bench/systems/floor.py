"""The stdlib-sqlite3 floor: wizd's own schema, PRAGMAs and statements run directly on
sqlite3 in one thread with ideal batching (bench/core.py, reused as is). It is not a queue:
it has no workers, so only enqueue and burn-down mean something; the other workloads are
reported as n/a."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

from bench import core
from bench.harness import NotApplicable, Sizes, System, Unverified

SYNCHRONOUS = "NORMAL"
BATCH = 100
NO_WORKERS = "the floor is statements run in-process, with no worker processes"


class Floor(System):
    key = "floor"
    label = "stdlib sqlite3 floor"
    settings: ClassVar[dict[str, str]] = {
        "enqueue": "bench.core.floor_enqueue: one transaction per job (1 at a time) or per "
        f"{core.BULK_CHUNK} jobs (bulk)",
        "burn_down": f"bench.core.floor_claim_complete at batch {BATCH}, one thread",
        "store": f"wizd's schema and statements, synchronous={SYNCHRONOUS}, WAL",
        "docs": "bench/core.py",
    }

    work: Path
    files = 0

    def start(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)

    def fresh(self) -> str:
        self.files += 1
        return str(self.work / f"floor-{self.files}.db")

    def remove(self, path: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)

    def enqueue(self, n: int, bulk: bool) -> dict[str, Any]:
        path = self.fresh()
        payloads = [{"i": i} for i in range(n)]
        c = core.new_floor_db(path, SYNCHRONOUS)
        try:
            started = time.perf_counter()
            core.floor_enqueue(c, payloads, core.BULK_CHUNK if bulk else 1)
            seconds = time.perf_counter() - started
        finally:
            c.close()
        try:
            core.check_enqueued(path, n)
        except core.Unverified as exc:
            raise Unverified(str(exc)) from exc
        finally:
            self.remove(path)
        return {"value": n / seconds, "unit": "jobs/s", "jobs": n, "seconds": seconds}

    def burn_down(self, sizes: Sizes, processes: int) -> dict[str, dict[str, Any]]:
        if processes != 1:
            raise NotApplicable("the floor is one thread by definition")
        n = sizes.burn_down
        path = self.fresh()
        core.prefill(path, SYNCHRONOUS, n)
        c: sqlite3.Connection = core.floor_connect(path, SYNCHRONOUS)
        try:
            started = time.perf_counter()
            done = core.floor_claim_complete(c, BATCH, n)
            seconds = time.perf_counter() - started
        finally:
            c.close()
        try:
            core.check_completed(path, done, n)
        except core.Unverified as exc:
            raise Unverified(str(exc)) from exc
        finally:
            self.remove(path)
        return {
            "burn_down": {"value": n / seconds, "unit": "jobs/s", "jobs": n, "seconds": seconds},
            "rss": {"na": NO_WORKERS},
            "steady": {"na": NO_WORKERS},
        }

    def sleep_jobs(self, n: int, concurrency: int) -> dict[str, Any]:
        raise NotApplicable(NO_WORKERS)
