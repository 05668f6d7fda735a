"""Flows inside a transaction: status changes checked against the transition table, what a
job becoming final does to its dependents and its parent, dependency edits with cycle
checks, cancellation of subtrees, and consolidation of distributed jobs."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

from wizd.errors import DependencyError, IllegalTransition
from wizd.model import CANCELLABLE, FINAL, Job, JobStatus, can_transition, consolidation
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn

S = JobStatus
EDITABLE = (S.WAITING, S.PENDING, S.DELAYED, S.PAUSED)  # may gain or lose dependencies
# A failed distributed job's error names this many sub-tasks, with this much of each error.
SUBTASK_ERRORS_NAMED, SUBTASK_ERROR_SHOWN = 3, 200


def ready_status(c: Conn, now: float, job: Job) -> JobStatus:
    """Where a job goes when nothing holds it back: waiting, delayed or pending."""
    if not deps_satisfied(c, job):
        return S.WAITING
    return S.DELAYED if job.run_at.timestamp() > now else S.PENDING


def set_status(
    c: Conn,
    now: float,
    job: Job,
    target: JobStatus,
    kind: str,
    error: str | None = None,
) -> None:
    """Move `job` (as last read) to `target`, with an event; then apply what finality
    implies. Raises IllegalTransition if the table forbids it or the row changed."""
    if not can_transition(job.status, target):
        raise IllegalTransition(job.id, job.status, target)
    args = {"status": target, "now": now, "error": error, "id": job.id, "from_status": job.status}
    if c.execute(Q.SET_STATUS, args).rowcount != 1:
        raise IllegalTransition(job.id, job.status, target, "change it: it changed meanwhile")
    rowmap.event(c, now, job.id, kind, target, job.attempt, job.worker_id, error)
    if target in FINAL:
        after_final(c, now, [job.id])


def cancel_tree(c: Conn, now: float, job_id: int, reason: str) -> None:
    """Cancel a job, then its unfinished descendants. The parent goes first so that its
    children's ends do not wake or fail it on the way."""
    job = rowmap.get(c, job_id)
    if job.status in CANCELLABLE:
        set_status(c, now, job, S.CANCELLED, "cancelled", reason)
    # Every child is visited: a finished child may still have unfinished children.
    for (child_id,) in c.execute(Q.CHILDREN_IDS_ONLY, (job_id,)).fetchall():
        cancel_tree(c, now, child_id, f"ancestor {job_id} cancelled")


def after_final(c: Conn, now: float, job_ids: list[int]) -> None:
    """Jobs just became final: release or fail their dependents, wake their parents."""
    for job_id in job_ids:
        status, parent_id = c.execute(Q.STATUS_AND_PARENT, (job_id,)).fetchone()
        became_final(c, now, job_id, S(status), parent_id)


def became_final(
    c: Conn,
    now: float,
    job_id: int,
    status: JobStatus,
    parent_id: int | None,
    dependents: list[int] | None = None,
) -> None:
    """after_final for one job whose status and parent (and, if given, dependents) the
    caller already knows."""
    if dependents is None:
        dependents = [r[0] for r in c.execute(Q.DEPENDENTS_OF, (job_id,)).fetchall()]
    for dep_id in dependents:
        dependent = rowmap.get(c, dep_id)
        if dependent.status not in (S.WAITING, S.PAUSED, S.WAITING_CHILDREN):
            continue
        policy = dependent.on_dependency_failure
        if status is not S.COMPLETED and policy != "ignore":
            target = S.CANCELLED if policy == "cancel" else S.FAILED
            reason = f"dependency {job_id} is {status}"
            set_status(c, now, dependent, target, f"dependency_{status}", reason)
            if dependent.status is S.WAITING_CHILDREN:  # its children now work for nothing
                for (child_id,) in c.execute(Q.CHILDREN_IDS_ONLY, (dep_id,)).fetchall():
                    cancel_tree(c, now, child_id, f"parent {dep_id} is {target}")
        elif dependent.status is S.WAITING and deps_satisfied(c, dependent):
            ready = S.DELAYED if dependent.run_at.timestamp() > now else S.PENDING
            set_status(c, now, dependent, ready, "released")
    if parent_id is not None:
        release_parent_of(c, now, job_id, status, parent_id)


