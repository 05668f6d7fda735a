"""The Store protocol: every atomic operation the rest of wizd needs, and what each guarantees.

The client API (wizd.queue) and the daemon (wizd.worker, wizd.supervisor) depend on this
protocol only. Each method is atomic: it happens whole or not at all. Every status change is
checked against wizd.model.TRANSITIONS and writes an event. Times are the store's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from wizd.checks import SizeLimits
from wizd.errors import InvalidJob
from wizd.model import (
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    NewSchedule,
    Page,
    QueueLimits,
    QueueStats,
    Role,
    Schedule,
    ScheduleRun,
    Token,
    WorkerInfo,
)
from wizd.step_model import Armed, SignalWait, Step, StepOutcome
from wizd.store.feed import WatchEvent

Outcome = Literal[
    "completed", "failed", "later", "requeue", "cancelled", "wait_children", "wait_signal"
]


@dataclass(frozen=True, slots=True)
class Finish:
    """How one run ended. Applied only while (job_id, worker_id, attempt) still owns the job.

    completed: result stored, final. failed: retried after the job's backoff while attempts
    remain and `retry` is true, else final. later: back to delayed/pending after `delay`
    seconds, attempt not charged. requeue: the same, for a run stopped by shutdown.
    cancelled: final, for a run stopped by a cancel request. wait_children: the job waits
    for its children and runs again when all are final. wait_signal: the job waits for
    the signal named by `error`, not charged (wizd.store.signals).
    """

    job_id: int
    worker_id: str
    attempt: int
    outcome: Outcome
    result: Any = None
    error: str | None = None
    retry: bool = True
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.outcome not in (
            "completed",
            "failed",
            "later",
            "requeue",
            "cancelled",
            "wait_children",
            "wait_signal",
        ):
            raise InvalidJob("outcome", f"unknown outcome {self.outcome!r}")


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A running job whose run was lost, and where it went (pending or failed)."""

    job: Job
    status: JobStatus
    reason: str


