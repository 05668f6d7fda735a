"""PostgreSQL hands a job enqueued alone to an idle daemon (schema 7).

A daemon whose claim left it with free slots and an empty queue offers a few of them; an
enqueue of one plain job takes one, inserts the job already claimed for that daemon and
notifies it alone, and the daemon's store returns the job from handed_over() with no
statement. These tests play the daemon with a store of their own: wait_for_change opens
its listening session (as a daemon's watcher does), claim() offers its slots.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import psycopg
import pytest

import wizd
from tests.conftest import FakeClock, in_own_task
from wizd.model import JobStatus
from wizd.store import postgres as P

Q = "agent"
W = "worker-1"


@pytest.fixture
async def daemon(postgres_url: str) -> AsyncIterator[wizd.Queue]:
    """A store as a daemon holds it: listening, its worker's free slots offered."""
    async with in_own_task(wizd.connect(postgres_url)) as q:
        await listening(q)
        assert not await q.store.claim(Q, W, 10)  # an empty queue: 4 slots offered
        yield q


@pytest.fixture
async def producer(postgres_url: str) -> AsyncIterator[wizd.Queue]:
    async with in_own_task(wizd.connect(postgres_url)) as q:
        yield q


async def listening(q: wizd.Queue) -> None:
    """Open the listening session: the first wait returns at once once LISTEN is on."""
    with anyio.fail_after(10):
        await q.store.wait_for_change(30.0)
    assert q.store._listen_key is not None  # type: ignore[attr-defined]


async def handed(q: wizd.Queue, n: int) -> list[wizd.Job]:
    """Wait for n jobs handed over to W (each notification wakes the wait at once)."""
    jobs: list[wizd.Job] = []
    with anyio.fail_after(10):
        while len(jobs) < n:
            jobs += q.store.handed_over(Q, W)
            if len(jobs) < n:
                await q.store.wait_for_change(30.0)
    return jobs


def free_slots(q: wizd.Queue) -> list[tuple[str, str]]:
    config = q.store.config  # type: ignore[attr-defined]
    with psycopg.connect(config.conninfo) as pg:
        rows = pg.execute(f"SELECT queue, worker_id FROM {config.schema}.free_slots").fetchall()
    return [(r[0], r[1]) for r in rows]


async def test_a_job_enqueued_into_an_idle_daemons_queue_is_handed_over_claimed(
    daemon: wizd.Queue, producer: wizd.Queue
) -> None:
    """The job is claimed for the daemon when its enqueue commits: the producer is told
    so, the store holds it so, and the daemon's store returns it once, with no statement,
    equal to the job read back."""
    job = await producer.enqueue("summarize", {"text": 'a "quoted" \\ line\n'}, queue=Q)
    assert (job.status, job.attempt, job.worker_id) == (JobStatus.RUNNING, 1, W)
    assert job.started_at == job.created_at == job.heartbeat_at
    stored = await producer.get(job.id)
    assert stored == job

    (taken,) = await handed(daemon, 1)
    assert taken == stored
    assert not daemon.store.handed_over(Q, W)  # each job once
    assert not daemon.store.handed_over(Q, "worker-2")  # and only to its own worker
    assert (await producer.counts(Q))["running"] == 1
    assert (await producer.counts(Q))["pending"] == 0
    # It finishes as a claimed job does.
    await daemon.store.finish([wizd.store.Finish(taken.id, W, 1, "completed", result=7)])
    done = await producer.get(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, 7)
    assert [e.kind for e in await producer.events(job.id)] == ["enqueued", "claimed", "completed"]


