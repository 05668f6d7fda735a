"""The behavioural store suite: the worker-facing operations and the queue's semantics,
written once and run against every backend (the `backend_url` fixture)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from conftest import FakeClock, in_own_task, sqlite_file, stored_event_rows

import wizd
from wizd import Backoff, IllegalTransition, Job, JobStatus
from wizd.errors import DependencyError
from wizd.model import ALL_STATUSES, TRANSITIONS, NewJob
from wizd.store import Finish, Store
from wizd.store import postgres_queries as PQ
from wizd.store import sqlite_queries as Q

S = JobStatus


def done(job: Job, outcome: str = "completed", **kwargs: object) -> Finish:
    """How `job`'s current run ended, as told by the worker that claimed it."""
    assert job.worker_id is not None
    return Finish(job.id, job.worker_id, job.attempt, outcome, **kwargs)  # type: ignore[arg-type]


async def claim_one(store: Store, queue: str = "default", worker: str = "w1") -> Job:
    jobs = await store.claim(queue, worker, 1)
    assert len(jobs) == 1, f"expected one job to claim from {queue}, got {jobs}"
    return jobs[0]


async def snapshot(store: Store, job_id: int) -> tuple[dict[str, object], int]:
    """The job as stored and how many events it has: what 'changes nothing' compares."""
    return (await store.get(job_id)).to_dict(), len(await store.events(job_id))


# -- claiming ------------------------------------------------------------------------------


