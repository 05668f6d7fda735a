"""wizd.threads: a synchronous processor's thread is waited for, never abandoned; a cancel
asks it to stop (ctx.should_stop / wait_for_stop) and the outcome is kept."""

from __future__ import annotations

import threading
from typing import Any, cast

import anyio
import pytest

from wizd.agent import JobContext
from wizd.threads import Returned, ThreadPool


def context() -> JobContext:
    return JobContext(cast(Any, None), cast(Any, None), "w")


async def test_a_cancelled_call_waits_for_its_thread_and_keeps_what_it_returned() -> None:
    ctx = context()
    started, asked, kept = threading.Event(), [], []

    def stubborn(c: JobContext) -> str:
        started.set()
        c.wait_for_stop()  # returns only once asked
        return "done anyway"

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_started() -> None:
                await anyio.to_thread.run_sync(started.wait)
                scope.cancel()

            tg.start_soon(cancel_once_started)
            await ThreadPool(1).call(
                stubborn, ctx, returned=kept.append, asked_to_stop=lambda: asked.append(1)
            )
    # The caller's scope tells the stop by cancel_called: whether the cancellation is raised
    # after the thread returned is anyio's to decide (the worker handles both).
    assert scope.cancel_called
    assert asked == [1]
    assert ctx.should_stop()
    assert kept == [Returned("done anyway")]


async def test_a_call_returns_the_value_or_the_exception_of_its_thread() -> None:
    pool = ThreadPool(2)

    def fails(c: JobContext) -> None:
        raise ValueError("bad")

    ok = await pool.call(lambda c: 42, context(), returned=lambda r: None, asked_to_stop=list)
    failed = await pool.call(fails, context(), returned=lambda r: None, asked_to_stop=list)
    assert ok == Returned(42)
    assert isinstance(failed.error, ValueError)


async def test_a_call_cancelled_before_it_starts_runs_nothing() -> None:
    ran = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await ThreadPool(1).call(
            ran.append, context(), returned=ran.append, asked_to_stop=lambda: ran.append("asked")
        )
    assert ran == []


async def test_the_pool_runs_as_many_threads_as_its_size() -> None:
    n = 45  # anyio's default limiter: 40
    barrier = threading.Barrier(n, timeout=10)
    pool = ThreadPool(n)
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(
                lambda: pool.call(
                    lambda c: barrier.wait(), context(), returned=lambda r: None, asked_to_stop=list
                )
            )
    assert not barrier.broken


def test_wait_for_stop_is_for_threads_only() -> None:
    with pytest.raises(RuntimeError, match="synchronous processors"):
        context().wait_for_stop(0)
