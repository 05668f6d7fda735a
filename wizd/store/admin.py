"""The operator's changes in the SQLite store: cancel, retry, pause, resume, delete and
clean up jobs; pause queues and set their defaults; the agent registry. Each runs inside
the writer's transaction and either completes or raises."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wizd.errors import IllegalTransition, InvalidJob, QueueNotEmpty, QueueNotFound
from wizd.model import FINAL, PAUSABLE, Job, JobOptions, JobStatus, WorkerInfo, can_transition
from wizd.store import flows
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, dialect, group_cache

S = JobStatus


# -- jobs -----------------------------------------------------------------------------------
def cancel(c: Conn, now: float, ids: list[int], reason: str) -> list[Job]:
    jobs = rowmap.get_many(c, ids)  # raises JobNotFound before anything changes
    for job in jobs:
        if not can_transition(job.status, S.CANCELLED):
            raise IllegalTransition(job.id, job.status, S.CANCELLED, "cancel it")
    for job in jobs:
        flows.cancel_tree(c, now, job.id, reason)
    return rowmap.get_many(c, ids)


def retry(c: Conn, now: float, ids: list[int]) -> list[Job]:
    for job in rowmap.get_many(c, ids):
        if job.status not in (S.FAILED, S.CANCELLED):
            raise IllegalTransition(
                job.id, job.status, S.PENDING, "retry it (only failed or cancelled jobs)"
            )
    for job in rowmap.get_many(c, ids):
        if job.kind == "distributed":  # no processor runs the parent: its sub-tasks run again
            flows.retry_distributed(c, now, job)
            continue
        # Unfinished dependencies still hold it; a deadline is renewed for as long.
        target = S.PENDING if flows.deps_satisfied(c, job) else S.WAITING
        flows.requeue(c, now, job, target)
    return rowmap.get_many(c, ids)


def pause_job(c: Conn, now: float, job_id: int) -> Job:
    job = rowmap.get(c, job_id)
    if job.status not in PAUSABLE:
        raise IllegalTransition(job_id, job.status, S.PAUSED, "pause it")
    flows.set_status(c, now, job, S.PAUSED, "paused")
    return rowmap.get(c, job_id)


def resume_job(c: Conn, now: float, job_id: int) -> Job:
    job = rowmap.get(c, job_id)
    if job.status is not S.PAUSED:
        raise IllegalTransition(job_id, job.status, S.PENDING, "resume it (not paused)")
    flows.set_status(c, now, job, flows.ready_status(c, now, job), "resumed")
    return rowmap.get(c, job_id)


def delete(c: Conn, now: float, ids: list[int]) -> list[int]:
    for job in rowmap.get_many(c, ids):
        if job.status is S.RUNNING:
            raise IllegalTransition(
                job.id, job.status, S.CANCELLED, "delete a running job; cancel it first"
            )
        if c.execute(Q.LIVE_DEPENDENTS, (job.id,)).fetchone()[0]:
            raise IllegalTransition(
                job.id, job.status, job.status, "delete it: unfinished jobs depend on it"
            )
        if c.execute(Q.LIVE_CHILDREN, (job.id,)).fetchone()[0]:
            raise IllegalTransition(
                job.id, job.status, job.status, "delete it: it has unfinished children"
            )
    parents = {job.parent_id for job in rowmap.get_many(c, ids) if job.parent_id}
    for job_id in ids:
        c.execute(Q.DELETE_JOB_EVENTS, (job_id,))
        c.execute(Q.DELETE_JOB, (job_id,))
    for parent_id in parents - set(ids):  # its last unfinished child may be gone
        flows.release_parent(c, now, parent_id)
    return ids


def cleanup_statuses(statuses: Sequence[JobStatus]) -> list[JobStatus]:
    """The statuses a cleanup removes; InvalidJob unless every one is final."""
    chosen = [S(s) for s in statuses]
    for s in chosen:
        if s not in FINAL:
            raise InvalidJob("statuses", f"cleanup removes final jobs only; {s} is not final")
    return chosen


def cleanup_candidates(
    c: Conn, now: float, chosen: list[JobStatus], older_than: float
) -> list[int]:
    """The jobs a cleanup would remove (a read: a dry run runs it alone)."""
    sql = Q.CLEANUP_CANDIDATES.format(statuses=",".join("?" * len(chosen)))
    return [r[0] for r in c.execute(sql, (*chosen, now - older_than))]


def cleanup(c: Conn, now: float, chosen: list[JobStatus], older_than: float) -> list[int]:
    ids = cleanup_candidates(c, now, chosen, older_than)
    c.executemany(Q.DELETE_JOB_EVENTS, ((i,) for i in ids))
    c.executemany(Q.DELETE_JOB, ((i,) for i in ids))
    return ids


# -- queues ---------------------------------------------------------------------------------
def set_queue_paused(c: Conn, now: float, queue: str, paused: bool) -> None:
    c.execute(Q.QUEUE_ENSURE, (queue,))
    c.execute(Q.QUEUE_SET_PAUSED, (int(paused), queue))


def remove_queue(c: Conn, now: float, queue: str) -> None:
    jobs = dict(c.execute(Q.QUEUE_JOBS_BY_STATUS, (queue,)).fetchall())
    if jobs:
        listed = ", ".join(f"{n} {status}" for status, n in sorted(jobs.items()))
        raise QueueNotEmpty(queue, f"{sum(jobs.values())} job(s) ({listed}); delete them first")
    schedules = [row[0] for row in c.execute(Q.QUEUE_SCHEDULES, (queue,))]
    if schedules:
        ids = ", ".join(map(str, schedules))
        raise QueueNotEmpty(queue, f"schedule(s) {ids} enqueue into it; unschedule them first")
    known = (
        c.execute(Q.QUEUE_GET, (queue,)).fetchone()
        or c.execute(Q.QUEUE_COUNTED, (queue,)).fetchone()
    )
    if dialect(c) == "postgres":
        # A delta of an enqueue committed after this transaction's statements stays: the
        # count of that job is kept (only the queue's settings row would be gone).
        known = c.execute(Q.QUEUE_COUNT_DELTAS_DELETE, (queue,)).rowcount > 0 or known
    if not known:
        raise QueueNotFound(queue)
    c.execute(Q.QUEUE_DELETE, (queue,))
    c.execute(Q.QUEUE_COUNTS_DELETE, (queue,))
    group_cache(c).pop(("queue_defaults", queue), None)


def set_queue_defaults(c: Conn, now: float, queue: str, overrides: dict[str, Any]) -> JobOptions:
    c.execute(Q.QUEUE_ENSURE, (queue,))
    row = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
    merged = {**json.loads(row[2]), **overrides}
    options = JobOptions.from_dict(merged)  # validates before anything is kept
    c.execute(Q.QUEUE_SET_DEFAULTS, (json.dumps(merged), queue))
    group_cache(c).pop(("queue_defaults", queue), None)
    return options


# -- the agent registry ---------------------------------------------------------------------
def register_worker(c: Conn, now: float, info: WorkerInfo) -> None:
    c.execute(
        Q.WORKER_REGISTER,
        (
            info.id,
            info.hostname,
            info.pid,
            json.dumps(list(info.queues)),
            info.concurrency,
            info.version,
            now,
            now,
            info.metrics,
        ),
    )


def worker_stopped(c: Conn, now: float, worker_id: str) -> None:
    c.execute(Q.WORKER_STOPPED, (now, worker_id))


def prune_workers(c: Conn, now: float, older_than: float) -> None:
    c.execute(Q.WORKERS_PRUNE, (now - older_than, now - older_than))