async def test_claim_order_is_priority_then_run_at_then_id(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    now = clock()
    a = await q.enqueue("a", priority=3, run_at=now - 10)
    b = await q.enqueue("b", priority=5, run_at=now - 5)
    c = await q.enqueue("c", priority=3, run_at=now - 20)
    d = await q.enqueue("d", priority=3, run_at=now - 10)
    e = await q.enqueue("e", priority=1, run_at=now - 100)
    f = await q.enqueue("f", priority=5, run_at=now - 5)
    expected = [b.id, f.id, c.id, a.id, d.id, e.id]

    assert [j.id for j in await store.peek("default", 10)] == expected
    first = await store.claim("default", "w1", 2)
    rest = await store.claim("default", "w2", 10)
    assert [j.id for j in first + rest] == expected
    for job in first + rest:
        assert job.status is S.RUNNING
        assert job.attempt == 1
        assert job.started_at is not None
        assert job.started_at.timestamp() == now
        assert job.heartbeat_at is not None
        assert job.heartbeat_at.timestamp() == now
    assert {j.worker_id for j in first} == {"w1"}
    assert {j.worker_id for j in rest} == {"w2"}


async def test_claimed_and_enqueued_jobs_equal_the_jobs_read_back(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    """Jobs built by the hot path (enqueue's own record, a claim's rows) carry every field
    as stored: the positional builders cannot put a value in the wrong field."""
    parent = await q.enqueue("parent", start_waiting_children=True)
    dep = await q.enqueue("dep")
    job = await q.enqueue(
        "full",
        {"k": [1, 2]},
        priority=4,
        attempts=4,
        backoff=Backoff.fixed(3.0),
        timeout=60,
        ttl=600,
        tags=["a", "b"],
        context={"trace": "t"},
        parent=parent.id,
        concurrency_key="key",
        unique_key="u1",
    )
    assert job == await store.get(job.id)
    claimed = await claim_one(store)  # `full`: the highest priority pending
    assert (claimed.id, claimed.status, claimed.tags) == (job.id, S.RUNNING, ("a", "b"))
    assert claimed == await store.get(job.id)
    assert claimed.heartbeat_at == claimed.started_at == claimed.updated_at
    after = await q.enqueue("after", depends_on=[dep.id])
    await store.finish([done(await claim_one(store))])  # dep
    running = await claim_one(store)
    assert (running.id, running.depends_on) == (after.id, (dep.id,))
    assert running == await store.get(after.id)
    # Plain jobs enqueued together share one insert (on PostgreSQL, one array per column).
    options = {"priority": 2, "attempts": 2, "timeout": 1.5, "ttl": 60, "tags": ["t"]}
    many = await q.enqueue_many(
        [
            {"name": "m1", "payload": {"i": 1}, "context": {"c": 1}, "delay": 5, **options},
            {"name": "m2", "queue": "other", "concurrency_key": "k"},
        ]
    )
    assert many == [await store.get(j.id) for j in many]


async def test_plain_jobs_inserted_with_the_short_row_equal_those_with_every_column(
    q: wizd.Queue, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk enqueue whose rows hold the table's defaults in every column but a dozen
    writes only those (INSERT_JOB_PLAIN); the jobs read back are the same as those written
    with every column (INSERT_JOB_WITH_ID), field for field but the id and the name."""
    from wizd.store import enqueue

    used: list[str] = []
    insert_many = enqueue.insert_many

    def spy(c: object, sql: str, rows: list[tuple[object, ...]]) -> None:
        used.append(sql)
        insert_many(c, sql, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(enqueue, "insert_many", spy)
    shapes: list[dict[str, object]] = [
        {"payload": {"i": 1}},
        {"queue": "other", "priority": 5, "attempts": 4, "timeout": 2.5, "delay": 5},
        {"backoff": Backoff.fixed(2.0), "run_at": 1_750_000_100.0},
    ]
    short = await q.enqueue_many([{"name": f"s{i}", **shape} for i, shape in enumerate(shapes)])
    # One item with tags makes the whole batch write every column.
    full = await q.enqueue_many(
        [{"name": f"f{i}", **shape} for i, shape in enumerate(shapes)]
        + [{"name": "tagged", "tags": ["t"]}]
    )
    assert used == [Q.INSERT_JOB_PLAIN, Q.INSERT_JOB_WITH_ID]
    for a, b in zip(short, full, strict=False):
        read_a, read_b = await store.get(a.id), await store.get(b.id)
        assert read_a == a
        assert read_b == b
        assert {**read_a.to_dict(), "id": 0, "name": ""} == {
            **read_b.to_dict(),
            "id": 0,
            "name": "",
        }


async def test_bare_jobs_in_bulk_read_back_as_jobs_enqueued_one_by_one(
    q: wizd.Queue, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk items that set nothing but a name, a payload and a queue take their queue's
    defaults: only each queue's first is prepared, the others copy its row. Queues with
    and without defaults (a ttl makes the batch write every column), mixed in one call,
    read back as the same jobs enqueued one at a time, field for field but id and name."""
    from wizd.store import enqueue

    prepared: list[str] = []
    used: list[str] = []
    prepare, insert_many = enqueue.Inserter.prepare, enqueue.insert_many

    def count(self: enqueue.Inserter, new: NewJob, *args: Any) -> Any:
        prepared.append(new.name)
        return prepare(self, new, *args)

    def spy(c: object, sql: str, rows: list[tuple[object, ...]]) -> None:
        used.append(sql)
        insert_many(c, sql, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(enqueue.Inserter, "prepare", count)
    monkeypatch.setattr(enqueue, "insert_many", spy)
    await q.set_defaults("tuned", priority="high", attempts=5, timeout=3.0)
    await q.set_defaults("expiring", ttl=60)
    for queues, statement in (
        (["default", "tuned", "default", "tuned"], Q.INSERT_JOB_PLAIN),
        (["tuned", "expiring", "default", "expiring"], Q.INSERT_JOB_WITH_ID),
    ):
        prepared.clear()
        used.clear()
        items = [{"name": f"b{i}", "payload": {"i": i}, "queue": n} for i, n in enumerate(queues)]
        bulk = await q.enqueue_many(items)
        assert prepared == [f"b{queues.index(queue)}" for queue in dict.fromkeys(queues)]
        assert used == [statement]
        for i, (job, queue) in enumerate(zip(bulk, queues, strict=True)):
            alone = await q.enqueue(f"a{i}", {"i": i}, queue=queue)
            assert await store.get(job.id) == job
            assert {**job.to_dict(), "id": 0, "name": ""} == {
                **alone.to_dict(),
                "id": 0,
                "name": "",
            }


async def test_claim_takes_at_most_n_and_only_from_its_queue(q: wizd.Queue, store: Store) -> None:
    for i in range(5):
        await q.enqueue("t", {"i": i}, queue="mine")
    theirs = await q.enqueue("t", queue="theirs")

    assert len(await store.claim("mine", "w1", 3)) == 3
    assert len(await store.claim("mine", "w1", 3)) == 2
    assert await store.claim("mine", "w1", 3) == []
    assert (await store.get(theirs.id)).status is S.PENDING


@pytest.mark.parametrize("n", [0, -1])
async def test_claim_of_no_slots_claims_nothing(q: wizd.Queue, store: Store, n: int) -> None:
    for _ in range(3):
        await q.enqueue("t")
    assert await store.claim("default", "w1", n) == []
    assert (await q.counts())["pending"] == 3


async def test_concurrent_claims_never_hand_one_job_to_two_workers(
    q: wizd.Queue, store: Store
) -> None:
    await q.enqueue_many([{"name": "t", "payload": {"i": i}} for i in range(50)])
    claimed: list[Job] = []

    async def worker(i: int) -> None:
        claimed.extend(await store.claim("default", f"w{i}", 7))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(worker, i)

    ids = [j.id for j in claimed]
    assert len(ids) == 50
    assert len(set(ids)) == 50


async def test_peek_changes_nothing(q: wizd.Queue, store: Store) -> None:
    jobs = [await q.enqueue("t", priority=p) for p in (1, 5, 3)]
    before = [await snapshot(store, j.id) for j in jobs]
    assert [j.priority for j in await store.peek("default", 2)] == [5, 3]
    assert [await snapshot(store, j.id) for j in jobs] == before


async def test_peek_shows_the_jobs_claim_would_hand_out(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    """A delayed job whose time has come is the next to run even before a promoter moved
    it: claim promotes it first, so peek must show it too."""
    urgent = await q.enqueue("urgent", priority=5, delay=10)
    await q.enqueue("routine", priority=1)
    clock.advance(20)

    peeked = await store.peek("default", 1)
    claimed = await store.claim("default", "w1", 1)
    assert [j.id for j in claimed] == [urgent.id]
    assert [j.id for j in peeked] == [j.id for j in claimed]


async def test_delayed_job_is_never_claimed_early(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    job = await q.enqueue("t", delay=30)
    assert job.status is S.DELAYED
    assert job.run_at.timestamp() == clock() + 30

    clock.advance(29.5)
    assert await store.claim("default", "w1", 10) == []
    assert await store.promote_due() == 0
    assert (await store.get(job.id)).status is S.DELAYED

    clock.advance(0.5)
    assert [j.id for j in await store.claim("default", "w1", 10)] == [job.id]


async def test_paused_queue_is_never_claimed_and_keeps_its_jobs(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    pending = await q.enqueue("t", queue="held")
    delayed = await q.enqueue("t", queue="held", delay=5)
    other = await q.enqueue("t", queue="free")
    await q.pause("held")
    clock.advance(10)

    assert await store.claim("held", "w1", 10) == []
    assert (await store.get(pending.id)).status is S.PENDING
    assert (await store.get(delayed.id)).status is S.DELAYED
    assert [j.id for j in await store.claim("free", "w1", 10)] == [other.id]

    await q.resume("held")
    assert {j.id for j in await store.claim("held", "w1", 10)} == {pending.id, delayed.id}


async def test_paused_job_is_never_claimed(q: wizd.Queue, store: Store, clock: FakeClock) -> None:
    pending = await q.enqueue("t")
    delayed = await q.enqueue("t", delay=5)
    await q.pause_job(pending)
    await q.pause_job(delayed)
    clock.advance(10)

    assert await store.promote_due() == 0
    assert await store.claim("default", "w1", 10) == []
    assert (await store.get(delayed.id)).status is S.PAUSED

    await q.resume_job(pending)
    await q.resume_job(delayed)
    assert {j.id for j in await store.claim("default", "w1", 10)} == {pending.id, delayed.id}


async def test_promote_due_moves_only_due_delayed_jobs(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    soon = await q.enqueue("t", delay=5)
    also_soon = await q.enqueue("t", queue="other", delay=5)
    late = await q.enqueue("t", delay=50)
    clock.advance(5)

    assert await store.promote_due() == 2
    assert (await store.get(soon.id)).status is S.PENDING
    assert (await store.get(also_soon.id)).status is S.PENDING
    assert (await store.get(late.id)).status is S.DELAYED
    assert (await store.events(soon.id))[-1].kind == "promoted"
    assert await store.promote_due() == 0


# -- finishing runs ------------------------------------------------------------------------


async def test_completed_stores_the_result(q: wizd.Queue, store: Store, clock: FakeClock) -> None:
    await q.enqueue("t")
    job = await claim_one(store)
    clock.advance(3)

    assert await store.finish([done(job, result={"answer": 42})]) == [True]
    stored = await store.get(job.id)
    assert stored.status is S.COMPLETED
    assert stored.result == {"answer": 42}
    assert stored.finished_at is not None
    assert stored.finished_at.timestamp() == clock()
    assert stored.attempt == 1


async def test_failure_is_retried_with_backoff_until_attempts_run_out(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    job = await q.enqueue("t", attempts=3, backoff=Backoff.exponential(2.0, cap=300.0))

    run = await claim_one(store)
    assert await store.finish([done(run, "failed", error="boom 1")]) == [True]
    stored = await store.get(job.id)
    assert stored.status is S.DELAYED
    assert stored.error == "boom 1"
    assert stored.worker_id is None
    assert stored.run_at.timestamp() == clock() + 2.0

    clock.advance(1.9)
    assert await store.claim("default", "w1", 1) == []
    clock.advance(0.1)
    run = await claim_one(store)
    assert run.attempt == 2
    assert await store.finish([done(run, "failed", error="boom 2")]) == [True]
    assert (await store.get(job.id)).run_at.timestamp() == clock() + 4.0

    clock.advance(4.0)
    run = await claim_one(store)
    assert run.attempt == 3
    assert await store.finish([done(run, "failed", error="boom 3")]) == [True]
    stored = await store.get(job.id)
    assert stored.status is S.FAILED
    assert stored.error == "boom 3"
    assert stored.attempt == 3
    assert stored.finished_at is not None


@pytest.mark.parametrize(
    ("backoff", "attempt", "low", "high"),
    [
        (Backoff.fixed(7.0), 1, 7.0, 7.0),
        (Backoff.fixed(7.0), 2, 7.0, 7.0),
        (Backoff.exponential(2.0, cap=5.0), 3, 5.0, 5.0),
        (Backoff.exponential(2.0, cap=300.0, jitter=0.1), 1, 1.8, 2.2),
        (Backoff.exponential(2.0, cap=300.0, jitter=0.1), 3, 7.2, 8.8),
    ],
)
async def test_retry_delay_follows_the_jobs_backoff(
    q: wizd.Queue,
    store: Store,
    clock: FakeClock,
    backoff: Backoff,
    attempt: int,
    low: float,
    high: float,
) -> None:
    job = await q.enqueue("t", attempts=10, backoff=backoff)
    for _ in range(attempt):
        clock.advance(1000)
        run = await claim_one(store)
        assert await store.finish([done(run, "failed")]) == [True]
    delay = (await store.get(job.id)).run_at.timestamp() - clock()
    assert low - 1e-6 <= delay <= high + 1e-6


async def test_failure_without_retry_is_final_even_with_attempts_left(
    q: wizd.Queue, store: Store
) -> None:
    await q.enqueue("t", attempts=5)
    run = await claim_one(store)
    assert await store.finish([done(run, "failed", error="bad input", retry=False)]) == [True]
    stored = await store.get(run.id)
    assert stored.status is S.FAILED
    assert stored.error == "bad input"


@pytest.mark.parametrize("outcome", ["later", "requeue"])
async def test_later_and_requeue_do_not_charge_an_attempt(
    q: wizd.Queue, store: Store, clock: FakeClock, outcome: str
) -> None:
    await q.enqueue("t", attempts=1)

    run = await claim_one(store)
    assert await store.finish([done(run, outcome, delay=10.0)]) == [True]
    stored = await store.get(run.id)
    assert stored.status is S.DELAYED
    assert stored.attempt == 0
    assert stored.run_at.timestamp() == clock() + 10

    clock.advance(10)
    run = await claim_one(store)
    assert run.attempt == 1
    assert await store.finish([done(run, outcome)]) == [True]
    assert (await store.get(run.id)).status is S.PENDING
    assert (await claim_one(store)).attempt == 1


async def test_cancelled_outcome_is_final(q: wizd.Queue, store: Store) -> None:
    await q.enqueue("t", attempts=3)
    run = await claim_one(store)
    assert await store.finish([done(run, "cancelled", error="stopped")]) == [True]
    stored = await store.get(run.id)
    assert stored.status is S.CANCELLED
    assert stored.finished_at is not None


async def test_wait_children_runs_the_parent_again_when_its_children_are_final(
    q: wizd.Queue, store: Store
) -> None:
    await q.enqueue("parent", attempts=1)
    parent = await claim_one(store)
    child = await q.enqueue("child", queue="kids", parent=parent.id)

    assert await store.finish([done(parent, "wait_children")]) == [True]
    assert (await store.get(parent.id)).status is S.WAITING_CHILDREN
    assert await store.claim("default", "w1", 1) == []

    run = await claim_one(store, "kids")
    assert run.id == child.id
    assert await store.finish([done(run)]) == [True]
    assert (await store.get(parent.id)).status is S.PENDING
    again = await claim_one(store)
    assert again.id == parent.id
    assert again.attempt <= again.max_attempts


async def test_finish_is_fenced_on_worker_and_attempt(q: wizd.Queue, store: Store) -> None:
    await q.enqueue("t")
    run = await claim_one(store)
    before = await snapshot(store, run.id)

    wrong_worker = Finish(run.id, "w2", run.attempt, "completed")
    wrong_attempt = Finish(run.id, "w1", run.attempt + 1, "completed")
    unknown_job = Finish(run.id + 1000, "w1", 1, "completed")
    assert await store.finish([wrong_worker, wrong_attempt, unknown_job]) == [False] * 3
    assert await snapshot(store, run.id) == before

    assert await store.finish([done(run)]) == [True]
    after = await snapshot(store, run.id)
    assert await store.finish([done(run, "failed")]) == [False]
    assert await snapshot(store, run.id) == after


async def test_a_run_that_lost_its_lease_cannot_overwrite_the_next_one(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    await q.enqueue("t", attempts=3)
    old = await claim_one(store, worker="w1")
    clock.advance(301)
    assert [i.job.id for i in await store.reap_hung(300)] == [old.id]
    new = await claim_one(store, worker="w2")
    assert new.id == old.id
    assert new.attempt == 2

    assert await store.finish([done(old, result="stale")]) == [False]
    assert await store.heartbeat("w1", 0) == set()
    stored = await store.get(old.id)
    assert (stored.status, stored.worker_id, stored.attempt) == (S.RUNNING, "w2", 2)

    assert await store.finish([done(new, result="fresh")]) == [True]
    assert (await store.get(old.id)).result == "fresh"


async def test_counts_follow_claims_and_completions_of_several_queues(
    q: wizd.Queue, store: Store
) -> None:
    # SQLite counts these two transitions in the claim and completion statements, not in
    # its trigger: a batch spanning queues, a lost run and a retry must all add up.
    await q.enqueue_many([{"name": "t", "queue": "a"} for _ in range(5)])
    await q.enqueue_many([{"name": "t", "queue": "b"} for _ in range(3)])
    a = await store.claim("a", "w1", 4)
    b = await store.claim("b", "w2", 2)
    assert (len(a), len(b)) == (4, 2)
    stale = Finish(a[3].id, "w1", a[3].attempt + 1, "completed")  # not this run: refused
    owned = await store.finish(
        [done(a[0]), done(b[0]), done(a[1]), done(a[2], "failed", error="x"), stale]
    )
    assert owned == [True, True, True, True, False]
    counts = await store.counts()
    assert counts == await store.recount()
    assert {s: n for s, n in counts["a"].items() if n} == {
        "pending": 1, "running": 1, "completed": 2, "delayed": 1,
    }  # fmt: skip
    assert {s: n for s, n in counts["b"].items() if n} == {
        "pending": 1, "running": 1, "completed": 1,
    }  # fmt: skip


# -- heartbeats, recovery, reaping, expiry -------------------------------------------------


async def test_heartbeat_returns_the_jobs_the_worker_still_owns(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    for _ in range(3):
        await q.enqueue("t")
    mine = await store.claim("default", "w1", 3)
    await q.enqueue("t")
    theirs = await claim_one(store, worker="w2")
    await q.cancel(mine[0].id)

    assert await store.heartbeat("w1", 3) == {mine[1].id, mine[2].id}
    assert await store.heartbeat("w3", 0) == set()

    # A heartbeat keeps a run from looking hung.
    clock.advance(200)
    await store.heartbeat("w1", 2)
    clock.advance(200)
    assert [i.job.id for i in await store.reap_hung(300)] == [theirs.id]
    assert (await store.get(mine[1].id)).status is S.RUNNING


async def test_a_heartbeat_naming_its_runs_leaves_a_run_it_never_heard_of_to_go_stale(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    for _ in range(2):
        await q.enqueue("t")
    known, unheard = await store.claim("default", "w1", 2)  # as if the second answer was lost

    clock.advance(200)
    assert await store.heartbeat("w1", 1, [known.id]) == {known.id}
    clock.advance(200)

    assert [i.job.id for i in await store.reap_hung(300)] == [unheard.id]
    assert (await store.get(known.id)).status is S.RUNNING
    assert (await store.get(unheard.id)).status is S.PENDING


async def test_recover_worker_counts_the_interrupted_run_as_an_attempt(
    q: wizd.Queue, store: Store
) -> None:
    retried = await q.enqueue("t", attempts=3)
    await claim_one(store, worker="gone")
    exhausted = await q.enqueue("t", attempts=1)
    await claim_one(store, worker="gone")
    await q.enqueue("t")
    alive = await claim_one(store, worker="alive")

    result = await store.recover_worker("gone", "worker died")
    assert {(i.job.id, i.status) for i in result} == {
        (retried.id, S.PENDING),
        (exhausted.id, S.FAILED),
    }
    assert all(i.reason == "worker died" for i in result)

    job = await store.get(retried.id)
    assert (job.status, job.attempt, job.worker_id) == (S.PENDING, 1, None)
    assert job.error is not None
    assert "interrupted" in job.error
    job = await store.get(exhausted.id)
    assert job.status is S.FAILED
    assert job.finished_at is not None
    assert job.error is not None
    assert "no attempts left" in job.error
    for job_id, status in ((retried.id, S.PENDING), (exhausted.id, S.FAILED)):
        last = (await store.events(job_id))[-1]
        assert (last.kind, last.status) == ("recovered", status)
    assert (await store.get(alive.id)).status is S.RUNNING

    again = await claim_one(store)
    assert (again.id, again.attempt) == (retried.id, 2)


async def test_a_job_that_kills_its_worker_every_time_ends_failed(
    q: wizd.Queue, store: Store
) -> None:
    job = await q.enqueue("t", attempts=2)
    for attempt in (1, 2):
        run = await claim_one(store, worker=f"w{attempt}")
        assert run.attempt == attempt
        await store.recover_worker(f"w{attempt}", "crash")
    stored = await store.get(job.id)
    assert stored.status is S.FAILED
    assert await store.claim("default", "w3", 1) == []


async def test_reap_hung_takes_only_stale_runs(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    await q.enqueue("t")
    stale = await claim_one(store, worker="w1")
    clock.advance(100)
    await q.enqueue("t")
    fresh = await claim_one(store, worker="w2")
    clock.advance(250)

    reaped = await store.reap_hung(300)
    assert [(i.job.id, i.status, i.reason) for i in reaped] == [(stale.id, S.PENDING, "hung")]
    assert (await store.events(stale.id))[-1].kind == "recovered"
    assert (await store.get(fresh.id)).status is S.RUNNING
    assert await store.reap_hung(300) == []


async def test_expire_fails_jobs_whose_ttl_passed(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    waiting = await q.enqueue("t", ttl=60)
    await q.enqueue("t", queue="busy", ttl=60)
    running = await claim_one(store, "busy")
    await q.enqueue("t", queue="done", ttl=60)
    finished = await claim_one(store, "done")
    await store.finish([done(finished)])
    later = await q.enqueue("t", ttl=120)
    forever = await q.enqueue("t")

    clock.advance(59)
    assert await store.expire() == []
    clock.advance(1)
    assert set(await store.expire()) == {waiting.id, running.id}

    for job_id in (waiting.id, running.id):
        job = await store.get(job_id)
        assert job.status is S.FAILED
        assert job.error is not None
        assert "expired" in job.error
        assert (await store.events(job_id))[-1].kind == "expired"
    assert await store.finish([done(running)]) == [False]
    assert (await store.get(finished.id)).status is S.COMPLETED
    assert (await store.get(later.id)).status is S.PENDING
    assert (await store.get(forever.id)).status is S.PENDING
    assert await store.expire() == []


# -- the transition table and events -------------------------------------------------------


async def job_in(q: wizd.Queue, store: Store, status: JobStatus) -> Job:
    """A job in `status`, alone in a queue of its own."""
    queue = f"q-{status.value}"
    if status is S.WAITING:
        dep = await q.enqueue("dep", queue=f"{queue}-deps")
        job = await q.enqueue("t", queue=queue, depends_on=[dep.id])
    elif status is S.DELAYED:
        job = await q.enqueue("t", queue=queue, delay=60)
    else:
        job = await q.enqueue("t", queue=queue)
    if status in (S.RUNNING, S.WAITING_CHILDREN, S.WAITING_SIGNAL, S.COMPLETED, S.FAILED):
        run = await claim_one(store, queue)
        if status is S.WAITING_SIGNAL:
            await store.finish([done(run, "wait_signal", error="approval")])
        elif status is S.WAITING_CHILDREN:
            await q.enqueue("child", queue=f"{queue}-kids", parent=job.id)
            await store.finish([done(run, "wait_children")])
        elif status is S.COMPLETED:
            await store.finish([done(run)])
        elif status is S.FAILED:
            await store.finish([done(run, "failed", retry=False)])
    elif status is S.PAUSED:
        await q.pause_job(job)
    elif status is S.CANCELLED:
        await q.cancel(job)
    job = await store.get(job.id)
    assert job.status is status
    return job


Operation = Callable[[wizd.Queue, Job], Awaitable[object]]
OPERATIONS: dict[str, tuple[Operation, JobStatus, Callable[[JobStatus], bool]]] = {
    # name: (operation, the status it moves to, whether a job in a status may take it)
    "cancel": (lambda q, j: q.cancel(j), S.CANCELLED, lambda s: S.CANCELLED in TRANSITIONS[s]),
    "pause_job": (lambda q, j: q.pause_job(j), S.PAUSED, lambda s: S.PAUSED in TRANSITIONS[s]),
    "resume_job": (lambda q, j: q.resume_job(j), S.PENDING, lambda s: s is S.PAUSED),
    "retry": (lambda q, j: q.retry(j), S.PENDING, lambda s: s in (S.FAILED, S.CANCELLED)),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("status", ALL_STATUSES, ids=str)
async def test_every_change_follows_the_transition_table(
    q: wizd.Queue, store: Store, status: JobStatus, operation: str
) -> None:
    act, target, allowed = OPERATIONS[operation]
    job = await job_in(q, store, status)
    before = await snapshot(store, job.id)

    if allowed(status):
        await act(q, job)
        after = await store.get(job.id)
        assert after.status is target
        assert target in TRANSITIONS[status]
        last = (await store.events(job.id))[-1]
        assert last.status is target
    else:
        with pytest.raises(IllegalTransition):
            await act(q, job)
        assert await snapshot(store, job.id) == before


async def test_every_change_writes_an_event_oldest_first(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    job = await q.enqueue("t", delay=5, backoff=Backoff.fixed(10.0))
    clock.advance(5)
    run = await claim_one(store)
    await store.finish([done(run, "failed", error="boom")])
    clock.advance(10)
    run = await claim_one(store, worker="w2")
    await store.finish([done(run)])

    events = await store.events(job.id)
    assert [(e.kind, e.status) for e in events] == [
        ("enqueued", S.DELAYED),
        ("promoted", S.PENDING),
        ("claimed", S.RUNNING),
        ("retry_scheduled", S.DELAYED),
        ("promoted", S.PENDING),
        ("claimed", S.RUNNING),
        ("completed", S.COMPLETED),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert [e.worker_id for e in events if e.kind == "claimed"] == ["w1", "w2"]
    assert [e.attempt for e in events if e.kind == "claimed"] == [1, 2]
    assert all(e.job_id == job.id for e in events)
    assert await store.events(job.id, after=events[-2].id) == events[-1:]


async def test_the_way_every_job_goes_is_read_from_its_row_and_stores_no_event(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    job = await q.enqueue("t")
    clock.advance(1)
    run = await claim_one(store, worker="w7")
    clock.advance(2)
    assert await store.finish([done(run)]) == [True]
    final = await store.get(job.id)

    assert stored_event_rows(q, job.id) == 0
    events = await store.events(job.id)
    assert [(e.id, e.kind, e.status, e.attempt, e.worker_id) for e in events] == [
        (1, "enqueued", S.PENDING, 0, None),
        (2, "claimed", S.RUNNING, 1, "w7"),
        (3, "completed", S.COMPLETED, 1, "w7"),
    ]
    assert [e.at for e in events] == [final.created_at, final.started_at, final.finished_at]
    assert await store.events(job.id, after=2) == events[2:]


async def test_a_history_keeps_its_lines_and_numbers_when_runs_end_otherwise(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    """A run's claim is read from the job row while it runs; once the run ends any way but
    completed, it is stored, in the same place and under the same number, and only once."""
    job = await q.enqueue("t", backoff=Backoff.fixed(10.0))
    clock.advance(1)
    run = await claim_one(store, worker="w1")
    clock.advance(1)
    await q.log(job, "halfway")
    seen = await store.events(job.id)
    assert [(e.kind, e.worker_id) for e in seen] == [
        ("enqueued", None),
        ("claimed", "w1"),
        ("log", None),
    ]

    clock.advance(1)
    await store.finish([done(run, "failed", error="boom")])  # attempts left: retried later
    failed = await store.events(job.id)
    assert failed[: len(seen)] == seen
    assert [e.kind for e in failed[len(seen) :]] == ["retry_scheduled"]
    assert await store.events(job.id, after=seen[-1].id) == failed[len(seen) :]
    assert stored_event_rows(q, job.id) == 3  # the claim, the log line, the retry

    clock.advance(10)
    second = await claim_one(store, worker="w2")
    clock.advance(400)
    [reaped] = await store.reap_hung(300)  # the reaper ends the second run
    assert reaped.job.id == job.id
    clock.advance(1)
    third = await claim_one(store, worker="w3")
    await store.finish([done(third)])

    events = await store.events(job.id)
    assert events[: len(failed)] == failed
    assert [(e.kind, e.attempt, e.worker_id) for e in events[len(failed) :]] == [
        ("promoted", 1, None),
        ("claimed", 2, "w2"),
        ("recovered", 2, "w2"),
        ("claimed", 3, "w3"),
        ("completed", 3, "w3"),
    ]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert second.attempt == 2
    assert stored_event_rows(q, job.id) == 6  # + the promotion, the claim, the recovery


async def test_a_bad_write_in_a_group_spoils_no_concurrent_write(q: wizd.Queue) -> None:
    async def good(i: int) -> None:
        await q.enqueue("ok", {"i": i})

    async def bad() -> None:
        with pytest.raises(DependencyError):
            await q.enqueue_many([{"name": "a"}, {"name": "b", "depends_on": [10**9]}])

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(good, i)
        tg.start_soon(bad)
        for i in range(5, 10):
            tg.start_soon(good, i)

    jobs = await q.list(limit=100)
    assert sorted(j.payload["i"] for j in jobs) == list(range(10))
    assert {j.name for j in jobs} == {"ok"}


async def test_a_write_failing_in_the_database_spoils_no_concurrent_write(q: wizd.Queue) -> None:
    """Writes queued together share one transaction; a write that fails with something
    other than a wizd error (here a NaN run_at reaching the NOT NULL column) must fail
    alone, not take the writes grouped with it down too."""
    outcomes: dict[str, str] = {}

    async def write(key: str, **options: float) -> None:
        try:
            await q.enqueue("t", {"key": key}, **options)
            outcomes[key] = "ok"
        except wizd.WizdError as exc:
            outcomes[key] = type(exc).__name__

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "first")
        tg.start_soon(functools.partial(write, "bad", run_at=float("nan")))
        tg.start_soon(write, "second")

    assert outcomes["first"] == outcomes["second"] == "ok"
    assert outcomes["bad"] != "ok"
    assert sorted(j.payload["key"] for j in await q.list()) == ["first", "second"]


async def test_concurrent_enqueues_sharing_one_group_each_get_their_own_jobs(
    q: wizd.Queue, store: Store
) -> None:
    first = await q.enqueue("t", {"i": -1})
    got: dict[int, list[Job]] = {}

    async def one(i: int) -> None:
        if i % 10 == 5:  # a job with a link goes in the same group, between plain ones
            got[i] = [await q.enqueue("t", {"i": i}, depends_on=[first.id])]
        elif i % 10 == 7:
            items = [{"name": "t", "payload": {"i": i, "n": n}} for n in range(2)]
            got[i] = await q.enqueue_many(items)
        else:
            got[i] = [await q.enqueue("t", {"i": i})]

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)

    for i, jobs in got.items():
        assert [j.payload["i"] for j in jobs] == [i] * len(jobs)
        for job in jobs:
            assert await store.get(job.id) == job
    assert [j.status for j in got[5]] == [S.WAITING]
    assert [len(got[i]) for i in (7, 17)] == [2, 2]
    ids = [j.id for jobs in got.values() for j in jobs]
    assert len(set(ids)) == len(ids) == 44


TRICKY = ['a"b', "c\\d", "NULL", "{x,y}", " padded ", "", "é\n\t", "'q'"]


async def test_awkward_text_survives_the_statements_of_many_rows(
    q: wizd.Queue, store: Store
) -> None:
    # Batched enqueues and completions send each column as one array (PostgreSQL: a text
    # array literal): quotes, backslashes, braces, the word NULL and blanks come back as sent.
    jobs = await q.enqueue_many(
        [{"name": "t", "payload": {"v": text}, "context": {text: text}} for text in TRICKY]
    )
    claimed = await store.claim("default", "w1", len(TRICKY))
    assert len(claimed) == len(TRICKY)
    results = {job.id: {"v": job.payload["v"], "k": [job.payload["v"]]} for job in claimed}
    finished = await store.finish([done(job, result=results[job.id]) for job in claimed])
    assert finished == [True] * len(TRICKY)
    for job, text in zip(jobs, TRICKY, strict=True):
        stored = await store.get(job.id)
        assert (stored.payload, stored.context) == ({"v": text}, {text: text})
        assert stored.result == {"v": text, "k": [text]}


def test_statements_of_many_rows_take_one_array_per_column_on_postgresql() -> None:
    # SQLite gets a placeholder per value ({items}); PostgreSQL one array per column, so that
    # its statement text (and plan) is the same for any number of rows. The declared types
    # must be the statement's arrays, in order: PgConn.execute_rows converts by them.
    with_items = [
        name
        for name, text in vars(Q).items()
        if name.isupper() and isinstance(text, str) and "{items}" in text
    ]
    assert with_items, "no statement of many rows found"
    for name in with_items:
        pg, types = getattr(PQ, name), getattr(PQ, f"{name}_ARRAYS")
        assert "{items}" not in pg, name
        assert re.findall(r"%s::(\w+)\[\]", pg) == list(types), name


async def test_sqlite_wait_for_change_wakes_on_commits_here_and_elsewhere(
    sqlite_q: wizd.Queue, store_url: str
) -> None:
    """An idle daemon's watcher returns when this process commits (at once) or another
    connection does (PRAGMA data_version, within a few ms), and after its timeout when
    nobody does; each wait leaves nothing behind in the store."""
    store = sqlite_q.store

    async def commit_here() -> None:
        await sqlite_q.enqueue("here")

    def commit_elsewhere() -> None:
        with sqlite_file(store_url) as db:  # another connection commits a row
            db.execute("INSERT INTO queues (name) VALUES ('elsewhere')")

    for commit in (commit_here, commit_elsewhere):
        with anyio.fail_after(10):  # the wait's own timeout is far longer
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.wait_for_change, 60.0)
                while not store._commit_waiters:  # type: ignore[attr-defined]
                    await anyio.lowlevel.checkpoint()  # until the watcher waits
                if commit is commit_here:
                    await commit_here()
                else:
                    await anyio.to_thread.run_sync(commit_elsewhere)
    started = anyio.current_time()
    await store.wait_for_change(0.2)  # nobody commits
    assert anyio.current_time() - started >= 0.19
    assert not store._commit_waiters  # type: ignore[attr-defined]


async def test_postgresql_wait_for_change_returns_once_listen_takes_effect(
    postgres_url: str,
) -> None:
    """A job that became pending before the daemon's LISTEN took effect was notified to
    nobody: the wait that (re)connects the listener returns at once, so that the daemon
    claims it now instead of after its poll interval. Later waits sleep until notified."""
    async with in_own_task(wizd.connect(postgres_url)) as q:
        job = await q.enqueue("before_listen")  # notified before anyone listens
        with anyio.fail_after(10):  # the wait's own timeout is far longer
            await q.store.wait_for_change(60.0)
        assert [j.id for j in await q.store.claim("default", "w1", 5)] == [job.id]
        started = anyio.current_time()
        await q.store.wait_for_change(0.3)  # listening now, and nothing happens
        assert anyio.current_time() - started >= 0.29


async def test_postgresql_vacuums_the_jobs_table_after_a_burst(
    postgres_url: str, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each claim and completion leaves a dead row version (and a dead claim-index entry
    that every later claim walks): once the statistics count VACUUM_DEAD of them, the
    upkeep of promote_due vacuums jobs, and not again within VACUUM_EVERY seconds."""
    import psycopg

    from wizd.store import pg_upkeep

    monkeypatch.setattr(pg_upkeep, "VACUUM_DEAD", 100)
    monkeypatch.setattr(pg_upkeep, "VACUUM_EVERY", 3600.0)
    async with in_own_task(wizd.connect(postgres_url)) as q:
        schema = q.store.config.schema  # type: ignore[attr-defined]
        other = psycopg.connect(postgres_database, autocommit=True)
        other.execute(f"SET search_path TO {schema}")  # as wizd's connections (its triggers)

        def stats() -> tuple[int, int]:
            row = other.execute(
                "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'jobs'",
                (schema,),
            ).fetchone()
            assert row is not None
            return row[0], row[1]

        async def burst() -> None:
            """120 dead row versions, counted in the statistics."""
            await q.enqueue_many([{"name": "t"} for _ in range(120)])
            other.execute("DELETE FROM jobs")
            other.execute("SELECT pg_stat_force_next_flush()")  # at once, not within 10 s
            # The flush happens as the connection goes idle: there is no event to await.
            with anyio.fail_after(10):
                while stats()[0] < 100:  # noqa: ASYNC110
                    await anyio.sleep(0.02)

        try:
            await q.store.promote_due()
            assert stats()[1] == 0  # nothing dead yet: no vacuum
            await burst()
            await q.store.promote_due()
            # Vacuumed. What it could remove is not asserted: a transaction open anywhere in
            # the database (another test run's) holds back the dead rows it may reclaim.
            assert stats()[1] == 1

            await burst()  # due again by its count, but within VACUUM_EVERY of the first
            await q.store.promote_due()
            assert stats()[1] == 1
        finally:
            other.close()
