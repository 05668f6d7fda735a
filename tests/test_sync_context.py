"""wizd.sync_context: a synchronous processor calls the context's store methods without
await; each blocks on the daemon's event loop and behaves as its async twin. Runs are
driven by hand through wizd.threads (claim, thread, the outcome) on both backends; the
daemon's own handling is in tests/acceptance/test_zoo.py."""

from __future__ import annotations

import inspect
import threading
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

import wizd
from tests.conftest import FakeClock
from wizd.errors import LostJob, NonDeterministic, Sleeping, WaitingForSignal
from wizd.store import Finish
from wizd.sync_context import SyncJobContext
from wizd.threads import Returned, ThreadPool

Q = "sync"
WORKER = "w1"


async def run_in_thread(q: wizd.Queue, fn: Any) -> tuple[wizd.Job, Returned]:
    """Claim the queue's one pending job and run fn(ctx) as the daemon runs a sync processor."""
    (job,) = await q.store.claim(Q, WORKER, 1)
    ctx = wizd.JobContext(job, q, WORKER)
    outcome = await ThreadPool(1).call(fn, ctx, returned=lambda r: None, asked_to_stop=list)
    return job, outcome


async def test_a_sync_processor_logs_reports_streams_spawns_and_runs_steps(q: wizd.Queue) -> None:
    job = await q.enqueue("research", {"topic": "owls"}, queue=Q)

    async def async_body(word: str) -> str:
        await anyio.lowlevel.checkpoint()
        return word.upper()

    def research(ctx: SyncJobContext) -> Any:
        assert ctx.payload == {"topic": "owls"}
        ctx.log("started")
        ctx.progress(0.5, "half way")
        ctx.stream("to")
        ctx.stream("kens")
        child = ctx.spawn("child", {"n": 1})
        kids = [c.id for c in ctx.children()]
        found = ctx.step("search", lambda topic: f"found {topic}", ctx.payload["topic"])
        shouted = ctx.step("shout", async_body, kwargs={"word": "hoot"})
        return [found, shouted, kids == [child.id], ctx.step_key("search", 1)]

    _, outcome = await run_in_thread(q, research)
    assert outcome == Returned(["found owls", "HOOT", True, f"{job.id}:search#1"])
    events = await q.events(job.id)
    assert [e.message for e in events if e.kind == "log"] == ["started"]
    assert [e.message for e in events if e.kind == "progress"] == ["50% half way"]
    assert await q.stream_text(job.id) == "tokens"  # written when the thread returned
    assert [(s.label, s.status) for s in await q.steps(job)] == [
        ("search#1", "completed"),
        ("shout#1", "completed"),
    ]


async def test_steps_replay_and_refuse_another_order_as_in_an_async_processor(
    q: wizd.Queue,
) -> None:
    await q.enqueue("research", queue=Q, attempts=3)
    calls: list[str] = []

    def flaky() -> str:
        calls.append("flaky")
        if len(calls) < 2:
            raise ConnectionError("try again")
        return "ok"

    def first(ctx: SyncJobContext) -> Any:
        return ctx.step("fetch", flaky, attempts=2, backoff=wizd.Backoff.fixed(0.001))

    claimed, outcome = await run_in_thread(q, first)
    assert outcome == Returned("ok")
    assert calls == ["flaky", "flaky"]  # its second attempt, in place
    await q.store.finish([finish(claimed, "requeue")])

    def again(ctx: SyncJobContext) -> Any:
        return ctx.step("fetch", lambda: pytest.fail("replayed, not run"))

    claimed, replayed = await run_in_thread(q, again)
    assert replayed == Returned("ok")
    await q.store.finish([finish(claimed, "requeue")])

    _, other = await run_in_thread(q, lambda ctx: ctx.step("other", lambda: 1))
    assert isinstance(other.error, NonDeterministic)


def finish(job: wizd.Job, outcome: Any, **kw: Any) -> Finish:
    return Finish(job.id, WORKER, job.attempt, outcome, **kw)


async def test_sleep_leaves_the_thread_as_it_leaves_a_coroutine_and_comes_back(
    q: wizd.Queue, clock: FakeClock
) -> None:
    await q.enqueue("research", queue=Q)
    went_on: list[str] = []

    def sleeper(ctx: SyncJobContext) -> Any:
        try:
            ctx.sleep(60)
        except Exception:  # a BaseException: a processor's `except Exception` lets it out
            went_on.append("swallowed")
        went_on.append("went on")
        return "woke"

    claimed, outcome = await run_in_thread(q, sleeper)
    assert isinstance(outcome.error, Sleeping)
    assert outcome.error.seconds == pytest.approx(60)
    assert went_on == []
    await q.store.finish([finish(claimed, "later", delay=outcome.error.seconds)])
    clock.advance(60)
    _, woke = await run_in_thread(q, sleeper)  # the sleep is replayed: its time has come
    assert woke == Returned("woke")
    assert went_on == ["went on"]


