"""The public client API (wizd.connect → Queue, wizd.connect_sync → SyncQueue): every
operation, and every bad input refused with an error naming the field and the limit and
nothing written."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import pytest
from conftest import FakeClock, in_own_task, stored_event_rows

import wizd
from wizd import Backoff, IllegalTransition, InvalidJob, Job, JobNotFound, JobOptions, JobStatus
from wizd.model import DEFAULT_BACKOFF, zero_counts
from wizd.store import Finish
from wizd.store import sqlite as wizd_sqlite

S = JobStatus


async def run(q: wizd.Queue, queue: str = "default", worker: str = "w1") -> Job:
    """Claim the next job of `queue` as a worker would."""
    [job] = await q.store.claim(queue, worker, 1)
    return job


async def finish(q: wizd.Queue, job: Job, outcome: str = "completed", **kwargs: Any) -> None:
    assert job.worker_id is not None
    ok = await q.store.finish([Finish(job.id, job.worker_id, job.attempt, outcome, **kwargs)])
    assert ok == [True]


async def assert_counts_match_recount(q: wizd.Queue) -> None:
    kept = await q.store.counts()
    counted = await q.store.recount()
    assert {name: c for name, c in kept.items() if any(c.values())} == counted
    totals = zero_counts()
    for counts in counted.values():
        for status, n in counts.items():
            totals[status] += n
    assert await q.counts() == totals


async def assert_nothing_written(q: wizd.Queue) -> None:
    assert await q.counts() == zero_counts()
    assert await q.list() == []


# -- enqueue -------------------------------------------------------------------------------


async def test_enqueue_with_defaults(q: wizd.Queue, clock: FakeClock) -> None:
    job = await q.enqueue("summarize", {"url": "https://example.com"})
    assert job.id >= 1
    assert (job.queue, job.name, job.payload) == (
        "default",
        "summarize",
        {"url": "https://example.com"},
    )
    assert (job.status, job.priority, job.attempt, job.max_attempts) == (S.PENDING, 3, 0, 3)
    assert job.backoff == DEFAULT_BACKOFF
    assert job.created_at.timestamp() == job.run_at.timestamp() == clock()
    assert (job.timeout, job.expires_at, job.tags, job.context) == (None, None, (), None)
    assert (job.worker_id, job.started_at, job.finished_at, job.result) == (None, None, None, None)
    assert await q.get(job.id) == job


async def test_enqueue_with_every_option(q: wizd.Queue, clock: FakeClock) -> None:
    backoff = Backoff.exponential(2.0, cap=300, jitter=0.1)
    job = await q.enqueue(
        "research",
        {"topic": "queues"},
        queue="researcher",
        priority="critical",
        delay=timedelta(minutes=1),
        attempts=5,
        backoff=backoff,
        timeout=90,
        ttl=timedelta(hours=1),
        tags=["nightly", "web"],
        context={"trace": "abc"},
    )
    assert (job.queue, job.priority, job.status) == ("researcher", 5, S.DELAYED)
    assert job.run_at.timestamp() == clock() + 60
    assert (job.max_attempts, job.backoff, job.timeout) == (5, backoff, 90.0)
    assert job.expires_at is not None
    assert job.expires_at.timestamp() == clock() + 3600
    assert (job.tags, job.context) == (("nightly", "web"), {"trace": "abc"})
    assert await q.get(job.id) == job


@pytest.mark.parametrize(
    ("priority", "stored"),
    [("low", 1), ("normal", 3), ("high", 4), ("critical", 5), (1, 1), (5, 5), ("2", 2)],
)
async def test_priority_by_number_or_name(q: wizd.Queue, priority: int | str, stored: int) -> None:
    assert (await q.enqueue("t", priority=priority)).priority == stored


async def test_run_at_in_the_future_delays_and_in_the_past_does_not(
    q: wizd.Queue, clock: FakeClock
) -> None:
    later = await q.enqueue("t", run_at=datetime.fromtimestamp(clock() + 30, UTC))
    assert (later.status, later.run_at.timestamp()) == (S.DELAYED, clock() + 30)
    earlier = await q.enqueue("t", run_at=clock() - 30)
    assert (earlier.status, earlier.run_at.timestamp()) == (S.PENDING, clock() - 30)


async def test_payload_and_context_may_be_any_mapping(q: wizd.Queue) -> None:
    """Both are typed Mapping: a read-only mapping is stored as the object it holds."""
    frozen = MappingProxyType({"topic": "tides", "n": 2})
    job = await q.enqueue("t", frozen, context=MappingProxyType({"user": "ana"}))
    stored = await q.get(job)
    assert (stored.payload, stored.context) == ({"topic": "tides", "n": 2}, {"user": "ana"})


@pytest.mark.parametrize(
    "item",
    [
        {"name": "plain"},
        {"name": "plain", "payload": {"k": [1, {"x": None}]}},
        {"name": "plain", "payload": None, "queue": "other"},
        {"name": "plain", "payload": {}, "queue": "other.q:1"},
    ],
)
def test_an_item_with_only_a_queue_builds_what_build_builds(item: dict[str, object]) -> None:
    """enqueue and enqueue_many build an item that names no option but its queue without
    looking at each option (Queue._build_plain): the NewJob is the one build() makes."""
    queue = wizd.Queue(store=None)  # type: ignore[arg-type]
    args = dict(item)
    expected = queue.build(args.pop("name"), args.pop("payload", None), **args)  # type: ignore[arg-type]
    assert queue._build_item(0, item) == expected


async def test_enqueue_many_writes_all_in_order(q: wizd.Queue) -> None:
    jobs = await q.enqueue_many(
        [
            {"name": "a", "payload": {"i": 0}},
            {"name": "b", "queue": "other", "priority": "high"},
            {"name": "c", "delay": 10},
        ]
    )
    assert [(j.name, j.queue, j.priority, j.status) for j in jobs] == [
        ("a", "default", 3, S.PENDING),
        ("b", "other", 4, S.PENDING),
        ("c", "default", 3, S.DELAYED),
    ]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert await q.store.get_many([j.id for j in jobs]) == jobs
    assert await q.enqueue_many([]) == []


# -- bad input -----------------------------------------------------------------------------

BAD_JOBS = [
    # (enqueue arguments, the field named, what the message says about the limit)
    pytest.param({"priority": 0}, "priority", "between 1 and 5", id="priority-0"),
    pytest.param({"priority": 6}, "priority", "between 1 and 5", id="priority-6"),
    pytest.param({"priority": "urgent"}, "priority", "1-5", id="priority-unknown-name"),
    pytest.param({"priority": True}, "priority", "1-5", id="priority-bool"),
    pytest.param({"payload": [1, 2]}, "payload", "JSON object", id="payload-list"),
    pytest.param({"payload": "text"}, "payload", "JSON object", id="payload-str"),
    pytest.param({"payload": {"at": object()}}, "payload", "JSON-serialisable", id="payload-obj"),
    pytest.param({"payload": {"x": float("nan")}}, "payload", "JSON-serialisable", id="nan"),
    pytest.param({"queue": ""}, "queue", "non-empty", id="queue-empty"),
    pytest.param({"queue": "q" * 201}, "queue", "limit is 200", id="queue-too-long"),
    pytest.param({"queue": "two words"}, "queue", "letters, digits", id="queue-space"),
    pytest.param({"queue": "a/b"}, "queue", "letters, digits", id="queue-slash"),
    pytest.param({"queue": "café"}, "queue", "letters, digits", id="queue-non-ascii"),
    pytest.param({"name": ""}, "name", "non-empty", id="name-empty"),
    pytest.param({"name": "n" * 201}, "name", "limit is 200", id="name-too-long"),
    pytest.param({"name": "rm;ls"}, "name", "letters, digits", id="name-semicolon"),
    pytest.param({"attempts": 0}, "attempts", ">= 1", id="attempts-0"),
    pytest.param({"attempts": -2}, "attempts", ">= 1", id="attempts-negative"),
    pytest.param({"delay": -1}, "delay", ">= 0", id="delay-negative"),
    pytest.param({"delay": timedelta(seconds=-1)}, "delay", ">= 0", id="delay-negative-td"),
    pytest.param({"timeout": -1}, "timeout", ">= 0", id="timeout-negative"),
    pytest.param({"ttl": -1}, "ttl", ">= 0", id="ttl-negative"),
    pytest.param({"delay": 5, "run_at": 0}, "delay", "not both", id="delay-and-run_at"),
    pytest.param({"run_at": datetime(2030, 1, 1)}, "run_at", "timezone", id="run_at-naive"),
    pytest.param({"context": "text"}, "context", "JSON object, got str", id="context-str"),
    pytest.param({"context": [1, 2]}, "context", "JSON object, got list", id="context-list"),
]


def enqueue_args(bad: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    args = {"name": "t", **bad}
    return args.pop("name"), args.pop("payload", None), args


@pytest.mark.parametrize(("bad", "field", "limit"), BAD_JOBS)
async def test_bad_job_is_refused_naming_field_and_limit(
    q: wizd.Queue, bad: dict[str, Any], field: str, limit: str
) -> None:
    name, payload, options = enqueue_args(bad)
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue(name, payload, **options)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert limit in str(caught.value)
    await assert_nothing_written(q)


@pytest.mark.parametrize(("bad", "field", "limit"), BAD_JOBS)
async def test_enqueue_many_with_one_bad_item_writes_none(
    q: wizd.Queue, bad: dict[str, Any], field: str, limit: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue_many([{"name": "ok"}, {"name": "t", **bad}, {"name": "ok"}])
    assert caught.value.field == f"items[1].{field}"
    assert limit in str(caught.value)
    await assert_nothing_written(q)


@pytest.mark.parametrize("field", ["queue", "name"])
async def test_identifier_with_a_trailing_newline_is_refused(q: wizd.Queue, field: str) -> None:
    """Only [A-Za-z0-9_.:-] is allowed; a regex anchored with `$` lets "jobs\\n" through."""
    args = {"queue": "default", "name": "t", field: "jobs\n"}
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue(args.pop("name"), **args)
    assert caught.value.field == field
    await assert_nothing_written(q)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", NAN),
        ("timeout", NAN),
        ("ttl", NAN),
        ("run_at", NAN),
        ("delay", INF),
        ("ttl", INF),
        ("run_at", INF),
        ("delay", 1e12),  # 31,700 years: past any datetime
    ],
)
async def test_time_that_is_not_a_usable_number_is_refused(
    q: wizd.Queue, field: str, value: float
) -> None:
    """NaN passes `value < 0` checks and infinity passes everything; both, like a delay
    past year 9999, must be refused as bad input naming the field, not reach the store
    (where they raise StoreError, ValueError or OverflowError, or NaN becomes NULL)."""
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue("t", **{field: value})
    assert caught.value.field == field
    await assert_nothing_written(q)


async def test_enqueue_many_failing_in_the_store_writes_none(q: wizd.Queue) -> None:
    with pytest.raises(wizd.DependencyError) as caught:
        await q.enqueue_many([{"name": "a"}, {"name": "b", "depends_on": [10**9]}])
    assert str(10**9) in str(caught.value)
    await assert_nothing_written(q)


async def test_payload_over_the_default_cap_of_one_mib_is_refused(q: wizd.Queue) -> None:
    limit = 1024 * 1024
    padding = limit - len('{"x":""}')
    job = await q.enqueue("t", {"x": "a" * padding})
    assert len(job.payload["x"]) == padding
    with pytest.raises(InvalidJob) as caught:
        await q.enqueue("t", {"x": "a" * (padding + 1)})
    assert caught.value.field == "payload"
    assert f"{limit + 1} bytes" in str(caught.value)
    assert f"limit is {limit} bytes" in str(caught.value)
    assert (await q.counts())["pending"] == 1


async def test_payload_cap_is_set_by_connect(backend_url: str) -> None:
    async with in_own_task(wizd.connect(backend_url, payload_limit=64)) as q:
        await q.enqueue("t", {"x": "a" * (64 - 8)})
        with pytest.raises(InvalidJob, match="limit is 64 bytes"):
            await q.enqueue("t", {"x": "a" * (64 - 7)})
        assert (await q.counts())["pending"] == 1


Op = Callable[[wizd.Queue, int], Awaitable[object]]
BY_ID: dict[str, Op] = {
    "get": lambda q, i: q.get(i),
    "events": lambda q, i: q.events(i),
    "cancel": lambda q, i: q.cancel(i),
    "retry": lambda q, i: q.retry(i),
    "pause_job": lambda q, i: q.pause_job(i),
    "resume_job": lambda q, i: q.resume_job(i),
    "delete": lambda q, i: q.delete(i),
}


@pytest.mark.parametrize("operation", list(BY_ID))
async def test_unknown_job_id_is_refused(q: wizd.Queue, operation: str) -> None:
    with pytest.raises(JobNotFound, match="job 4242 does not exist"):
        await BY_ID[operation](q, 4242)


@pytest.mark.parametrize("operation", list(BY_ID))
@pytest.mark.parametrize("bad_id", [0, -1, "abc", 1.5, True])
async def test_malformed_job_id_is_refused(q: wizd.Queue, operation: str, bad_id: Any) -> None:
    with pytest.raises(InvalidJob) as caught:
        await BY_ID[operation](q, bad_id)
    assert caught.value.field == "id"


# -- reads ---------------------------------------------------------------------------------


async def test_list_filters_sorts_and_pages(q: wizd.Queue, clock: FakeClock) -> None:
    t0 = clock()
    a = await q.enqueue("fetch", queue="web", priority=2, tags=["x", "y"])
    clock.advance(10)
    b = await q.enqueue("fetch", queue="web", priority=5, tags=["x"])
    clock.advance(10)
    c = await q.enqueue("parse", queue="files", priority=4)
    await run(q, "files")

    def ids(jobs: list[Job]) -> list[int]:
        return [j.id for j in jobs]

    assert ids(await q.list()) == [c.id, b.id, a.id]
    assert ids(await q.list(queue="web")) == [b.id, a.id]
    assert ids(await q.list(name="parse")) == [c.id]
    assert ids(await q.list(status="running")) == [c.id]
    assert ids(await q.list(status="active")) == [c.id]
    assert ids(await q.list(status=["pending", S.RUNNING])) == [c.id, b.id, a.id]
    assert ids(await q.list(tags=["x"])) == [b.id, a.id]
    assert ids(await q.list(tags=["x", "y"])) == [a.id]
    assert ids(await q.list(created_after=t0 + 5)) == [c.id, b.id]
    assert ids(await q.list(created_before=datetime.fromtimestamp(t0 + 15, UTC))) == [b.id, a.id]
    assert ids(await q.list(created_after=t0 + 5, created_before=t0 + 15)) == [b.id]
    assert ids(await q.list(sort="priority", order="desc")) == [b.id, c.id, a.id]
    assert ids(await q.list(sort="id", order="asc", limit=2)) == [a.id, b.id]
    assert ids(await q.list(sort="id", order="asc", limit=2, offset=2)) == [c.id]
    with pytest.raises(InvalidJob, match="sort"):
        await q.list(sort="payload")
    with pytest.raises(InvalidJob, match="status"):
        await q.list(status="sleeping")


async def test_a_list_by_status_finds_every_job_in_those_statuses(
    q: wizd.Queue, clock: FakeClock
) -> None:
    """The status filter is written as constants (schema 9's partial index of queue and
    status holds all but pending, running and completed jobs): each status alone and mixed,
    of one queue or all, selects exactly the jobs in them, newest first."""
    made: list[Job] = []
    for queue in ("a", "b"):
        for outcome in ("completed", "failed", "running", "wait_signal"):
            made.append(await q.enqueue("t", queue=queue))
            clock.advance(1)
            job = await run(q, queue)
            if outcome != "running":
                await finish(q, job, outcome, retry=False)
        made.append(await q.enqueue("t", queue=queue))  # pending
        made.append(await q.enqueue("t", queue=queue, delay=60))
        made.append(await q.enqueue("t", queue=queue, start_paused=True))
        made.append(await q.enqueue("t", queue=queue, depends_on=[made[-3].id]))  # waiting
        made.append(await q.enqueue("t", queue=queue, start_waiting_children=True))
        cancelled = await q.enqueue("t", queue=queue)
        await q.cancel(cancelled.id)
        made.append(cancelled)
        clock.advance(1)
    everything = await q.list(limit=100)
    assert {job.status for job in everything} == set(S)
    assert len(everything) == len(made)

    choices: list[tuple[S, ...]] = [(status,) for status in S]
    choices += [(S.FAILED, S.CANCELLED), (S.PENDING, S.FAILED), (S.RUNNING, S.COMPLETED)]
    choices += [(S.DELAYED, S.PAUSED, S.WAITING, S.WAITING_CHILDREN)]
    for statuses in choices:
        for queue in ("a", None):
            wanted = [
                j.id
                for j in everything
                if j.status in statuses and (queue is None or j.queue == queue)
            ]
            found = await q.list(queue=queue, status=list(statuses), limit=100)
            assert [j.id for j in found] == wanted, (queue, statuses)
            assert wanted, (queue, statuses)


async def test_peek_shows_the_next_pending_jobs_in_claim_order(q: wizd.Queue) -> None:
    low = await q.enqueue("t", priority="low")
    high = await q.enqueue("t", priority="high")
    normal = await q.enqueue("t")
    await q.enqueue("t", queue="other", priority="critical")
    await q.enqueue("t", priority="critical", delay=60)

    assert [j.id for j in await q.peek("default", 10)] == [high.id, normal.id, low.id]
    assert [j.id for j in await q.peek("default", 1)] == [high.id]
    assert all(j.status is S.PENDING for j in await q.peek("default", 10))
    with pytest.raises(InvalidJob, match=r"^n: "):
        await q.peek("default", 0)


async def test_counts_cover_every_status_zeros_included(q: wizd.Queue) -> None:
    assert await q.counts() == {s.value: 0 for s in S}
    await q.enqueue("t", queue="a")
    await q.enqueue("t", queue="a", delay=5)
    await q.enqueue("t", queue="b")
    await run(q, "b")

    assert await q.counts() == {**zero_counts(), "pending": 1, "delayed": 1, "running": 1}
    assert await q.counts("a") == {**zero_counts(), "pending": 1, "delayed": 1}
    assert await q.counts("nowhere") == zero_counts()
    await assert_counts_match_recount(q)


async def test_stats_of_a_queue(q: wizd.Queue, clock: FakeClock) -> None:
    await q.enqueue("t", queue="s")
    await q.enqueue("t", queue="s")
    clock.advance(10)
    job = await run(q, "s")
    clock.advance(5)
    await finish(q, job)
    clock.advance(1)

    stats = await q.stats("s")
    assert stats.queue == "s"
    assert stats.counts == {**zero_counts(), "pending": 1, "completed": 1}
    assert stats.paused is False
    assert stats.avg_wait_seconds == pytest.approx(10)
    assert stats.avg_run_seconds == pytest.approx(5)
    assert stats.window_seconds == 3600
    assert stats.throughput_per_minute == pytest.approx(1 / 60)
    assert stats.oldest_pending_age_seconds == pytest.approx(16)

    await q.pause("s")
    assert (await q.stats("s")).paused is True


async def test_counts_equal_a_recount_after_every_kind_of_change(
    q: wizd.Queue, clock: FakeClock
) -> None:
    jobs = await q.enqueue_many([{"name": "t", "ttl": 100} for _ in range(8)])
    await q.enqueue("t", delay=50)
    await assert_counts_match_recount(q)
    first, second, third = [await run(q) for _ in range(3)]
    await finish(q, first)
    await finish(q, second, "failed", retry=False)
    await finish(q, third, "failed")
    await assert_counts_match_recount(q)
    await q.cancel(jobs[3])
    await q.pause_job(jobs[4])
    await q.retry(second)
    await q.delete(jobs[5])
    await assert_counts_match_recount(q)
    clock.advance(100)
    await q.store.promote_due()
    await q.store.expire()
    await q.cleanup(older_than=0, statuses=["completed", "failed", "cancelled"])
    await assert_counts_match_recount(q)


# -- changes -------------------------------------------------------------------------------


async def test_cancel_several_jobs(q: wizd.Queue, clock: FakeClock) -> None:
    pending = await q.enqueue("t")
    delayed = await q.enqueue("t", delay=60)
    await q.enqueue("t", queue="busy")
    running = await run(q, "busy")

    cancelled = await q.cancel(pending.id, delayed, str(running.id))
    assert [j.id for j in cancelled] == [pending.id, delayed.id, running.id]
    for job in cancelled:
        assert job.status is S.CANCELLED
        assert job.finished_at is not None
        assert job.finished_at.timestamp() == clock()
        assert (await q.events(job))[-1].kind == "cancelled"
    # The worker of the cancelled run hears that it lost the job.
    assert await q.store.heartbeat("w1", 1) == set()


async def test_cancel_is_all_or_nothing(q: wizd.Queue) -> None:
    pending = await q.enqueue("t")
    await q.enqueue("t", queue="done")
    finished = await run(q, "done")
    await finish(q, finished)

    with pytest.raises(IllegalTransition, match=f"job {finished.id} is completed"):
        await q.cancel(pending, finished)
    with pytest.raises(JobNotFound):
        await q.cancel(pending, 4242)
    assert (await q.get(pending)).status is S.PENDING
    assert len(await q.events(pending)) == 1


async def test_retry_requeues_failed_and_cancelled_jobs(q: wizd.Queue) -> None:
    await q.enqueue("t", attempts=1)
    failing = await run(q)
    await finish(q, failing, "failed", error="boom")
    cancelled = await q.enqueue("t")
    await q.cancel(cancelled)

    retried = await q.retry(failing, cancelled)
    for job in retried:
        assert (job.status, job.attempt, job.error, job.finished_at) == (S.PENDING, 0, None, None)
        assert (await q.events(job))[-1].kind == "retried"
    assert {j.id for j in await q.store.claim("default", "w1", 5)} == {failing.id, cancelled.id}


async def test_retry_is_all_or_nothing(q: wizd.Queue) -> None:
    failed = await q.enqueue("t", attempts=1)
    await finish(q, await run(q), "failed")
    pending = await q.enqueue("t")

    with pytest.raises(IllegalTransition, match=f"job {pending.id} is pending"):
        await q.retry(failed, pending)
    with pytest.raises(JobNotFound):
        await q.retry(failed, 4242)
    assert (await q.get(failed)).status is S.FAILED


async def test_retried_job_still_waits_for_its_dependencies(q: wizd.Queue) -> None:
    """A cancelled job that depended on an unfinished job must not run before it."""
    first = await q.enqueue("first")
    second = await q.enqueue("second", depends_on=[first.id])
    assert second.status is S.WAITING
    await q.cancel(second)

    [retried] = await q.retry(second)
    assert retried.status is S.WAITING
    assert [j.id for j in await q.store.claim("default", "w1", 10)] == [first.id]


async def test_retried_expired_job_is_not_expired_again_at_once(
    q: wizd.Queue, clock: FakeClock
) -> None:
    """Retrying a job that failed as expired must give it a chance to run: its old
    deadline has passed, so the next expiry sweep would fail it again before any claim."""
    job = await q.enqueue("t", ttl=60)
    clock.advance(60)
    assert await q.store.expire() == [job.id]

    [retried] = await q.retry(job)
    assert retried.status is S.PENDING
    assert await q.store.expire() == []
    assert [j.id for j in await q.store.claim("default", "w1", 1)] == [job.id]


async def test_pause_and_resume_a_queue(q: wizd.Queue) -> None:
    job = await q.enqueue("t", queue="q1")
    await q.pause("q1")
    assert (await q.stats("q1")).paused is True
    assert [(name, paused) for name, paused, _ in await q.queues()] == [("q1", True)]
    assert await q.store.claim("q1", "w1", 1) == []
    assert (await q.get(job)).status is S.PENDING

    await q.resume("q1")
    assert (await q.stats("q1")).paused is False
    assert [j.id for j in await q.store.claim("q1", "w1", 1)] == [job.id]


async def test_pause_and_resume_a_job(q: wizd.Queue, clock: FakeClock) -> None:
    pending = await q.enqueue("t")
    soon = await q.enqueue("t", delay=10)
    later = await q.enqueue("t", delay=100)
    for job in (pending, soon, later):
        assert (await q.pause_job(job)).status is S.PAUSED
    clock.advance(50)

    assert (await q.resume_job(pending)).status is S.PENDING
    assert (await q.resume_job(soon)).status is S.PENDING
    resumed = await q.resume_job(later)
    assert (resumed.status, resumed.run_at) == (S.DELAYED, later.run_at)
    assert [e.kind for e in await q.events(later)] == ["enqueued", "paused", "resumed"]


async def test_delete_removes_jobs_and_their_events(q: wizd.Queue) -> None:
    pending = await q.enqueue("t")
    await q.enqueue("t", queue="done")
    finished = await run(q, "done")
    await finish(q, finished)

    assert await q.delete(pending, finished) == [pending.id, finished.id]
    for job in (pending, finished):
        with pytest.raises(JobNotFound):
            await q.get(job)
        assert stored_event_rows(q, job.id) == 0
    await assert_counts_match_recount(q)


async def test_delete_refuses_a_running_job_and_deletes_nothing(q: wizd.Queue) -> None:
    pending = await q.enqueue("t")
    await q.enqueue("t", queue="busy")
    running = await run(q, "busy")
    with pytest.raises(IllegalTransition, match="running"):
        await q.delete(pending, running)
    assert (await q.get(pending)).status is S.PENDING
    assert (await q.get(running)).status is S.RUNNING


async def test_queue_defaults_apply_unless_the_job_overrides_them(
    q: wizd.Queue, clock: FakeClock
) -> None:
    options = await q.set_defaults(
        "slow",
        priority="high",
        attempts=7,
        backoff=Backoff.fixed(30.0),
        timeout=timedelta(minutes=2),
        ttl=3600,
    )
    assert options == JobOptions(4, 7, Backoff.fixed(30.0), 120.0, 3600.0)
    assert await q.defaults("slow") == options

    job = await q.enqueue("t", queue="slow")
    assert (job.priority, job.max_attempts, job.backoff, job.timeout) == (
        4,
        7,
        Backoff.fixed(30.0),
        120.0,
    )
    assert job.expires_at is not None
    assert job.expires_at.timestamp() == clock() + 3600

    own = await q.enqueue(
        "t", queue="slow", priority=1, attempts=2, backoff=Backoff.fixed(1.0), timeout=5, ttl=60
    )
    assert (own.priority, own.max_attempts, own.backoff, own.timeout) == (
        1,
        2,
        Backoff.fixed(1.0),
        5.0,
    )
    assert own.expires_at is not None
    assert own.expires_at.timestamp() == clock() + 60

    other = await q.enqueue("t", queue="fast")
    assert (other.priority, other.max_attempts, other.backoff, other.timeout) == (
        3,
        3,
        DEFAULT_BACKOFF,
        None,
    )

    # Later calls change only what they name; bad values change nothing.
    assert (await q.set_defaults("slow", attempts=2)).timeout == 120.0
    with pytest.raises(InvalidJob) as caught:
        await q.set_defaults("slow", attempts=0)
    assert caught.value.field == "attempts"
    with pytest.raises(InvalidJob, match=r"^timeout: "):
        await q.set_defaults("slow", timeout=-1)
    with pytest.raises(InvalidJob):
        await q.set_defaults("slow")
    assert (await q.defaults("slow")).attempts == 2


async def test_cleanup_removes_old_final_jobs_and_their_events_only(
    q: wizd.Queue, clock: FakeClock
) -> None:
    # Every job here has event rows: a log line, or a history its row cannot hold alone
    # (the lines every job has are read from the row and stored nowhere).
    old_done = await q.enqueue("t")
    await q.log(old_done, "working")
    await finish(q, await run(q))
    old_failed = await q.enqueue("t", attempts=1)
    await finish(q, await run(q), "failed")
    old_delayed = await q.enqueue("t", queue="idle", delay=60)
    await q.enqueue("t", queue="busy")
    old_running = await run(q, "busy")
    await q.log(old_running, "working")
    clock.advance(timedelta(days=3).total_seconds())
    recent_done = await q.enqueue("t")
    await finish(q, await run(q))
    live = {old_delayed.id, old_running.id}
    assert stored_event_rows(q, old_done.id) > 0

    assert await q.cleanup(older_than=timedelta(days=1), dry_run=True) == [old_done.id]
    assert (await q.get(old_done)).status is S.COMPLETED

    assert await q.cleanup(older_than=timedelta(days=1)) == [old_done.id]
    with pytest.raises(JobNotFound):
        await q.get(old_done)
    assert stored_event_rows(q, old_done.id) == 0

    clock.advance(1)
    final = ("completed", "failed", "cancelled")
    assert await q.cleanup(older_than=0, statuses=final) == [old_failed.id, recent_done.id]
    assert {j.id for j in await q.list()} == live
    assert all(stored_event_rows(q, i) > 0 for i in live)
    with pytest.raises(InvalidJob, match=r"^statuses: .*pending is not final"):
        await q.cleanup(older_than=0, statuses=["pending"])
    await assert_counts_match_recount(q)


# -- life cycle and the sync client --------------------------------------------------------


def test_sync_client_offers_the_same_operations(store_url: str) -> None:
    clock = FakeClock()
    with wizd.connect_sync(store_url, clock=clock) as q:
        job = q.enqueue("t", {"a": 1}, priority="high", tags=["x"])
        assert q.get(job.id) == job
        assert [j.id for j in q.list(tags=["x"])] == [job.id]
        assert [j.id for j in q.peek("default", 5)] == [job.id]
        assert q.counts()["pending"] == 1
        q.pause("default")
        assert q.stats("default").paused is True
        q.resume("default")
        assert q.pause_job(job.id).status is S.PAUSED
        assert q.resume_job(job.id).status is S.PENDING
        assert q.cancel(job.id)[0].status is S.CANCELLED
        assert q.retry(job.id)[0].status is S.PENDING
        assert [e.kind for e in q.events(job.id)] == [
            "enqueued",
            "paused",
            "resumed",
            "cancelled",
            "retried",
        ]
        assert q.set_defaults("default", attempts=5).attempts == 5
        many = q.enqueue_many([{"name": "a"}, {"name": "b"}])
        assert [j.max_attempts for j in many] == [5, 5]
        assert q.delete(many[0].id) == [many[0].id]
        q.cancel(many[1].id)
        clock.advance(10)
        assert q.cleanup(older_than=5, statuses=["cancelled"], dry_run=True) == [many[1].id]
        assert q.cleanup(older_than=5, statuses=["cancelled"]) == [many[1].id]
        with pytest.raises(InvalidJob, match=r"^priority: "):
            q.enqueue("t", priority=9)
        with pytest.raises(JobNotFound):
            q.get(4242)
        assert q.counts() == {**zero_counts(), "pending": 1}

    with wizd.connect_sync(store_url, clock=clock) as again:
        assert again.get(job.id).status is S.PENDING
    with pytest.raises(RuntimeError):
        again.get(job.id)


def test_queue_opened_in_one_task_can_be_closed_in_another(store_url: str) -> None:
    """pytest-asyncio fixtures and application start-up/shut-down hooks open and close in
    different tasks; closing must work there (and not leave connection threads behind)."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        import wizd

        async def main():
            q = wizd.connect(sys.argv[1])
            await q.__aenter__()
            await q.enqueue("t")
            try:
                await asyncio.create_task(q.__aexit__(None, None, None))
                print("closed")
            except BaseException as exc:
                print("close failed:", repr(exc))
            sys.stdout.flush()
            os._exit(0)  # a failed close leaves non-daemon threads that block exit

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, store_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "closed", done.stdout + done.stderr


