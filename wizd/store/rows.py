"""Row mapping and small shared helpers for the store's transaction functions."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from wizd.errors import JobNotFound
from wizd.model import Backoff, Job, JobStatus, build_job, compact_json
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, dialect, execute_rows, insert_many
from wizd.store.outcomes import ResultJSON

S = JobStatus
JOB_WIDTH = len(Q.JOB_COLUMNS.split(","))  # columns of a JOB_COLUMNS row


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


def counted(c: Conn, deltas: Mapping[tuple[str, JobStatus], int]) -> None:
    """Add `deltas` to the per-status counts, one COUNT_ADD per (queue, status). On SQLite
    the statements that insert jobs (schema 7), claim and complete them (schema 5) count
    themselves this way, once per statement; the count trigger counts every other change.
    PostgreSQL's statement triggers count every change themselves."""
    if dialect(c) != "sqlite":
        return
    rows = [(queue, status, n) for (queue, status), n in deltas.items() if n]
    if len(rows) == 1:  # execute costs less than executemany for a single row
        c.execute(Q.COUNT_ADD, rows[0])
    elif rows:
        c.executemany(Q.COUNT_ADD, rows)


def moved(c: Conn, queues: Iterable[str], old: JobStatus, new: JobStatus) -> None:
    """Count jobs (one queue name per job) that a claim or a completion moved from `old`
    to `new`."""
    deltas: Counter[tuple[str, JobStatus]] = Counter()
    for queue, n in Counter(queues).items():
        deltas[queue, old] -= n
        deltas[queue, new] += n
    counted(c, deltas)


_STATUS = {status.value: status for status in S}


def stamper() -> Callable[[float | None], datetime | None]:
    """Converts timestamps to UTC datetimes, each distinct one once: the rows of one claim
    share most of theirs (claimed, heartbeat and updated at the same now)."""
    seen: dict[float, datetime] = {}

    def at(ts: float | None) -> datetime | None:
        if ts is None:
            return None
        stamp = seen.get(ts)
        if stamp is None:
            stamp = seen[ts] = datetime.fromtimestamp(ts, UTC)
        return stamp

    return at


def job_from_row(
    row: Sequence[Any], deps: tuple[int, ...], at: Callable[[float | None], datetime | None]
) -> Job:
    """A Job from a JOB_COLUMNS row, its dependencies, and a stamper for its timestamps."""
    return build_job(
        (
            row[0],  # id
            row[1],  # queue
            row[2],  # name
            json.loads(row[3]),  # payload
            _STATUS[row[4]],  # status
            row[5],  # priority
            row[6],  # attempt
            row[7],  # max_attempts
            Backoff.from_json(row[8]),  # backoff
            row[9],  # timeout
            at(row[10]),  # run_at
            at(row[11]),  # expires_at
            row[12],  # parent_id
            row[13],  # batch_id
            () if row[14] == "[]" else tuple(json.loads(row[14])),  # tags
            json.loads(row[15]) if row[15] is not None else None,  # context
            json.loads(row[16]) if row[16] is not None else None,  # result
            row[17],  # error
            row[18],  # progress
            row[19],  # progress_message
            row[20],  # worker_id
            at(row[21]),  # heartbeat_at
            at(row[22]),  # created_at
            at(row[23]),  # updated_at
            at(row[24]),  # started_at
            at(row[25]),  # finished_at
            row[26],  # on_dependency_failure
            row[27],  # on_child_failure
            row[28],  # kind
            row[29],  # unique_key
            row[30],  # concurrency_key
            deps,  # depends_on
        )
    )


class JobRows:
    """JOB_COLUMNS rows and their dependencies, read inside a transaction; `build()` makes
    the Jobs later, outside it (a claim builds them on the event loop, so that the store's
    one writer thread spends its time on statements, not on JSON and datetimes)."""

    __slots__ = ("deps", "rows")

    def __init__(self, rows: Sequence[Sequence[Any]], deps: dict[int, list[int]]) -> None:
        self.rows = rows
        self.deps = deps

    @classmethod
    def read(cls, c: Conn, rows: Sequence[Sequence[Any]]) -> JobRows:
        """The rows, with their dependencies looked up on `c`."""
        deps: dict[int, list[int]] = {}
        ids = [(r[0],) for r in rows]
        for start in range(0, len(ids), 500):
            for job_id, dep in execute_rows(c, Q.DEPS_OF_MANY, ids[start : start + 500]):
                deps.setdefault(job_id, []).append(dep)
        return cls(rows, deps)

    @classmethod
    def with_deps(cls, rows: Sequence[Sequence[Any]]) -> JobRows:
        """Rows that end with their job's dependencies (PostgreSQL's claims)."""
        return cls(rows, {r[0]: r[JOB_WIDTH] for r in rows if r[JOB_WIDTH]})

    def build(self) -> list[Job]:
        at, deps = stamper(), self.deps
        return [job_from_row(r, tuple(deps.get(r[0], ())), at) for r in self.rows]


def jobs(c: Conn, rows: Sequence[Sequence[Any]]) -> list[Job]:
    return JobRows.read(c, rows).build() if rows else []


def get(c: Conn, job_id: int) -> Job:
    row = c.execute(Q.GET_JOB, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return jobs(c, [row])[0]


def get_many(c: Conn, ids: Sequence[int]) -> list[Job]:
    """The jobs in the order asked; JobNotFound names the first missing id."""
    return [get(c, i) for i in ids]


def result_json(result: Any) -> str | None:
    if result is None:
        return None
    if type(result) is ResultJSON:  # encoded and capped by SQLStore.finish
        return str.__str__(result)
    try:
        return compact_json(result)
    except (TypeError, ValueError):
        return json.dumps(repr(result))


def related(c: Conn, sql: str, job_id: int) -> list[Job]:
    """Jobs selected by `sql` for an existing job (JobNotFound otherwise)."""
    if c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
        raise JobNotFound(job_id)
    return jobs(c, c.execute(sql, (job_id,)).fetchall())
