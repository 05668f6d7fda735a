"""Scheduling controls, behaviour by behaviour, on every backend (the `backend_url` fixture):
unique jobs, per-queue limits and concurrency keys in the claim, recurring schedules with
their catch-up policies and daylight saving time, and the operator's commands for them.

Time moves only when a test moves the FakeClock; races are real (two connections to one
store, many concurrent calls), never a sleep standing in for an ordering."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from conftest import FakeClock, in_own_task, sqlite_file

import wizd
from wizd import DuplicateJob, InvalidJob, Job, JobStatus, ScheduleNotFound
from wizd.cli import cli
from wizd.recurrence import MAX_CATCH_UP, MISFIRE_GRACE, Timing, plan
from wizd.store import Finish, Store

S = JobStatus
HOUR = 3600.0
DAY = 86400.0


def at(text: str) -> float:
    """Epoch seconds of an ISO time in UTC: at("2026-10-25T00:30")."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


async def finish(store: Store, job: Job, outcome: str = "completed") -> None:
    assert job.worker_id is not None
    owned = await store.finish([Finish(job.id, job.worker_id, job.attempt, outcome)])  # type: ignore[arg-type]
    assert owned == [True]


async def all_jobs(q: wizd.Queue, queue: str | None = None) -> list[Job]:
    return await q.list(queue=queue, sort="id", order="asc", limit=10_000)


# -- unique jobs ----------------------------------------------------------------------------


async def test_a_unique_key_returns_the_unfinished_holder_then_frees_when_it_is_final(
    q: wizd.Queue, store: Store
) -> None:
    first = await q.enqueue("research", {"topic": "quantum"}, unique_key="research:quantum")
    again = await q.enqueue("research", {"topic": "other"}, unique_key="research:quantum")
    assert again.id == first.id
    assert again.payload == {"topic": "quantum"}  # the holder, as stored
    assert first.unique_key == "research:quantum"
    assert [e.kind for e in await q.events(first)] == ["enqueued"]

    (running,) = await store.claim("default", "w1", 1)
    assert (await q.enqueue("research", unique_key="research:quantum")).id == first.id
    await finish(store, running)
    fresh = await q.enqueue("research", unique_key="research:quantum")
    assert fresh.id != first.id
    assert [j.id for j in await all_jobs(q)] == [first.id, fresh.id]


async def test_on_conflict_raise_refuses_and_writes_nothing(q: wizd.Queue) -> None:
    holder = await q.enqueue("research", unique_key="k")
    with pytest.raises(DuplicateJob) as caught:
        await q.enqueue("research", {"x": 1}, unique_key="k", on_conflict="raise")
    assert caught.value.job_id == holder.id
    assert caught.value.status == "pending"
    assert caught.value.field == "unique_key"
    assert f"job {holder.id} (pending) already holds the key 'k'" in str(caught.value)
    assert isinstance(caught.value, InvalidJob)
    assert [j.id for j in await all_jobs(q)] == [holder.id]


async def test_on_conflict_replace_cancels_a_holder_that_has_not_started(
    q: wizd.Queue, store: Store
) -> None:
    old = await q.enqueue("research", {"v": 1}, unique_key="k", delay=60)
    new = await q.enqueue("research", {"v": 2}, unique_key="k", on_conflict="replace")
    assert new.id != old.id
    replaced = await q.get(old)
    assert replaced.status is S.CANCELLED
    assert replaced.error == "replaced: unique key 'k'"
    assert (await q.enqueue("research", unique_key="k")).id == new.id

    (running,) = await store.claim("default", "w1", 1)
    assert running.id == new.id
    before = [j.to_dict() for j in await all_jobs(q)]
    with pytest.raises(DuplicateJob, match="only a job that has not started is replaced"):
        await q.enqueue("research", {"v": 3}, unique_key="k", on_conflict="replace")
    assert [j.to_dict() for j in await all_jobs(q)] == before


