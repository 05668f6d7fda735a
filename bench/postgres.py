"""wizd on PostgreSQL: burn-down with 1, 2 and 4 daemons, and pickup latency through NOTIFY.

    python -m bench.postgres [--quick] [--jobs N] [--url postgresql://postgres@127.0.0.1/db]

- burn-down: N no-op jobs queued first, then 1, 2 or 4 `wizd` daemon processes (concurrency
  100 each) on one PostgreSQL schema; jobs/s from the first daemon's `daemon_ready` to the
  last completion, verified: every job completed, each exactly once (one `claimed` and one
  `completed` event per job).
- pickup latency: one idle daemon (poll interval 1 s, so a pickup faster than that is the
  notification's doing); another process enqueues one job at a time; latency = processor
  start - enqueue commit, p50/p99.
Each run gets a schema of its own in the database of --url, dropped afterwards. Figures are
printed; nothing is asserted. The peers on the same server: `python -m bench.scaling`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

import wizd
from bench import daemon as daemon_bench
from bench.daemon import Daemon, fill, workspace

SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def schema(database_url: str) -> Iterator[str]:
    """A wizd URL on a fresh schema of `database_url`, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{database_url}?schema={name}"
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def ensure_database(database_url: str) -> None:
    server, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            c.execute(f"CREATE DATABASE {name}")


def burn_down(database_url: str, n: int, daemons: int, concurrency: int = 100) -> float:
    with workspace() as folder, schema(database_url) as url:
        fill(url, n)
        procs = [Daemon(folder, url, "--concurrency", str(concurrency)) for _ in range(daemons)]
        try:
            for proc in procs:
                proc.wait_ready(60)
            started = min(p.ready_at for p in procs)
            with wizd.connect_sync(url) as q:
                while True:
                    counts = q.counts("bench")
                    if counts["completed"] + counts["failed"] >= n:
                        done_at = time.perf_counter()
                        break
                    time.sleep(0.02)
                if counts["completed"] != n:
                    raise RuntimeError(f"not every job completed: {counts}")
            with psycopg.connect(url.split("?")[0]) as c:
                name = url.rpartition("schema=")[2]
                # Once each: completed at the first attempt, and no run ended any other
                # way (such a run stores its claimed event; a completed one stores none).
                once, other = c.execute(
                    f"SELECT COUNT(*) FILTER (WHERE status = 'completed' AND attempt = 1), "
                    f"(SELECT COUNT(*) FROM {name}.job_events WHERE kind = 'claimed') "
                    f"FROM {name}.jobs"
                ).fetchone() or (0, 0)
            if (once, other) != (n, 0):
                raise RuntimeError(
                    f"a job ran twice or not at all: {once} of {n} completed at attempt 1, "
                    f"{other} runs ended otherwise"
                )
        finally:
            for proc in procs:
                proc.stop()
    return n / (done_at - started)


def pickup_latency(database_url: str, samples: int) -> tuple[float, float]:
    with schema(database_url) as url:
        return daemon_bench.pickup_latency(samples, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 jobs, 60 latency samples")
    parser.add_argument("--jobs", type=int, default=None, help="burn-down size [100000]")
    parser.add_argument("--url", default=f"{SERVER}/wizd_bench", help="database to use")
    args = parser.parse_args()
    n = args.jobs or (5_000 if args.quick else 100_000)
    ensure_database(args.url)
    with psycopg.connect(args.url) as c:
        version = c.execute("SHOW server_version").fetchone()
    print(
        f"wizd on PostgreSQL {version[0] if version else '?'}: {n:,} no-op jobs, "
        f"python {sys.version.split()[0]}"
    )
    for daemons in (1, 2, 4):
        rate = burn_down(args.url, n, daemons)
        print(f"burn-down, {daemons} daemon(s) x concurrency 100: {rate:>9,.0f} jobs/s")
    p50, p99 = pickup_latency(args.url, 60 if args.quick else 300)
    print(
        f"pickup latency (idle daemon, NOTIFY, poll 1 s): p50 {p50 * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
