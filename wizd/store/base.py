"""The Store protocol: every atomic operation the rest of wizd needs, and what each guarantees.

The client API (wizd.queue) and the daemon (wizd.worker, wizd.supervisor) depend on this
protocol only. Each method is atomic: it happens whole or not at all. Every status change is
checked against wizd.model.TRANSITIONS and writes an event. Times are the store's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wizd.errors import InvalidJob
from wizd.model import (
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    QueueStats,
    WorkerInfo,
)

Outcome = Literal["completed", "failed", "later", "requeue", "cancelled", "wait_children"]


@dataclass(frozen=True, slots=True)
class Finish:
    """How one run ended. Applied only while (job_id, worker_id, attempt) still owns the job.

    completed: result stored, final. failed: retried after the job's backoff while attempts
    remain and `retry` is true, else final. later: back to delayed/pending after `delay`
    seconds, attempt not charged. requeue: the same, for a run stopped by shutdown.
    cancelled: final, for a run stopped by a cancel request. wait_children: the job waits
    for its children and runs again when all are final.
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
        ):
            raise InvalidJob("outcome", f"unknown outcome {self.outcome!r}")


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A running job whose run was lost, and where it went (pending or failed)."""

    job: Job
    status: JobStatus
    reason: str


class Store(Protocol):
    """Persistence for jobs, events, queues and the worker registry."""

    backend: str

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
        job's on_dependency_failure policy at once.
        """

    async def get(self, job_id: int) -> Job:
        """The job, with depends_on filled; JobNotFound if no such id."""

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        """Jobs in the order asked; JobNotFound names the first unknown id."""

    async def list_jobs(self, f: JobFilter) -> list[Job]:
        """Jobs matching every given field of the filter, sorted and paginated."""

    async def peek(self, queue: str, n: int) -> list[Job]:
        """The next n pending jobs in claim order. Changes nothing."""

    async def counts(self, queue: str | None = None) -> dict[str, dict[str, int]]:
        """{queue: {status: n}} with every status present; no scan of the jobs table."""

    async def recount(self) -> dict[str, dict[str, int]]:
        """The same figures counted from the jobs table (for checks, not for scrapes)."""

    async def oldest_pending(self, queue: str) -> float | None:
        """Epoch seconds since which the oldest pending job of the queue has been due."""

    async def stats(self, queue: str, window: float) -> QueueStats:
        """Counts, and over the last `window` seconds: average wait and run time, throughput."""

    async def events(self, job_id: int, after: int = 0) -> list[Event]:
        """The job's events with id > after, oldest first; JobNotFound if no such job."""

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

    async def set_queue_defaults(self, queue: str, overrides: dict[str, Any]) -> JobOptions:
        """Merge overrides into the queue's defaults (validated first) and return them."""

    # -- the worker's hot path -------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> list[Job]:
        """Promote the queue's due delayed jobs, then atomically move up to n pending jobs to
        running for this worker (attempt + 1), in order priority DESC, run_at, id.
        Nothing is claimed from a paused queue. Never hands one job to two callers."""

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

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial read."""

    async def owned(self, worker_id: str, runs: Sequence[tuple[int, int]]) -> set[int]:
        """Of the (job id, attempt) runs given, the ids still running for this worker at that
        attempt. A read: cheap enough to ask every poll interval."""

    async def wait_for_change(self, timeout: float) -> None:
        """Return soon after anything may have been committed (by any process), or after
        `timeout` seconds. Lets idle daemons pick up work without busy polling."""

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

    # -- the agent registry ----------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None: ...
    async def worker_stopped(self, worker_id: str) -> None: ...
    async def workers(self) -> list[WorkerInfo]: ...
    async def prune_workers(self, older_than: float) -> None: ...
