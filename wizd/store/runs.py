"""What a worker writes about the runs it owns: their outcomes (finish_many, finish),
heartbeats, progress and log lines; each fenced by worker and attempt."""

from __future__ import annotations

from wizd.errors import InvalidJob, JobNotFound
from wizd.model import Backoff, JobStatus
from wizd.store import flows, signals
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.base import Finish
from wizd.store.conn import Conn, dialect, execute_rows

S = JobStatus


def finish_many(c: Conn, now: float, items: list[Finish]) -> list[bool]:
    """Apply a batch of outcomes, fenced; False for each run the worker no longer owns.

    Completions (most of a batch) are written by one statement and store no event (the row
    holds them, wizd.store.reads.events), and their dependents are looked up by one query;
    what their ends release (dependents, waiting parents) is then applied job by job.
    Other outcomes go one by one."""
    owned = [False] * len(items)
    done = [(i, f) for i, f in enumerate(items) if f.outcome == "completed"]
    for start in range(0, len(done), 200):
        chunk = done[start : start + 200]
        values = [
            (f.job_id, f.worker_id, f.attempt, rowmap.result_json(f.result)) for _, f in chunk
        ]
        returned = execute_rows(c, Q.COMPLETE_MANY, values, (now, now)).fetchall()
        if not returned:
            continue
        rowmap.moved(c, (r[2] for r in returned), S.RUNNING, S.COMPLETED)
        parents = {r[0]: r[1] for r in returned}
        ended = [(i, f, parents[f.job_id]) for i, f in chunk if f.job_id in parents]
        # PostgreSQL's completion says which jobs have dependents (a round trip less when
        # none has); SQLite's looks them all up.
        flagged = dialect(c) == "postgres"
        depended = [(r[0],) for r in returned if not flagged or r[3]]
        dependents: dict[int, list[int]] = {}
        for dep, dependent in execute_rows(c, Q.DEPENDENTS_OF_MANY, depended) if depended else ():
            dependents.setdefault(dep, []).append(dependent)
        for index, f, parent_id in ended:
            owned[index] = True
            if parent_id is not None or f.job_id in dependents:
                deps = dependents.get(f.job_id, [])
                flows.became_final(c, now, f.job_id, S.COMPLETED, parent_id, deps)
    for index, f in enumerate(items):
        if f.outcome != "completed":
            owned[index] = finish(c, now, f)
    return owned


def finish(c: Conn, now: float, f: Finish) -> bool:
    """Apply one fenced outcome other than a completion (finish_many writes those together);
    False when the worker no longer owns the run."""
    fence = {"id": f.job_id, "worker": f.worker_id, "attempt": f.attempt, "now": now}
    state = c.execute(Q.RUN_STATE, fence).fetchone()
    if state is None:
        return False
    attempt, max_attempts, backoff_json = state
    kind = f.outcome
    if kind == "failed":
        if f.retry and attempt < max_attempts:
            delay = Backoff.from_json(backoff_json).delay_for(attempt)
            c.execute(Q.RETRY_DELAYED, {**fence, "error": f.error, "run_at": now + delay})
            msg = f"{f.error} (attempt {attempt} of {max_attempts}; retry in {delay:.3g}s)"
            rowmap.event(c, now, f.job_id, "retry_scheduled", S.DELAYED, attempt, f.worker_id, msg)
        else:
            c.execute(Q.FAIL_FINAL, {**fence, "error": f.error})
            rowmap.event(c, now, f.job_id, "failed", S.FAILED, attempt, f.worker_id, f.error)
            flows.after_final(c, now, [f.job_id])
    elif kind in ("later", "requeue"):
        # Not charged: the attempt counter goes back to what it was before the claim.
        target = S.DELAYED if f.delay > 0 else S.PENDING
        c.execute(Q.RESCHEDULE, {**fence, "status": target, "run_at": now + f.delay})
        what = "rescheduled" if kind == "later" else "requeued"
        rowmap.event(c, now, f.job_id, what, target, attempt - 1, f.worker_id, f.error)
    elif kind == "cancelled":
        c.execute(
            Q.SET_STATUS,
            {
                "status": S.CANCELLED,
                "now": now,
                "error": f.error,
                "id": f.job_id,
                "from_status": S.RUNNING,
            },
        )
        rowmap.event(c, now, f.job_id, "cancelled", S.CANCELLED, attempt, f.worker_id, f.error)
        flows.after_final(c, now, [f.job_id])
    elif kind == "wait_children":
        c.execute(Q.WAIT_CHILDREN, {**fence, "result": rowmap.result_json(f.result)})
        rowmap.event(
            c, now, f.job_id, "waiting_children", S.WAITING_CHILDREN, attempt, f.worker_id, None
        )
        flows.release_parent(c, now, f.job_id)
    elif kind == "wait_signal":
        signals.wait(c, now, f.job_id, f.worker_id, attempt, f.error or "")
    else:  # pragma: no cover - Finish validates its outcome
        raise InvalidJob("outcome", f"unknown outcome {kind!r}")
    return True


def heartbeat(
    c: Conn, now: float, worker_id: str, busy: int, runs: list[int] | None = None
) -> set[int]:
    args = {"now": now, "worker": worker_id, "busy": busy}
    if runs is None:
        owned = {r[0] for r in c.execute(Q.HEARTBEAT_JOBS, args)}
    else:
        owned = set()
        for start in range(0, len(runs), 500):
            chunk = runs[start : start + 500]
            sql = Q.HEARTBEAT_RUNS.format(ids=",".join("?" * len(chunk)))
            owned.update(r[0] for r in c.execute(sql, [now, worker_id, *chunk]))
    c.execute(Q.HEARTBEAT_WORKER, args)
    return owned


def progress(
    c: Conn,
    now: float,
    job_id: int,
    worker_id: str,
    attempt: int,
    value: float | None,
    message: str | None,
) -> bool:
    args = {
        "id": job_id,
        "worker": worker_id,
        "attempt": attempt,
        "progress": value,
        "message": message,
        "now": now,
    }
    if c.execute(Q.PROGRESS, args).rowcount == 0:
        return False
    text = f"{value:.0%}" if value is not None else ""
    if message:
        text = f"{text} {message}".strip()
    rowmap.event(c, now, job_id, "progress", None, attempt, worker_id, text)
    return True


def log(
    c: Conn,
    now: float,
    job_id: int,
    message: str,
    worker_id: str | None,
    attempt: int | None,
) -> None:
    if c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
        raise JobNotFound(job_id)
    rowmap.event(c, now, job_id, "log", None, attempt, worker_id, message)