def deps_satisfied(c: Conn, job: Job) -> bool:
    statuses = [S(r[1]) for r in c.execute(Q.DEP_STATUSES, (job.id,))]
    if job.on_dependency_failure == "ignore":
        return all(s in FINAL for s in statuses)
    return all(s is S.COMPLETED for s in statuses)


def release_parent_of(
    c: Conn, now: float, child_id: int, child_status: JobStatus, parent_id: int
) -> None:
    """A child became final: apply the parent's on_child_failure policy, or wake it once
    every child is final."""
    status, policy = c.execute(Q.PARENT_POLICY, (parent_id,)).fetchone()
    if S(status) in FINAL:
        return
    if child_status in (S.FAILED, S.CANCELLED) and policy in ("fail", "cancel"):
        parent = rowmap.get(c, parent_id)
        target = S.FAILED if policy == "fail" else S.CANCELLED
        set_status(
            c, now, parent, target, f"child_{child_status}", f"child {child_id} is {child_status}"
        )
        for other_id, other_status in c.execute(Q.CHILDREN_IDS, (parent.id,)).fetchall():
            if S(other_status) in CANCELLABLE:
                cancel_tree(c, now, other_id, f"sibling {child_id} is {child_status}")
        return
    if status == S.WAITING_CHILDREN:
        release_parent(c, now, parent_id)


def release_parent(c: Conn, now: float, parent_id: int) -> None:
    """A parent waiting for children runs again once every child is final; a distributed
    parent is consolidated instead (end_distributed)."""
    if c.execute(Q.LIVE_CHILDREN, (parent_id,)).fetchone()[0]:
        return
    parent = rowmap.get(c, parent_id)
    if parent.status is not S.WAITING_CHILDREN:
        return
    if parent.kind == "distributed":
        end_distributed(c, now, parent)
    else:  # it runs again, unless a dependency of its own still holds it
        set_status(c, now, parent, ready_status(c, now, parent), "children_done")


def end_distributed(c: Conn, now: float, parent: Job) -> None:
    """Every sub-task is final: store the consolidation as the parent's result and end it
    `completed` if every sub-task completed, else `failed`, its error naming the sub-tasks
    that did not complete (as `brain job consolidate` counts them: failed or cancelled).
    The results of the others stay in the consolidation either way."""
    children = rowmap.jobs(c, c.execute(Q.CHILDREN, (parent.id,)).fetchall())
    doc = consolidation(parent, children, datetime.fromtimestamp(now, UTC))
    missed = [r for r in doc["results"] if r["status"] != S.COMPLETED]
    status, error = S.COMPLETED, None
    if missed:
        status = S.FAILED
        named = "; ".join(
            f"{r['sub_task_id']} {r['status']}: {(r['error'] or '')[:SUBTASK_ERROR_SHOWN]}"
            for r in missed[:SUBTASK_ERRORS_NAMED]
        )
        extra = len(missed) - SUBTASK_ERRORS_NAMED
        more = f"; {extra} more" if extra > 0 else ""
        error = f"{len(missed)} of {doc['total_tasks']} sub-tasks did not complete ({named}{more})"
    result = json.dumps(doc, ensure_ascii=False)
    args = {"id": parent.id, "now": now, "status": status, "result": result, "error": error}
    c.execute(Q.END_CONSOLIDATED, args)
    message = f"{doc['completed']} of {doc['total_tasks']} sub-tasks completed"
    rowmap.event(c, now, parent.id, "consolidated", status, parent.attempt, None, message)
    after_final(c, now, [parent.id])


def requeue(c: Conn, now: float, job: Job, target: JobStatus) -> None:
    """Start a failed or cancelled job over in `target`, its deadline renewed for as long."""
    expires = None
    if job.expires_at is not None:
        expires = now + (job.expires_at - job.created_at).total_seconds()
    args = {"id": job.id, "now": now, "status": target, "expires_at": expires}
    c.execute(Q.RETRY_JOB, args)
    rowmap.event(c, now, job.id, "retried", target, 0, None, None)


