"""Durable steps (ctx.step): stored once, replayed by every later run of the job, numbered
by name and occurrence, checked against the stored order, fenced on the run, and cut back
by a retry from a step. Runs are driven by hand (claim, context, step calls) on both
backends; tests/acceptance/test_steps_daemon.py kills a real daemon in the middle."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

import wizd
from tests.conftest import FakeClock
from wizd.store import Finish

Q = "steps"
WORKER = "w1"


class Counter:
    """A step body that counts its calls (thread-safe: sync bodies run in threads)."""

    def __init__(self, value: Any = None, fail: int = 0) -> None:
        self.calls = 0
        self.value = value
        self.fail = fail  # the first `fail` calls raise
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail:
                raise RuntimeError(f"boom {self.calls}")
        return self.value if self.value is not None else {"args": list(args), "kwargs": kwargs}


async def run_of(q: wizd.Queue, job: wizd.Job, worker: str = WORKER) -> wizd.JobContext:
    """Claim `job` (the queue's only pending job) and give its run's context."""
    (claimed,) = await q.store.claim(Q, worker, 1)
    assert claimed.id == job.id
    return wizd.JobContext(claimed, q, worker)


async def crash(q: wizd.Queue, worker: str = WORKER) -> None:
    """What a recovery after the worker died does: its runs go back to pending."""
    await q.store.recover_worker(worker, "crashed")


async def test_a_step_runs_once_and_is_replayed_by_later_runs(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=5)
    body = Counter({"hits": 3})
    ctx = await run_of(q, job)
    assert await ctx.step("search", body) == {"hits": 3}
    await crash(q)
    ctx = await run_of(q, job)
    assert await ctx.step("search", body) == {"hits": 3}
    assert body.calls == 1
    (step,) = await q.steps(job)
    assert (step.name, step.occurrence, step.position, step.status) == ("search", 1, 1, "completed")
    assert step.result == {"hits": 3}
    assert step.attempts == 1
    assert step.error is None
    assert step.finished_at >= step.started_at
    events = [e for e in await q.events(job) if e.kind == "step"]
    assert len(events) == 1
    assert events[0].message is not None
    assert events[0].message.startswith("search#1 completed in")
    assert events[0].message.endswith(': {"hits":3}')


async def test_sync_and_async_bodies_with_positional_and_keyword_arguments(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    seen: list[str] = []

    def sync_body(a: int, *, b: int) -> int:
        seen.append(threading.current_thread().name)
        return a + b

    async def async_body(a: int, *, b: int) -> int:
        seen.append(threading.current_thread().name)
        return a * b

    assert await ctx.step("add", sync_body, 2, kwargs={"b": 3}) == 5
    assert await ctx.step("mul", async_body, 2, kwargs={"b": 3}) == 6
    assert seen[0] != threading.main_thread().name  # a sync body runs in a thread
    assert seen[1] == threading.main_thread().name
    # The first run gets what a replay would: the JSON value (a tuple is a list).
    assert await ctx.step("pair", lambda: (1, 2)) == [1, 2]


async def test_a_step_called_in_a_loop_is_numbered_by_occurrence(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    keys = []
    for i in range(3):
        keys.append(ctx.step_key("search"))
        assert await ctx.step("search", lambda i=i: i) == i
    await ctx.step("summary", lambda: "done")
    steps = await q.steps(job)
    assert [s.label for s in steps] == ["search#1", "search#2", "search#3", "summary#1"]
    assert [s.position for s in steps] == [1, 2, 3, 4]
    assert keys == [f"{job.id}:search#1", f"{job.id}:search#2", f"{job.id}:search#3"]
    await crash(q)
    ctx = await run_of(q, job)  # the key is the same in the next run
    assert ctx.step_key("search") == f"{job.id}:search#1"
    assert ctx.step_key("search", 3) == f"{job.id}:search#3"
    assert [await ctx.step("search", Counter("x")) for _ in range(3)] == [0, 1, 2]


async def test_a_run_that_calls_steps_in_another_order_fails_non_deterministic(
    q: wizd.Queue,
) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    await ctx.step("search", lambda: 1)
    await ctx.step("write", lambda: 2)
    await crash(q)
    ctx = await run_of(q, job)
    await ctx.step("search", lambda: 1)
    body = Counter()
    with pytest.raises(wizd.NonDeterministic) as raised:
        await ctx.step("summarise", body)
    assert body.calls == 0
    assert raised.value.expected == "write#1"
    assert raised.value.called == "summarise#1"
    assert "step 2 of its history is write#1, but this run called summarise#1" in str(raised.value)
    assert isinstance(raised.value, wizd.WizdError)


async def test_a_step_that_raises_fails_the_run_and_runs_again_in_the_retry(
    q: wizd.Queue,
) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    first = Counter("one")
    flaky = Counter("two", fail=1)
    await ctx.step("first", first)
    with pytest.raises(RuntimeError, match="boom 1"):
        await ctx.step("flaky", flaky)
    failed = (await q.steps(job))[1]
    assert (failed.status, failed.error, failed.attempts) == ("failed", "RuntimeError: boom 1", 1)
    await crash(q)
    ctx = await run_of(q, job)
    assert await ctx.step("first", first) == "one"
    assert await ctx.step("flaky", flaky) == "two"
    assert (first.calls, flaky.calls) == (1, 2)
    again = (await q.steps(job))[1]
    assert (again.status, again.error, again.attempts, again.result) == (
        "completed",
        None,
        2,
        "two",
    )


async def test_attempts_run_a_raising_step_again_in_place(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    flaky = Counter("ok", fail=2)
    backoff = wizd.Backoff.fixed(0.001)
    assert await ctx.step("flaky", flaky, attempts=3, backoff=backoff) == "ok"
    (step,) = await q.steps(job)
    assert (step.status, step.attempts) == ("completed", 3)
    never = Counter("no", fail=5)
    with pytest.raises(RuntimeError, match="boom 2"):
        await ctx.step("never", never, attempts=2, backoff=backoff)
    assert never.calls == 2


async def test_a_result_json_cannot_hold_fails_the_step_clearly(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    with pytest.raises(wizd.InvalidJob, match=r"step: obj#1: result: is not JSON-serialisable"):
        await ctx.step("obj", lambda: object())
    (step,) = await q.steps(job)
    assert step.status == "failed"
    assert "not JSON-serialisable" in (step.error or "")


async def test_a_step_result_over_the_result_limit_fails_the_step(
    backend_url: str, clock: Any
) -> None:
    limits = wizd.SizeLimits(result=100)
    async with wizd.connect(backend_url, clock=clock, limits=limits) as q:
        job = await q.enqueue("agent", queue=Q)
        ctx = await run_of(q, job)
        with pytest.raises(wizd.InvalidJob, match="the limit is 100 bytes"):
            await ctx.step("big", lambda: "x" * 200)
        assert await ctx.step("small", lambda: "x" * 10) == "x" * 10


async def test_a_step_write_of_a_run_no_longer_owned_raises_lost_job(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    await crash(q)  # reaped meanwhile: another run may own the job now
    with pytest.raises(wizd.LostJob, match="no longer ours: step search#1 was not stored"):
        await ctx.step("search", lambda: 1)
    assert await q.steps(job) == []
    ctx2 = await run_of(q, job, "w2")
    assert await ctx2.step("search", lambda: 2) == 2
    with pytest.raises(wizd.LostJob):  # the old run, attempt 1, against the new one's row
        await ctx.step("other", lambda: 1)
    assert [s.result for s in await q.steps(job)] == [2]


async def test_bad_step_arguments_are_refused_before_anything_runs(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    body = Counter()
    for name in ("", "a#b", "x" * 201):
        with pytest.raises(wizd.InvalidJob, match="step"):
            await ctx.step(name, body)
    with pytest.raises(wizd.InvalidJob, match="attempts"):
        await ctx.step("s", body, attempts=0)
    with pytest.raises(wizd.InvalidJob, match="backoff"):
        await ctx.step("s", body, backoff=3)  # type: ignore[arg-type]
    with pytest.raises(wizd.InvalidJob, match="not callable"):
        await ctx.step("s", 3)  # type: ignore[arg-type]
    assert body.calls == 0
    assert await q.steps(job) == []


async def test_retry_from_step_keeps_the_steps_before_it(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    for name in ("plan", "search", "search", "write"):
        await ctx.step(name, lambda name=name: name)
    await q.store.finish([Finish(job.id, WORKER, 1, "failed", error="bad draft")])
    assert (await q.get(job)).status is wizd.JobStatus.FAILED
    (retried,) = await q.retry(job, from_step="search")
    assert retried.status is wizd.JobStatus.PENDING
    assert retried.attempt == 0
    assert [s.label for s in await q.steps(job)] == ["plan#1"]
    ctx = await run_of(q, job)
    plan, search = Counter("p"), Counter("s")
    assert await ctx.step("plan", plan) == "plan"
    assert await ctx.step("search", search) == "s"
    assert (plan.calls, search.calls) == (0, 1)
    notes = [e.message for e in await q.events(job) if e.kind == "step"]
    assert "retry from step search: 1 earlier step(s) kept, the rest run again" in notes


async def test_retry_from_step_runs_a_completed_job_again_and_keeps_its_first_run(
    q: wizd.Queue, clock: FakeClock
) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    for name in ("plan", "write"):
        await ctx.step(name, lambda name=name: name)
    clock.advance(1)
    await q.store.finish([Finish(job.id, WORKER, 1, "completed", result="first draft")])
    first = [(e.kind, e.status) for e in await q.events(job)]
    assert first[-2:] == [("claimed", "running"), ("completed", "completed")]

    clock.advance(1)
    (retried,) = await q.retry(job, from_step="write")
    assert (retried.status, retried.result) == (wizd.JobStatus.PENDING, None)
    assert [s.label for s in await q.steps(job)] == ["plan#1"]
    clock.advance(1)
    ctx = await run_of(q, job)
    plan, write = Counter("p"), Counter("second draft")
    assert await ctx.step("plan", plan) == "plan"
    assert await ctx.step("write", write) == "second draft"
    assert (plan.calls, write.calls) == (0, 1)
    clock.advance(1)
    await q.store.finish([Finish(job.id, WORKER, 1, "completed", result="second draft")])
    assert (await q.get(job)).result == "second draft"
    # The first run's claim and completion stay in the history, before the second run's.
    statuses = [e.status for e in await q.events(job) if e.kind in ("claimed", "completed")]
    assert statuses == ["running", "completed", "running", "completed"]
    assert (await q.counts(Q))["completed"] == 1


async def test_retry_from_step_refuses_what_it_cannot_do_and_changes_nothing(
    q: wizd.Queue,
) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    await ctx.step("plan", lambda: 1)
    with pytest.raises(wizd.IllegalTransition, match="is running"):
        await q.retry(job, from_step="plan")
    await q.store.finish([Finish(job.id, WORKER, 1, "failed", error="x")])
    with pytest.raises(wizd.InvalidJob, match=r"has no step named 'nope' \(its steps: plan\)"):
        await q.retry(job, from_step="nope")
    other = await q.enqueue("agent", queue="elsewhere")
    with pytest.raises(wizd.InvalidJob, match="one job at a time"):
        await q.retry(job, other, from_step="plan")
    assert (await q.get(job)).status is wizd.JobStatus.FAILED
    assert len(await q.steps(job)) == 1
    with pytest.raises(wizd.JobNotFound):
        await q.steps(10_000)


async def test_steps_go_with_their_job(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    await ctx.step("plan", lambda: 1)
    await q.store.finish([Finish(job.id, WORKER, 1, "completed", result=None)])
    await q.delete(job)
    with pytest.raises(wizd.JobNotFound):
        await q.steps(job)


async def test_steps_started_together_are_numbered_in_call_order(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    first_may_end = anyio.Event()

    async def slow() -> str:
        await first_may_end.wait()
        return "slow"

    async def fast() -> str:
        first_may_end.set()
        return "fast"

    async with anyio.create_task_group() as tg:
        tg.start_soon(ctx.step, "slow", slow)
        tg.start_soon(ctx.step, "fast", fast)
    steps = await q.steps(job)
    assert [(s.label, s.position) for s in sorted(steps, key=lambda s: s.position)] == [
        ("slow#1", 1),
        ("fast#1", 2),
    ]
    await crash(q)
    ctx = await run_of(q, job)
    assert await ctx.step("slow", Counter()) == "slow"
    assert await ctx.step("fast", Counter()) == "fast"


async def test_a_cancelled_run_waits_for_its_sync_step_thread(q: wizd.Queue) -> None:
    """The thread of a sync body is never abandoned: a cancelled run goes on only once the
    thread has returned, and the result of a body that returned is kept (fenced)."""
    job = await q.enqueue("agent", queue=Q, attempts=2)
    ctx = await run_of(q, job)
    started, release = threading.Event(), threading.Event()
    ended = anyio.Event()

    def body() -> str:
        started.set()
        release.wait(10)
        return "late"

    async def run(scope: anyio.CancelScope) -> None:
        with scope:
            await ctx.step("blocking", body)
        ended.set()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(run, scope)
        await anyio.to_thread.run_sync(started.wait, 10)
        scope.cancel()
        with anyio.move_on_after(0.1):
            await ended.wait()
        assert not ended.is_set()  # cancelled, yet waiting for its thread
        release.set()
    assert ended.is_set()
    (step,) = await q.steps(job)
    assert (step.status, step.result) == ("completed", "late")


async def test_a_step_cut_short_beside_a_finished_later_one_runs_again(q: wizd.Queue) -> None:
    """Steps 1 and 2 start together; 2 finishes, 1 is cut short (a crash): the next run
    runs 1 and replays 2 (the gap at position 1 is not taken for a different order)."""
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    fast_stored = anyio.Event()

    async def never() -> str:
        await anyio.sleep_forever()
        return "never"

    async def fast() -> str:
        return "fast"

    async def fast_then_note() -> None:
        await ctx.step("fast", fast)
        fast_stored.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ctx.step, "slow", never)
        tg.start_soon(fast_then_note)
        await fast_stored.wait()
        tg.cancel_scope.cancel()
    assert [(s.label, s.position) for s in await q.steps(job)] == [("fast#1", 2)]
    await crash(q)
    ctx = await run_of(q, job)
    again = Counter("slow now")
    assert await ctx.step("slow", again) == "slow now"
    assert await ctx.step("fast", Counter()) == "fast"
    assert again.calls == 1
    await crash(q)
    ctx = await run_of(q, job)  # the stored order is now slow#1, fast#1
    body = Counter()
    with pytest.raises(
        wizd.NonDeterministic, match=r"step 1 .* slow#1, but this run called fast#1"
    ):
        await ctx.step("fast", body)
    assert body.calls == 0


async def test_a_step_called_where_the_history_has_a_gap_is_checked_too(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=3)
    ctx = await run_of(q, job)
    fast_stored = anyio.Event()

    async def fast_then_note() -> None:
        await ctx.step("fast", lambda: "fast")
        fast_stored.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ctx.step, "slow", anyio.sleep_forever)
        tg.start_soon(fast_then_note)
        await fast_stored.wait()
        tg.cancel_scope.cancel()
    await crash(q)
    ctx = await run_of(q, job)
    body = Counter()
    with pytest.raises(wizd.NonDeterministic, match=r"\(none; fast#1 is step 2\), but this"):
        await ctx.step("fast", body)  # called first now: position 1, a gap
    assert body.calls == 0
    assert [(s.label, s.position) for s in await q.steps(job)] == [("fast#1", 2)]
