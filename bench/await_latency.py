"""Await latency: enqueue one job, await it from another process than the daemon's.

    python -m bench.await_latency [--jobs N] [--postgres URL]

A real daemon (the Supervisor, in a subprocess of its own, concurrency 10) runs no-op jobs
on a new SQLite file (or, with --postgres, in a new schema of that database, dropped
afterwards). This process enqueues one job at a time and awaits it with Queue.wait, and
measures two latencies per job:

- commit -> wait: from the job's finished_at (stamped in the transaction that makes it
  completed, just before its COMMIT) to wait returning here: what the waiting adds;
- enqueue -> wait: from before the enqueue to wait returning (the whole round trip: the
  enqueue's commit, the daemon noticing it, claiming, running and writing the outcome).

Printed: p50, p99 and max of each, in ms. Nothing is asserted: machines are shared.
Targets (issue 21): commit -> wait p50 <= 5 ms, p99 <= 20 ms on SQLite; as good on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

import wizd

ROOT = Path(__file__).resolve().parent.parent

DAEMON = r"""
import sys
import anyio
from wizd.agent import Agent
from wizd.cli.daemon import serve
from wizd.logging import configure_logging
from wizd.settings import Settings

db = sys.argv[1]
agent = Agent("bench")


@agent.processor("noop")
async def noop(ctx):
    return None


async def main():
    settings = Settings(
        agent=["bench"], database=db, concurrency=10, metrics_port=0, log_level="warning",
        _env_file=None,
    )
    configure_logging("json", "warning")
    await serve(settings, {"bench": agent})


anyio.run(main)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(db: str, jobs: int) -> tuple[list[float], list[float]]:
    commit_to_wait: list[float] = []
    round_trip: list[float] = []
    async with wizd.connect(db) as q:
        for i in range(jobs + 10):
            start = time.time()
            job = await q.enqueue("noop", queue="bench")
            done = await q.wait(job, timeout=60)
            end = time.time()
            assert done.finished_at is not None
            if i >= 10:  # the first ones warm up the daemon and this client
                commit_to_wait.append(end - done.finished_at.timestamp())
                round_trip.append(end - start)
    return commit_to_wait, round_trip


def run(jobs: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="wizd-await-") as folder:
        schema = f"await_{uuid.uuid4().hex[:10]}"
        db = f"{postgres}?schema={schema}" if postgres else str(Path(folder) / "bench.db")
        if not postgres:
            anyio.run(make_database, db)  # the daemon finds it ready
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
        env["PYTHONPATH"] = str(ROOT)
        daemon = subprocess.Popen([sys.executable, "-c", DAEMON, db], env=env, cwd=folder)
        try:
            commit_to_wait, round_trip = anyio.run(measure, db, jobs)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            if postgres:
                import psycopg

                with psycopg.connect(postgres, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    store = "PostgreSQL" if postgres else "SQLite"
    print(f"{jobs} jobs awaited one at a time, {store}, daemon in another process")
    for name, values in (("commit -> wait", commit_to_wait), ("enqueue -> wait", round_trip)):
        ms = [v * 1000 for v in values]
        print(
            f"  {name:>15}: p50 {statistics.median(ms):6.2f} ms, p99 {percentile(ms, 99):6.2f} ms, "
            f"max {max(ms):6.2f} ms"
        )


async def make_database(db: str) -> None:
    async with wizd.connect(db):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.await_latency", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database instead of SQLite")
    args = parser.parse_args(argv)
    run(args.jobs, args.postgres)


if __name__ == "__main__":
    main()
