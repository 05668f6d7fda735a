"""pgqueuer's benchmark entrypoints: `pgq run bench.apps.pgqueuer_app:main`, database from
BENCH_PGQUEUER_DSN; BENCH_PGQUEUER_LIMIT, when set, is each entrypoint's concurrency_limit
(used for concurrency 1, which max_concurrent_tasks cannot express)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.models import Job

from bench import jobs


def job_number(job: Job) -> int:
    assert job.payload is not None
    return int(job.payload)


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH_PGQUEUER_DSN"])
    pgq = PgQueuer.from_asyncpg_connection(connection)
    limit = int(os.environ.get("BENCH_PGQUEUER_LIMIT", "0"))

    @pgq.entrypoint("noop", concurrency_limit=limit)
    async def noop(job: Job) -> None:
        await jobs.noop_async(job_number(job))

    @pgq.entrypoint("sleep", concurrency_limit=limit)
    async def sleep(job: Job) -> None:
        await jobs.sleep_async(job_number(job))

    try:
        yield pgq
    finally:
        await connection.close()
