"""The store's job lists: one page of the jobs a JobFilter selects, in its sort and order,
from its start, an offset, or the place a cursor holds (keyset paging, wizd.paging)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wizd.model import JobFilter, JobStatus
from wizd.paging import Page, cursor
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, dialect
from wizd.store.rows import JOB_WIDTH, jobs

S = JobStatus
# The statuses every job passes through, which jobs_queue_status leaves out (schema 9).
QUEUE_STATUS_LEFT_OUT = frozenset((S.PENDING, S.RUNNING, S.COMPLETED))


def status_terms(statuses: Iterable[JobStatus | str]) -> list[str]:
    """WHERE terms selecting jobs in `statuses`, written as constants (each a JobStatus, so
    nothing but a status name reaches the text): SQLite reads a partial index only for a
    query whose WHERE holds the index's own condition, and never with bound values. So a
    single status can use its own index (jobs_claim, jobs_running, jobs_delayed), and
    statuses that jobs_queue_status holds (all but the hot three) add its condition."""
    chosen = [S(status) for status in dict.fromkeys(statuses)]
    names = [f"'{status.value}'" for status in chosen]
    terms = [f"status = {names[0]}" if len(names) == 1 else f"status IN ({', '.join(names)})"]
    if not QUEUE_STATUS_LEFT_OUT.intersection(chosen):
        terms.append(Q.QUEUE_STATUS_INDEXED)
    return terms


def list_index(f: JobFilter) -> str | None:
    """The index SQLite must read for `f`, where its planner, without statistics, would walk
    a queue's jobs by creation (jobs_queue_created, which gives the order) and skip most of
    them: running jobs (never more than the daemons' slots, in jobs_running), and statuses
    that jobs_queue_status holds, of one queue. Parents and batches have their own."""
    if f.kind == "distributed" and f.parent_id is None and f.batch_id is None:
        return "jobs_distributed"  # few among many: their own partial index (schema 16)
    if not f.statuses or f.parent_id is not None or f.batch_id is not None:
        return None
    chosen = {S(status) for status in f.statuses}
    if chosen == {S.RUNNING}:
        return "jobs_running"
    if f.queue is not None and not QUEUE_STATUS_LEFT_OUT.intersection(chosen):
        return "jobs_queue_status"
    return None


def list_page(c: Conn, f: JobFilter) -> Page:
    """The page of jobs `f` selects, and the cursor of the next one (None after the last
    job: one row more than the page is read to know)."""
    where: list[str] = []
    args: list[Any] = []
    if f.queue is not None:
        where.append("queue = ?")
        args.append(f.queue)
    if f.statuses:
        where.extend(status_terms(f.statuses))
    if f.name is not None:
        where.append("name = ?")
        args.append(f.name)
    for tag in f.tags:
        where.append(Q.TAG_FILTER)
        args.append(tag)
    if f.created_after is not None:
        where.append("created_at >= ?")
        args.append(f.created_after)
    if f.created_before is not None:
        where.append("created_at < ?")
        args.append(f.created_before)
    if f.parent_id is not None:
        where.append("parent_id = ?")
        args.append(f.parent_id)
    if f.batch_id is not None:
        where.append("batch_id = ?")
        args.append(f.batch_id)
    if f.kind == "distributed":  # spelled out: the condition of the partial jobs_distributed
        where.append("kind = 'distributed'")
    elif f.kind is not None:
        where.append("kind = ?")
        args.append(f.kind)
    if f.after is not None:
        where.append(after_term(f.sort, f.order))
        value, job_id = f.after
        args.extend([job_id] if f.sort == "id" else [value, value, job_id])
    # f.sort and f.order are checked against fixed lists in JobFilter. The sort column
    # ends each row (after JOB_COLUMNS): the next page's cursor holds its stored value.
    sql = f"SELECT {Q.JOB_COLUMNS}, {f.sort} FROM jobs"
    index = list_index(f) if dialect(c) == "sqlite" else None  # PostgreSQL has statistics
    if index is not None:
        sql += f" INDEXED BY {index}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {f.sort} {f.order.upper()}, id {f.order.upper()} LIMIT ? OFFSET ?"
    args.extend([f.limit + 1, f.offset])
    rows = c.execute(sql, args).fetchall()
    if len(rows) <= f.limit:
        return Page(jobs(c, rows), None)
    last = rows[f.limit - 1]
    return Page(jobs(c, rows[: f.limit]), cursor(f.sort, f.order, last[JOB_WIDTH], last[0]))


def after_term(sort: str, order: str) -> str:
    """The WHERE term of the rows after a (sort value, id) place: for a sort other than id,
    its bound on the sort column alone comes first, so that an index of that column (whose
    entries end with the id on SQLite) seeks the place instead of reading the rows before."""
    op = ">" if order == "asc" else "<"
    if sort == "id":
        return f"id {op} ?"
    return f"{sort} {op}= ? AND ({sort} {op} ? OR id {op} ?)"
