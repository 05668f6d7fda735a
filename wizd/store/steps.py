"""A job's durable history (ctx.step): the entries its runs finished, written fenced on the
run that finished them, read back by every later run, and cut back by a retry from a step.

An entry is written only while (job id, worker id, attempt) still owns the job, as progress
is: a run that was reaped, cancelled or claimed again writes nothing and is told so."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from wizd.checks import shorten, truncate
from wizd.errors import InvalidJob, JobNotFound
from wizd.model import Job
from wizd.states import S
from wizd.step_model import Step, StepOutcome
from wizd.store import admin, flows
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn

EVENT = "step"  # the kind of a job event that says a step finished (wizd logs)
PREVIEW = 80  # characters of a result in its step event


def save(c: Conn, now: float, s: StepOutcome) -> bool:
    """Store one finished entry of the run's history; False (nothing written) when the run
    no longer owns its job. A step written before (a failed one run again) is replaced,
    its attempts added up."""
    fence = {"id": s.job_id, "worker": s.worker_id, "attempt": s.attempt, "now": now}
    if c.execute(Q.STEP_FENCE, fence).rowcount == 0:
        return False
    c.execute(
        Q.STEP_SAVE,
        {
            "id": s.job_id,
            "name": s.name,
            "occurrence": s.occurrence,
            "position": s.position,
            "kind": s.kind,
            "status": s.status,
            "result": s.result_json,
            "error": s.error,
            "attempts": s.attempts,
            "started_at": now - s.duration,
            "now": now,
        },
    )
    rowmap.event(c, now, s.job_id, EVENT, None, s.attempt, s.worker_id, event_message(s))
    return True


def event_message(s: StepOutcome) -> str:
    """`search#2 completed in 310ms: {"hits":3}` (a failed step: its error)."""
    if s.kind == "sleep":  # `sleep#1 until 2026-01-01T00:00:00+00:00`
        until = json.loads(s.result_json or "{}").get("until", 0.0)
        return f"{s.name}#{s.occurrence} until {datetime.fromtimestamp(until, UTC).isoformat()}"
    tries = f" after {s.attempts} attempts" if s.attempts > 1 else ""
    took = f"{s.duration * 1000:.0f}ms" if s.duration < 1 else f"{s.duration:.2f}s"
    head = f"{s.name}#{s.occurrence} {s.status} in {took}{tries}"
    if s.status == "completed":
        return f"{head}: {shorten_text(s.result_json or 'null')}"
    return f"{head}: {truncate(s.error or '', 1000)}"


def shorten_text(text: str) -> str:
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def history(c: Conn, job_id: int) -> list[Step]:
    """The job's history, in the order its runs called the steps; JobNotFound for no job."""
    rows = c.execute(Q.STEPS_OF, (job_id,)).fetchall()
    if not rows and c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
        raise JobNotFound(job_id)
    return [Step.from_row(tuple(r)) for r in rows]


def retry_from(c: Conn, now: float, job_id: int, name: str) -> Job:
    """Requeue a failed, cancelled or completed job as `retry` does, keeping the steps before
    the first occurrence of `name`: that step and every later entry run again. All or
    nothing."""
    steps = history(c, job_id)
    first = next((s.position for s in steps if s.name == name), None)
    if first is None:
        names = list(dict.fromkeys(s.name for s in steps))
        more = ", …" if len(names) > 10 else ""
        have = f"its steps: {', '.join(names[:10])}{more}" if names else "it has none stored"
        raise InvalidJob("from_step", f"job {job_id} has no step named {shorten(name)} ({have})")
    job = rowmap.get(c, job_id)
    if job.status is S.COMPLETED and job.kind != "distributed":
        keep_completed_run(c, job)
        flows.requeue(c, now, job, S.PENDING if flows.deps_satisfied(c, job) else S.WAITING)
        job = rowmap.get(c, job_id)
    else:
        (job,) = admin.retry(c, now, [job_id])  # refuses a job that is not failed or cancelled
    c.execute(Q.STEPS_FORGET_FROM, (job_id, first))
    kept = first - 1
    note = f"retry from step {name}: {kept} earlier step(s) kept, the rest run again"
    rowmap.event(c, now, job_id, EVENT, None, None, None, note)
    return job


def keep_completed_run(c: Conn, job: Job) -> None:
    """Store the claim and completion of a completed job's run, which its history reads from
    the job row (wizd.store.reads.derived) until the row is reused by a new run."""
    if any(row[3] == S.COMPLETED for row in c.execute(Q.EVENTS, (job.id,))):
        return
    if job.started_at is not None:
        rowmap.event(
            c, job.started_at.timestamp(), job.id, "claimed", S.RUNNING, job.attempt,
            job.worker_id, None,
        )  # fmt: skip
    at = (job.finished_at or job.updated_at).timestamp()
    rowmap.event(c, at, job.id, "completed", S.COMPLETED, job.attempt, job.worker_id, None)
