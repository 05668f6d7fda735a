"""The claim loop and bounded pool of one queue.

A claimer fills free slots only (one claim call for all of them) and hands the claimed runs
to a fixed pool of `concurrency` runner tasks; every job runs in its own cancel scope with
its timeout. A run's outcome goes to an outbox that one writer task writes in batches (one
store call for the runs that ended meanwhile), shielded from cancellation and fenced by the
store.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.abc

from wizd.agent import Agent, JobContext, WaitForChildren
from wizd.errors import (
    LeavesRun,
    LostJob,
    NonDeterministic,
    RetryLater,
    Sleeping,
    StoreError,
    WaitingForSignal,
)
from wizd.hooks import Hooks, NoHooks
from wizd.model import Job
from wizd.processors import CommandProcessor
from wizd.queue import Queue
from wizd.store import Claimed, Finish
from wizd.threads import Returned, ThreadPool

STOP_NOTE = "wizd: "  # starts the job log line saying how its daemon stopped a run
RETRY_FIRST, RETRY_MOST = 0.5, 30.0  # backoff after store failures: first and longest wait
FINISH_RETRY_FOR = 120.0  # a run's outcome is written again for this long before giving up


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 0.5, 1, 2, … up to 30."""
    return float(min(RETRY_FIRST * 2.0 ** (failures - 1), RETRY_MOST))


@dataclass(slots=True)
class Run:
    job: Job
    scope: anyio.CancelScope
    started: float
    stop_reason: str | None = None
    ctx: JobContext | None = None
    ended: bool = False  # its processor returned: only its outcome's write is left
    returned: Returned | None = None  # a synchronous run's thread is back, with this


