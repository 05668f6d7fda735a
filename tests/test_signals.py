"""Durable sleeps and signals (ctx.sleep, ctx.wait_for_signal, q.signal): the run leaves
its slot, the job comes back with its history. Runs are driven by hand (claim, context,
calls, the outcome the daemon would write) on both backends; the daemon's own handling is
in tests/acceptance/test_signals_daemon.py."""

from __future__ import annotations

from typing import Any

import pytest

import wizd
from tests.conftest import FakeClock
from wizd.errors import IllegalTransition, InvalidJob, JobNotFound, Sleeping, WaitingForSignal
from wizd.store import Finish

Q = "signals"
WORKER = "w1"
S = wizd.JobStatus


async def run_of(q: wizd.Queue, job: wizd.Job) -> wizd.JobContext:
    """Claim `job` (the queue's only pending job) and give its run's context."""
    (claimed,) = await q.store.claim(Q, WORKER, 1)
    assert claimed.id == job.id
    return wizd.JobContext(claimed, q, WORKER)


async def waits(ctx: wizd.JobContext, name: str, **kw: Any) -> None:
    """Call the wait as a processor would and write the outcome the daemon would."""
    with pytest.raises(WaitingForSignal) as caught:
        await ctx.wait_for_signal(name, **kw)
    assert caught.value.name == name
    (owned,) = await ctx.queue.store.finish(
        [Finish(ctx.job.id, WORKER, ctx.job.attempt, "wait_signal", error=name)]
    )
    assert owned


