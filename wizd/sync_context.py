"""SyncJobContext: what a synchronous processor is given.

A synchronous processor (`def research(ctx): ...`) runs in a thread (wizd.threads), where a
JobContext's `async def` methods would only hand back coroutines that nothing awaits. Its
context has the same methods with the same arguments, minus the await: each one runs its
JobContext twin on the daemon's event loop (anyio.from_thread.run) and blocks until it is
done, returning its value or raising its exception: ctx.sleep and ctx.wait_for_signal
raise wizd.errors.LeavesRun out of the thread as out of a coroutine. ctx.step's body is run
as in an async processor: an async body on the loop, a sync one in a thread of its own.

The calls run inside the thread's own shielded scope: a timeout, a kill or a shutdown does
not interrupt them (a thread is asked to stop, never interrupted: wizd.threads), and the
loop keeps serving them until the thread returns, since the daemon waits for it. Called on
the loop's own thread (a sync wrapper returned a coroutine that the daemon awaits, or an
async step body), a method returns its JobContext twin's coroutine, to be awaited.

Not a JobContext subclass: code written for one awaits its methods, which this one's do not
return. `isinstance(ctx, wizd.SyncJobContext)` tells a synchronous run.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio import RunFinishedError

from wizd.context import JobContext, WaitForChildren
from wizd.errors import LostJob
from wizd.model import Job
from wizd.queue import Queue

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[JobContext, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncJobContext, P], T]:
    """JobContext's async `method` as a blocking one of SyncJobContext."""

    @functools.wraps(method)
    def call(self: SyncJobContext, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if threading.get_ident() == self._loop_thread:
            # On the loop: the coroutine, for the caller to await.
            return cast(T, method(self._context, *args, **kwargs))

        async def shielded() -> T:
            # anyio runs the call in the scope around the thread, which a stop cancels: a
            # thread is asked to stop, never interrupted, and neither are its calls.
            with anyio.CancelScope(shield=True):
                value = await method(self._context, *args, **kwargs)
            return value

        try:
            return anyio.from_thread.run(shielded, token=self._token)
        except RunFinishedError:
            job = self._context.job
            raise LostJob(
                f"job {job.id} attempt {job.attempt}: ctx.{method.__name__} was called after "
                "the daemon's event loop ended; the job is no longer ours"
            ) from None

    call.__doc__ = f"{method.__doc__}\n\nBlocking: JobContext.{method.__name__} without await."
    return call


class SyncJobContext:
    """Given to a synchronous processor: a JobContext whose store calls block."""

    def __init__(self, context: JobContext) -> None:
        """Made on the daemon's event loop, for one run (wizd.threads)."""
        self._context = context
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()

    # -- the store calls, blocking (their docs are JobContext's) ------------------------------
    progress = _blocking(JobContext.progress)
    log = _blocking(JobContext.log)
    stream = _blocking(JobContext.stream)
    spawn = _blocking(JobContext.spawn)
    children = _blocking(JobContext.children)
    step = _blocking(JobContext.step)
    sleep = _blocking(JobContext.sleep)
    wait_for_signal = _blocking(JobContext.wait_for_signal)

    # -- the rest, as JobContext has it -------------------------------------------------------
    @property
    def job(self) -> Job:
        return self._context.job

    @property
    def queue(self) -> Queue:
        """The async Queue (its methods must be awaited: not from this thread)."""
        return self._context.queue

    @property
    def worker_id(self) -> str:
        return self._context.worker_id

    @property
    def payload(self) -> dict[str, Any]:
        return self._context.payload

    @property
    def attempt(self) -> int:
        return self._context.attempt

    @property
    def id(self) -> int:
        return self._context.id

    @property
    def force_kill(self) -> bool:
        return self._context.force_kill

    @property
    def streaming(self) -> bool:
        return self._context.streaming

    def should_stop(self) -> bool:
        """See JobContext.should_stop: check it, and return or raise once true."""
        return self._context.should_stop()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """See JobContext.wait_for_stop: sleep, waking early when the run should stop."""
        return self._context.wait_for_stop(timeout)

    def step_key(self, name: str, occurrence: int | None = None) -> str:
        """See JobContext.step_key: the idempotency key of step `name`."""
        return self._context.step_key(name, occurrence)

    def wait_for_children(self, note: Any = None) -> WaitForChildren:
        """`return ctx.wait_for_children()`: run again when all children are final."""
        return self._context.wait_for_children(note)

    def __repr__(self) -> str:
        return f"SyncJobContext(job={self.job.id}, attempt={self.attempt})"