class QueueWorker:
    """Serves one queue with at most `concurrency` jobs at once.

    A run's slot is free as soon as its processor returns: its outcome goes to the outbox,
    which one writer task writes in batches (one store call each), while the run stays in
    `runs` (heartbeated, stoppable) until its outcome is in the store. The claimer and the
    writer wake in the same tick, so the store writes a batch of outcomes and claims the
    jobs for their slots at once (SQLite: in one group commit; PostgreSQL: on two
    connections side by side).
    """

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
        self._log_debug = bool(is_enabled(logging.DEBUG)) if is_enabled is not None else True
        self.hooks: Hooks = hooks or NoHooks()
        self.runs: dict[int, Run] = {}  # claimed and not yet written back
        self._active = 0  # runs holding a slot: claimed, processor not yet returned
        self._wake = anyio.Event()
        self._ended: anyio.Event | None = None  # created by drained() when it waits
        self._claiming = True
        self._failures = 0
        self._outbox: list[tuple[Run, Finish]] = []  # outcomes waiting for the writer
        self._to_write = anyio.Event()  # set when the outbox fills or the runners end
        self._runners = 0
        self._backlog: deque[Run] = deque()  # claimed, waiting for a runner
        # Runners waiting for work, each on its own event: a dispatch wakes one, and a runner
        # that takes a job while more wait wakes the next (not all `concurrency` at once).
        self._idle: deque[anyio.Event] = deque()
        self._waking = 0  # runners woken that have not run yet
        self._no_more_runs = False
        self._stop = anyio.Event()
        # The limit that held back the last claim, and since when (monotonic).
        self._throttle: tuple[str, float] | None = None
        self._rate_wait: float | None = None  # the rate limit frees the next job then
        # The running backend's own CancelScope class, found once by serve(): calling
        # anyio.CancelScope() looks the backend up each time, a few µs per claimed job.
        self._scope: type[anyio.CancelScope] = anyio.CancelScope
        self.threads = ThreadPool(concurrency)  # synchronous runs: never abandoned
        self.in_threads: dict[int, Run] = {}  # synchronous runs whose thread has not returned

    @property
    def busy(self) -> int:
        """Runs not yet over: running, or ended with their outcome still to be written."""
        return len(self.runs)

    @property
    def active(self) -> int:
        """Slots taken: runs claimed whose processor has not returned (at most concurrency)."""
        return self._active

    def wake(self) -> None:
        """Something may have changed: look for work now instead of at the next poll."""
        self._wake.set()

    def take_handed(self) -> None:
        """Run the jobs that enqueues handed over to this worker (claimed for it already,
        Store.handed_over) now, even while a claim is on its way. A worker that stopped
        claiming leaves them to the store, which puts them back when it closes."""
        if self._claiming:
            runs = self._started(self.queue.store.handed_over(self.name, self.worker_id))
            if runs:
                self._dispatch(runs)

    def stop_claiming(self) -> None:
        self._claiming = False
        self._wake.set()
        self._stop.set()

    def stop_runs(self, reason: str, job_ids: set[int] | None = None, force: bool = False) -> int:
        """Cancel running jobs (all, or those given); `reason` decides how each run ends."""
        stopped = 0
        for job_id, run in list(self.runs.items()):
            if run.ended:  # nothing left to stop: its outcome is being written
                continue
            if job_ids is None or job_id in job_ids:
                run.stop_reason = run.stop_reason or reason
                if run.ctx is not None:
                    run.ctx.force_kill = run.ctx.force_kill or force
                    run.ctx.request_stop()
                run.scope.cancel()
                stopped += 1
        return stopped

    def how_stopped(self, job_id: int) -> str:
        """What stopping this run did, in words for the job's log (`wizd kill` shows it)."""
        run = self.runs.get(job_id)
        if run is None or run.ended:
            return STOP_NOTE + "run stopped: its processor had already returned"
        processor = self.agent.processors.get(run.job.name)
        force = run.ctx is not None and run.ctx.force_kill
        if job_id in self.in_threads:
            return (
                STOP_NOTE
                + "run asked to stop: a synchronous processor's thread cannot be killed"
                + (" (not even with --force)" if force else "")
                + "; it sees ctx.should_stop(), and its slot stays held until the thread returns"
            )
        if isinstance(processor, CommandProcessor):
            if force:
                return STOP_NOTE + "run stopped: its command's process group got SIGKILL"
            return (
                f"{STOP_NOTE}run stopped: its command's process group got SIGTERM, and "
                f"gets SIGKILL if still running {processor.kill_grace:g}s later"
            )
        return STOP_NOTE + "run stopped: its processor was cancelled"

    def owned_runs(self, claimed_before: float) -> Iterator[Run]:
        """Runs claimed before then that nothing has yet found lost."""
        return (
            r
            for r in self.runs.values()
            if r.started < claimed_before and r.stop_reason != "lost" and not r.ended
        )

    async def drained(self) -> None:
        """Return once no job of this queue is running or waiting to be written."""
        while self.runs:
            if self._ended is None:
                self._ended = anyio.Event()
            await self._ended.wait()

    async def serve(self) -> None:
        """Claim and run jobs until stop_claiming(); then wait for the running ones to end."""
        self._scope = type(anyio.CancelScope())
        try:
            async with anyio.create_task_group() as tg:
                self._runners = self.concurrency
                for _ in range(self.concurrency):
                    tg.start_soon(self._runner)
                tg.start_soon(self._writer)
                try:
                    await self._claimer()
                    await self._stop_claiming()
                finally:
                    self._no_more_runs = True
                    self._dispatch([])
        finally:
            # Shielded: a shutdown must never leave a finished job looking `running`. Runs
            # claimed but never picked up by a runner (the pool was cancelled) go back
            # without running; outcomes the writer did not get to are written now.
            with anyio.CancelScope(shield=True):
                while self._backlog:
                    run = self._backlog.popleft()
                    run.stop_reason = run.stop_reason or "shutdown"
                    self._ran(run, self._stopped(run))
                while self._outbox:
                    await self._write()

    async def _claimer(self) -> None:
        while self._claiming:
            self._wake = anyio.Event()
            self.take_handed()
            free = self.concurrency - self._active
            self._rate_wait = None
            if free > 0:
                runs = await self._claim(free)
                for run in runs:
                    if not self._claiming:  # stop arrived during the claim
                        run.stop_reason = "shutdown"
                        run.scope.cancel()
                self._dispatch(runs)
            if not self._claiming:
                return
            if self._rate_wait is not None:
                # Only time frees the next job: commits elsewhere cannot.
                with anyio.move_on_after(min(self.poll_interval, self._rate_wait)):
                    await self._stop.wait()
                continue
            # After a store failure, wait out the backoff (a wake from a run ending must
            # not turn it into a tight retry loop).
            wait = backoff(self._failures) if self._failures else self.poll_interval
            with anyio.move_on_after(wait):
                await self._wake.wait()
                while self._failures and self._claiming:
                    self._wake = anyio.Event()
                    await self._wake.wait()

    async def _stop_claiming(self) -> None:
        """Tell the store that this worker claims no more (no job is handed over to it)."""
        try:
            await self.queue.store.stop_claiming(self.name, self.worker_id)
        except StoreError as exc:  # what it offered lapses with its daemon's session
            self.log.warning("stop_claiming_failed", error=str(exc))

    def _dispatch(self, runs: list[Run]) -> None:
        self._backlog.extend(runs)
        if self._no_more_runs:
            while self._idle:
                self._wake_runner()
        else:
            self._wake_for_backlog()

    def _wake_for_backlog(self) -> None:
        """Claimed runs wait and no runner is on its way to them: wake an idle one."""
        if self._backlog and self._idle and not self._waking:
            self._wake_runner()

    def _wake_runner(self) -> None:
        self._waking += 1
        self._idle.popleft().set()

    async def _runner(self) -> None:
        """One of the pool's `concurrency` tasks: runs claimed jobs one after another.

        A runner that takes a job while more wait makes sure one idle runner is awake for
        them, which does the same when it runs: a job that awaits leaves the next one to
        another runner at once, while jobs that never await run back to back without
        waking the whole pool."""
        backlog, idle = self._backlog, self._idle
        try:
            while True:
                while backlog:
                    run = backlog.popleft()
                    self._wake_for_backlog()
                    await self._run(run)
                if self._no_more_runs:
                    return
                ready = anyio.Event()
                idle.append(ready)
                try:
                    await ready.wait()
                finally:
                    if ready.is_set():
                        self._waking -= 1
                    else:  # cancelled while idle: no dispatch may wake it any more
                        idle.remove(ready)
        finally:
            self._runners -= 1
            if not self._runners:
                self._to_write.set()  # the writer's last batch

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
        return self._started(jobs)

    def _started(self, jobs: list[Job]) -> list[Run]:
        """Runs of jobs claimed for this worker: in `runs`, holding slots, reported."""
        if not jobs:
            return []
        now = time.time()
        started = time.monotonic()
        runs = []
        for job in jobs:
            run = Run(job, self._scope(), started)
            # A job re-claimed while its lost run is still ending replaces it here; the old
            # run's own bookkeeping leaves the new one alone.
            self.runs[job.id] = run
            runs.append(run)
            self.hooks.job_started(job, max(now - job.run_at.timestamp(), 0.0))
            if self._log_debug:
                self.log.debug("job_claimed", **_job_fields(job))
        self._active += len(runs)
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
            if run.returned is not None and run.scope.cancel_called:
                finish = self._thread_stopped(run, run.returned)
            elif finish is None and run.stop_reason is None and run.scope.cancelled_caught:
                # Nobody stopped it: the job's own deadline (set by _execute) cancelled it.
                timeout = run.job.timeout or 0.0
                finish = self._finish(run.job, "failed", error=f"timed out after {timeout:g}s")
            if finish is None:  # stopped by us, by the daemon's whole scope, or lost
                finish = self._stopped(run)
            self._ran(run, finish)  # no await: a cancelled runner still hands it over

    def _ran(self, run: Run, finish: Finish | None) -> None:
        """A run's processor is done: free its slot; its outcome goes to the writer."""
        run.ended = True
        self._active -= 1
        if finish is None:
            self._lost(run, run.stop_reason or "lost")
        else:
            self._outbox.append((run, finish))
            self._to_write.set()
        self._wake.set()

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
        if job.timeout is not None:
            # The run's own scope carries the deadline (one scope per run, not two); _run
            # tells its expiry from a stop, which always gives a reason. A TimeoutError the
            # processor raises itself is its failure like any other exception.
            run.scope.deadline = anyio.current_time() + job.timeout
        awaitable = None
        if not self.agent.is_async(job.name):
            returned = await self._in_thread(processor, ctx, run)
            if not inspect.isawaitable(returned.value):
                return self._settle(run, returned)
            awaitable = returned.value  # a plain wrapper returned its coroutine: run it here
        try:
            result = await (cast(Any, processor)(ctx) if awaitable is None else awaitable)
        except (Exception, SystemExit, LeavesRun) as exc:  # failed (even sys.exit()), or left
            return self._settle(run, Returned(error=exc))
        except anyio.get_cancelled_exc_class() as exc:
            if _cancelling():
                raise  # ours: the run's scope (stop, deadline) or the daemon's
            # A cancellation that no scope of ours asked for: a library gave up inside the
            # processor. It is the job's failure; letting it out would end the runner.
            return self._settle(run, Returned(error=exc))
        finally:
            if ctx.streaming:  # what ctx.stream holds is written, however the run ended
                await ctx.end_stream()
        return self._settle(run, Returned(result))

    async def _in_thread(self, processor: Any, ctx: JobContext, run: Run) -> Returned:
        """Run a synchronous processor in a thread; its run lasts till the thread returns."""

        def returned(outcome: Returned) -> None:
            run.returned = outcome
            self._left_thread(run)

        def asked_to_stop() -> None:
            why = run.stop_reason or "timed out"
            self.log.warning("thread_asked_to_stop", why=why, **_job_fields(run.job))

        self.in_threads[run.job.id] = run
        try:
            return await self.threads.call(
                processor, ctx, returned=returned, asked_to_stop=asked_to_stop
            )
        finally:
            self._left_thread(run)  # (also when it was stopped before its thread started)

    def _left_thread(self, run: Run) -> None:
        # A job killed, retried and claimed again while this thread ran has a new entry.
        if self.in_threads.get(run.job.id) is run:
            del self.in_threads[run.job.id]

    def _settle(self, run: Run, returned: Returned) -> Finish | None:
        """The outcome of a run whose processor returned `value` or raised `error`."""
        job, exc = run.job, returned.error
        if exc is None:
            result = returned.value
            if isinstance(result, WaitForChildren):
                return self._finish(job, "wait_children", result=result.note)
            return self._finish(job, "completed", result=result)
        if isinstance(exc, RetryLater | Sleeping):
            return self._finish(job, "later", delay=exc.seconds, error=exc.reason or None)
        if isinstance(exc, WaitingForSignal):
            return self._finish(job, "wait_signal", error=exc.name)
        if isinstance(exc, LostJob):
            run.stop_reason = "lost"
            return None
        # A processor whose steps do not match its history fails the same way every time.
        retry = not isinstance(exc, NonDeterministic)
        return self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}", retry=retry)

    def _thread_stopped(self, run: Run, returned: Returned) -> Finish | None:
        """The outcome of a synchronous run that was asked to stop, written only now that
        its thread has returned: past its timeout it failed; on shutdown, a thread that
        finished its work keeps its result, one that gave up is requeued; a killed or lost
        run's outcome is already in the store."""
        seconds = round(time.monotonic() - run.started, 3)
        self.log.info("thread_returned", seconds=seconds, **_job_fields(run.job))
        if run.stop_reason is None:  # its own deadline
            timeout = run.job.timeout or 0.0
            error = f"timed out after {timeout:g}s (its thread returned after {seconds:g}s)"
            return self._finish(run.job, "failed", error=error)
        if run.stop_reason == "shutdown" and returned.error is None:
            return self._settle(run, returned)
        return self._stopped(run)

    def _finish(self, job: Job, outcome: Any, **kw: Any) -> Finish:
        return Finish(job.id, self.worker_id, job.attempt, outcome, **kw)

    def _stopped(self, run: Run) -> Finish | None:
        """How a run we cancelled ends: requeued (shutdown) or already decided elsewhere."""
        if run.stop_reason == "lost":
            return None  # cancelled or reaped: the store already holds its outcome
        return self._finish(run.job, "requeue", error="daemon shut down; not charged")

    async def _writer(self) -> None:
        """Write the outbox, a batch at a time, until the runners are gone and it is empty."""
        while True:
            if self._outbox:
                # The claimer, woken by the same ends, claims for their slots in this tick
                # (on SQLite the store's group commit takes both calls into one transaction).
                await self._write()
            elif not self._runners:
                return
            else:
                self._to_write = anyio.Event()
                await self._to_write.wait()

    async def _write(self) -> None:
        """Write the outbox's outcomes in one store call (shielded: once taken from the
        outbox, a batch is written to its end), then account for each run."""
        batch, self._outbox = self._outbox, []
        finishes = [finish for _, finish in batch]
        with anyio.CancelScope(shield=True):
            try:
                owned: list[bool] | None = await self.queue.store.finish(finishes)
            except StoreError as exc:
                owned = await self._write_retrying(finishes, exc)
        results: list[bool | None] = [None] * len(batch) if owned is None else list(owned)
        for (run, finish), ours in zip(batch, results, strict=True):
            self._written(run, finish, ours)
        if self._ended is not None:
            self._ended.set()
            self._ended = None

    async def _write_retrying(self, finishes: list[Finish], exc: StoreError) -> list[bool] | None:
        """After `exc` failed it: write the batch again after a backoff while the store is
        away (up to FINISH_RETRY_FOR seconds); None if it never got through. Those runs
        then stay `running` in the store and the reaper retries them after the hung
        timeout."""
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
                jobs=len(finishes),
                job_ids=[f.job_id for f in finishes[:20]],
            )
            if gives_up:
                return None
            await anyio.sleep(delay)
            try:
                return await self.queue.store.finish(finishes)
            except StoreError as again:
                exc = again

    def _written(self, run: Run, finish: Finish, owned: bool | None) -> None:
        job = run.job
        if self.runs.get(job.id) is run:
            del self.runs[job.id]
        if owned is None:  # never got through: logged by _write_retrying
            return
        elapsed = time.monotonic() - run.started
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
            event = f"job_{_PAST.get(outcome) or outcome.replace('wait_', 'waiting_')}"
            self.log.info(event, seconds=round(elapsed, 6), **_job_fields(job))
        self.hooks.job_finished(job, outcome, elapsed)

    def _lost(self, run: Run, reason: str) -> None:
        """A run whose outcome the store already holds (cancelled or reaped elsewhere)."""
        job = run.job
        if self.runs.get(job.id) is run:
            del self.runs[job.id]
        self.log.warning("job_lost", reason=reason, **_job_fields(job))
        self.hooks.job_finished(job, "lost", time.monotonic() - run.started)
        if self._ended is not None:
            self._ended.set()
            self._ended = None


def _cancelling() -> bool:
    """True when the current task is being cancelled: a cancel scope around it (the run's,
    the worker's, the daemon's) was cancelled or is past its deadline, or the task itself
    was cancelled from outside anyio."""
    if anyio.current_effective_deadline() <= anyio.current_time():
        return True
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_PAST = {"later": "rescheduled", "requeue": "requeued"}  # wait_x: waiting_x


def _job_fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "queue": job.queue, "name": job.name, "attempt": job.attempt}