# -- another process holding SQLite's write lock -------------------------------------------


async def test_a_write_waits_for_another_process_lock_and_goes_through(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer naps between tries for the lock; once the holder commits, the write
    that was waiting for it goes through."""
    path = str(tmp_path / "locked.db")
    napping = threading.Event()
    real_sleep = wizd_sqlite.time.sleep

    def nap(seconds: float) -> None:
        napping.set()  # the writer found the lock taken and waits for it
        real_sleep(seconds)

    async with wizd.connect(path) as q:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        # Only the store module's view of `time` naps through `nap`.
        monkeypatch.setattr(
            wizd_sqlite, "time", SimpleNamespace(sleep=nap, monotonic=time.monotonic)
        )
        async with anyio.create_task_group() as tg:
            done: list[Job] = []

            async def write() -> None:
                done.append(await q.enqueue("t"))

            tg.start_soon(write)
            assert await anyio.to_thread.run_sync(napping.wait, 10)
            assert not done
            holder.execute("COMMIT")
        holder.close()
        assert (await q.get(done[0].id)).status is JobStatus.PENDING


async def test_a_write_refused_after_busy_timeout_names_the_lock_and_writes_nothing(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "locked.db")
    async with wizd.connect(path, busy_timeout=0.2) as q:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(wizd.errors.StoreError, match=r"locked.*busy_timeout=0\.2s"):
                await q.enqueue("t")
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert (await q.counts())["pending"] == 0
