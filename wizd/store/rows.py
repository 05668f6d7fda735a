"""Row mapping and small shared helpers for the store's transaction functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

from wizd.errors import JobNotFound
from wizd.model import Backoff, Job, JobFilter, JobStatus, utc
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, insert_many

S = JobStatus


def event(
    c: Conn,
    now: float,
    job_id: int,
    kind: str,
    status: JobStatus | None,
    attempt: int | None,
    worker_id: str | None,
    message: str | None,
) -> None:
    c.execute(Q.INSERT_EVENT, (job_id, now, kind, status, attempt, worker_id, message))


def events(
    c: Conn,
    now: float,
    rows: Iterable[tuple[int, str, JobStatus | None, int | None, str | None, str | None]],
) -> None:
    batch = [(r[0], now, r[1], r[2], r[3], r[4], r[5]) for r in rows]
    if len(batch) == 1:  # execute costs less than executemany for a single row
        c.execute(Q.INSERT_EVENT, batch[0])
    elif batch:
        insert_many(c, Q.INSERT_EVENT, batch)


def job_from_row(row: Sequence[Any], deps: tuple[int, ...] = ()) -> Job:
    return Job(
        id=row[0],
        queue=row[1],
        name=row[2],
        payload=json.loads(row[3]),
        status=S(row[4]),
        priority=row[5],
        attempt=row[6],
        max_attempts=row[7],
        backoff=Backoff.from_json(row[8]),
        timeout=row[9],
        run_at=cast(Any, utc(row[10])),
        expires_at=utc(row[11]),
        parent_id=row[12],
        batch_id=row[13],
        tags=() if row[14] == "[]" else tuple(json.loads(row[14])),
        context=json.loads(row[15]) if row[15] is not None else None,
        result=json.loads(row[16]) if row[16] is not None else None,
        error=row[17],
        progress=row[18],
        progress_message=row[19],
        worker_id=row[20],
        heartbeat_at=utc(row[21]),
        created_at=cast(Any, utc(row[22])),
        updated_at=cast(Any, utc(row[23])),
        started_at=utc(row[24]),
        finished_at=utc(row[25]),
        on_dependency_failure=row[26],
        on_child_failure=row[27],
        kind=row[28],
        unique_key=row[29],
        concurrency_key=row[30],
        depends_on=deps,
    )


def jobs(c: Conn, rows: Sequence[Sequence[Any]]) -> list[Job]:
    if not rows:
        return []
    deps: dict[int, list[int]] = {}
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = Q.DEPS_OF_MANY.format(ids=",".join("?" * len(chunk)))
        for job_id, dep in c.execute(sql, chunk):
            deps.setdefault(job_id, []).append(dep)
    return [job_from_row(r, tuple(deps.get(r[0], ()))) for r in rows]


def get(c: Conn, job_id: int) -> Job:
    row = c.execute(Q.GET_JOB, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return jobs(c, [row])[0]


def get_many(c: Conn, ids: Sequence[int]) -> list[Job]:
    """The jobs in the order asked; JobNotFound names the first missing id."""
    return [get(c, i) for i in ids]


def list_jobs(c: Conn, f: JobFilter) -> list[Job]:
    where: list[str] = []
    args: list[Any] = []
    if f.queue is not None:
        where.append("queue = ?")
        args.append(f.queue)
    if f.statuses:
        where.append(f"status IN ({','.join('?' * len(f.statuses))})")
        args.extend(f.statuses)
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
    # f.sort and f.order are checked against fixed lists in JobFilter.
    sql = f"SELECT {Q.JOB_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {f.sort} {f.order.upper()}, id {f.order.upper()} LIMIT ? OFFSET ?"
    args.extend([f.limit, f.offset])
    return jobs(c, c.execute(sql, args).fetchall())


def result_json(result: Any) -> str | None:
    if result is None:
        return None
    try:
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(result))


def related(c: Conn, sql: str, job_id: int) -> list[Job]:
    """Jobs selected by `sql` for an existing job (JobNotFound otherwise)."""
    if c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
        raise JobNotFound(job_id)
    return jobs(c, c.execute(sql, (job_id,)).fetchall())