async def test_unique_for_holds_the_key_for_a_period_after_the_job_is_final(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    first = await q.enqueue("summary", unique_key="daily", unique_for=timedelta(hours=1))
    (run,) = await store.claim("default", "w1", 1)
    await finish(store, run)
    clock.advance(HOUR - 1)
    assert (await q.enqueue("summary", unique_key="daily", unique_for=HOUR)).id == first.id
    clock.advance(1)
    assert (await q.enqueue("summary", unique_key="daily", unique_for=HOUR)).id != first.id


async def test_unique_states_choose_the_statuses_that_hold_the_key(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    queued = await q.enqueue("fetch", unique_key="url", unique_states=["pending", "delayed"])
    assert (await q.enqueue("fetch", unique_key="url", unique_states=["pending"])).id == queued.id
    await store.claim("default", "w1", 1)  # running: no longer holds the key
    second = await q.enqueue("fetch", unique_key="url", unique_states=["pending"])
    assert second.id != queued.id

    # No state at all: the key holds for the period only, whatever the job does.
    only_period = await q.enqueue("ping", unique_key="p", unique_states=[], unique_for=30)
    await q.cancel(only_period)
    assert (await q.enqueue("ping", unique_key="p", unique_states=[], unique_for=30)).id == (
        only_period.id
    )
    clock.advance(30)
    assert (await q.enqueue("ping", unique_key="p")).id != only_period.id


async def test_one_call_with_a_key_twice_creates_one_job(q: wizd.Queue) -> None:
    jobs = await q.enqueue_many(
        [
            {"name": "a", "unique_key": "same"},
            {"name": "b", "unique_key": "same"},
            {"name": "c"},
        ]
    )
    assert jobs[0].id == jobs[1].id
    assert jobs[1].name == "a"
    assert len(await all_jobs(q)) == 2


async def test_two_connections_racing_on_one_key_create_one_job(
    q: wizd.Queue, backend_url: str, clock: FakeClock
) -> None:
    returned: list[int] = []
    async with in_own_task(wizd.connect(backend_url, clock=clock)) as other:

        async def enqueue(client: wizd.Queue, i: int) -> None:
            job = await client.enqueue("research", {"i": i}, unique_key="research:quantum")
            returned.append(job.id)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(enqueue, q if i % 2 else other, i)
    jobs = await all_jobs(q)
    assert len(jobs) == 1
    assert set(returned) == {jobs[0].id}
    assert len(returned) == 40


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"unique_for": 60}, "unique_for"),
        ({"unique_states": ["pending"]}, "unique_states"),
        ({"on_conflict": "raise"}, "on_conflict"),
        ({"unique_key": "k", "on_conflict": "ignore"}, "on_conflict"),
        ({"unique_key": "k", "unique_states": []}, "unique_states"),
        ({"unique_key": "k", "unique_states": ["sleeping"]}, "unique_states"),
        ({"unique_key": "k", "unique_for": -1}, "unique_for"),
        ({"unique_key": "k", "unique_for": 0}, "unique_for"),
        ({"unique_key": ""}, "unique_key"),
        ({"unique_key": "x" * 501}, "unique_key"),
        ({"concurrency_key": "open ai"}, "concurrency_key"),
    ],
)
async def test_bad_unique_and_concurrency_options_are_refused_before_writing(
    q: wizd.Queue, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue("t", **options)
    assert caught.value.field == field
    assert await all_jobs(q) == []


# -- limits ---------------------------------------------------------------------------------


async def test_max_running_holds_across_workers_and_held_jobs_stay_pending(
    q: wizd.Queue, store: Store
) -> None:
    limits = await q.set_queue_limits("researcher", max_running=2)
    assert limits == wizd.QueueLimits("researcher", max_running=2)
    for i in range(5):
        await q.enqueue("t", {"i": i}, queue="researcher")

    first = await store.claim("researcher", "w1", 5)
    assert len(first) == 2
    assert first.throttled == "max_running"
    second = await store.claim("researcher", "w2", 5)
    assert second == []
    assert second.throttled == "max_running"
    held = await q.list(queue="researcher", status="pending")
    assert len(held) == 3
    assert {(j.attempt, j.error) for j in held} == {(0, None)}  # not failures, not charged

    await finish(store, first[0])
    third = await store.claim("researcher", "w2", 5)
    assert len(third) == 1
    assert third.throttled == "max_running"

    await q.set_queue_limits("researcher", max_running=None)
    rest = await store.claim("researcher", "w2", 5)
    assert len(rest) == 2
    assert rest.throttled is None


async def test_a_rate_limit_is_a_token_bucket_shared_by_every_connection(
    q: wizd.Queue, store: Store, clock: FakeClock, backend_url: str
) -> None:
    await q.set_queue_limits("llm", rate="10/s")
    for i in range(30):
        await q.enqueue("t", {"i": i}, queue="llm")

    async with in_own_task(wizd.connect(backend_url, clock=clock)) as other:
        assert len(await store.claim("llm", "w1", 10)) == 1  # burst 1: evenly spaced
        held = await other.store.claim("llm", "w2", 10)
        assert held == []
        assert held.throttled == "rate"
        assert held.retry_in == pytest.approx(0.1)
        clock.advance(0.05)
        held = await other.store.claim("llm", "w2", 10)
        assert (len(held), held.retry_in) == (0, pytest.approx(0.05))
        clock.advance(0.05)
        assert len(await other.store.claim("llm", "w2", 10)) == 1
        clock.advance(10)  # an idle bucket fills up to its burst only
        assert len(await store.claim("llm", "w1", 10)) == 1

    limits = await q.set_queue_limits("llm", rate="60/min", burst=5)
    assert (str(limits.rate), limits.burst) == ("60/min", 5)
    assert len(await store.claim("llm", "w1", 10)) == 5  # a new bucket starts full
    clock.advance(2)
    assert len(await store.claim("llm", "w1", 10)) == 2


async def test_a_concurrency_key_limit_spans_queues(q: wizd.Queue, store: Store) -> None:
    await q.set_concurrency_limit("openai", 2)
    assert await q.concurrency_limits() == {"openai": 2}
    for i in range(3):
        await q.enqueue("ask", {"i": i}, queue="researcher", concurrency_key="openai")
    plain = await q.enqueue("local", queue="researcher")
    other = [
        await q.enqueue("ask", queue="writer", concurrency_key="openai", priority="high")
        for _ in range(2)
    ]

    got = await store.claim("researcher", "w1", 10)
    assert sorted(j.name for j in got) == ["ask", "ask", "local"]
    assert plain.id in {j.id for j in got}
    assert got.throttled == "concurrency_key"
    held = await store.claim("writer", "w2", 10)
    assert (list(held), held.throttled) == ([], "concurrency_key")

    await finish(store, next(j for j in got if j.name == "ask"))
    (freed,) = await store.claim("writer", "w2", 10)
    assert freed.id == other[0].id
    assert freed.concurrency_key == "openai"

    await q.set_concurrency_limit("openai", None)
    assert await q.concurrency_limits() == {}
    assert len(await store.claim("researcher", "w1", 10)) == 1


async def test_a_queue_without_limits_claims_with_the_statements_it_always_used(
    sqlite_q: wizd.Queue,
) -> None:
    q, store = sqlite_q, sqlite_q.store
    await q.enqueue("t", queue="plain")
    await q.enqueue("t", queue="keyed", concurrency_key="k")
    await q.set_concurrency_limit("k", 1)
    statements: list[str] = []
    writer = store._writer._conn  # type: ignore[attr-defined]
    writer.set_trace_callback(statements.append)
    try:
        assert len(await store.claim("plain", "w1", 5)) == 1
        plain = list(statements)
        statements.clear()
        assert len(await store.claim("keyed", "w1", 5)) == 1
        keyed = list(statements)
    finally:
        writer.set_trace_callback(None)

    assert statement_names(plain) == [
        "BEGIN",
        "QUEUE_CLAIM_GET",
        "PROMOTE_QUEUE",
        "CLAIM",
        "COUNT_ADD",  # pending - n, running + n: one executemany, traced once
        "DEPS_OF_MANY",
        "COMMIT",
    ]
    assert "CLAIM_KEYED" in statement_names(keyed)


def trace_postgres(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every statement sent to PostgreSQL from now on, by its postgres_queries name
    (others by their first word; a connection's set-up, a SET or a statement composed with
    psycopg.sql, is left out), prefixed `loop:` when it was sent from the event loop (an
    async connection) rather than the writer's thread."""
    import psycopg
    import psycopg.sql

    from wizd.store import postgres_queries as PQ

    names = {text: name for name, text in vars(PQ).items() if isinstance(text, str)}
    ran: list[str] = []

    def name_of(query: Any) -> str | None:
        if isinstance(query, psycopg.sql.Composable):
            # A composed COMMIT that notifies waiters (wizd.store.waits): one round trip.
            text = query.as_string(None)
            return "COMMIT" if text.startswith("NOTIFY ") and text.endswith("; COMMIT") else None
        if not isinstance(query, str):
            return None
        name = names.get(query) or query.split()[0]
        return None if name == "SET" else name

    sync_execute, async_execute = psycopg.Connection.execute, psycopg.AsyncConnection.execute

    def traced(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if (name := name_of(query)) is not None:
            ran.append(name)
        return sync_execute(self, query, *args, **kwargs)

    async def traced_async(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if (name := name_of(query)) is not None:
            ran.append(f"loop: {name}")
        return await async_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", traced)
    monkeypatch.setattr(psycopg.AsyncConnection, "execute", traced_async)
    return ran


async def test_postgresql_claims_and_completes_a_job_without_dependencies_in_fewer_round_trips(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's claim returns each job's dependencies and its completion says which
    jobs have dependents, so neither looks them up in a statement of its own unless there
    are some; the dependencies still arrive and a completion still releases its dependent.
    A claim is one statement (wizd_claim) in autocommit, sent from the event loop, also
    when a completion is written at the same moment (in a transaction of its own)."""
    async with in_own_task(wizd.connect(postgres_url)) as q:
        first = await q.enqueue("t", queue="flow")
        second = await q.enqueue("t", queue="flow", depends_on=[first.id])
        ran = trace_postgres(monkeypatch)

        (claimed,) = await q.store.claim("flow", "w1", 5)
        assert (claimed.id, claimed.depends_on) == (first.id, ())
        assert ran == ["loop: CLAIM_QUEUE"]
        ran.clear()
        await finish(q.store, claimed)  # `second` depends on it: its dependents are read
        assert ran[:3] == ["BEGIN", "COMPLETE_MANY", "DEPENDENTS_OF_MANY"]

        (released,) = await q.store.claim("flow", "w1", 5)
        assert (released.id, released.depends_on) == (second.id, (first.id,))
        third = await q.enqueue("t", queue="flow")
        ran.clear()
        # Both callers reach the store in one tick, as a daemon's writer and claimer do:
        # the claim does not wait for the completion's transaction, on another connection.
        _, (claimed_third,) = await asyncio.gather(
            finish(q.store, released), q.store.claim("flow", "w1", 5)
        )
        assert claimed_third.id == third.id
        assert [name for name in ran if name.startswith("loop: ")] == ["loop: CLAIM_QUEUE"]
        assert [name for name in ran if not name.startswith("loop: ")] == [
            "BEGIN",
            "COMPLETE_MANY",
            "COMMIT",
        ]

        # One plain job alone is one INSERT in autocommit (ids are reserved in a statement
        # of their own only for many jobs at once); the queue's defaults were read by the
        # first enqueue.
        ran.clear()
        await q.enqueue("t", {"i": 1}, queue="flow")
        assert ran == ["loop: INSERT_JOB_IF_DEFAULTS"]


async def test_postgresql_enqueues_one_job_in_one_statement_with_its_queues_current_defaults(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain job that starts pending, enqueued alone, is one INSERT in autocommit, made
    with its queue's defaults as the store last read them. When another process changed
    them since, that insert writes nothing and the enqueue is made again in a transaction
    with the new ones; a job that does not start pending always takes the transaction."""
    async with (
        in_own_task(wizd.connect(postgres_url)) as q,
        in_own_task(wizd.connect(postgres_url)) as operator,
    ):
        first = await q.enqueue("t", queue="lane")  # reads the queue's defaults: none yet
        ran = trace_postgres(monkeypatch)
        second = await q.enqueue("t", {"n": 2}, queue="lane", tags=["x"])
        assert ran == ["loop: INSERT_JOB_IF_DEFAULTS"]
        assert (first.priority, second.priority, second.tags) == (3, 3, ("x",))

        await operator.set_defaults("lane", priority=5, attempts=7)
        ran.clear()
        third = await q.enqueue("t", queue="lane")
        assert (third.priority, third.max_attempts) == (5, 7)
        assert ran == [
            "loop: INSERT_JOB_IF_DEFAULTS",  # wrote nothing: the defaults changed
            "BEGIN",
            "QUEUE_GET",
            "INSERT_JOB",
            "COMMIT",
        ]
        ran.clear()
        fourth = await q.enqueue("t", queue="lane")
        assert ran == ["loop: QUEUE_GET", "loop: INSERT_JOB_IF_DEFAULTS"]

        ran.clear()
        delayed = await q.enqueue("t", queue="lane", delay=60)
        assert ran[:2] == ["BEGIN", "QUEUE_GET"]

        stored = await q.list(queue="lane", sort="id", order="asc")
        assert [(j.id, j.priority, j.max_attempts) for j in stored] == [
            (first.id, 3, 3),
            (second.id, 3, 3),
            (third.id, 5, 7),
            (fourth.id, 5, 7),
            (delayed.id, 5, 7),
        ]
        assert stored[1].payload == {"n": 2}
        assert stored[1].tags == ("x",)
        assert [j.status for j in stored] == [JobStatus.PENDING] * 4 + [JobStatus.DELAYED]


async def test_postgresql_claims_a_limited_queue_under_its_limits_after_one_probe(
    postgres_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wizd_claim claims nothing for a queue with limits and says so; the claim then runs
    under the limits in a transaction (which locks the queue row), without asking the
    function again. A delayed job that came due is promoted on the way."""
    async with in_own_task(wizd.connect(postgres_url, clock=clock)) as q:
        await q.set_queue_limits("held", max_running=1)
        delayed = await q.enqueue("t", queue="held", delay=5)
        pending = await q.enqueue("t", queue="held")
        clock.advance(10)
        ran = trace_postgres(monkeypatch)

        claimed = await q.store.claim("held", "w1", 5)
        assert [j.id for j in claimed] == [pending.id]  # due earlier than the delayed one
        assert claimed.throttled == "max_running"
        assert ran[:2] == ["loop: CLAIM_QUEUE", "BEGIN"]
        assert [name for name in ran if name.endswith("CLAIM_QUEUE")] == ["loop: CLAIM_QUEUE"]
        assert "QUEUE_CLAIM_LOCK" in ran
        assert ran[-1] == "COMMIT"
        promoted = await q.get(delayed.id)
        assert promoted.status is JobStatus.PENDING
        assert [e.kind for e in await q.store.events(delayed.id)] == ["enqueued", "promoted"]


def statement_names(executed: list[str]) -> list[str]:
    """The sqlite_queries names of traced statements (SQLite traces them with their values
    in place, and a trigger's statements as repeats of the one that fired it)."""
    from wizd.store import sqlite_queries as Q

    patterns = []
    for name, text in vars(Q).items():
        if name.isupper() and isinstance(text, str):
            fixed = re.escape(" ".join(text.split()))
            patterns.append(
                (len(fixed), name, re.sub(r"\\\?|:[a-z_]+|\\\{[a-z_]+\\\}", ".*?", fixed))
            )
    names: list[str] = []
    for statement in executed:
        text = " ".join(statement.split())
        found = [(size, name) for size, name, regex in patterns if re.fullmatch(regex, text)]
        names.append(max(found)[1] if found else text.split()[0])
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_running": 0}, "max_running"),
        ({"max_running": 1.5}, "max_running"),
        ({"rate": "fast"}, "rate"),
        ({"rate": "10/fortnight"}, "rate"),
        ({"rate": "0/s"}, "rate"),
        ({"rate": 10}, "rate"),
        ({"burst": 0}, "burst"),
        ({"burst": 3}, "burst"),  # a burst without a rate
        ({}, "limits"),
    ],
)
async def test_bad_limits_are_refused_and_change_nothing(
    q: wizd.Queue, changes: dict[str, Any], field: str
) -> None:
    await q.set_queue_limits("researcher", max_running=4)
    with pytest.raises(InvalidJob) as caught:
        await q.set_queue_limits("researcher", **changes)
    assert caught.value.field == field
    assert await q.queue_limits("researcher") == wizd.QueueLimits("researcher", 4)
    with pytest.raises(InvalidJob):
        await q.set_concurrency_limit("openai", 0)
    assert await q.concurrency_limits() == {}


async def test_limits_are_listed_changed_and_cleared(q: wizd.Queue) -> None:
    assert await q.queue_limits("nobody") == wizd.QueueLimits("nobody")
    await q.set_queue_limits("a", rate="5/10s")
    await q.set_queue_limits("b", max_running=3, rate=wizd.Rate(100, 3600))
    await q.set_queue_limits("a", burst=2)  # the rate is kept
    listed = {item.queue: item.to_dict() for item in await q.all_queue_limits()}
    assert listed == {
        "a": {"queue": "a", "max_running": None, "rate": "5/10s", "rate_per_second": 0.5,
              "burst": 2},
        "b": {"queue": "b", "max_running": 3, "rate": "100/h", "rate_per_second": 100 / 3600,
              "burst": 1},
    }  # fmt: skip
    await q.set_queue_limits("b", max_running=None, rate=None)
    assert [item.queue for item in await q.all_queue_limits()] == ["a"]


# -- schedules ------------------------------------------------------------------------------


async def test_a_cron_schedule_enqueues_each_occurrence_once_with_its_job_options(
    q: wizd.Queue, clock: FakeClock
) -> None:
    clock.now = at("2025-06-15T15:00")
    schedule = await q.schedule(
        "daily_summary",
        {"scope": "yesterday"},
        queue="researcher",
        cron="0 9 * * *",
        timezone="Europe/Lisbon",  # UTC+1 in summer: 09:00 there is 08:00 UTC
        priority="high",
        attempts=5,
        tags=["daily"],
        timeout=300,
        concurrency_key="openai",
    )
    assert iso(schedule.next_at.timestamp()) == "2025-06-16T08:00"
    assert schedule.last_at is None
    assert await q.fire_schedules() == wizd.store.Fired()

    clock.now = at("2025-06-16T07:59")
    assert (await q.fire_schedules()).jobs == []
    clock.now = at("2025-06-16T08:00")
    fired = await q.fire_schedules()
    (item,) = fired.jobs
    job = item.job
    assert (item.schedule_id, iso(item.fire_at)) == (schedule.id, "2025-06-16T08:00")
    assert (job.queue, job.name, job.payload) == (
        "researcher",
        "daily_summary",
        {"scope": "yesterday"},
    )
    assert (job.priority, job.max_attempts, job.tags, job.timeout) == (4, 5, ("daily",), 300)
    assert job.concurrency_key == "openai"
    assert job.run_at.timestamp() == at("2025-06-16T08:00")
    kinds = [e.kind for e in await q.events(job)]
    assert kinds == ["enqueued", "scheduled"]
    assert (await q.fire_schedules()).jobs == []

    stored = await q.get_schedule(schedule.id)
    assert iso(stored.next_at.timestamp()) == "2025-06-17T08:00"
    assert stored.last_at is not None
    assert iso(stored.last_at.timestamp()) == "2025-06-16T08:00"
    (run,) = await q.schedule_runs(schedule)
    assert (run.job_id, iso(run.fire_at.timestamp())) == (job.id, "2025-06-16T08:00")


@pytest.mark.parametrize(
    ("catch_up", "enqueued", "missed"),
    [("all", ["+15", "+30", "+45", "+60"], 0), ("latest", ["+60"], 3), ("none", [], 4)],
)
async def test_occurrences_missed_while_no_daemon_ran_follow_the_catch_up_policy(
    q: wizd.Queue, clock: FakeClock, catch_up: str, enqueued: list[str], missed: int
) -> None:
    start = clock()
    schedule = await q.schedule("poll", every=timedelta(minutes=15), catch_up=catch_up)
    clock.advance(67.5 * 60)  # 4 occurrences due, the last 7.5 minutes ago
    fired = await q.fire_schedules()
    assert [f"+{(f.fire_at - start) / 60:g}" for f in fired.jobs] == enqueued
    assert fired.missed == missed
    assert len(await all_jobs(q)) == len(enqueued)
    after = await q.get_schedule(schedule)
    assert after.next_at.timestamp() == start + 75 * 60


async def test_catch_up_none_still_fires_an_occurrence_that_is_on_time(
    q: wizd.Queue, clock: FakeClock
) -> None:
    await q.schedule("poll", every=60, catch_up="none")
    clock.advance(60 + MISFIRE_GRACE)
    assert len((await q.fire_schedules()).jobs) == 1


def test_a_long_gap_is_caught_up_in_one_step() -> None:
    timing = Timing(every=1.0)
    latest = plan(timing, 1000.0, 1000.0 + DAY, "latest")
    assert latest.fire == [1000.0 + DAY]
    assert latest.next_at == 1001.0 + DAY
    assert latest.missed == DAY
    everything = plan(timing, 1000.0, 1000.0 + DAY, "all")
    assert len(everything.fire) == MAX_CATCH_UP  # the rest in the next passes
    assert everything.next_at == 1000.0 + MAX_CATCH_UP
    cron = plan(Timing(cron="* * * * *"), at("2026-01-01T00:00"), at("2026-01-03T00:00"), "latest")
    assert [iso(t) for t in cron.fire] == ["2026-01-03T00:00"]
    assert iso(cron.next_at) == "2026-01-03T00:01"


async def test_two_connections_racing_on_one_schedule_enqueue_each_occurrence_once(
    q: wizd.Queue, clock: FakeClock, backend_url: str
) -> None:
    start = clock()
    await q.schedule("tick", every=1, catch_up="all", key="tick")
    async with in_own_task(wizd.connect(backend_url, clock=clock)) as other:
        for _ in range(5):
            clock.advance(2)
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon((q if i % 2 else other).fire_schedules)
    jobs = await all_jobs(q)
    times = sorted(j.run_at.timestamp() - start for j in jobs)
    assert times == [float(n) for n in range(1, 11)]
    runs = await q.schedule_runs("tick", 100)
    assert sorted(r.job_id for r in runs) == sorted(j.id for j in jobs)


async def fire_through(q: wizd.Queue, clock: FakeClock, until: float, step: float) -> list[str]:
    """Move the clock to `until` in steps, firing schedules at each: the UTC times fired."""
    fired = []
    while clock() < until:
        clock.advance(step)
        fired += [iso(f.fire_at) for f in (await q.fire_schedules()).jobs]
    return fired


async def test_fall_back_in_lisbon_fires_a_repeated_daily_time_once(
    q: wizd.Queue, clock: FakeClock
) -> None:
    # 2026-10-25: clocks go back from 02:00 WEST to 01:00 WET, so 01:30 happens twice
    # (00:30 and 01:30 UTC). A daily 01:30 fires at the first; an hourly one at both.
    clock.now = at("2026-10-24T12:00")
    await q.schedule("nightly", cron="30 1 * * *", timezone="Europe/Lisbon")
    await q.schedule("hourly", cron="30 * * * *", timezone="Europe/Lisbon", key="hourly")
    fired = await fire_through(q, clock, at("2026-10-26T12:00"), step=600)
    nightly = [j for j in await all_jobs(q) if j.name == "nightly"]
    assert [iso(j.run_at.timestamp()) for j in nightly] == [
        "2026-10-25T00:30",  # 01:30 WEST
        "2026-10-26T01:30",  # 01:30 WET
    ]
    assert "2026-10-25T00:30" in fired
    assert "2026-10-25T01:30" in fired  # the hourly one's second 01:30
    hourly = [j for j in await all_jobs(q) if j.name == "hourly"]
    assert len(hourly) == 48  # one per hour that passed, both 01:30s among them


async def test_spring_forward_in_lisbon_fires_a_missing_time_when_the_clocks_jump(
    q: wizd.Queue, clock: FakeClock
) -> None:
    # 2026-03-29: clocks jump from 01:00 WET to 02:00 WEST, so 01:30 does not exist. As
    # croniter defines it, that occurrence comes at the jump: 02:00 WEST, 01:00 UTC.
    clock.now = at("2026-03-28T12:00")
    await q.schedule("nightly", cron="30 1 * * *", timezone="Europe/Lisbon")
    await fire_through(q, clock, at("2026-03-30T12:00"), step=600)
    assert [iso(j.run_at.timestamp()) for j in await all_jobs(q)] == [
        "2026-03-29T01:00",  # 02:00 WEST: the jump
        "2026-03-30T00:30",  # 01:30 WEST
    ]


async def test_pause_resume_and_unschedule(q: wizd.Queue, clock: FakeClock) -> None:
    schedule = await q.schedule("poll", every=60, key="poll")
    paused = await q.pause_schedule("poll")
    assert paused.paused
    clock.advance(600)
    assert (await q.fire_schedules()).jobs == []
    resumed = await q.resume_schedule(schedule.id)
    assert not resumed.paused
    assert resumed.next_at.timestamp() == clock() + 60  # the pause is not caught up
    clock.advance(60)
    assert len((await q.fire_schedules()).jobs) == 1

    removed = await q.unschedule(str(schedule.id))
    assert removed.id == schedule.id
    assert await q.schedules() == []
    with pytest.raises(ScheduleNotFound, match="schedule poll does not exist"):
        await q.get_schedule("poll")
    with pytest.raises(ScheduleNotFound):
        await q.unschedule(schedule.id)
    assert len(await all_jobs(q)) == 1  # its job stays


async def test_run_schedule_enqueues_its_job_once_now_and_leaves_its_occurrences(
    q: wizd.Queue, clock: FakeClock
) -> None:
    schedule = await q.schedule(
        "poll", {"inbox": "a"}, queue="researcher", every=60, key="poll", tags=["s"], paused=True
    )
    job = await q.run_schedule("poll")
    assert (job.queue, job.name, job.payload, job.tags) == (
        "researcher",
        "poll",
        {"inbox": "a"},
        ("s",),
    )
    assert job.run_at.timestamp() <= clock()  # now, not at an occurrence
    assert await q.schedule_runs(schedule) == []
    assert (await q.get_schedule(schedule.id)).next_at == schedule.next_at
    with pytest.raises(ScheduleNotFound):
        await q.run_schedule("nope")


async def test_a_schedule_with_a_key_is_declared_again_without_a_copy(
    q: wizd.Queue, clock: FakeClock
) -> None:
    first = await q.schedule("report", {"v": 1}, cron="0 9 * * *", key="report")
    await q.pause_schedule("report")
    clock.advance(60)
    again = await q.schedule("report", {"v": 2}, cron="0 9 * * *", key="report")
    assert again.id == first.id
    assert again.payload == {"v": 2}
    assert again.paused  # an operator's pause survives the program's restart
    assert again.next_at == first.next_at
    moved = await q.schedule("report", {"v": 2}, cron="0 10 * * *", key="report")
    assert moved.next_at.timestamp() == first.next_at.timestamp() + HOUR
    assert [s.id for s in await q.schedules()] == [first.id]


async def test_an_occurrence_whose_unique_key_is_held_enqueues_nothing(
    q: wizd.Queue, store: Store, clock: FakeClock
) -> None:
    await q.schedule("sync", every=60, unique_key="sync", key="sync")
    clock.advance(60)
    (first,) = (await q.fire_schedules()).jobs
    clock.advance(60)
    fired = await q.fire_schedules()
    assert (fired.jobs, fired.duplicates) == ([], 1)
    runs = await q.schedule_runs("sync")
    assert [r.job_id for r in runs] == [None, first.job.id]
    (run,) = await store.claim("default", "w1", 1)
    await finish(store, run)
    clock.advance(60)
    assert len((await q.fire_schedules()).jobs) == 1


async def test_a_schedule_that_cannot_be_computed_is_reported_and_looked_at_later(
    sqlite_q: wizd.Queue, clock: FakeClock, store_url: str
) -> None:
    q, backend_url = sqlite_q, store_url
    broken = await q.schedule("a", cron="0 * * * *", timezone="Europe/Lisbon")
    fine = await q.schedule("b", every=60)
    with sqlite_file(backend_url) as db:  # e.g. a zone the host's tz database lacks
        db.execute("UPDATE schedules SET timezone = 'Mars/Olympus' WHERE id = ?", (broken.id,))
    clock.advance(HOUR)
    fired = await q.fire_schedules()
    assert [item.schedule_id for item in fired.jobs] == [fine.id]
    [(schedule_id, why)] = fired.errors
    assert schedule_id == broken.id
    assert "unknown time zone 'Mars/Olympus'" in why
    later = await q.get_schedule(broken.id)
    assert later.next_at.timestamp() == clock() + HOUR


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 9 * * *", "every": 60}, "cron"),
        ({}, "cron"),
        ({"every": 0}, "every"),
        ({"every": -5}, "every"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"every": 60, "catch_up": "some"}, "catch_up"),
        ({"every": 60, "key": "42"}, "key"),
        ({"every": 60, "key": "a b"}, "key"),
        ({"every": 60, "priority": 9}, "priority"),
        ({"every": 60, "delay": 5}, "delay"),
        ({"every": 60, "queue": "bad queue"}, "queue"),
        ({"every": 60, "unique_for": 10}, "unique_for"),
    ],
)
async def test_bad_schedules_are_refused_and_write_nothing(
    q: wizd.Queue, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        await q.schedule("t", **arguments)
    assert caught.value.field == field
    assert await q.schedules() == []


# -- the operator's commands ----------------------------------------------------------------


@pytest.fixture
def wizd_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `wizd ARGS` in this process (click's runner) on a database in tmp_path: the JSON
    document with --json, else the result; a WizdError is what the command raised."""
    for key in list(os.environ):
        if key.startswith("WIZD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    database = str(tmp_path / "wizd.db")

    def run(command: str, error: type[Exception] | None = None) -> Any:
        args = shlex.split(command)
        # --database goes to the subcommand (a group like `schedule` takes no options)
        result = CliRunner().invoke(cli, [*args, "--database", database])
        if error is not None:
            assert isinstance(result.exception, error), (result.exception, result.stdout)
            return result.exception
        assert result.exit_code == 0, (result.exception, result.stdout, result.stderr)
        return json.loads(result.stdout) if "--json" in args else result.stdout

    return run


def test_cli_schedules(wizd_cli: Any) -> None:
    added = wizd_cli(
        "schedule add -a researcher -t daily_summary --cron '0 9 * * *' "
        "--timezone Europe/Lisbon --key daily -q news --priority high --catch-up all --json"
    )
    assert (added["key"], added["cron"], added["timezone"]) == (
        "daily",
        "0 9 * * *",
        "Europe/Lisbon",
    )
    assert (added["payload"], added["options"], added["catch_up"]) == (
        {"query": "news"},
        {"priority": 4},
        "all",
    )
    second = wizd_cli("schedule add -a researcher -t poll --every 15m --unique-key poll")
    assert second.strip() == "2"
    listed = wizd_cli("schedule list --json")
    assert [(s["name"], s["every"]) for s in listed] == [("daily_summary", None), ("poll", 900.0)]
    table = wizd_cli("schedule list")
    assert "cron 0 9 * * * Europe/Lisbon" in table
    assert "every 15m00s" in table
    assert wizd_cli("schedule pause daily --json")["paused"] is True
    assert "schedule 1 resumed" in wizd_cli("schedule resume daily")
    assert wizd_cli("schedule runs daily --json") == []
    assert [s["id"] for s in wizd_cli("schedule rm daily 2 --json")] == [1, 2]
    refused = wizd_cli("schedule add -a r -t x --cron '61 * * * *'", error=InvalidJob)
    assert str(refused).startswith("cron: '61 * * * *' is not a cron expression")
    missing = wizd_cli("schedule rm daily", error=ScheduleNotFound)
    assert str(missing) == "schedule daily does not exist"


def test_cli_limits_and_unique_jobs(wizd_cli: Any, tmp_path: Path) -> None:
    first = wizd_cli(
        "create -a researcher -t research --unique-key q:1 --concurrency-key openai --json"
    )
    again = wizd_cli("create -a researcher -t research --unique-key q:1 --json")
    assert first["id"] == again["id"]
    assert (first["unique_key"], first["concurrency_key"]) == ("q:1", "openai")
    wizd_cli("create -a researcher -t research --unique-key q:1 --on-conflict raise", DuplicateJob)
    with sqlite3.connect(tmp_path / "wizd.db") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1

    limits = wizd_cli("queue limit researcher --max-running 3 --rate 60/min --burst 5 --json")
    assert limits == {"queue": "researcher", "max_running": 3, "rate": "60/min",
                      "rate_per_second": 1.0, "burst": 5}  # fmt: skip
    assert wizd_cli("queue limit researcher --json") == limits
    assert wizd_cli("queue limit researcher --max-running none --json")["max_running"] is None
    assert wizd_cli("queue concurrency openai 5 --json") == {"key": "openai", "limit": 5}
    assert wizd_cli("queue limits --json") == {
        "queues": [{"queue": "researcher", "max_running": None, "rate": "60/min",
                    "rate_per_second": 1.0, "burst": 5}],
        "concurrency_keys": {"openai": 5},
    }  # fmt: skip
    assert "concurrency key openai" in wizd_cli("queue limits")
    assert "no limit" in wizd_cli("queue concurrency openai none")
    bad = wizd_cli("queue limit researcher --rate fast", error=InvalidJob)
    assert str(bad).startswith("rate: 'fast' is not a rate")


def test_cli_errors_are_one_line_naming_the_field(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("wizd")), "schedule", "add", "-a", "r", "-t", "x",
         "--every", "1h", "--timezone", "Mars/Olympus", "--cron", "0 9 * * *",
         "--database", str(tmp_path / "wizd.db")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "wizd: cron: give cron or every, exactly one of them\n"