async def test_a_daemon_is_handed_at_most_the_slots_its_last_claim_offered(
    daemon: wizd.Queue, producer: wizd.Queue
) -> None:
    """A claim of n that took nothing offers min(n, HANDED_SLOTS) slots; each hand-over
    fills one; the job after that waits pending for the daemon's next claim, which offers
    its slots again."""
    jobs = [await producer.enqueue("t", {"i": i}, queue=Q) for i in range(P.HANDED_SLOTS + 1)]
    statuses = [job.status for job in jobs]
    assert statuses == [JobStatus.RUNNING] * P.HANDED_SLOTS + [JobStatus.PENDING]
    assert [j.id for j in await handed(daemon, P.HANDED_SLOTS)] == [j.id for j in jobs[:-1]]
    assert free_slots(daemon) == []

    assert [j.id for j in await daemon.store.claim(Q, W, 2)] == [jobs[-1].id]
    assert free_slots(daemon) == [(Q, W)]  # took 1 of 2: one slot left, offered
    second = await producer.enqueue("t", queue=Q)
    third = await producer.enqueue("t", queue=Q)
    assert (second.status, third.status) == (JobStatus.RUNNING, JobStatus.PENDING)


async def test_a_full_claim_or_a_worker_that_stops_claiming_withdraws_its_slots(
    daemon: wizd.Queue, producer: wizd.Queue
) -> None:
    """A claim that takes all it asked for leaves no free slot to offer; a worker that
    stops claiming withdraws what it offered, and a job handed over to it that it never
    took goes back to pending with its attempt not charged."""
    await producer.enqueue_many([{"name": "t", "queue": Q} for _ in range(3)])  # not handed
    assert len(await daemon.store.claim(Q, W, 3)) == 3
    assert free_slots(daemon) == []
    assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING

    assert len(await daemon.store.claim(Q, W, 5)) == 1  # the queue is empty again
    job = await producer.enqueue("t", queue=Q)
    assert job.status == JobStatus.RUNNING
    with anyio.fail_after(10):
        while not daemon.store._handed:  # type: ignore[attr-defined]
            await daemon.store.wait_for_change(30.0)  # its notification arrives, untaken
    await daemon.store.stop_claiming(Q, W)
    back = await producer.get(job.id)
    assert (back.status, back.attempt, back.worker_id) == (JobStatus.PENDING, 0, None)
    assert free_slots(daemon) == []
    assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
    assert not daemon.store.handed_over(Q, W)


async def test_closing_a_store_gives_back_the_jobs_handed_over_to_it(
    postgres_url: str, producer: wizd.Queue
) -> None:
    async with in_own_task(wizd.connect(postgres_url)) as q:
        await listening(q)
        await q.store.claim(Q, W, 1)
        job = await producer.enqueue("t", queue=Q)
        assert job.status == JobStatus.RUNNING
        with anyio.fail_after(10):
            while not q.store._handed:  # type: ignore[attr-defined]
                await q.store.wait_for_change(30.0)
    back = await producer.get(job.id)
    assert (back.status, back.attempt) == (JobStatus.PENDING, 0)


async def test_no_job_is_handed_over_ahead_of_one_a_claim_would_take_first(
    postgres_url: str, clock: FakeClock
) -> None:
    """Only a job that would be the queue's next claim is handed over: not while another
    is pending or a delayed one is due, nor in a paused queue or one with limits, nor a
    job that does not start pending. Each stays pending (or delayed) for a claim; and
    the daemon's slots stay offered throughout."""
    async with (
        in_own_task(wizd.connect(postgres_url, clock=clock)) as daemon,
        in_own_task(wizd.connect(postgres_url, clock=clock)) as producer,
    ):
        await listening(daemon)
        assert not await daemon.store.claim(Q, W, 10)  # offers its slots
        await producer.pause(Q)  # the queue has its row from now on, with its defaults
        await producer.resume(Q)

        await producer.enqueue_many([{"name": "older", "queue": Q}] * 2)  # in bulk: pending
        assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
        assert [j.name for j in await daemon.store.claim(Q, W, 10)] == ["older", "older", "t"]

        # A delayed job due by now (not promoted yet) would be claimed first.
        await producer.enqueue("later", queue=Q, delay=5)
        clock.advance(10)
        assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
        assert [j.name for j in await daemon.store.claim(Q, W, 10)] == ["later", "t"]

        assert (await producer.enqueue("t", queue=Q, delay=60)).status == JobStatus.DELAYED
        await producer.pause(Q)
        assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
        await producer.resume(Q)
        assert len(await daemon.store.claim(Q, W, 10)) == 1  # the job of the pause
        await producer.set_queue_limits(Q, max_running=100)
        assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
        await producer.set_queue_limits(Q, max_running=None)
        assert len(await daemon.store.claim(Q, W, 10)) == 1
        assert free_slots(daemon) == [(Q, W)] * P.HANDED_SLOTS

        job = await producer.enqueue("t", queue=Q)  # the queue is as it was: handed over
        assert job.status == JobStatus.RUNNING
        assert [j.id for j in await handed(daemon, 1)] == [job.id]


