"""JobContext: what an async processor is given (a synchronous one gets a
wizd.sync_context.SyncJobContext around it)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wizd import arguments, signals
from wizd.arguments import UNSET
from wizd.errors import InvalidJob, LostJob
from wizd.model import Backoff, Job
from wizd.queue import Queue
from wizd.steps import History
from wizd.streaming import Stream


@dataclass(frozen=True, slots=True)
class WaitForChildren:
    """Returned by a processor: free my slot; run me again once every child is final."""

    note: Any = None


class JobContext:
    """Given to a processor: the job, and ways to report on it while it runs."""

    def __init__(self, job: Job, queue: Queue, worker_id: str) -> None:
        self.job = job
        self.queue = queue
        self.worker_id = worker_id
        # Set by the daemon before it cancels a run that an operator force-killed:
        # processors holding external resources (subprocesses) should not wait politely.
        self.force_kill = False
        self._stop_requested = False
        self._stream: Stream | None = None
        self._stop_event: threading.Event | None = None  # a synchronous run's, see below
        self._steps: History | None = None  # made by the first step call

    def should_stop(self) -> bool:
        """True once the run should end: its timeout passed, its job was killed or
        cancelled, or the daemon is shutting down. An async processor is cancelled then and
        need not ask; a synchronous one cannot be interrupted, so it should check this (or
        wait with wait_for_stop) and return or raise. Its slot and its job stay held, and
        the daemon does not exit, until its thread returns."""
        return self._stop_requested

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """In a synchronous processor: sleep up to `timeout` seconds (None: for ever), waking
        early when the run should stop; returns should_stop(). Use it instead of time.sleep."""
        if self._stop_event is None:
            raise RuntimeError("wait_for_stop() is for synchronous processors (in a thread)")
        self._stop_event.wait(timeout)
        return self._stop_requested

    def prepare_for_thread(self) -> None:
        """Called by the daemon before it runs a synchronous processor with this context."""
        self._stop_event = threading.Event()
        if self._stop_requested:
            self._stop_event.set()

    def request_stop(self) -> None:
        """Called by the daemon (in the event loop's thread) when the run should end."""
        self._stop_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def id(self) -> int:
        return self.job.id

    async def progress(self, value: float | None, message: str | None = None) -> None:
        """Record progress (0.0-1.0) and an optional message. Raises LostJob if the run was
        reaped or cancelled meanwhile."""
        value = arguments.progress(value)
        limit = self.queue.limits.log
        message = None if message is None else arguments.log_line(message, limit)
        owned = await self.queue.store.progress(
            self.job.id, self.worker_id, self.job.attempt, value, message
        )
        if not owned:
            raise LostJob(f"job {self.job.id} attempt {self.job.attempt} is no longer ours")

    async def log(self, message: str) -> None:
        """Append a line to the job's log (wizd logs ID)."""
        line = arguments.log_line(message, self.queue.limits.log)
        await self.queue.store.log(
            self.job.id, line, worker_id=self.worker_id, attempt=self.job.attempt
        )

    async def stream(self, text: str) -> None:
        """Output that arrives in pieces (LLM tokens): watchers see it within ~50 ms as
        events of kind 'stream'; pieces are coalesced on write (wizd.streaming)."""
        if self._stream is None:
            self._stream = Stream(
                self.queue.store,
                self.job.id,
                self.queue.limits.stream,
                self.worker_id,
                self.job.attempt,
            )
        await self._stream.write(text)

    @property
    def streaming(self) -> bool:
        """The run has called ctx.stream (so end_stream has something to do)."""
        return self._stream is not None

    async def end_stream(self) -> None:
        """The run ends, however it ends: write what ctx.stream still holds (the worker
        calls this; shielded, and never raises)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    async def spawn(
        self, /, name: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> Job:
        """Enqueue a child job (in this job's queue unless `queue=` says otherwise)."""
        if "parent" in options:
            raise InvalidJob("parent", "spawn makes a child of this job: leave parent out")
        options.setdefault("queue", self.job.queue)
        return await self.queue.enqueue(name, payload, parent=self.job.id, **options)

    async def children(self) -> list[Job]:
        """This job's children with their status, result and error."""
        return await self.queue.list(parent=self.job.id, sort="id", order="asc", limit=10_000)

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        attempts: int = 1,
        backoff: Backoff | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """A durable step: the first run calls fn(*args, **kwargs) (sync in a thread, or
        async) and stores its JSON result; every later run of this job returns the stored
        result without calling fn. fn's keyword arguments go in `kwargs=`; `attempts=`
        runs a raising fn again in place, after `backoff`. See wizd.steps."""
        history = self._history()
        return await history.step(name, fn, args, kwargs, attempts, backoff)

    async def sleep(self, when: float | timedelta | datetime) -> None:
        """A durable sleep: the job leaves its slot and runs again at `when` (seconds, or an
        aware datetime), replaying its finished steps; the sleep then returns. See
        wizd.signals."""
        await signals.sleep(self._history(), when)

    async def wait_for_signal(
        self, name: str, timeout: float | timedelta | None = None, default: Any = UNSET
    ) -> Any:
        """The data of signal `name` (q.signal, `wizd signal`): the job leaves its slot,
        `waiting_signal`, until it comes; a signal sent earlier is taken at once. Past
        `timeout` seconds: SignalTimeout, or `default` if given. See wizd.signals."""
        return await signals.wait_for_signal(self._history(), name, timeout, default)

    def step_key(self, name: str, occurrence: int | None = None) -> str:
        """`"{job id}:{name}#{occurrence}"`, the same in every run of this job: an
        idempotency key for what step `name` does (by default its next call)."""
        return self._history().key(name, occurrence)

    def _history(self) -> History:
        if self._steps is None:
            self._steps = History(self.job, self.queue.store, self.worker_id, self.queue.limits)
        return self._steps

    def wait_for_children(self, note: Any = None) -> WaitForChildren:
        """`return ctx.wait_for_children()`: run again when all children are final."""
        return WaitForChildren(note)