class Claimed(list[Job]):
    """The jobs a claim handed out, in claim order. `throttled` names the limit that held
    pending jobs back (max_running, rate or concurrency_key; None: none did), and
    `retry_in` the seconds until the rate limit frees the next job."""

    __slots__ = ("retry_in", "throttled")

    def __init__(
        self,
        jobs: Iterable[Job] = (),
        throttled: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        super().__init__(jobs)
        self.throttled = throttled
        self.retry_in = retry_in


@dataclass(frozen=True, slots=True)
class FiredJob:
    """A job enqueued for one occurrence of a schedule."""

    schedule_id: int
    fire_at: float
    job: Job


@dataclass(slots=True)
class Fired:
    """What one pass over the due schedules did: the jobs it enqueued, occurrences dropped
    by a catch-up policy (missed), occurrences whose job's unique key was held by another
    job (duplicates), and schedules it could not compute ((id, why))."""

    jobs: list[FiredJob] = field(default_factory=list)
    missed: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


class Store(Protocol):
    """Persistence for jobs, events, queues and the worker registry."""

    backend: str
    # What a run's outcome may hold: finish fails a job whose result is over the cap (or
    # nested too deep, or not valid Unicode) and cuts an error text to it (store.outcomes).
    size_limits: SizeLimits
    clock: Callable[[], float]  # the store's time (epoch seconds)

    async def __aenter__(self) -> Store: ...
    async def __aexit__(self, *exc: object) -> None: ...

    async def open(self) -> None:
        """Connect, refuse a foreign or newer-schema database, apply pending migrations."""

    async def close(self) -> None:
        """Finish queued writes' waiters with an error and close connections. Idempotent."""

    # -- enqueue and reads -----------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert all jobs in one transaction or none (InvalidJob/DependencyError names why).

        Each starts waiting (unfinished dependencies), delayed (run_at in the future),
        waiting_children, or pending; a dependency already failed/cancelled applies the
        job's on_dependency_failure policy at once. A job with a unique key that another
        job holds follows its on_conflict: the holder is returned in its place ("return"),
        DuplicateJob is raised ("raise"), or the holder is cancelled if it has not started
        and the job takes its key ("replace"). Concurrent enqueues of one key, from any
        process, make one job.
        """

    async def get(self, job_id: int) -> Job:
        """The job, with depends_on filled; JobNotFound if no such id."""

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        """Jobs in the order asked; JobNotFound names the first unknown id."""

    async def list_page(self, f: JobFilter) -> Page:
        """The page of jobs matching every given field of the filter, in its sort and
        order, from its offset or after its keyset place, and the cursor of the next page
        (None when no job follows)."""

    async def peek(self, queue: str, n: int) -> list[Job]:
        """The next n pending jobs in claim order. Changes nothing."""

    async def counts(self, queue: str | None = None) -> dict[str, dict[str, int]]:
        """{queue: {status: n}} with every status present; no scan of the jobs table."""

    async def recount(self) -> dict[str, dict[str, int]]:
        """The same figures counted from the jobs table (for checks, not for scrapes)."""

    async def oldest_pending(self, queue: str) -> float | None:
        """Epoch seconds since which the oldest pending job of the queue has been due."""

    async def finished_per_minute(self, minutes: int) -> dict[str, dict[str, list[int]]]:
        """{queue: {"completed": [...], "failed": [...]}}: jobs finished per minute over the
        last `minutes`, oldest first, for each queue that finished one; no read of the jobs."""

    async def stats(self, queue: str, window: float) -> QueueStats:
        """Counts, and over the last `window` seconds: average wait and run time, throughput."""

    async def events(self, job_id: int, after: int = 0) -> list[Event]:
        """The job's history, oldest first, from its line number after + 1 on (an event's
        id is its line number in its job's history); JobNotFound if no such job."""

    # -- flows -----------------------------------------------------------------------------
    async def add_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        """Make a waiting/pending/delayed/paused job depend on more jobs. Refuses unknown
        jobs and cycles (DependencyError names the jobs on it); a job that gains an
        unfinished dependency goes back to waiting."""

    async def remove_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        """Drop dependencies; a waiting job whose remaining dependencies are done is released."""

    async def dependencies(self, job_id: int) -> list[Job]: ...
    async def dependents(self, job_id: int) -> list[Job]: ...
    async def children(self, job_id: int) -> list[Job]: ...

    async def subtree(self, job_id: int) -> list[Job]:
        """The job and all its descendants (children, grandchildren, …), by id."""

    async def dispatch(self, job_id: int) -> int:
        """Release a distributed job's held (paused) sub-tasks; return how many."""

    # -- queues ----------------------------------------------------------------------------
    async def queues(self) -> list[tuple[str, bool, JobOptions]]:
        """Every known queue: (name, paused, defaults)."""

    async def queue_options(self, queue: str) -> tuple[bool, JobOptions]:
        """(paused, defaults) of one queue; an unknown queue is unpaused with wizd defaults."""

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        """A paused queue is never claimed from; its jobs keep their statuses."""

    async def remove_queue(self, queue: str) -> None:
        """Forget a queue with no job (of any status) and no schedule: its pause, defaults,
        limits and counts. QueueNotEmpty names what it still has; QueueNotFound if unknown."""

    async def set_queue_defaults(self, queue: str, overrides: dict[str, Any]) -> JobOptions:
        """Merge overrides into the queue's defaults (validated first) and return them."""

    # -- limits ----------------------------------------------------------------------------
    async def queue_limits(self, queue: str) -> QueueLimits:
        """The queue's limits (an unknown queue has none)."""

    async def all_queue_limits(self) -> list[QueueLimits]:
        """Every queue that has a limit, by name."""

    async def set_queue_limits(self, queue: str, changes: dict[str, Any]) -> QueueLimits:
        """Apply changes to max_running (int), rate (Rate) and burst (int); None clears a
        limit. A burst without a rate is refused. A new rate or burst starts full."""

    async def set_concurrency_limit(self, key: str, limit: int | None) -> None:
        """At most `limit` jobs with this concurrency key run at once, whatever their queue
        and daemon; None removes the limit."""

    async def concurrency_limits(self) -> dict[str, int]: ...

    # -- schedules -------------------------------------------------------------------------
    async def create_schedule(self, spec: NewSchedule) -> Schedule:
        """Add a schedule; its first occurrence is the first after now. A key that exists
        updates that schedule instead (keeping its paused state, and its next occurrence
        unless its timing changed)."""

    async def schedules(self) -> list[Schedule]: ...

    async def get_schedule(self, ref: int | str) -> Schedule:
        """By id (int) or key (str); ScheduleNotFound otherwise."""

    async def delete_schedule(self, ref: int | str) -> Schedule:
        """Remove a schedule (its jobs stay) and return it as it was."""

    async def set_schedule_paused(self, ref: int | str, paused: bool) -> Schedule:
        """A paused schedule enqueues nothing; resumed, it fires from its next occurrence
        after now (what fell in the pause is not caught up)."""

    async def schedule_runs(self, ref: int | str, limit: int) -> list[ScheduleRun]:
        """The schedule's latest enqueued occurrences, newest first."""

    async def fire_schedules(self) -> Fired:
        """Enqueue the due occurrences of every unpaused schedule, each once however many
        daemons call this at the same moment (a unique (schedule, fire time) key), after
        its catch-up policy; move each schedule to its next occurrence."""

    async def next_schedule_due(self) -> float | None:
        """Epoch seconds of the earliest next occurrence of an unpaused schedule. A read."""

    async def prune_schedule_runs(self, older_than: float) -> None:
        """Forget occurrences fired more than `older_than` seconds ago."""

    # -- the worker's hot path -------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> Claimed:
        """Promote the queue's due delayed jobs, then atomically move up to n pending jobs to
        running for this worker (attempt + 1), in order priority DESC, run_at, id.
        Nothing is claimed from a paused queue. Never hands one job to two callers.
        Within the queue's limits across every daemon (max_running, its rate) and those of
        concurrency keys: jobs over a limit stay pending, and the result says which limit
        held them back."""

    async def finish(self, items: Sequence[Finish]) -> list[bool]:
        """Apply each outcome, fenced; False for a run the worker no longer owns."""

    async def heartbeat(
        self, worker_id: str, busy: int, runs: Sequence[int] | None = None
    ) -> set[int]:
        """Refresh the worker's running jobs (those of `runs` only, when given) and its
        registry row; return the ids it still owns (a job missing from the set was
        cancelled or reaped). A daemon names its runs, so that a job claimed for it whose
        claim's answer was lost goes stale and is reaped rather than kept alive."""

    async def progress(
        self, job_id: int, worker_id: str, attempt: int, value: float | None, message: str | None
    ) -> bool:
        """Record progress of a run the worker owns (fenced); False if it lost the job."""

    async def log(
        self, job_id: int, message: str, *, worker_id: str | None = None, attempt: int | None = None
    ) -> None:
        """Append a log line to the job's events."""

    async def save_step(self, outcome: StepOutcome) -> bool:
        """Store one finished step of a run the worker owns (fenced, wizd.store.steps.save),
        with a `step` event; False (nothing written) if it lost the job."""

    async def steps(self, job_id: int) -> list[Step]:
        """The job's stored steps in the order its runs called them; JobNotFound."""

    async def signal(self, job_id: int, name: str, data_json: str) -> Job:
        """Keep signal `name` (its data as JSON text) for the job; if the job waits for that
        name, its wait takes it and the job becomes pending (wizd.store.signals.send).
        JobNotFound; IllegalTransition for a final job."""

    async def arm_signal(self, wait: SignalWait) -> tuple[Armed, str | None]:
        """A run's wait for a signal, fenced (wizd.store.signals.arm): the data of a signal
        already sent, a timeout, or `wait` (the run then leaves with `wait_signal`)."""

    async def signal_waits(self) -> list[tuple[int, str, float | None]]:
        """(job id, signal name, timeout time or None) of every job waiting for a signal."""

    async def retry_from_step(self, job_id: int, name: str) -> Job:
        """Requeue a failed or cancelled job keeping only the steps before `name`'s first
        occurrence; InvalidJob if it has no such step, IllegalTransition as retry."""

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial read."""

    async def owned(self, worker_id: str, runs: Sequence[tuple[int, int]]) -> set[int]:
        """Of the (job id, attempt) runs given, the ids still running for this worker at that
        attempt. A read: cheap enough to ask every poll interval."""

    async def wait_for_change(self, timeout: float) -> None:
        """Return soon after anything may have been committed (by any process), or after
        `timeout` seconds. Lets idle daemons pick up work without busy polling."""

    async def start_waiting(self) -> None:
        """A task starts awaiting jobs (wizd.waiting): from now until its stop_waiting,
        jobs becoming final wake wait_for_final (PostgreSQL LISTENs meanwhile)."""

    async def stop_waiting(self) -> None:
        """The task that called start_waiting awaits no more (shielded)."""

    async def final_mark(self) -> int:
        """A counter of wake-ups for jobs becoming final, to take before reading the jobs
        awaited and to pass to wait_for_final (wizd.store.waits)."""

    async def wait_for_final(self, mark: int, timeout: float) -> None:
        """Return soon after jobs may have become final (by any process) since `mark` was
        taken (at once if a wake-up came since), or after `timeout` seconds. A wake-up
        only says "look again": the caller re-reads the jobs."""

    async def start_watching(self) -> None:
        """A task starts following the change feed (wizd.watching): wait_for_feed wakes on
        its commits until stop_watching (PostgreSQL LISTENs meanwhile)."""

    async def stop_watching(self) -> None:
        """The task that called start_watching follows the feed no more (shielded)."""

    async def feed_mark(self) -> int:
        """A counter of feed wake-ups, to take before reading the feed (as final_mark)."""

    async def wait_for_feed(self, mark: int, timeout: float) -> None:
        """Return soon after the feed may have grown since `mark`, or after `timeout`."""

    async def watch_register(
        self, watcher: str, lease: float = ..., resume: int | None = None
    ) -> int:
        """Start or renew a watcher's lease: the feed records every job's history while
        one is live (wizd.store.feed); the feed's last cursor. `resume`: the cursor the
        watcher goes on from; CursorExpired if the feed may lack events after it, InvalidJob
        if it is past the feed's end."""

    async def watch_release(self, watcher: str, linger: float) -> None:
        """A watch ended: its lease lasts `linger` seconds more at most."""

    async def sweep_feed(self, lease: float = ...) -> int:
        """Upkeep (the daemons' reaper): drop expired leases, prune what no lease needs;
        how many leases were dropped."""

    async def feed_after(
        self, cursor: int, queue: str | None = None, job: int | None = None, limit: int = 500
    ) -> list[WatchEvent]:
        """The feed's events after `cursor`, of the queue and job if given, in order."""

    async def append_stream(
        self, job_id: int, piece: str, cap: int, *, worker_id: str, attempt: int
    ) -> bool:
        """Add streamed text to the job's stored stream (its last `cap` characters kept);
        watchers get it as an event of kind 'stream'. Fenced on the run (worker, attempt):
        False, nothing written, when the run no longer owns its job."""

    async def stream_text(self, job_id: int) -> str:
        """What the job streamed (its capped tail); JobNotFound."""

    def handed_over(self, queue: str, worker_id: str) -> Claimed:
        """Jobs of the queue that enqueues handed over to this worker since it last asked:
        claimed for it already (running, attempt + 1), so they are its to run at once.
        No I/O; each job is returned once. Only PostgreSQL hands jobs over (to a worker
        whose claim left it idle, while its daemon waits in wait_for_change); elsewhere
        this is always empty."""

    async def stop_claiming(self, queue: str, worker_id: str) -> None:
        """The worker claims no more jobs of the queue (its daemon is stopping): none is
        handed over to it from now on, and those handed over that it did not take go back
        to pending, their attempt not charged. Nothing to do where nothing is handed over."""

    async def promote_due(self) -> int:
        """Move every delayed job whose run_at has come to pending; return how many."""

    async def expire(self) -> list[int]:
        """Fail every non-final job whose deadline (ttl) passed, as `expired`."""

    async def recover_worker(self, worker_id: str, reason: str) -> list[Interrupted]:
        """Running jobs of a worker that is gone: retried (pending) while attempts remain,
        else failed. The interrupted run counts as an attempt; each gets a `recovered` event."""

    async def reap_hung(self, older_than: float, reason: str = "hung") -> list[Interrupted]:
        """As recover_worker, for running jobs whoever owns them whose heartbeat is older
        than `older_than` seconds."""

    async def stale_running(self, older_than: float) -> list[Job]:
        """Running jobs whose heartbeat is older than `older_than` seconds (hung). A read."""

    async def running_workers(self) -> set[str]:
        """Ids of workers that own at least one running job."""

    # -- operator changes ------------------------------------------------------------------
    async def cancel(self, job_ids: Sequence[int], reason: str = "cancelled") -> list[Job]:
        """Cancel every job (and its unfinished children) or none: an unknown id or a final
        job refuses the whole call."""

    async def retry(self, job_ids: Sequence[int]) -> list[Job]:
        """Requeue failed or cancelled jobs as pending with a fresh attempt count; all or none."""

    async def pause_job(self, job_id: int) -> Job:
        """waiting/pending/delayed → paused."""

    async def resume_job(self, job_id: int) -> Job:
        """paused → waiting, delayed or pending, whichever now applies."""

    async def delete(self, job_ids: Sequence[int]) -> list[int]:
        """Delete jobs and their events; refuses running jobs and jobs that unfinished jobs
        depend on or that have unfinished children. All or none."""

    async def cleanup(
        self, older_than: float, statuses: Sequence[JobStatus], dry_run: bool
    ) -> list[int]:
        """Ids of final jobs in `statuses` finished more than `older_than` seconds ago (and
        whose parent is final too); deleted with their events unless dry_run."""

    # -- API tokens (wizd.store.tokens) --------------------------------------------------
    async def create_token(
        self,
        token_id: str,
        role: Role,
        queues: tuple[str, ...] | None,
        name: str | None,
        digest: str,
    ) -> Token | None:
        """Store a token with the digest of its secret (never the secret); None, nothing
        written, if a token has this id already."""

    async def tokens(self) -> list[Token]:
        """Every token, revoked ones included, oldest first."""

    async def token_digest(self, token_id: str) -> tuple[Token, str] | None:
        """The token and the digest of its secret, or None. A read: it runs for every
        request the HTTP API authenticates."""

    async def revoke_token(self, token_id: str) -> Token:
        """Revoke the token (again: nothing changes, its first revocation time is kept);
        TokenNotFound."""

    # -- the agent registry ----------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None: ...
    async def worker_stopped(self, worker_id: str) -> None: ...
    async def workers(self) -> list[WorkerInfo]: ...
    async def prune_workers(self, older_than: float) -> None:
        """Forget daemons stopped, or silent (dead), for more than `older_than` seconds."""