async def test_a_signal_after_the_wait_brings_the_job_back_with_its_data(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    assert await ctx.step("draft", lambda: "text") == "text"
    await waits(ctx, "approval")
    waiting = await q.get(job)
    assert waiting.status == S.WAITING_SIGNAL
    assert waiting.attempt == 0  # not charged: its one attempt is still ahead
    assert await q.signal_waits() == [(job.id, "approval", None)]
    assert (await q.counts())[S.WAITING_SIGNAL] == 1
    assert await q.store.claim(Q, WORKER, 1) == []  # nothing to run meanwhile

    sent = await q.signal(job, "approval", {"ok": True})
    assert sent.status == S.PENDING
    assert await q.signal_waits() == []
    ctx = await run_of(q, job)
    assert await ctx.step("draft", lambda: pytest.fail("replayed, not run")) == "text"
    assert await ctx.wait_for_signal("approval") == {"ok": True}
    steps = await q.steps(job)
    assert [(s.label, s.kind, s.status) for s in steps] == [
        ("draft#1", "step", "completed"),
        ("approval#1", "signal", "completed"),
    ]


async def test_a_signal_sent_before_the_wait_is_kept_and_taken_at_once(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    await q.signal(job, "approval", [1, 2])
    await q.signal(job, "approval", "second")
    ctx = await run_of(q, job)
    assert await ctx.wait_for_signal("approval") == [1, 2]  # oldest first
    assert await ctx.wait_for_signal("approval") == "second"
    await waits(ctx, "approval")  # the third finds none
    assert (await q.get(job)).status == S.WAITING_SIGNAL


async def test_a_signal_sent_while_the_run_leaves_is_not_missed(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    with pytest.raises(WaitingForSignal):
        await ctx.wait_for_signal("approval")
    await q.signal(job, "approval", 7)  # before the daemon wrote the run's outcome
    await q.store.finish([Finish(job.id, WORKER, ctx.job.attempt, "wait_signal", error="approval")])
    assert (await q.get(job)).status == S.PENDING
    ctx = await run_of(q, job)
    assert await ctx.wait_for_signal("approval") == 7


async def test_a_wait_past_its_timeout_raises_or_returns_its_default(
    q: wizd.Queue, clock: FakeClock
) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    await waits(ctx, "approval", timeout=60)
    assert await q.signal_waits() == [(job.id, "approval", pytest.approx(clock.now + 60))]
    clock.advance(30)
    await q.store.promote_due()
    assert (await q.get(job)).status == S.WAITING_SIGNAL
    clock.advance(31)
    await q.store.promote_due()
    assert (await q.get(job)).status == S.PENDING
    ctx = await run_of(q, job)
    with pytest.raises(wizd.SignalTimeout, match="no signal 'approval' came"):
        await ctx.wait_for_signal("approval", timeout=60)
    # Later runs replay the timeout, even with a signal sent since.
    await q.store.recover_worker(WORKER, "crashed")
    await q.signal(job, "approval", "late")
    ctx = await run_of(q, job)
    assert await ctx.wait_for_signal("approval", timeout=60, default="no answer") == "no answer"


async def test_a_timeout_of_zero_with_a_default_returns_it_without_leaving(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    ctx = await run_of(q, job)
    assert await ctx.wait_for_signal("approval", timeout=0, default=None) is None


async def test_cancelling_a_waiting_job_ends_it(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    await waits(await run_of(q, job), "approval")
    (cancelled,) = await q.cancel(job)
    assert cancelled.status == S.CANCELLED
    assert await q.signal_waits() == []


async def test_a_job_whose_ttl_passes_while_it_waits_fails_expired(
    q: wizd.Queue, clock: FakeClock
) -> None:
    job = await q.enqueue("agent", queue=Q, ttl=60)
    await waits(await run_of(q, job), "approval")
    clock.advance(61)
    assert await q.store.expire() == [job.id]
    expired = await q.get(job)
    assert expired.status == S.FAILED
    assert "expired" in (expired.error or "")


async def test_a_signal_to_a_final_or_unknown_job_is_refused(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    await q.cancel(job)
    with pytest.raises(IllegalTransition, match="cancelled"):
        await q.signal(job, "approval", True)
    with pytest.raises(JobNotFound):
        await q.signal(10_000, "approval", True)
    with pytest.raises(InvalidJob, match="signal"):
        await q.signal(job, "a#b")
    with pytest.raises(InvalidJob, match="JSON"):
        await q.signal(job, "approval", object())
    assert [e for e in await q.events(job) if e.kind == "signal"] == []


async def test_a_sleep_leaves_the_slot_and_returns_once_its_time_came(
    q: wizd.Queue, clock: FakeClock
) -> None:
    job = await q.enqueue("agent", queue=Q, attempts=1)
    ctx = await run_of(q, job)
    with pytest.raises(Sleeping) as caught:
        await ctx.sleep(3600)
    assert caught.value.seconds == pytest.approx(3600)
    await q.store.finish(
        [Finish(job.id, WORKER, ctx.job.attempt, "later", delay=caught.value.seconds)]
    )
    slept = await q.get(job)
    assert (slept.status, slept.attempt) == (S.DELAYED, 0)
    assert slept.run_at.timestamp() == pytest.approx(clock.now + 3600)
    clock.advance(3600)
    ctx = await run_of(q, job)  # the claim promotes it
    await ctx.sleep(3600)  # replayed: its time has come, it returns at once
    await ctx.sleep(0)  # a second sleep, already due
    steps = await q.steps(job)
    assert [(s.label, s.kind) for s in steps] == [("sleep#1", "sleep"), ("sleep#2", "sleep")]
    lines = [e.message for e in await q.events(job) if e.kind == "step"]
    assert lines[0] == f"sleep#1 until {slept.run_at.isoformat()}"


async def test_a_run_that_sleeps_where_its_history_waited_fails_non_deterministic(
    q: wizd.Queue,
) -> None:
    job = await q.enqueue("agent", queue=Q)
    await waits(await run_of(q, job), "sleep")
    await q.signal(job, "sleep", 1)
    ctx = await run_of(q, job)
    with pytest.raises(wizd.NonDeterministic, match="signal sleep#1"):
        await ctx.sleep(1)


async def test_a_child_waiting_for_a_signal_keeps_its_parent_waiting(q: wizd.Queue) -> None:
    parent = await q.enqueue("agent", queue=Q, start_waiting_children=True)
    child = await q.enqueue("agent", queue=Q, parent=parent.id)
    other = await q.enqueue("agent", queue=Q, parent=parent.id)
    await waits(await run_of(q, child), "approval")
    (ran,) = await q.store.claim(Q, WORKER, 1)
    assert ran.id == other.id
    await q.store.finish([Finish(other.id, WORKER, ran.attempt, "completed")])
    assert (await q.get(parent)).status == S.WAITING_CHILDREN  # one child still waits
    await q.signal(child, "approval", True)
    ctx = await run_of(q, child)
    assert await ctx.wait_for_signal("approval") is True
    await q.store.finish([Finish(child.id, WORKER, ctx.job.attempt, "completed")])
    assert (await q.get(parent)).status == S.PENDING


async def test_signals_not_taken_go_with_their_job(q: wizd.Queue) -> None:
    job = await q.enqueue("agent", queue=Q)
    await q.signal(job, "approval", "for the deleted job")
    await q.cancel(job)
    await q.delete(job)
    again = await q.enqueue("agent", queue=Q)  # SQLite may give it the same id
    await waits(await run_of(q, again), "approval")
