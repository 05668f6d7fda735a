"""A run's streamed output (ctx.stream): text that arrives in pieces, such as LLM tokens.

Pieces are coalesced on write: the first piece after a quiet spell is written at once;
pieces that follow within FLUSH_EVERY seconds wait in memory and go together in one write
once that time is up (a timer flushes them if the processor streams nothing more), and
whatever is left is written when the run ends. So a job streaming 1,000 pieces a second
costs at most 1 / FLUSH_EVERY writes a second, and a watcher (Queue.watch, events of kind
'stream') sees each piece within FLUSH_EVERY plus a commit. The store keeps the job's last
`SizeLimits.stream` characters (Queue.stream_text), older text dropped with a marker.
Writes are fenced on the run, as progress is: once the run no longer owns its job (reaped,
cancelled, claimed again), nothing more is written and ctx.stream raises LostJob.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio

from wizd.errors import InvalidJob, LostJob
from wizd.store import Store

FLUSH_EVERY = 0.025  # seconds: at most one write per this long per run

log = logging.getLogger(__name__)


class Stream:
    """One run's streamed text on its way to the store."""

    def __init__(self, store: Store, job_id: int, cap: int, worker_id: str, attempt: int) -> None:
        self.store = store
        self.job_id = job_id
        self.cap = cap
        self.worker_id = worker_id
        self.attempt = attempt
        self.lost = False  # a write found the run no longer owns its job
        self.writes = 0  # how many writes the pieces cost (for tests and benchmarks)
        self._pieces: list[str] = []
        self._last = float("-inf")  # monotonic time of the last write
        self._timer: asyncio.Task[None] | None = None  # sleeping till pieces are due
        self._lock = asyncio.Lock()  # held while pieces are written

    async def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidJob("text", f"ctx.stream takes a str, got {type(text).__name__}")
        if self.lost:
            raise self._lost()
        if not text:
            return
        self._pieces.append(text)
        if self._timer is not None:
            return  # the timer takes this piece too
        due = self._last + FLUSH_EVERY - time.monotonic()
        if due <= 0 and not self._lock.locked():
            await self.flush()
        else:  # due later, or a write is under way: the timer takes it then
            self._timer = asyncio.get_running_loop().create_task(self._later(max(due, 0.0)))

    async def _later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._timer = None  # from here on it is not cancelled: close awaits the lock
            await self.flush()
        except LostJob:  # the next ctx.stream says so to the processor
            pass
        except Exception:  # the run's end flushes again; a store failure is its to see
            log.exception("stream_flush_failed job_id=%s", self.job_id)

    async def flush(self) -> None:
        """Write every piece waiting, in one write (pieces that come meanwhile wait for
        the timer that write() starts)."""
        async with self._lock:
            if self._pieces:
                text = "".join(self._pieces)
                self._pieces.clear()
                self._last = time.monotonic()
                self.writes += 1
                if not await self.store.append_stream(
                    self.job_id, text, self.cap, worker_id=self.worker_id, attempt=self.attempt
                ):
                    self.lost = True
            if self.lost:
                self._pieces.clear()
                raise self._lost()

    def _lost(self) -> LostJob:
        return LostJob(f"job {self.job_id} attempt {self.attempt} is no longer ours")

    async def close(self) -> None:
        """The run ends, however it ends: stop the sleeping timer and write what is left
        (after a write under way, which the lock lets finish). Shielded, so that a stopped
        run's pieces are written and its timer never outlives it; a store failure is
        logged, not raised (the run's outcome is what matters now)."""
        with anyio.CancelScope(shield=True):
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
                await asyncio.wait([timer])  # waits; raises neither its error nor ours
            try:
                # A timer past its sleep is no longer self._timer and may be writing now:
                # one flush waits for it (the lock) before the run is said to be over.
                await self.flush()
                while self._pieces and not self.lost:
                    await self.flush()
            except LostJob:
                pass
            except Exception:
                log.exception("stream_flush_failed job_id=%s", self.job_id)