async def test_no_job_is_handed_to_a_daemon_whose_listening_session_ended(
    postgres_url: str, producer: wizd.Queue
) -> None:
    """A daemon's offer counts only while its listening session holds its lock: once the
    session ends (the process died, its connection was cut) the next job stays pending
    for a live daemon's claim, and the upkeep deletes the dead offer."""
    async with in_own_task(wizd.connect(postgres_url)) as gone:
        await listening(gone)
        await gone.store.claim(Q, W, 10)
        assert free_slots(gone) == [(Q, W)] * P.HANDED_SLOTS
    job = await producer.enqueue("t", queue=Q)
    assert job.status == JobStatus.PENDING
    assert (await producer.get(job.id)).worker_id is None
    await producer.store.promote_due()  # the upkeep: dead offers go
    assert free_slots(producer) == []


async def test_a_daemon_whose_listener_was_cut_is_handed_jobs_on_its_new_session_only(
    daemon: wizd.Queue, producer: wizd.Queue, postgres_database: str
) -> None:
    """The listening session is terminated on the server: the daemon's wait notices and
    reconnects under a new key, its next claim replaces the old session's offers, and jobs
    are handed to it on the new session."""
    old_key = daemon.store._listen_key  # type: ignore[attr-defined]
    with psycopg.connect(postgres_database, autocommit=True) as pg:
        pid = daemon.store._listen.info.backend_pid  # type: ignore[attr-defined]
        pg.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with anyio.fail_after(10):
        while daemon.store._listen_key in (None, old_key):  # type: ignore[attr-defined]
            await daemon.store.wait_for_change(0.2)
    # Until its next claim, the old session's offers are dead: nothing is handed.
    assert (await producer.enqueue("t", queue=Q)).status == JobStatus.PENDING
    assert len(await daemon.store.claim(Q, W, 10)) == 1
    assert free_slots(daemon) == [(Q, W)] * P.HANDED_SLOTS
    job = await producer.enqueue("t", queue=Q)
    assert job.status == JobStatus.RUNNING
    assert [j.id for j in await handed(daemon, 1)] == [job.id]


async def test_a_job_too_long_for_a_notification_stays_pending(
    daemon: wizd.Queue, producer: wizd.Queue
) -> None:
    """The job's row travels in the notification, whose payload must stay under 8,000
    bytes: a row that fits is handed over however its text is escaped in JSON, a longer
    one stays pending, whole, for a claim."""
    text = 'ab"é' * 600  # 3,000 bytes; 3,600 in the payload's JSON, 4,800 in the row's
    fits = await producer.enqueue("t", {"text": text}, queue=Q)
    assert fits.status == JobStatus.RUNNING
    assert (await handed(daemon, 1))[0].payload == {"text": text}
    long = await producer.enqueue("t", {"text": text * 2}, queue=Q)  # 9,600 in the row's
    assert long.status == JobStatus.PENDING
    (claimed,) = await daemon.store.claim(Q, W, 5)
    assert claimed.payload == {"text": text * 2}
