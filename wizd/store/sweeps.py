"""The periodic sweeps: promotion of delayed jobs that are due, recovery of the runs of a
lost worker or hung jobs (retried or failed), and expiry of jobs past their ttl."""

from __future__ import annotations

from wizd.model import FINAL, Job, JobStatus
from wizd.store import flows, signals
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.base import Interrupted
from wizd.store.conn import Conn

S = JobStatus


def promote_due(c: Conn, now: float) -> int:
    rows = c.execute(Q.PROMOTE_ALL, {"now": now}).fetchall()
    rowmap.events(c, now, [(r[0], "promoted", S.PENDING, r[1], None, None) for r in rows])
    return len(rows) + signals.promote_timed_out(c, now)


def recover_worker(c: Conn, now: float, worker_id: str, reason: str) -> list[Interrupted]:
    rows = c.execute(Q.RUNNING_OF_WORKER, (worker_id,)).fetchall()
    return interrupt(c, now, rowmap.jobs(c, rows), reason)


def reap_hung(c: Conn, now: float, older_than: float, reason: str) -> list[Interrupted]:
    rows = c.execute(Q.RUNNING_STALE_TO_REAP, (now - older_than,)).fetchall()
    return interrupt(c, now, rowmap.jobs(c, rows), reason)


def interrupt(c: Conn, now: float, jobs: list[Job], reason: str) -> list[Interrupted]:
    """Running jobs whose runs were lost: the attempt counts; retried or failed."""
    out = []
    for job in jobs:
        args = {"id": job.id, "attempt": job.attempt, "now": now}
        if job.attempt < job.max_attempts:
            error = f"interrupted ({reason}) on attempt {job.attempt} of {job.max_attempts}"
            if c.execute(Q.INTERRUPT_RETRY, {**args, "error": error}).rowcount:
                rowmap.event(
                    c, now, job.id, "recovered", S.PENDING, job.attempt, job.worker_id, error
                )
                out.append(Interrupted(job, S.PENDING, reason))
        else:
            error = (
                f"interrupted ({reason}) on attempt {job.attempt} of {job.max_attempts}; "
                "no attempts left"
            )
            if c.execute(Q.INTERRUPT_FAIL, {**args, "error": error}).rowcount:
                rowmap.event(
                    c, now, job.id, "recovered", S.FAILED, job.attempt, job.worker_id, error
                )
                flows.after_final(c, now, [job.id])
                out.append(Interrupted(job, S.FAILED, reason))
    return out


def expire(c: Conn, now: float) -> list[int]:
    """Fail every non-final job past its deadline, newest first, each with what finality
    implies applied at once: a distributed parent whose last sub-task expires is
    consolidated (and ended) before its own deadline is looked at."""
    expired = []
    error = "expired: its ttl passed before it finished"
    for job_id, _status, attempt in c.execute(Q.EXPIRED, (now,)).fetchall():
        status = S(c.execute(Q.GET_STATUS, (job_id,)).fetchone()[0])
        if status in FINAL:  # finished meanwhile by an earlier expiry in this sweep
            continue
        args = {"status": S.FAILED, "now": now, "error": error, "id": job_id, "from_status": status}
        if c.execute(Q.SET_STATUS, args).rowcount:
            rowmap.event(c, now, job_id, "expired", S.FAILED, attempt, None, error)
            expired.append(job_id)
            flows.after_final(c, now, [job_id])
    return expired
