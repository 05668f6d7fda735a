"""The worker's run scope: `await _Scoped(coro, scope)` behaves as `with scope: await coro`
(the daemon's tests cover stops, deadlines and shutdowns of real runs end to end)."""

from __future__ import annotations

import anyio
import pytest

from wizd.worker import _Scoped


async def returns_at_once() -> str:
    return "done"


async def sleeps(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slept"


async def fails_after_awaiting() -> str:
    await anyio.lowlevel.checkpoint()
    raise ValueError("boom")


async def test_a_coroutine_that_never_awaits_returns_its_value_even_when_cancelled() -> None:
    scope = anyio.CancelScope()
    scope.cancel()  # as `with scope:` around code without an await: nothing to cancel at
    assert await _Scoped(returns_at_once(), scope) == "done"
    assert not scope.cancelled_caught


async def test_an_awaiting_coroutine_returns_its_value_under_the_scope() -> None:
    scope = anyio.CancelScope()
    assert await _Scoped(sleeps(0), scope) == "slept"
    assert not scope.cancelled_caught


async def test_a_cancel_requested_before_the_first_await_is_delivered_there() -> None:
    scope = anyio.CancelScope()
    scope.cancel()
    with anyio.fail_after(5):
        assert await _Scoped(sleeps(60), scope) is None
    assert scope.cancelled_caught


async def test_a_cancel_while_suspended_stops_the_coroutine() -> None:
    scope = anyio.CancelScope()
    result: list[str | None] = []

    async def run() -> None:
        result.append(await _Scoped(sleeps(60), scope))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert result == [None]
    assert scope.cancelled_caught


async def test_a_deadline_expires_at_an_await() -> None:
    scope = anyio.CancelScope(deadline=anyio.current_time() + 0.05)
    with anyio.fail_after(5):
        assert await _Scoped(sleeps(60), scope) is None
    assert scope.cancelled_caught


async def test_the_coroutines_own_error_propagates() -> None:
    scope = anyio.CancelScope()
    with pytest.raises(ValueError, match="boom"):
        await _Scoped(fails_after_awaiting(), scope)
    assert not scope.cancelled_caught


async def test_an_outer_cancellation_is_not_swallowed() -> None:
    inner = anyio.CancelScope()
    reached_end = False
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal reached_end
                await _Scoped(sleeps(60), inner)
                reached_end = True

            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert not reached_end
    assert not inner.cancelled_caught
