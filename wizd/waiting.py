"""Awaiting jobs, from any process: Queue.wait, result, wait_many and as_completed.

A waiting client reads its jobs' rows, and sleeps until the store says that jobs may have
become final (wizd.store.waits: on SQLite the change watcher, on PostgreSQL LISTEN/NOTIFY),
then reads them again: a wake-up only says "look", the row decides. It also reads them
every SAFETY_NET seconds whatever it heard, so that a lost notification (a dropped
listening session, a job made final by a path that does not notify) costs seconds, not a
wait for ever.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal

from wizd.arguments import Seconds, job_id, job_ids, seconds
from wizd.errors import JobFailed, WaitTimeout
from wizd.jobs import Job
from wizd.states import JobStatus
from wizd.store import Store

T = TypeVar("T")
SAFETY_NET = 2.0  # seconds between two reads of the awaited jobs at most


def timeout_of(value: Seconds | None) -> float | None:
    """A wait's timeout: None (for ever) or seconds >= 0."""
    return seconds("timeout", value)


def ids_of(jobs: Iterable[int | str | Job], field: str = "jobs") -> list[int]:
    """The ids of the jobs awaited, without repeats, in the order given."""
    return job_ids(jobs, field)


async def completions(
    store: Store, ids: list[int], timeout: float | None
) -> AsyncGenerator[Job, None]:
    """Each job once it is final, in the order they became final (by finished_at); raise
    WaitTimeout naming the first job still not final after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    await store.start_waiting()
    try:
        left = ids
        while True:
            mark = await store.final_mark()  # before the read: a change after it wakes
            jobs = await store.get_many(left)
            for job in sorted((j for j in jobs if j.final), key=finished):
                yield job
            waiting = [j for j in jobs if not j.final]
            if not waiting:
                return
            left = [j.id for j in waiting]
            nap = SAFETY_NET
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    assert timeout is not None
                    raise WaitTimeout(waiting[0].id, waiting[0].status, timeout)
                nap = min(nap, remaining)
            await store.wait_for_final(mark, nap)
    finally:
        await store.stop_waiting()


def finished(job: Job) -> tuple[float, int]:
    """The order jobs became final in: by finished_at, then id."""
    return (job.finished_at.timestamp() if job.finished_at else 0.0, job.id)


async def wait_many(store: Store, ids: list[int], timeout: float | None) -> list[Job]:
    """The jobs once all are final, in the order given."""
    final = {}
    gen = completions(store, ids, timeout)
    try:
        async for job in gen:
            final[job.id] = job
    finally:
        await gen.aclose()
    return [final[i] for i in ids]


async def wait(store: Store, id: int | str | Job, timeout: Seconds | None) -> Job:
    return (await wait_many(store, [job_id(id)], timeout_of(timeout)))[0]


async def result(store: Store, id: int | str | Job, timeout: Seconds | None) -> Any:
    """The result of the job once completed; JobFailed if it failed or was cancelled."""
    job = await wait(store, id, timeout)
    if job.status != JobStatus.COMPLETED:
        raise JobFailed(job)
    return job.result


def blocking_iterator(portal: BlockingPortal, jobs: AsyncIterator[T]) -> Iterator[T]:
    """Step an async iterator (of jobs, of watch events) from a thread outside the
    portal's event loop."""
    try:
        while True:
            try:
                yield portal.call(jobs.__anext__)
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(jobs, "aclose", None)
        if aclose is not None:
            portal.call(aclose)
