"""Job list pages in a store of 1,000,000 jobs: the first page, and a page 10,000 rows deep
by keyset cursor (Queue.list_page's `after`) against the same page by offset.

    python -m bench.paging [--jobs 1000000] [--path /tmp/paging.db] [--postgres URL]

The store is filled through Queue.enqueue_many in batches of 10,000 (the store's bulk
insert, counts and all: no SQL of its own), in a fresh SQLite file, and in a fresh schema
of the PostgreSQL database at URL when given (dropped after; ANALYZEd after the fill, as
autovacuum would be within a minute: without statistics the planner walks a queue's whole
claim index for its pending jobs, 0.5 s a page). Prints p50/p95 of each page in milliseconds
over `--runs` reads; figures only, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

import wizd

BATCH = 10_000
PAGE = 50
DEPTH = 10_000
QUEUES = 4
LISTS: dict[str, dict[str, Any]] = {
    "all jobs": {},
    "one queue": {"queue": "q1"},
    "one queue, pending": {"queue": "q1", "status": "pending"},
}


async def fill(q: wizd.Queue, n: int) -> float:
    """Enqueue n jobs over QUEUES queues; the seconds it took."""
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        items = [
            {"name": f"n{i % 10}", "queue": f"q{i % QUEUES}", "payload": {"i": i}}
            for i in range(start, min(start + BATCH, n))
        ]
        await q.enqueue_many(items)
    return time.perf_counter() - started


async def timed(read: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    """p50 and p95 of `runs` reads, in milliseconds."""
    await read()  # warm: the first read pays for the cache
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        await read()
        took.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(took, n=20)
    return statistics.median(took), cuts[18]


def reads(
    q: wizd.Queue, where: dict[str, Any], after: str
) -> dict[str, Callable[[], Awaitable[object]]]:
    """The three reads of one list: its first page, and the deep page both ways."""
    return {
        "first page": lambda: q.list_page(limit=PAGE, **where),
        f"{DEPTH:,} deep, keyset": lambda: q.list_page(limit=PAGE, after=after, **where),
        f"{DEPTH:,} deep, offset": lambda: q.list(limit=PAGE, offset=DEPTH, **where),
    }


async def measure(url: str, jobs: int, runs: int, schema: str | None = None) -> None:
    async with wizd.connect(url) as q:
        if not await q.list(limit=1):
            print(f"  filled {jobs:,} jobs in {await fill(q, jobs):.1f} s")
        if schema is not None:
            with psycopg.connect(url.split("?")[0], autocommit=True) as c:
                c.execute(sql.SQL("ANALYZE {}.jobs").format(sql.Identifier(schema)))
        for label, where in LISTS.items():
            deep = await q.list_page(limit=PAGE, offset=DEPTH - PAGE, **where)
            assert deep.next is not None, "fewer jobs than the deep page needs"
            for name, read in reads(q, where, deep.next).items():
                p50, p95 = await timed(read, runs)
                print(f"  {label:<20} {name:<22} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--path", default="/tmp/wizd-paging.db", help="SQLite file (kept)")
    parser.add_argument("--fresh", action="store_true", help="delete the SQLite file first")
    parser.add_argument("--postgres", metavar="URL", help="also a PostgreSQL database")
    args = parser.parse_args()
    if args.fresh and os.path.exists(args.path):
        os.remove(args.path)
    print(f"SQLite {args.path}: pages of {PAGE}")
    asyncio.run(measure(args.path, args.jobs, args.runs))
    if args.postgres:
        schema = f"paging_{uuid.uuid4().hex[:8]}"
        print(f"PostgreSQL {args.postgres} schema {schema}: pages of {PAGE}")
        try:
            asyncio.run(measure(f"{args.postgres}?schema={schema}", args.jobs, args.runs, schema))
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


if __name__ == "__main__":
    main()
