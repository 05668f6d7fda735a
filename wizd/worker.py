"""The claim loop and bounded pool of one queue.

A claimer fills free slots only (one claim call for all of them) and hands the claimed runs
to a fixed pool of `concurrency` runner tasks; every job runs in its own cancel scope with
its timeout; the status write that ends a run is shielded from cancellation, fenced by the
store, and batched with the other runs of this queue that end meanwhile (one store call
for the whole batch).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from wizd.agent import Agent, JobContext, WaitForChildren
from wizd.errors import LostJob, RetryLater, StoreError
from wizd.model import Job
from wizd.queue import Queue
from wizd.store import Claimed, Finish

RETRY_FIRST, RETRY_MOST = 0.5, 30.0  # backoff after store failures: first and longest wait
FINISH_RETRY_FOR = 120.0  # a run's outcome is written again for this long before giving up


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 0.5, 1, 2, … up to 30."""
    return float(min(RETRY_FIRST * 2.0 ** (failures - 1), RETRY_MOST))


class Hooks(Protocol):
    """What the worker reports as it goes (metrics implement this)."""

    def job_started(self, job: Job, wait_seconds: float) -> None: ...
    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None: ...
    def slots(self, queue: str, busy: int, total: int) -> None: ...
    def recovered(self, queue: str, reason: str, n: int) -> None: ...
    def throttled(self, queue: str, limit: str, seconds: float) -> None: ...


class NoHooks:
    def job_started(self, job: Job, wait_seconds: float) -> None:
        pass

    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None:
        pass

    def slots(self, queue: str, busy: int, total: int) -> None:
        pass

    def recovered(self, queue: str, reason: str, n: int) -> None:
        pass

    def throttled(self, queue: str, limit: str, seconds: float) -> None:
        pass


@dataclass(slots=True)
class Run:
    job: Job
    scope: anyio.CancelScope
    started: float
    stop_reason: str | None = None
    ctx: JobContext | None = None


class _Batch:
    """Finish writes of runs that ended while the previous batch was being written."""

    __slots__ = ("done", "error", "event", "items", "results")

    def __init__(self) -> None:
        self.items: list[Finish] = []
        self.event = anyio.Event()  # set when done, or when its first waiter is to write it
        self.done = False
        self.results: list[bool] = []
        self.error: BaseException | None = None


