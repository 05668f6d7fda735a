"""Bad input through the Python API (issue 20, items 5, 17, 21 and 22): each is refused with
InvalidJob naming the argument, alike on SQLite and PostgreSQL, and writes nothing; what a
job may hold is capped (wizd.SizeLimits), its result and error on the daemon's finish path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import wizd
from tests.conftest import FakeClock, in_own_task
from wizd.agent import JobContext
from wizd.checks import MAX_INT
from wizd.errors import ConfigError, InvalidJob
from wizd.settings import Settings, load_settings
from wizd.store import Finish

LIMITS = wizd.SizeLimits(payload=1000, context=100, result=100, log=50, tags=3, error=80)

Call = Callable[[wizd.Queue, wizd.Job], Awaitable[Any]]


@pytest.fixture
async def lq(backend_url: str, clock: FakeClock) -> AsyncIterator[wizd.Queue]:
    """A Queue with small size limits, on each backend."""
    async with in_own_task(wizd.connect(backend_url, clock=clock, limits=LIMITS)) as queue:
        yield queue


async def running(q: wizd.Queue, queue: str = "work") -> tuple[wizd.Job, JobContext]:
    job = await q.enqueue("t", queue=queue)
    [claimed] = await q.store.claim(queue, "w1", 1)
    assert claimed.id == job.id
    return claimed, JobContext(claimed, q, "w1")


async def refused(q: wizd.Queue, field: str, call: Awaitable[Any], *words: str) -> str:
    """`call` raises InvalidJob naming `field` (and saying each of `words`)."""
    with pytest.raises(InvalidJob) as caught:
        await call
    message = str(caught.value)
    assert caught.value.field == field, message
    for word in words:
        assert word in message
    return message


async def log_lines(q: wizd.Queue, job: wizd.Job) -> list[str | None]:
    return [e.message for e in await q.events(job.id) if e.kind == "log"]


# -- item 21: one behaviour on both backends ------------------------------------------------
BIG = 2**63  # one past the largest id either database holds


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("id", lambda q, j: q.get(BIG)),
        ("id", lambda q, j: q.get(str(99999999999999999999999))),
        ("id", lambda q, j: q.cancel(j.id, BIG)),
        ("id", lambda q, j: q.events(BIG)),
        ("id", lambda q, j: q.log(BIG, "x")),
        ("depends_on", lambda q, j: q.add_dependency(j, [BIG])),
        ("parent", lambda q, j: q.enqueue("t", parent=BIG)),
        ("depends_on", lambda q, j: q.enqueue("t", depends_on=[j.id, BIG])),
        ("parent", lambda q, j: q.list(parent=BIG)),
        ("schedule", lambda q, j: q.get_schedule(BIG)),
    ],
)
async def test_an_id_past_64_bits_is_invalid_on_both_backends(
    q: wizd.Queue, field: str, call: Call
) -> None:
    job = await q.enqueue("t")
    await refused(q, field, call(q, job), str(MAX_INT))
    assert [j.id for j in await q.list()] == [job.id]
    assert (await q.get(job.id)).status is wizd.JobStatus.PENDING


async def test_a_nul_in_a_log_line_is_refused_on_both_backends(q: wizd.Queue) -> None:
    job, ctx = await running(q)
    await refused(q, "message", q.log(job, "before\x00after"), "NUL")
    await refused(q, "message", ctx.log("before\x00after"), "NUL")
    await refused(q, "message", ctx.progress(0.5, "half\x00way"), "NUL")
    assert await log_lines(q, job) == []
    await ctx.log("plain")
    assert await log_lines(q, job) == ["plain"]


# -- item 5: text, numbers and JSON a database cannot hold ----------------------------------
@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("payload", lambda q, j: q.enqueue("t", {"a": "\ud800"})),
        ("payload", lambda q, j: q.enqueue("t", {"\udc80": 1})),
        ("queue", lambda q, j: q.enqueue("t", queue="\ud800")),
        ("tags", lambda q, j: q.enqueue("t", tags=["ok", "bad\ud800"])),
        ("tags", lambda q, j: q.enqueue("t", tags=["nul\x00"])),
        ("context", lambda q, j: q.enqueue("t", context={"a": "\udfff"})),
        ("unique_key", lambda q, j: q.enqueue("t", unique_key="k\x00")),
        ("unique_key", lambda q, j: q.enqueue("t", unique_key="k\ud800")),
        ("tags", lambda q, j: q.list(tags=["\ud800"])),
        ("name", lambda q, j: q.list(name="\ud800")),
        ("queue", lambda q, j: q.counts("\ud800")),
        ("batch_id", lambda q, j: q.list(batch_id="b\x00")),
        ("batch_id", lambda q, j: q.batch("\ud800")),
        ("message", lambda q, j: q.log(j, "\ud800")),
        ("prompt", lambda q, j: q.create_distributed("p\ud800", ["a"])),
        ("subtasks[sub_1]", lambda q, j: q.create_distributed("p", ["\ud800"])),
        ("timezone", lambda q, j: q.schedule("t", every=60, timezone="\ud800")),
    ],
)
async def test_text_a_database_cannot_hold_is_refused_naming_the_field(
    q: wizd.Queue, field: str, call: Call
) -> None:
    job = await q.enqueue("t")
    await refused(q, field, call(q, job))
    assert [j.id for j in await q.list()] == [job.id]
    assert await log_lines(q, job) == []


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("payload", lambda q: q.enqueue("t", {"deep": nested(50_000)})),
        ("payload", lambda q: q.enqueue("t", {"deep": nested(51)})),  # 102 levels
        ("context", lambda q: q.enqueue("t", context=nested(5_000))),
        ("items[0].payload", lambda q: q.enqueue_many([{"name": "t", "payload": nested(800)}])),
        ("payload", lambda q: q.schedule("t", nested(1_000), every=60)),
    ],
)
async def test_deeply_nested_json_is_refused_without_a_recursion_error(
    q: wizd.Queue, field: str, call: Callable[[wizd.Queue], Awaitable[Any]]
) -> None:
    await refused(q, field, call(q), "nested more than 100 levels")
    assert await q.list() == []
    assert (await q.enqueue("t", {"deep": nested(49)})).payload == {"deep": nested(49)}


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("attempts", lambda q, j: q.enqueue("t", attempts=10**20)),
        ("priority", lambda q, j: q.enqueue("t", priority=10**20)),
        ("delay", lambda q, j: q.enqueue("t", delay=10**400)),
        ("timeout", lambda q, j: q.enqueue("t", timeout=10**20)),
        ("ttl", lambda q, j: q.enqueue("t", ttl=-(10**400))),
        ("run_at", lambda q, j: q.enqueue("t", run_at=10**400)),
        ("unique_for", lambda q, j: q.enqueue("t", unique_key="k", unique_for=10**30)),
        ("attempts", lambda q, j: q.set_defaults("work", attempts=2**64)),
        ("max_running", lambda q, j: q.set_queue_limits("work", max_running=2**64)),
        ("burst", lambda q, j: q.set_queue_limits("work", burst=10**20)),
        ("limit", lambda q, j: q.set_concurrency_limit("k", 10**20)),
        ("after", lambda q, j: q.events(j, after=2**64)),
        ("offset", lambda q, j: q.list(offset=2**64)),
        ("limit", lambda q, j: q.list(limit=2**64)),
        ("n", lambda q, j: q.peek("work", n=2**64)),
        ("older_than", lambda q, j: q.cleanup(10**400)),
        ("window", lambda q, j: q.stats("work", window=float("inf"))),
        ("every", lambda q, j: q.schedule("t", every=10**400)),
        ("rate", lambda q, j: q.set_queue_limits("work", rate="9" * 5000 + "/s")),
    ],
)
async def test_numbers_too_large_for_a_database_are_refused_naming_the_field(
    q: wizd.Queue, field: str, call: Call
) -> None:
    job = await q.enqueue("t", queue="work")
    await refused(q, field, call(q, job))
    assert [j.id for j in await q.list()] == [job.id]
    assert await q.queue_limits("work") == wizd.QueueLimits("work")
    assert await q.concurrency_limits() == {}


# -- item 22: wrong types name the argument -------------------------------------------------
@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("n", lambda q, j, c: q.peek("work", n="5")),
        ("limit", lambda q, j, c: q.list(limit="x")),
        ("offset", lambda q, j, c: q.list(offset=1.5)),
        ("sort", lambda q, j, c: q.list(sort=["id"])),
        ("status", lambda q, j, c: q.list(status=5)),
        ("created_after", lambda q, j, c: q.list(created_after="yesterday")),
        ("tags", lambda q, j, c: q.enqueue("t", tags=datetime.now(UTC))),
        ("tags", lambda q, j, c: q.enqueue("t", tags="one")),
        ("older_than", lambda q, j, c: q.cleanup(None)),
        ("statuses", lambda q, j, c: q.cleanup(statuses=None)),
        ("statuses", lambda q, j, c: q.cleanup(statuses=[])),
        ("dry_run", lambda q, j, c: q.cleanup(dry_run="no")),
        ("window", lambda q, j, c: q.stats("work", window=None)),
        ("older_than", lambda q, j, c: q.hung(None)),
        ("older_than", lambda q, j, c: q.reap_hung("soon")),
        ("force", lambda q, j, c: q.kill(j, force="yes")),
        ("after", lambda q, j, c: q.events(j, after="x")),
        ("id", lambda q, j, c: q.get(1.0)),
        ("id", lambda q, j, c: q.get("１")),  # a full-width digit
        ("depends_on", lambda q, j, c: q.enqueue("t", depends_on=5.5)),
        ("depends_on", lambda q, j, c: q.add_dependency(j, None)),
        (
            "items[0].depends_on",
            lambda q, j, c: q.enqueue_batch([{"name": "t", "depends_on": 1.5}]),
        ),
        ("items[0]", lambda q, j, c: q.enqueue_many([{"name": "t", 3: "x"}])),
        ("items[0]", lambda q, j, c: q.enqueue_many([{"name": "t", 3: "x", "y": 1}])),
        ("children[0]", lambda q, j, c: q.enqueue("t", children=[5])),
        ("children[1]", lambda q, j, c: q.enqueue("t", children=[{"name": "t"}, {1: 2}])),
        ("nosuch", lambda q, j, c: q.enqueue("t", nosuch=1)),
        ("backoff.jitter", lambda q, j, c: q.enqueue("t", backoff={"jitter": "x"})),
        ("backoff.jitter", lambda q, j, c: q.enqueue("t", backoff={"jitter": float("nan")})),
        ("unique_states", lambda q, j, c: q.enqueue("t", unique_key="k", unique_states=5)),
        ("on_child_failure", lambda q, j, c: q.enqueue("t", on_child_failure=["fail"])),
        ("paused", lambda q, j, c: q.schedule("t", every=60, paused="x")),
        ("timezone", lambda q, j, c: q.schedule("t", every=60, timezone=["UTC"])),
        ("cron", lambda q, j, c: q.schedule("t", cron=5)),
        ("dispatch", lambda q, j, c: q.create_distributed("p", ["a"], dispatch="now")),
        ("limit", lambda q, j, c: q.set_concurrency_limit("k", "3")),
        ("rate", lambda q, j, c: q.set_queue_limits("work", rate=60)),
        ("progress", lambda q, j, c: c.progress("half")),
        ("progress", lambda q, j, c: c.progress(float("nan"))),
        ("message", lambda q, j, c: c.progress(0.5, message=5)),
        ("message", lambda q, j, c: c.log(None)),
        ("parent", lambda q, j, c: c.spawn("t", parent=1)),
        ("tags", lambda q, j, c: c.spawn("t", tags=5)),
    ],
)
async def test_a_wrong_type_raises_invalid_job_naming_the_argument(
    q: wizd.Queue, field: str, call: Callable[..., Awaitable[Any]]
) -> None:
    job, ctx = await running(q)
    await refused(q, field, call(q, job, ctx))
    assert [j.id for j in await q.list()] == [job.id]
    assert await q.schedules() == []
    assert await log_lines(q, job) == []


def test_the_blocking_client_raises_the_same_invalid_job(store_url: str) -> None:
    with wizd.connect_sync(store_url) as q:
        for call, field in (
            (lambda: q.peek("work", n="5"), "n"),
            (lambda: q.get(BIG), "id"),
            (lambda: q.cleanup(None), "older_than"),
        ):
            with pytest.raises(InvalidJob) as caught:
                call()
            assert caught.value.field == field


# -- item 17: size caps on what a job may hold ----------------------------------------------
@pytest.mark.parametrize(
    ("field", "call", "limit"),
    [
        ("payload", lambda q, j, c: q.enqueue("t", {"x": "p" * 1000}), "1000 bytes"),
        ("context", lambda q, j, c: q.enqueue("t", context={"x": "c" * 100}), "100 bytes"),
        ("tags", lambda q, j, c: q.enqueue("t", tags=["a", "b", "c", "d"]), "limit is 3"),
        ("tags", lambda q, j, c: q.enqueue("t", tags=["t" * 1024]), "200 bytes"),
        ("tags", lambda q, j, c: c.spawn("t", tags=[str(i) for i in range(10_000)]), "limit is 3"),
        ("message", lambda q, j, c: q.log(j, "l" * 51), "50 bytes"),
        ("message", lambda q, j, c: c.log("é" * 26), "52 bytes; the limit is 50 bytes"),
        ("message", lambda q, j, c: c.progress(0.5, "m" * 51), "50 bytes"),
        ("context", lambda q, j, c: q.schedule("t", every=60, context={"x": "c" * 100}), "100"),
    ],
)
async def test_what_a_job_may_hold_is_capped(
    lq: wizd.Queue, field: str, call: Callable[..., Awaitable[Any]], limit: str
) -> None:
    job, ctx = await running(lq)
    await refused(lq, field, call(lq, job, ctx), limit)
    assert [j.id for j in await lq.list()] == [job.id]
    assert await log_lines(lq, job) == []
    assert (await lq.get(job.id)).progress_message is None
    # At the cap exactly, each is taken.
    await lq.log(job, "l" * 50)
    await ctx.progress(0.5, "m" * 50)
    await lq.enqueue("t", tags=["a", "b", "t" * 200], context={"x": "c" * 92})


async def test_a_result_over_its_cap_fails_the_job_saying_so(lq: wizd.Queue) -> None:
    job, _ = await running(lq)
    [ours] = await lq.store.finish([Finish(job.id, "w1", 1, "completed", result="r" * 200)])
    assert ours
    failed = await lq.get(job.id)
    assert failed.status is wizd.JobStatus.FAILED  # not retried: it would fail again
    assert failed.attempt == 1
    assert failed.max_attempts == 3
    assert failed.result is None
    assert failed.error == "result: is 202 characters as JSON; the limit is 100 bytes"


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ("\ud800", "not valid Unicode"),
        (nested(60), "nested more than 100 levels"),
        (nested(5_000), "nested more than 100 levels"),
    ],
)
async def test_a_result_no_database_can_hold_fails_the_job(
    q: wizd.Queue, result: Any, why: str
) -> None:
    job, _ = await running(q)
    other, _ = await running(q, "other")
    finishes = [
        Finish(job.id, "w1", 1, "completed", result=result),
        Finish(other.id, "w1", 1, "completed", result={"fine": True}),
    ]
    assert await q.store.finish(finishes) == [True, True]  # one bad result fails one job
    failed = await q.get(job.id)
    assert failed.status is wizd.JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("result: ")
    assert why in failed.error
    assert (await q.get(other.id)).result == {"fine": True}


async def test_a_result_within_its_cap_is_stored_and_one_that_is_not_json_fails(
    lq: wizd.Queue,
) -> None:
    job, _ = await running(lq)
    other, _ = await running(lq, "other")
    await lq.store.finish(
        [
            Finish(job.id, "w1", 1, "completed", result={"x": "r" * 90}),
            Finish(other.id, "w1", 1, "completed", result={1, 2}),
        ]
    )
    assert (await lq.get(job.id)).result == {"x": "r" * 90}
    failed = await lq.get(other.id)
    assert failed.status == "failed"
    assert failed.result is None
    assert (
        failed.error
        == "result: is not JSON-serialisable: Object of type set is not JSON serializable"
    )


async def test_an_error_text_is_cut_at_its_cap_with_a_marker(lq: wizd.Queue) -> None:
    job, _ = await running(lq)
    error = "ValueError: " + "e" * 1000
    await lq.store.finish([Finish(job.id, "w1", 1, "failed", error=error, retry=False)])
    stored = (await lq.get(job.id)).error
    assert stored is not None
    assert len(stored.encode()) <= 80
    assert stored.startswith("ValueError: eee")
    assert stored.endswith(" bytes]")
    assert "[truncated " in stored


async def test_an_error_with_a_nul_or_a_surrogate_is_stored_escaped_on_both_backends(
    q: wizd.Queue,
) -> None:
    job, _ = await running(q)
    error = "OSError: bad\x00byte and \udcff"
    assert await q.store.finish([Finish(job.id, "w1", 1, "failed", error=error, retry=False)])
    failed = await q.get(job.id)
    assert failed.status is wizd.JobStatus.FAILED
    assert failed.error == "OSError: bad\\x00byte and \\udcff"


def test_a_size_limit_past_64_bits_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="result_limit"):
        load_settings(None, result_limit=2**63)


def test_the_daemon_takes_its_size_limits_from_settings() -> None:
    settings = Settings(
        payload_limit=10, context_limit=20, result_limit=30, log_limit=40, max_tags=5
    )
    assert settings.size_limits() == wizd.SizeLimits(
        payload=10, context=20, result=30, log=40, tags=5, error=64 * 1024
    )


async def test_payload_limit_given_to_connect_replaces_the_payload_cap(
    store_url: str,
) -> None:
    async with wizd.connect(store_url, payload_limit=20, limits=LIMITS) as q:
        assert q.limits == LIMITS.replace(payload=20)
        assert q.store.size_limits == q.limits
        await refused(q, "payload", q.enqueue("t", {"x": "y" * 20}), "limit is 20 bytes")


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), 10**400, "5", True])
def test_retry_later_takes_only_a_number_of_seconds_a_job_can_wait(seconds: Any) -> None:
    with pytest.raises(InvalidJob) as caught:
        wizd.RetryLater(seconds)
    assert caught.value.field == "seconds"


def test_connect_refuses_limits_that_are_not_size_limits(store_url: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        wizd.connect(store_url, limits={"payload": 10})  # type: ignore[arg-type]
    assert caught.value.field == "limits"


def test_a_job_with_a_million_attempts_backs_off_within_its_cap_and_100_years() -> None:
    """attempts may be 10**6: the 1,025th retry's delay was 2**1024 s, an OverflowError in
    the store's finish (which writes a daemon's whole batch of outcomes), cap or no cap."""
    assert wizd.Backoff.exponential(1.0).delay_for(1025) == 300.0
    assert wizd.Backoff.exponential(2.0, cap=None).delay_for(10**6) == 100 * 365.25 * 86400
    assert wizd.Backoff.exponential(1.0, cap=None).delay_for(3) == 4.0


async def test_stats_refuses_a_window_under_a_second(q: wizd.Queue) -> None:
    await q.enqueue("x", {}, queue="agent")
    for window in (5e-324, 0.5):
        with pytest.raises(wizd.InvalidJob, match="window"):
            await q.stats("agent", window)
    assert (await q.stats("agent", 1)).window_seconds == 1
