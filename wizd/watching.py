"""Watching jobs live, from any process: Queue.watch.

A watcher takes a lease on the store's change feed (wizd.store.feed: while a lease is live,
triggers copy every line of every job's history into it, in commit order), reads the feed
after its cursor, and sleeps until the store says the feed may have grown (SQLite: the
change watcher; PostgreSQL: NOTIFY on `wizd_<schema>:feed`, sent by the feed's triggers),
or SAFETY_NET seconds. It renews its lease as it goes. Each event carries its cursor:
`watch(after=event.cursor)` resumes right after it, missing nothing and repeating nothing,
if the feed kept recording meanwhile (a lease lasts wizd.store.feed.LEASE seconds after its
last renewal while the watch runs, LINGER seconds once it is closed); if it
did not, or the rows after the cursor were pruned, the watch raises CursorExpired at once
rather than skip events silently.

Guarantees: one job's events come in the order they were committed; across jobs, in
commit order (SQLite commits one transaction at a time; PostgreSQL's feed triggers run at
COMMIT under one lock). Events of one transaction come in the order its statements ran.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator

import anyio

from wizd.arguments import job_id, name
from wizd.checks import check_int
from wizd.errors import InvalidJob, JobNotFound
from wizd.store import Store
from wizd.store.feed import LEASE, WatchEvent

LINGER = 60.0  # seconds a closed watch's lease lasts: a prompt reconnect resumes; later, the
# daemons drop the lease and the feed stops costing writes (CursorExpired for a late resume)
SAFETY_NET = 2.0  # seconds between two reads of the feed at most
BATCH = 500  # feed rows read at a time
# Seconds at least between two reads that found events (a full batch excepted): busy, reads
# batch up; each read costs the watcher a round trip (PostgreSQL) or a hop to its SQLite
# thread, and the daemon shares the machine. At most PACE of latency is added to an event.
PACE = 0.02


def cursor_of(value: object) -> int | None:
    """A watch's `after`: None (from now), an event, or the cursor of one (int or digits)."""
    if value is None:
        return None
    if isinstance(value, WatchEvent):
        return value.cursor
    if isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob("after", f"must be a watch event's cursor, got {value!r:.40}")
    return check_int("after", value, low=0)


async def watch(
    store: Store, queue: str | None, job: object, after: object
) -> AsyncGenerator[WatchEvent, None]:
    """Every event of the queue's (or the job's, or all) jobs after the cursor `after`
    (None: from now on; a job's watch from now on starts with the job's history so far,
    each line carrying the cursor the watch started at), as they are committed, for ever.
    The lease is taken at the first step (`started` takes it at once)."""
    events = await started(store, queue, job, after)
    try:
        async for event in events:
            yield event
    finally:
        await events.aclose()


async def started(
    store: Store, queue: str | None, job: object, after: object
) -> AsyncGenerator[WatchEvent, None]:
    """As watch, with the lease taken before this returns, so every commit from now on is
    seen, and a bad cursor or job raises here (CursorExpired, JobNotFound, InvalidJob).
    The events must then be iterated (or closed once started), which ends the watch."""
    queue = name("queue", queue)
    wanted = None if job is None else job_id(job, "job")
    cursor = cursor_of(after)
    watcher = uuid.uuid4().hex
    await store.start_watching()  # before the lease commits: no wake-up after it is lost
    try:
        head = await store.watch_register(watcher, LEASE, resume=cursor)
        backlog = []
        if cursor is None and wanted is not None:  # a job's watch from now: its history
            backlog = await history(store, wanted, queue, head)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await store.stop_watching()
        raise
    return follow(store, watcher, queue, wanted, head if cursor is None else cursor, backlog)


async def follow(
    store: Store,
    watcher: str,
    queue: str | None,
    wanted: int | None,
    cursor: int,
    backlog: list[WatchEvent],
) -> AsyncGenerator[WatchEvent, None]:
    """The backlog, then the feed after `cursor`, renewing the lease; ends the watch."""
    try:
        renewed = time.monotonic()
        seen: Counter[tuple[object, ...]] = Counter(key(event) for event in backlog)
        for event in backlog:
            yield event
        read_at = float("-inf")
        while True:
            mark = await store.feed_mark()  # before the read: a commit after it wakes
            await anyio.sleep(max(read_at + PACE - time.monotonic(), 0.0))
            read_at = time.monotonic()
            events = await store.feed_after(cursor, queue, wanted, BATCH)
            for event in events:
                cursor = event.cursor
                if seen and seen[key(event)] > 0:  # committed after the lease, in the history
                    seen -= Counter([key(event)])  # empty once all are met: no key per event
                    continue
                yield event
            if time.monotonic() - renewed > LEASE / 3:
                await store.watch_register(watcher, LEASE)
                renewed = time.monotonic()
            if not events or len(events) == BATCH:
                read_at = float("-inf")  # quiet, or behind: the next read is at once
            if len(events) < BATCH:
                await store.wait_for_feed(mark, SAFETY_NET)
    finally:
        with anyio.CancelScope(shield=True):
            await store.stop_watching()
            with contextlib.suppress(Exception):  # the lease lapses by itself anyway
                await store.watch_release(watcher, LINGER)


def key(event: WatchEvent) -> tuple[object, ...]:
    return (event.job_id, event.kind, event.at, event.attempt, event.message)


async def history(store: Store, job: int, queue: str | None, cursor: int) -> list[WatchEvent]:
    """The job's history so far (wizd.store.reads.events) as watch events at `cursor`."""
    found = await store.get_many([job])
    if not found:
        raise JobNotFound(job)
    if queue is not None and found[0].queue != queue:
        return []
    return [
        WatchEvent(
            cursor=cursor,
            job_id=job,
            queue=found[0].queue,
            at=e.at,
            kind=e.kind,
            status=e.status,
            attempt=e.attempt,
            worker_id=e.worker_id,
            message=e.message,
        )
        for e in await store.events(job)
    ]