class QueueWorker:
    """Serves one queue with at most `concurrency` jobs at once."""

    def __init__(
        self,
        *,
        queue: Queue,
        agent: Agent,
        worker_id: str,
        concurrency: int,
        poll_interval: float,
        log: Any,
        hooks: Hooks | None = None,
    ) -> None:
        self.queue = queue
        self.agent = agent
        self.name = agent.name
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.log = log.bind(queue=self.name, worker_id=worker_id)
        is_enabled = getattr(self.log, "is_enabled_for", None)
        self._log_info = bool(is_enabled(logging.INFO)) if is_enabled is not None else True
        self.hooks: Hooks = hooks or NoHooks()
        self.runs: dict[int, Run] = {}
        self._wake = anyio.Event()
        self._ended: anyio.Event | None = None  # created by drained() when it waits
        self._claiming = True
        self._failures = 0
        self._outbox = _Batch()
        self._writing = False  # a runner is writing a batch of finishes right now
        self._written: anyio.Event | None = None  # created by the claimer when it waits
        self._backlog: deque[Run] = deque()  # claimed, waiting for a runner
        self._ready: anyio.Event | None = None  # set when runs join the backlog
        self._no_more_runs = False
        self._stop = anyio.Event()
        # The limit that held back the last claim, and since when (monotonic).
        self._throttle: tuple[str, float] | None = None
        self._rate_wait: float | None = None  # the rate limit frees the next job then

    @property
    def busy(self) -> int:
        return len(self.runs)

    def wake(self) -> None:
        """Something may have changed: look for work now instead of at the next poll."""
        self._wake.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._wake.set()
        self._stop.set()

    def stop_runs(self, reason: str, job_ids: set[int] | None = None, force: bool = False) -> int:
        """Cancel running jobs (all, or those given); `reason` decides how each run ends."""
        stopped = 0
        for job_id, run in list(self.runs.items()):
            if job_ids is None or job_id in job_ids:
                run.stop_reason = run.stop_reason or reason
                if force and run.ctx is not None:
                    run.ctx.force_kill = True
                run.scope.cancel()
                stopped += 1
        return stopped

    def owned_runs(self, claimed_before: float) -> Iterator[Run]:
        return (r for r in self.runs.values() if r.started < claimed_before)

    async def drained(self) -> None:
        """Return once no job of this queue is running."""
        while self.runs:
            if self._ended is None:
                self._ended = anyio.Event()
            await self._ended.wait()

    async def serve(self) -> None:
        """Claim and run jobs until stop_claiming(); then wait for the running ones to end."""
        self.hooks.slots(self.name, 0, self.concurrency)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.concurrency):
                    tg.start_soon(self._runner)
                try:
                    while self._claiming:
                        self._wake = anyio.Event()
                        if self._writing:
                            # Runs are ending: claim for their slots too, in the same call.
                            self._written = anyio.Event()
                            await self._written.wait()
                        free = self.concurrency - len(self.runs)
                        self._rate_wait = None
                        if free > 0:
                            runs = await self._claim(free)
                            for run in runs:
                                if not self._claiming:  # stop arrived during the claim
                                    run.stop_reason = "shutdown"
                                    run.scope.cancel()
                            self._dispatch(runs)
                        if not self._claiming:
                            break
                        if self._rate_wait is not None:
                            # Only time frees the next job: commits elsewhere cannot.
                            with anyio.move_on_after(min(self.poll_interval, self._rate_wait)):
                                await self._stop.wait()
                            continue
                        # After a store failure, wait out the backoff (a wake from a run
                        # ending must not turn it into a tight retry loop).
                        wait = backoff(self._failures) if self._failures else self.poll_interval
                        with anyio.move_on_after(wait):
                            await self._wake.wait()
                            while self._failures and self._claiming:
                                self._wake = anyio.Event()
                                await self._wake.wait()
                finally:
                    self._no_more_runs = True
                    self._dispatch([])
        finally:
            # Runs claimed but never picked up by a runner (the pool was cancelled): give
            # them back without running them.
            with anyio.CancelScope(shield=True):
                while self._backlog:
                    run = self._backlog.popleft()
                    run.stop_reason = run.stop_reason or "shutdown"
                    await self._end(run, self._stopped(run))

    def _dispatch(self, runs: list[Run]) -> None:
        self._backlog.extend(runs)
        if self._ready is not None and (runs or self._no_more_runs):
            self._ready.set()
            self._ready = None

    async def _runner(self) -> None:
        """One of the pool's `concurrency` tasks: runs claimed jobs one after another."""
        backlog = self._backlog
        while True:
            while backlog:
                await self._run(backlog.popleft())
            if self._no_more_runs:
                return
            if self._ready is None:
                self._ready = anyio.Event()
            await self._ready.wait()

    async def _claim(self, n: int) -> list[Run]:
        try:
            jobs = await self.queue.store.claim(self.name, self.worker_id, n)
        except StoreError as exc:
            # The daemon keeps its running jobs and tries again after a backoff, for as long
            # as the store is away; each attempt is logged.
            self._failures += 1
            self.log.error(
                "claim_failed",
                error=str(exc),
                consecutive=self._failures,
                retry_in=backoff(self._failures),
            )
            return []
        if self._failures:
            self.log.info("claim_recovered", after_failures=self._failures)
        self._failures = 0
        self._throttled(jobs)
        now = time.time()
        runs = []
        for job in jobs:
            run = Run(job, anyio.CancelScope(), time.monotonic())
            # A job re-claimed while its lost run is still ending replaces it here; the old
            # run's own bookkeeping below leaves the new one alone.
            self.runs[job.id] = run
            runs.append(run)
            self.hooks.job_started(job, max(now - job.run_at.timestamp(), 0.0))
            self.log.debug("job_claimed", **_job_fields(job))
        if jobs:
            self.hooks.slots(self.name, len(self.runs), self.concurrency)
        return runs

    def _throttled(self, claimed: Claimed) -> None:
        """Account the time since the last claim to the limit that held that claim back
        (free slots and due jobs, none claimed for them), and note this claim's."""
        now = time.monotonic()
        if self._throttle is not None:
            held_by, since = self._throttle
            self.hooks.throttled(self.name, held_by, now - since)
        limit = claimed.throttled
        if limit is not None and self._throttle is None:
            self.log.debug("queue_throttled", limit=limit)
        self._throttle = None if limit is None else (limit, now)
        self._rate_wait = claimed.retry_in if limit == "rate" else None

    async def _run(self, run: Run) -> None:
        finish: Finish | None = None
        try:
            with run.scope:
                finish = await self._execute(run.job, run)
        finally:
            if finish is None:  # stopped by us, by the daemon's whole scope, or lost
                finish = self._stopped(run)
            # Shielded: a shutdown must never leave a finished job looking `running`.
            with anyio.CancelScope(shield=True):
                await self._end(run, finish)

    async def _end(self, run: Run, finish: Finish | None) -> None:
        job = run.job
        await self._record(run, finish)
        if self.runs.get(job.id) is run:
            del self.runs[job.id]
        self.hooks.slots(self.name, len(self.runs), self.concurrency)
        self._wake.set()
        if self._ended is not None:
            self._ended.set()
            self._ended = None

    async def _execute(self, job: Job, run: Run) -> Finish | None:
        processor = self.agent.processors.get(job.name)
        if processor is None:
            known = ", ".join(sorted(self.agent.processors)) or "none"
            return self._finish(
                job,
                "failed",
                error=f"agent {self.name!r} has no processor {job.name!r}; known: {known}",
                retry=False,
            )
        ctx = JobContext(job, self.queue, self.worker_id)
        run.ctx = ctx
        try:
            with _deadline(job.timeout):
                if self.agent.is_async(job.name):
                    result = await processor(ctx)
                else:
                    result = await anyio.to_thread.run_sync(processor, ctx, abandon_on_cancel=True)
        except TimeoutError:
            return self._finish(job, "failed", error=f"timed out after {job.timeout:g}s")
        except RetryLater as later:
            return self._finish(job, "later", delay=later.seconds, error=later.reason or None)
        except LostJob:
            run.stop_reason = "lost"
            return None
        except Exception as exc:  # a processor's failure is the job's, not the daemon's
            return self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
        if isinstance(result, WaitForChildren):
            return self._finish(job, "wait_children", result=result.note)
        return self._finish(job, "completed", result=result)

    def _finish(self, job: Job, outcome: Any, **kw: Any) -> Finish:
        return Finish(job.id, self.worker_id, job.attempt, outcome, **kw)

    def _stopped(self, run: Run) -> Finish | None:
        """How a run we cancelled ends: requeued (shutdown) or already decided elsewhere."""
        if run.stop_reason == "lost":
            return None  # cancelled or reaped: the store already holds its outcome
        return self._finish(run.job, "requeue", error="daemon shut down; not charged")

    async def _record(self, run: Run, finish: Finish | None) -> None:
        job = run.job
        elapsed = time.monotonic() - run.started
        if finish is None:
            self.log.warning("job_lost", reason=run.stop_reason or "lost", **_job_fields(job))
            self.hooks.job_finished(job, "lost", elapsed)
            return
        try:
            owned: bool | None = await self._write_finish(finish)
        except StoreError as exc:
            owned = await self._write_finish_retrying(finish, _job_fields(job), exc)
        if owned is None:
            return
        if not owned:
            fields = _job_fields(job)
            self.log.warning("job_finish_rejected", reason="no longer owned", **fields)
            self.hooks.job_finished(job, "lost", elapsed)
            return
        outcome = finish.outcome
        if outcome == "failed":
            self.log.warning(
                "job_failed", error=finish.error, seconds=round(elapsed, 6), **_job_fields(job)
            )
        elif self._log_info:  # one line per job: skipped whole when info is not logged
            event = f"job_{_PAST.get(outcome, outcome)}"
            self.log.info(event, seconds=round(elapsed, 6), **_job_fields(job))
        self.hooks.job_finished(job, outcome, elapsed)

    async def _write_finish_retrying(
        self, finish: Finish, fields: dict[str, Any], exc: StoreError
    ) -> bool | None:
        """After `exc` failed it: _write_finish again after a backoff while the store is
        away (up to FINISH_RETRY_FOR seconds); None if it never got through. The run then
        stays `running` in the store and the reaper retries it after the hung timeout."""
        deadline = time.monotonic() + FINISH_RETRY_FOR
        failures = 0
        while True:
            failures += 1
            delay = backoff(failures)
            gives_up = time.monotonic() + delay > deadline
            self.log.error(
                "job_finish_failed",
                error=str(exc),
                consecutive=failures,
                retry_in=None if gives_up else delay,
                **fields,
            )
            if gives_up:
                return None
            await anyio.sleep(delay)
            try:
                return await self._write_finish(finish)
            except StoreError as again:
                exc = again

    async def _write_finish(self, finish: Finish) -> bool:
        """Write `finish` in the next batch of this queue's finishes; True if the run was
        still ours. The first waiter of a batch writes the whole of it in one store call
        (callers are shielded, so a batch always runs to its end)."""
        batch = self._outbox
        index = len(batch.items)
        batch.items.append(finish)
        while not batch.done:
            if self._writing:
                if batch.event.is_set():  # woken to write it, but another waiter came first
                    batch.event = anyio.Event()
                await batch.event.wait()
                continue
            self._writing = True
            try:
                # Let the runs that are ready to end in this same tick join the batch first.
                await anyio.lowlevel.cancel_shielded_checkpoint()
                self._outbox = _Batch()
                batch.results = await self.queue.store.finish(batch.items)
            except BaseException as exc:
                batch.error = exc
            finally:
                if self._outbox is batch:
                    self._outbox = _Batch()
                batch.done = True
                self._writing = False
                batch.event.set()
                if self._outbox.items:  # wake the next batch: its first waiter writes it
                    self._outbox.event.set()
                if self._written is not None:
                    self._written.set()
                    self._written = None
        if batch.error is not None:
            raise batch.error
        return batch.results[index]


_PAST = {"later": "rescheduled", "requeue": "requeued", "wait_children": "waiting_children"}


def _job_fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "queue": job.queue, "name": job.name, "attempt": job.attempt}


@contextlib.contextmanager
def _deadline(timeout: float | None) -> Iterator[None]:
    if timeout is None:
        yield
    else:
        with anyio.fail_after(timeout):
            yield
