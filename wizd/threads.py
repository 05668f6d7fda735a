"""Synchronous processors, run in threads that are never abandoned.

A thread cannot be interrupted. So a synchronous run is stopped by asking it: its context's
`should_stop()` turns true (and `wait_for_stop()` returns) once its timeout passes, its job
is killed or cancelled, or the daemon shuts down; the processor should then return or
raise. Until its thread really returns, the run keeps its slot and its job: heartbeated,
never requeued, never claimed again, by this daemon or another. That is what keeps the
promise that a job never runs twice at once. A daemon shutting down waits for these
threads; systemd's TimeoutStopSec (SIGKILL) is the last resort, after which the next start
(or another daemon's reaper) recovers the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from wizd.context import JobContext
from wizd.errors import LeavesRun
from wizd.sync_context import SyncJobContext


@dataclass(slots=True)
class Returned:
    """How a processor's thread ended: with a value, or with the exception it raised."""

    value: Any = None
    error: BaseException | None = None  # an Exception, or SystemExit from sys.exit()


class ThreadPool:
    """Threads for one queue's synchronous runs: as many as it has slots (anyio's default
    limiter would cap every daemon at 40 threads, whatever its concurrency)."""

    def __init__(self, size: int) -> None:
        self.limiter = anyio.CapacityLimiter(size)

    async def call(
        self,
        fn: Callable[[SyncJobContext], Any],
        ctx: JobContext,
        *,
        returned: Callable[[Returned], None],
        asked_to_stop: Callable[[], None],
    ) -> Returned:
        """Run fn in a thread with a SyncJobContext around ctx (its store calls block on
        this loop) and wait until it returns, however long that takes; then write what
        its ctx.stream still holds.

        If the caller's scope is cancelled meanwhile (timeout, kill, shutdown), the run is
        asked to stop (`asked_to_stop()` is told) and still waited for; `returned` gets the
        thread's outcome as soon as it is back, then the cancellation goes on: raised here,
        or left to the caller's scope, which tells by `cancel_called`."""

        sync_ctx = SyncJobContext(ctx)

        def target() -> Returned:
            try:
                return Returned(fn(sync_ctx))
            # The job's failure (even sys.exit()), or its leaving (ctx.sleep, ctx.wait_for_signal):
            # settled by the worker.
            except (Exception, SystemExit, LeavesRun) as exc:
                return Returned(error=exc)

        done = False

        async def stop_on_cancel() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if not done:  # cancelled from outside while the thread runs
                    ctx.request_stop()
                    asked_to_stop()

        await anyio.lowlevel.checkpoint_if_cancelled()  # stopped before it started: not asked
        ctx.prepare_for_thread()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_cancel)
            # Not abandon_on_cancel: anyio shields this wait, so the run lasts as long as
            # its thread does.
            outcome = await anyio.to_thread.run_sync(target, limiter=self.limiter)
            done = True
            if ctx.streaming:  # shielded, and never raises
                with anyio.CancelScope(shield=True):
                    await ctx.end_stream()
            returned(outcome)
            tg.cancel_scope.cancel()
        return outcome