async def test_wait_for_signal_leaves_the_thread_until_the_signal_comes(q: wizd.Queue) -> None:
    await q.enqueue("research", queue=Q)

    def waiter(ctx: SyncJobContext) -> Any:
        return ctx.wait_for_signal("approval")

    claimed, outcome = await run_in_thread(q, waiter)
    assert isinstance(outcome.error, WaitingForSignal)
    await q.store.finish([finish(claimed, "wait_signal", error="approval")])
    await q.signal(claimed, "approval", {"ok": True})
    _, taken = await run_in_thread(q, waiter)
    assert taken == Returned({"ok": True})


DAEMON_ONLY = {"prepare_for_thread", "request_stop", "end_stream"}  # the worker calls these


def test_every_async_method_of_a_job_context_blocks_in_a_sync_one() -> None:
    """A method added to JobContext must not reach a sync processor as a coroutine."""
    public = {n for n in dir(wizd.JobContext) if not n.startswith("_")} - DAEMON_ONLY
    missing = sorted(n for n in public if not hasattr(SyncJobContext, n))
    assert not missing, f"SyncJobContext lacks {missing}"
    still_async = [
        n for n in public if inspect.iscoroutinefunction(getattr(SyncJobContext, n, None))
    ]
    assert still_async == []
    assert not issubclass(SyncJobContext, wizd.JobContext)


async def test_a_helper_thread_of_the_processor_may_call_the_context_too(q: wizd.Queue) -> None:
    job = await q.enqueue("research", queue=Q)

    def research(ctx: SyncJobContext) -> str:
        helper = threading.Thread(target=ctx.log, args=("from a helper thread",))
        helper.start()
        helper.join()
        return "done"

    _, outcome = await run_in_thread(q, research)
    assert outcome == Returned("done")
    assert [e.message for e in await q.events(job.id) if e.kind == "log"] == [
        "from a helper thread"
    ]


async def test_a_sync_wrappers_coroutine_awaits_the_context_on_the_loop(q: wizd.Queue) -> None:
    """`def wrapper(ctx): return processor(ctx)`: the daemon awaits the coroutine on its loop,
    where the SyncJobContext's methods return coroutines."""
    job = await q.enqueue("research", queue=Q)

    async def processor(ctx: Any) -> str:
        await ctx.log("awaited on the loop")
        return str(await ctx.step("s", lambda: "stepped"))

    _, outcome = await run_in_thread(q, lambda ctx: processor(ctx))
    assert inspect.isawaitable(outcome.value)
    assert await outcome.value == "stepped"
    assert [e.message for e in await q.events(job.id) if e.kind == "log"] == ["awaited on the loop"]


def test_a_call_after_the_event_loop_ended_raises_lost_job_instead_of_hanging() -> None:
    made: list[SyncJobContext] = []
    job = cast(Any, SimpleNamespace(id=7, attempt=2))

    async def make() -> None:
        made.append(SyncJobContext(wizd.JobContext(job, cast(Any, None), "w")))

    anyio.run(make)
    raised: list[BaseException] = []

    def late() -> None:  # the processor's thread, outliving the loop
        try:
            made[0].log("too late")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    (exc,) = raised
    assert isinstance(exc, LostJob)
    assert str(exc).startswith("job 7 attempt 2: ctx.log was called after the daemon's event")


async def test_a_thread_asked_to_stop_still_has_its_calls_served_to_the_end(q: wizd.Queue) -> None:
    """A stop (timeout, kill, shutdown) cancels the scope anyio runs the thread's calls in:
    they are shielded, as the thread is never interrupted (a step used to hang here)."""
    job = await q.enqueue("research", queue=Q)
    (claimed,) = await q.store.claim(Q, WORKER, 1)
    started = threading.Event()

    def stops_slowly(ctx: SyncJobContext) -> Any:
        started.set()
        ctx.wait_for_stop(30)
        ctx.log("stopping")
        ctx.progress(1.0, "stopped")
        return ctx.step("last", lambda: "saved")

    kept: list[Returned] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def stop_once_started() -> None:
                await anyio.to_thread.run_sync(started.wait)
                scope.cancel()

            tg.start_soon(stop_once_started)
            ctx = wizd.JobContext(claimed, q, WORKER)
            await ThreadPool(1).call(stops_slowly, ctx, returned=kept.append, asked_to_stop=list)
    assert kept == [Returned("saved")]
    events = await q.events(job.id)
    assert [e.message for e in events if e.kind in ("log", "progress")] == [
        "stopping",
        "100% stopped",
    ]
