"""Watching jobs live (wizd.watching, wizd.store.feed) on both stores, two connections in
this process standing for two processes: the watcher's store and another that changes jobs.

The safety-net re-read is pushed out to an hour, so a watch that sees a change did so
because the store woke it (SQLite's change watcher, PostgreSQL's NOTIFY), not because it
polled.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import wizd
from tests.conftest import in_own_task
from wizd import streaming, watching
from wizd.store.base import Finish

Q = "agent"


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "SAFETY_NET", 3600.0)


@pytest.fixture
async def watcher(backend_url: str) -> AsyncIterator[wizd.Queue]:
    async with in_own_task(wizd.connect(backend_url)) as q:
        yield q


async def take(events: AsyncIterator[wizd.WatchEvent], n: int) -> list[wizd.WatchEvent]:
    """The next n events of a watch (failing after 10 s)."""
    got = []
    with anyio.fail_after(10):
        while len(got) < n:
            got.append(await events.__anext__())
    return got


async def run(q: wizd.Queue, job_id: int, *, log: str = "halfway") -> None:
    """Run the job as a daemon would: claim, progress, a log line, complete."""
    (claimed,) = await q.store.claim(Q, "w1", 1)
    assert claimed.id == job_id
    assert await q.store.progress(job_id, "w1", claimed.attempt, 0.5, "half")
    await q.store.log(job_id, log, worker_id="w1", attempt=claimed.attempt)
    finish = Finish(job_id, "w1", claimed.attempt, "completed", {"ok": 1}, None, retry=False)
    assert await q.store.finish([finish]) == [True]


async def test_watch_sees_a_jobs_whole_life_made_by_another_connection(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    events = watcher.watch(queue=Q)
    async with anyio.create_task_group() as tg:
        got: list[wizd.WatchEvent] = []

        async def follow() -> None:
            got.extend(await take(events, 5))

        tg.start_soon(follow)
        await registered(watcher)
        job = await other.enqueue("search", {"q": "x"}, queue=Q)
        await run(other, job.id)
    await events.aclose()  # type: ignore[attr-defined]
    assert [e.kind for e in got] == ["enqueued", "claimed", "progress", "log", "completed"]
    assert {e.job_id for e in got} == {job.id}
    assert [e.cursor for e in got] == sorted({e.cursor for e in got})
    assert got[-1].final
    assert got[-1].status == wizd.JobStatus.COMPLETED
    assert got[3].message == "halfway"


async def registered(q: wizd.Queue) -> None:
    """Return once a watch of q holds a lease (its feed records from then on): the watch
    then sleeps until the feed may have grown."""
    asleep = anyio.Event()
    original = q.store.wait_for_feed

    async def wait_for_feed(mark: int, timeout: float) -> None:
        asleep.set()
        await original(mark, timeout)

    q.store.wait_for_feed = wait_for_feed  # type: ignore[method-assign]
    with anyio.fail_after(10):
        await asleep.wait()


async def feed_rows(q: wizd.Queue) -> int:
    rows: int = await q.store._read(  # type: ignore[attr-defined]
        lambda c: c.execute("SELECT count(*) FROM job_feed").fetchone()[0]
    )
    return rows


async def test_resuming_from_a_cursor_misses_nothing_and_repeats_nothing(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    first = watcher.watch()
    async with anyio.create_task_group() as tg:
        seen: list[wizd.WatchEvent] = []

        async def follow() -> None:
            seen.extend(await take(first, 2))

        tg.start_soon(follow)
        await registered(watcher)
        a = await other.enqueue("search", {}, queue=Q)
        b = await other.enqueue("search", {}, queue=Q)
    await first.aclose()  # type: ignore[attr-defined]  # the client disconnects
    # Meanwhile, more happens.
    await run(other, a.id)
    await run(other, b.id, log="second")
    again = watcher.watch(after=seen[-1].cursor)
    rest = await take(again, 8)
    await again.aclose()  # type: ignore[attr-defined]
    everything = seen + rest
    assert [(e.job_id, e.kind) for e in everything] == [
        (a.id, "enqueued"),
        (b.id, "enqueued"),
        *[(a.id, k) for k in ("claimed", "progress", "log", "completed")],
        *[(b.id, k) for k in ("claimed", "progress", "log", "completed")],
    ]
    assert len({e.cursor for e in everything}) == 10
    # The cursor may also come as a string (an opaque token kept by a client).
    replay = watcher.watch(after=str(seen[0].cursor))
    assert [e.cursor for e in await take(replay, 9)] == [e.cursor for e in everything[1:]]
    await replay.aclose()  # type: ignore[attr-defined]


async def test_queue_and_job_filters(watcher: wizd.Queue, other: wizd.Queue) -> None:
    by_queue = watcher.watch(queue="b")
    async with anyio.create_task_group() as tg:
        got: list[wizd.WatchEvent] = []

        async def follow() -> None:
            got.extend(await take(by_queue, 2))

        tg.start_soon(follow)
        await registered(watcher)
        await other.enqueue("x", {}, queue="a")
        b1 = await other.enqueue("x", {}, queue="b")
        await other.enqueue("x", {}, queue="a")
        b2 = await other.enqueue("x", {}, queue="b")
    await by_queue.aclose()  # type: ignore[attr-defined]
    assert [(e.job_id, e.queue) for e in got] == [(b1.id, "b"), (b2.id, "b")]
    by_job = watcher.watch(job=b2, after=got[0].cursor)
    (only,) = await take(by_job, 1)
    await by_job.aclose()  # type: ignore[attr-defined]
    assert (only.job_id, only.kind) == (b2.id, "enqueued")


async def test_nobody_watching_writes_no_feed(other: wizd.Queue) -> None:
    job = await other.enqueue("search", {}, queue=Q)
    await run(other, job.id)
    assert await feed_rows(other) == 0


async def test_a_bad_cursor_is_one_clear_error(watcher: wizd.Queue) -> None:
    for bad in ("soon", -1, 1.5, True):
        events = watcher.watch(after=bad)
        with pytest.raises(wizd.InvalidJob, match="after"):
            await events.__anext__()


# -- ctx.stream (wizd.streaming) ----------------------------------------------------------


async def running(q: wizd.Queue) -> wizd.Job:
    await q.enqueue("llm", {}, queue=Q)
    (job,) = await q.store.claim(Q, "w1", 1)
    return job


async def test_stream_pieces_are_coalesced_into_few_writes(other: wizd.Queue) -> None:
    job = await running(other)
    stream = streaming.Stream(other.store, job.id, 1_000_000, "w1", job.attempt)
    pieces = [f"tok{i} " for i in range(300)]
    start = time.monotonic()
    for piece in pieces:  # about 1,000 pieces a second
        await stream.write(piece)
        await anyio.sleep(0.001)
    await stream.close()
    took = time.monotonic() - start
    assert await other.stream_text(job) == "".join(pieces)
    assert stream.writes <= took / streaming.FLUSH_EVERY + 2, (stream.writes, took)
    assert stream.writes < len(pieces) / 5


async def test_a_watcher_sees_streamed_pieces_within_50_ms_of_their_write(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    job = await running(other)
    stream = streaming.Stream(other.store, job.id, 1000, "w1", job.attempt)
    written: list[float] = []
    original = other.store.append_stream

    async def append_stream(job_id: int, piece: str, cap: int, **run: Any) -> bool:
        stored = await original(job_id, piece, cap, **run)
        written.append(time.monotonic())
        return stored

    other.store.append_stream = append_stream  # type: ignore[method-assign]
    events = watcher.watch(job=job)
    async with anyio.create_task_group() as tg:
        seen: list[tuple[str | None, float]] = []

        async def follow() -> None:
            history = await take(events, 2)
            assert [e.kind for e in history] == ["enqueued", "claimed"]
            for event in await take(events, 1):
                seen.append((event.message, time.monotonic()))
            for event in await take(events, 1):
                seen.append((event.message, time.monotonic()))

        tg.start_soon(follow)
        await registered(watcher)
        await stream.write("Hel")  # written at once
        await stream.write("lo")  # waits for the timer (FLUSH_EVERY)
        await stream.close()
    await events.aclose()  # type: ignore[attr-defined]
    assert [message for message, _ in seen] == ["Hel", "lo"]
    assert len(written) == 2
    for (_, at), flushed in zip(seen, written, strict=True):
        assert at - flushed < 0.05


async def test_the_stored_stream_keeps_its_tail_with_a_marker(other: wizd.Queue) -> None:
    job = await running(other)
    assert await other.stream_text(job) == ""
    run = {"worker_id": "w1", "attempt": job.attempt}
    assert await other.store.append_stream(job.id, "abcdefgh", 10, **run)
    assert await other.stream_text(job) == "abcdefgh"
    assert await other.store.append_stream(job.id, "ijklm", 10, **run)
    assert await other.stream_text(job) == "[... 3 characters dropped]\ndefghijklm"
    with pytest.raises(wizd.JobNotFound):
        await other.stream_text(job.id + 100)


async def test_ctx_stream_writes_what_is_left_when_the_run_ends(
    backend_url: str,
) -> None:
    limits = wizd.SizeLimits(stream=8)
    async with in_own_task(wizd.connect(backend_url, limits=limits)) as q:
        job = await running(q)
        ctx = wizd.JobContext(job, q, "w1")
        for piece in ("one ", "two ", "three"):
            await ctx.stream(piece)
        with pytest.raises(wizd.InvalidJob, match="str"):
            await ctx.stream(b"bytes")  # type: ignore[arg-type]
        await ctx.end_stream()
        assert await q.stream_text(job) == "[... 5 characters dropped]\nwo three"


async def test_a_jobs_watch_starts_with_its_history_so_far(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    job = await other.enqueue("search", {}, queue=Q)
    (claimed,) = await other.store.claim(Q, "w1", 1)
    assert await other.store.progress(job.id, "w1", claimed.attempt, 0.25, None)
    events = watcher.watch(job=job)
    async with anyio.create_task_group() as tg:
        got: list[wizd.WatchEvent] = []

        async def follow() -> None:
            got.extend(await take(events, 5))

        tg.start_soon(follow)
        await registered(watcher)
        await other.store.log(job.id, "late", worker_id="w1", attempt=claimed.attempt)
        finish = Finish(job.id, "w1", claimed.attempt, "completed", None, None, retry=False)
        assert await other.store.finish([finish]) == [True]
    await events.aclose()  # type: ignore[attr-defined]
    assert [e.kind for e in got] == ["enqueued", "claimed", "progress", "log", "completed"]
    with pytest.raises(wizd.JobNotFound):
        await watcher.watch(job=job.id + 50).__anext__()


def test_connect_sync_watches_too(store_url: str) -> None:
    with wizd.connect_sync(store_url) as q:
        job = q.enqueue("search", {}, queue=Q)
        events = q.watch(job=job)
        first = next(events)
        assert (first.job_id, first.kind) == (job.id, "enqueued")
        events.close()  # type: ignore[attr-defined]


# -- the feed's upkeep: leases expire, rows are pruned, old cursors are turned away ---------


async def leases(q: wizd.Queue) -> int:
    rows: int = await q.store._read(  # type: ignore[attr-defined]
        lambda c: c.execute("SELECT count(*) FROM feed_watchers").fetchone()[0]
    )
    return rows


def leases_at(url: str) -> int:
    """How many watchers hold a lease on the store at `url`, read by a client of its own
    (for tests whose watchers are other processes)."""

    async def count() -> int:
        async with wizd.connect(url, read_only=True) as q:
            return await leases(q)

    return anyio.run(count)


async def watched_once(watcher: wizd.Queue, other: wizd.Queue) -> list[wizd.WatchEvent]:
    """A watch that saw one job enqueued and went away (its lease left behind)."""
    events = watcher.watch(queue=Q)
    async with anyio.create_task_group() as tg:
        seen: list[wizd.WatchEvent] = []

        async def follow() -> None:
            seen.extend(await take(events, 1))

        tg.start_soon(follow)
        await registered(watcher)
        await other.enqueue("search", {}, queue=Q)
    await events.aclose()  # type: ignore[attr-defined]
    return seen


async def test_a_swept_expired_lease_stops_the_feed_and_its_cursor_is_turned_away(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    (seen,) = await watched_once(watcher, other)
    await other.store.sweep_feed()  # the lease is live: nothing happens
    assert await leases(other) == 1
    job = await other.enqueue("search", {}, queue=Q)
    assert await feed_rows(other) == 2
    await other.store._write(  # type: ignore[attr-defined]  # the lease runs out
        lambda c, now: c.execute("UPDATE feed_watchers SET expires_at = ?", (now - 1,))
    )
    job2 = await other.enqueue("search", {}, queue=Q)  # recorded till a sweep drops it
    assert await feed_rows(other) == 3
    await other.store.sweep_feed()  # what the daemons' reaper does
    assert await leases(other) == 0
    assert await feed_rows(other) == 1  # the last row stays, so no id is used twice
    for unrecorded in (seen.job_id, job.id, job2.id):  # nobody watches
        await run(other, unrecorded)
    assert await feed_rows(other) == 1
    with pytest.raises(wizd.CursorExpired, match=f"cursor {seen.cursor} is older"):
        await watcher.watch(after=seen.cursor).__anext__()
    # A watch from now on works, and new cursors resume as before.
    assert await leases(other) == 0  # the refused watch changed nothing
    again = watcher.watch(queue=Q)
    async with anyio.create_task_group() as tg:
        got: list[wizd.WatchEvent] = []

        async def follow() -> None:
            got.extend(await take(again, 1))

        tg.start_soon(follow)
        await registered(watcher)
        late = await other.enqueue("search", {}, queue=Q)
    await again.aclose()  # type: ignore[attr-defined]
    assert got[0].job_id == late.id
    resumed = watcher.watch(after=got[0].cursor)
    await other.enqueue("search", {}, queue=Q)
    (next_one,) = await take(resumed, 1)
    assert next_one.cursor > got[0].cursor
    await resumed.aclose()  # type: ignore[attr-defined]


async def test_a_cursor_whose_rows_were_pruned_is_turned_away(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    (seen,) = await watched_once(watcher, other)
    for _ in range(3):
        await other.enqueue("search", {}, queue=Q)
    rows = await feed_rows(other)
    # Another watcher renews with a lease so short that every row is past resuming.
    await other.store.watch_register("impatient", lease=0.0)
    assert await feed_rows(other) == 1
    assert rows == 4
    with pytest.raises(wizd.CursorExpired) as refused:
        await watcher.watch(after=seen.cursor).__anext__()
    assert refused.value.oldest == seen.cursor + 2  # the last of the three pruned rows + 0
    # The newest cursor still resumes.
    last = seen.cursor + 3
    resumed = watcher.watch(after=last)
    job = await other.enqueue("search", {}, queue=Q)
    (event,) = await take(resumed, 1)
    await resumed.aclose()  # type: ignore[attr-defined]
    assert (event.job_id, event.cursor) == (job.id, last + 1)


async def test_a_cursor_past_the_feeds_end_is_bad_input(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    (seen,) = await watched_once(watcher, other)
    with pytest.raises(wizd.InvalidJob, match="past the feed's last event"):
        await watcher.watch(after=seen.cursor + 1000).__anext__()


async def test_a_stream_of_a_run_that_lost_its_job_writes_nothing(other: wizd.Queue) -> None:
    job = await running(other)
    stale = streaming.Stream(other.store, job.id, 1000, "w1", job.attempt)
    await stale.write("first ")
    # The run is lost (a reaper judged it hung) and the job runs again elsewhere.
    assert [i.job.id for i in await other.store.reap_hung(-1.0)] == [job.id]
    (again,) = await other.store.claim(Q, "w2", 1)
    assert again.attempt == job.attempt + 1

    async def write_late_piece() -> None:  # written at once (25 ms after "first "), or by flush
        await stale.write("stale ")
        await stale.flush()

    with pytest.raises(wizd.LostJob):
        await write_late_piece()
    with pytest.raises(wizd.LostJob):  # and every later piece is refused at once
        await stale.write("more ")
    await stale.close()
    fresh = streaming.Stream(other.store, job.id, 1000, "w2", again.attempt)
    await fresh.write("second")
    await fresh.close()
    assert await other.stream_text(job) == "first second"
    # A run's last pieces are written even after its outcome was committed.
    finish = Finish(job.id, "w2", again.attempt, "completed", None, None, retry=False)
    assert await other.store.finish([finish]) == [True]
    assert await other.store.append_stream(job.id, "!", 1000, worker_id="w2", attempt=2)
    assert not await other.store.append_stream(job.id, "?", 1000, worker_id="w1", attempt=1)
    assert await other.stream_text(job) == "first second!"


async def test_a_closed_watch_leaves_its_lease_for_a_minute_only(
    watcher: wizd.Queue, other: wizd.Queue
) -> None:
    await watched_once(watcher, other)
    expires = await other.store._read(  # type: ignore[attr-defined]
        lambda c: c.execute("SELECT expires_at FROM feed_watchers").fetchone()[0]
    )
    assert expires - time.time() <= watching.LINGER + 1


async def test_close_waits_for_a_timer_write_under_way(other: wizd.Queue) -> None:
    """A run is over only once its pieces are stored: close waits for the timer's write
    that is already under way (it is no longer the stream's timer then)."""
    job = await running(other)
    entered, gate = anyio.Event(), anyio.Event()
    original = other.store.append_stream
    calls = 0

    async def append_stream(job_id: int, piece: str, cap: int, **run: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:  # the timer's write, held until the test lets it go
            entered.set()
            await gate.wait()
        return await original(job_id, piece, cap, **run)

    other.store.append_stream = append_stream  # type: ignore[method-assign]
    stream = streaming.Stream(other.store, job.id, 1000, "w1", job.attempt)
    await stream.write("a")  # written at once
    await stream.write("b")  # by the timer, FLUSH_EVERY later
    await entered.wait()
    closed = anyio.Event()

    async def close() -> None:
        await stream.close()
        closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        await anyio.wait_all_tasks_blocked()
        assert not closed.is_set()  # still waiting for "b" to be stored
        gate.set()
    assert await other.stream_text(job) == "ab"
