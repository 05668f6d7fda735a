"""The processor zoo: one processor per way a user may write one, for tests/acceptance/test_zoo.py.

Each processor's *first* await is the construct it is named for (cancel scopes of its own,
asyncio's timeouts, threads, the context's own calls), or it never awaits, or it is not a
coroutine function at all. The daemon loads them with `--app zoo_agents:zoo`.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from wizd.agent import Agent, JobContext, SyncJobContext

zoo = Agent("zoo")


@zoo.processor("fail_after")
async def fail_after(ctx: JobContext) -> str:
    with anyio.fail_after(5):
        await anyio.sleep(0.01)
    return "fail_after"


@zoo.processor("move_on_after")
async def move_on_after(ctx: JobContext) -> str:
    with anyio.move_on_after(0.01) as scope:
        await anyio.sleep(30)
    return f"moved on: {scope.cancelled_caught}"


@zoo.processor("task_group")
async def task_group(ctx: JobContext) -> list[int]:
    done: list[int] = []

    async def child(n: int) -> None:
        await anyio.sleep(0.01)
        done.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(child, n)
    return sorted(done)


@zoo.processor("asyncio_timeout")
async def asyncio_timeout(ctx: JobContext) -> str:
    async with asyncio.timeout(5):
        await asyncio.sleep(0.01)
    return "asyncio_timeout"


@zoo.processor("asyncio_wait_for")
async def asyncio_wait_for(ctx: JobContext) -> str:
    return await asyncio.wait_for(asyncio.sleep(0.01, "asyncio_wait_for"), 5)


@zoo.processor("asyncio_gather")
async def asyncio_gather(ctx: JobContext) -> list[int]:
    return list(await asyncio.gather(asyncio.sleep(0.01, 1), asyncio.sleep(0.02, 2)))


@zoo.processor("asyncio_task_group")
async def asyncio_task_group(ctx: JobContext) -> int:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(asyncio.sleep(0.01, 7))
    return task.result()


@zoo.processor("to_thread")
async def to_thread(ctx: JobContext) -> str:
    await anyio.to_thread.run_sync(time.sleep, 0.01)
    return "to_thread"


@zoo.processor("shielded")
async def shielded(ctx: JobContext) -> str:
    with anyio.CancelScope(shield=True):
        await anyio.sleep(0.01)
    return "shielded"


@zoo.processor("ctx_log")
async def ctx_log(ctx: JobContext) -> str:
    await ctx.log(f"hello from {ctx.id}")
    return "ctx_log"


@zoo.processor("ctx_progress")
async def ctx_progress(ctx: JobContext) -> str:
    await ctx.progress(0.5, "half way")
    return "ctx_progress"


@zoo.processor("ctx_spawn")
async def ctx_spawn(ctx: JobContext) -> int:
    child = await ctx.spawn("never_awaits", {})
    return child.id


@zoo.processor("ctx_children")
async def ctx_children(ctx: JobContext) -> int:
    return len(await ctx.children())


@zoo.processor("sync")
def sync(ctx: JobContext) -> str:
    time.sleep(0.01)
    return f"sync {ctx.id}"


class Callable:
    """An object whose __call__ is a coroutine function."""

    def __init__(self, word: str) -> None:
        self.word = word

    async def __call__(self, ctx: JobContext) -> str:
        await anyio.sleep(0.01)
        return self.word


zoo.add("async_callable", Callable("async_callable"))


class Service:
    async def handle(self, ctx: JobContext) -> str:
        await anyio.sleep(0.01)
        return "bound_method"


zoo.add("bound_method", Service().handle)


async def _partial_target(word: str, ctx: JobContext) -> str:
    await anyio.sleep(0.01)
    return word


zoo.add("partial", functools.partial(_partial_target, "partial"))


def _logged(fn: Any) -> Any:
    """A plain (not async) decorator around a coroutine function: calling the wrapper
    returns the coroutine, which the daemon must await."""

    @functools.wraps(fn)
    def wrapper(ctx: JobContext) -> Any:
        return fn(ctx)

    wrapper.__wrapped__ = None  # type: ignore[attr-defined]  # hide the coroutine function
    return wrapper


@zoo.processor("sync_wrapper")
@_logged
async def sync_wrapper(ctx: JobContext) -> str:
    await anyio.sleep(0.01)
    return "sync_wrapper"


@zoo.processor("never_awaits")
async def never_awaits(ctx: JobContext) -> str:
    return "never_awaits"


@zoo.processor("raises")
async def raises(ctx: JobContext) -> None:
    raise ValueError(f"boom {ctx.id}")


@zoo.processor("sync_raises")
def sync_raises(ctx: JobContext) -> None:
    raise KeyError("sync boom")


@zoo.processor("unserializable")
async def unserializable(ctx: JobContext) -> Any:
    return {"at": object()}


@zoo.processor("exits")
async def exits(ctx: JobContext) -> None:
    sys.exit(3)


@zoo.processor("raises_cancelled")
async def raises_cancelled(ctx: JobContext) -> None:
    """A library's own cancellation escaping: not the daemon's, so it is the job's failure."""
    await anyio.lowlevel.checkpoint()
    raise asyncio.CancelledError("a library gave up")