def retry_distributed(c: Conn, now: float, parent: Job) -> None:
    """A failed or cancelled distributed job waits for its sub-tasks again, and those that
    failed or were cancelled run again. With nothing left to run (a parent that failed by
    its own deadline after every sub-task completed), it is consolidated again at once."""
    requeue(c, now, parent, S.WAITING_CHILDREN)
    for child in rowmap.jobs(c, c.execute(Q.CHILDREN, (parent.id,)).fetchall()):
        if child.status in (S.FAILED, S.CANCELLED):
            requeue(c, now, child, S.PENDING if deps_satisfied(c, child) else S.WAITING)
    release_parent(c, now, parent.id)


# -- dependency edits ----------------------------------------------------------------------


def add_dependencies(c: Conn, now: float, job_id: int, deps: Sequence[int]) -> Job:
    job = rowmap.get(c, job_id)
    if job.status not in EDITABLE:
        raise IllegalTransition(
            job_id,
            job.status,
            job.status,
            "add a dependency: it is running, waiting for children or final",
        )
    for dep in deps:
        if c.execute(Q.DEPENDENCY_STATUS, {"dep": dep}).fetchone() is None:
            raise DependencyError(f"job {dep} does not exist")
        path = dependency_path(c, dep, job_id)
        if path is not None:
            cycle = [job_id, *path]
            raise DependencyError(
                "would close a cycle: "
                + " -> ".join(f"job {j}" for j in cycle)
                + " (each depends on the next)",
                cycle=cycle,
            )
    for dep in deps:
        c.execute(Q.INSERT_DEP, (job_id, dep))
        rowmap.event(c, now, job_id, "dependency_added", None, job.attempt, None, f"on job {dep}")
    job = rowmap.get(c, job_id)
    broken = [
        (dep_id, S(status))
        for dep_id, status in c.execute(Q.DEP_STATUSES, (job_id,))
        if S(status) in (S.FAILED, S.CANCELLED)
    ]
    if broken and job.on_dependency_failure != "ignore":
        target = S.CANCELLED if job.on_dependency_failure == "cancel" else S.FAILED
        dep_id, status = broken[0]
        set_status(c, now, job, target, f"dependency_{status}", f"dependency {dep_id} is {status}")
    elif job.status in (S.PENDING, S.DELAYED) and not deps_satisfied(c, job):
        set_status(c, now, job, S.WAITING, "waiting")
    return rowmap.get(c, job_id)


def remove_dependencies(c: Conn, now: float, job_id: int, deps: Sequence[int]) -> Job:
    job = rowmap.get(c, job_id)
    if job.status not in EDITABLE:
        raise IllegalTransition(
            job_id, job.status, job.status, "remove a dependency: it is running or final"
        )
    for dep in deps:
        if c.execute(Q.DELETE_DEP, (job_id, dep)).rowcount == 0:
            raise DependencyError(f"job {job_id} does not depend on job {dep}")
        rowmap.event(c, now, job_id, "dependency_removed", None, job.attempt, None, f"job {dep}")
    if job.status is S.WAITING and deps_satisfied(c, job):
        set_status(c, now, job, ready_status(c, now, job), "released")
    return rowmap.get(c, job_id)


def dependency_path(c: Conn, start: int, goal: int) -> list[int] | None:
    """Jobs from `start` to `goal` following depends-on edges, if `goal` is reachable."""
    if start == goal:
        return [start]
    came_from: dict[int, int] = {start: start}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for (nxt,) in c.execute(Q.DEPS_OF, (node,)):
            if nxt in came_from:
                continue
            came_from[nxt] = node
            if nxt == goal:
                path = [goal]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            todo.append(nxt)
    return None


def dispatch(c: Conn, now: float, parent_id: int) -> int:
    """Make a distributed job's held sub-tasks claimable; return how many were released."""
    parent = rowmap.get(c, parent_id)
    if parent.kind != "distributed":
        raise IllegalTransition(parent_id, parent.status, S.PENDING, "dispatch it: not distributed")
    released = 0
    for child in rowmap.jobs(c, c.execute(Q.CHILDREN, (parent_id,)).fetchall()):
        if child.status is S.PAUSED:
            set_status(c, now, child, ready_status(c, now, child), "dispatched")
            released += 1
    return released
