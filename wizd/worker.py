"""The claim loop and bounded pool of one queue.

A claimer fills free slots only (one claim call for all of them); every job runs in its own
cancel scope with its timeout; the status write that ends a run is shielded from
cancellation, fenced by the store, and grouped with other runs' writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc

from wizd.agent import Agent, JobContext, WaitForChildren
from wizd.errors import LostJob, RetryLater, StoreError
from wizd.model import Job
from wizd.queue import Queue
from wizd.store import Finish

MAX_CLAIM_FAILURES = 10


class Hooks(Protocol):
    """What the worker reports as it goes (metrics implement this)."""

    def job_started(self, job: Job, wait_seconds: float) -> None: ...
    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None: ...
    def slots(self, queue: str, busy: int, total: int) -> None: ...
    def recovered(self, queue: str, reason: str, n: int) -> None: ...


class NoHooks:
    def job_started(self, job: Job, wait_seconds: float) -> None:
        pass

    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None:
        pass

    def slots(self, queue: str, busy: int, total: int) -> None:
        pass

    def recovered(self, queue: str, reason: str, n: int) -> None:
        pass


@dataclass(slots=True)
class Run:
    job: Job
    scope: anyio.CancelScope
    started: float
    stop_reason: str | None = None
    ctx: JobContext | None = None


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
        self.hooks: Hooks = hooks or NoHooks()
        self.runs: dict[int, Run] = {}
        self._wake = anyio.Event()
        self._ended = anyio.Event()
        self._claiming = True
        self._failures = 0

    @property
    def busy(self) -> int:
        return len(self.runs)

    def wake(self) -> None:
        """Something may have changed: look for work now instead of at the next poll."""
        self._wake.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._wake.set()

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
            ended = self._ended
            await ended.wait()

    async def serve(self) -> None:
        """Claim and run jobs until stop_claiming(); then wait for the running ones to end."""
        self.hooks.slots(self.name, 0, self.concurrency)
        async with anyio.create_task_group() as tg:
            while self._claiming:
                self._wake = anyio.Event()
                free = self.concurrency - len(self.runs)
                if free > 0:
                    for run in await self._claim(free):
                        if not self._claiming:  # stop arrived during the claim: give it back
                            run.stop_reason = "shutdown"
                            run.scope.cancel()
                        tg.start_soon(self._run, run)
                if not self._claiming:
                    break
                with anyio.move_on_after(self.poll_interval):
                    await self._wake.wait()

    async def _claim(self, n: int) -> list[Run]:
        try:
            jobs = await self.queue.store.claim(self.name, self.worker_id, n)
        except StoreError as exc:
            self._failures += 1
            self.log.error("claim_failed", error=str(exc), consecutive=self._failures)
            if self._failures >= MAX_CLAIM_FAILURES:
                raise
            return []
        self._failures = 0
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

    async def _run(self, run: Run) -> None:
        job = run.job
        finish: Finish | None = None
        try:
            with run.scope:
                finish = await self._execute(job, run)
        finally:
            if finish is None:  # stopped by us, by the daemon's whole scope, or lost
                finish = self._stopped(run)
            # Shielded: a shutdown must never leave a finished job looking `running`.
            with anyio.CancelScope(shield=True):
                await self._record(run, finish)
                if self.runs.get(job.id) is run:
                    del self.runs[job.id]
                self.hooks.slots(self.name, len(self.runs), self.concurrency)
                self._wake.set()
                self._ended.set()
                self._ended = anyio.Event()

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
        fields = _job_fields(job)
        if finish is None:
            self.log.warning("job_lost", reason=run.stop_reason or "lost", **fields)
            self.hooks.job_finished(job, "lost", elapsed)
            return
        try:
            owned = (await self.queue.store.finish([finish]))[0]
        except StoreError as exc:
            # The run stays `running` in the store; the reaper retries it after the hung
            # timeout, so the job is not lost.
            self.log.error("job_finish_failed", error=str(exc), **fields)
            return
        if not owned:
            self.log.warning("job_finish_rejected", reason="no longer owned", **fields)
            self.hooks.job_finished(job, "lost", elapsed)
            return
        outcome = finish.outcome
        if outcome == "failed":
            self.log.warning("job_failed", error=finish.error, seconds=round(elapsed, 6), **fields)
        else:
            self.log.info(f"job_{_PAST.get(outcome, outcome)}", seconds=round(elapsed, 6), **fields)
        self.hooks.job_finished(job, outcome, elapsed)


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