@zoo.processor("times_out")
async def times_out(ctx: JobContext) -> None:
    await anyio.sleep(60)


@zoo.processor("cancelled_inside")
async def cancelled_inside(ctx: JobContext) -> None:
    """Waits inside a scope of its own until the test cancels the job."""
    with anyio.fail_after(120):
        Path(ctx.payload["dir"], f"{ctx.id}.in").touch()  # noqa: ASYNC240 - before any await
        await anyio.sleep(120)


@zoo.processor("sync_exits")
def sync_exits(ctx: JobContext) -> None:
    sys.exit("bye")


@zoo.processor("sync_times_out")
def sync_times_out(ctx: JobContext) -> str:
    """Honours its timeout by waiting for the daemon's stop request, not with time.sleep."""
    ctx.wait_for_stop(60)
    return "stopped"


@zoo.processor("sync_cancelled")
def sync_cancelled(ctx: JobContext) -> str:
    Path(ctx.payload["dir"], f"{ctx.id}.in").touch()
    ctx.wait_for_stop(120)
    return "stopped"


@zoo.processor("sleeps_inside_try")
async def sleeps_inside_try(ctx: JobContext) -> str:
    """A durable sleep inside `except Exception`: the run must still leave and come back."""
    try:
        await ctx.sleep(0.05)
    except Exception as exc:
        return f"swallowed {type(exc).__name__}"
    return "slept"


def _runs(ctx: SyncJobContext) -> None:
    """Count this run in the file `{id}.runs` (the test checks a job left and came back)."""
    with Path(ctx.payload["dir"], f"{ctx.id}.runs").open("a") as f:
        f.write(f"{ctx.attempt}\n")


async def _shout(word: str) -> str:
    await anyio.sleep(0.01)
    return word.upper()


@zoo.processor("sync_ctx")
def sync_ctx(ctx: SyncJobContext) -> list[str]:
    """The context's calls without await: each blocks on the daemon's loop."""
    ctx.log(f"hello from {ctx.id}")
    ctx.progress(0.5, "half way")
    ctx.stream("to")
    ctx.stream("kens")
    found = ctx.step("search", lambda topic: f"found {topic}", "owls")  # a sync body
    shouted = ctx.step("shout", _shout, "hoot")  # an async body
    return [found, shouted]


@zoo.processor("sync_sleeps")
def sync_sleeps(ctx: SyncJobContext) -> str:
    """A durable sleep in a thread: the run leaves its slot and comes back 0.2 s later."""
    _runs(ctx)
    try:
        ctx.sleep(0.2)
    except Exception as exc:  # LeavesRun is a BaseException: it goes through
        return f"swallowed {type(exc).__name__}"
    return "slept"


@zoo.processor("sync_waits_signal")
def sync_waits_signal(ctx: SyncJobContext) -> str:
    """Waits for signal `go`, which the test sends once the job is `waiting_signal`."""
    _runs(ctx)
    Path(ctx.payload["dir"], f"{ctx.id}.waits").touch()
    return f"signal {ctx.wait_for_signal('go')}"


@zoo.processor("sync_wrapper_ctx")
@_logged
async def sync_wrapper_ctx(ctx: Any) -> str:
    """A sync wrapper's coroutine, awaited on the loop with the SyncJobContext its wrapper
    got: the context's calls return coroutines there."""
    await ctx.log(f"hello from {ctx.id}")
    return "sync_wrapper_ctx"
