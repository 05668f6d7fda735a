"""The read functions of the SQLite store: counts, stats, events, queues, workers and the
running jobs. Each runs whole on the reader's thread and changes nothing."""

from __future__ import annotations

import json
from typing import Any, cast

from wizd.errors import JobNotFound
from wizd.model import Event, Job, JobOptions, JobStatus, QueueStats, WorkerInfo, utc, zero_counts
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn

S = JobStatus


def peek(c: Conn, now: float, queue: str, n: int) -> list[Job]:
    rows = c.execute(Q.PEEK, {"queue": queue, "n": n, "now": now}).fetchall()
    return rowmap.jobs(c, rows)


def counts(c: Conn, queue: str | None) -> dict[str, dict[str, int]]:
    rows = (
        c.execute(Q.COUNTS_QUEUE, (queue,)) if queue is not None else c.execute(Q.COUNTS_ALL)
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    if queue is not None:
        out[queue] = zero_counts()
    for q, status, n in rows:
        out.setdefault(q, zero_counts())[status] = n
    return out


def recount(c: Conn) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for q, status, n in c.execute(Q.RECOUNT_ALL):
        out.setdefault(q, zero_counts())[status] = n
    return out


def oldest_pending(c: Conn, queue: str) -> float | None:
    value = c.execute(Q.OLDEST_PENDING, {"q": queue}).fetchone()[0]
    return None if value is None else float(value)


def stats(c: Conn, now: float, queue: str, window: float) -> QueueStats:
    since = now - window
    counts = zero_counts()
    for _, status, n in c.execute(Q.COUNTS_QUEUE, (queue,)):
        counts[status] = n
    done, avg_run = c.execute(Q.STATS_FINISHED, (since, queue)).fetchone()
    (avg_wait,) = c.execute(Q.STATS_WAIT, (queue, since)).fetchone()
    oldest = c.execute(Q.OLDEST_PENDING, {"q": queue}).fetchone()[0]
    paused = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
    return QueueStats(
        queue=queue,
        counts=counts,
        paused=bool(paused and paused[1]),
        avg_wait_seconds=avg_wait,
        avg_run_seconds=avg_run,
        throughput_per_minute=done / (window / 60.0),
        window_seconds=window,
        oldest_pending_age_seconds=None if oldest is None else max(now - oldest, 0.0),
    )


# One line of a history before it is numbered: its sort key (time, then stored lines by id
# before a derived line of the same time), then at, kind, status, attempt, worker, message.
Line = tuple[tuple[float, int, int], float, str, str | None, int | None, str | None, str | None]
FIRST = float("-inf")


def events(c: Conn, job_id: int, after: int) -> list[Event]:
    """The job's history after its first `after` lines: its stored events merged with the
    three that every job's row holds and no event row stores (schema 6): `enqueued` (a job
    enqueued pending, at created_at), `claimed` of the current run (a running job, or one
    its run completed) and `completed`. A line keeps its number as the history grows: the
    `claimed` stored when a run ends otherwise takes the place the derived one had."""
    row = c.execute(Q.HISTORY_ROW, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    lines: list[Line] = [((r[1], 0, r[0]), *r[1:]) for r in c.execute(Q.EVENTS, (job_id,))]
    lines += derived(row, lines)
    lines.sort(key=lambda line: line[0])
    return [
        Event(
            id=n,
            job_id=job_id,
            at=cast(Any, utc(at)),
            kind=kind,
            status=S(status) if status else None,
            attempt=attempt,
            worker_id=worker_id,
            message=message,
        )
        for n, (_, at, kind, status, attempt, worker_id, message) in enumerate(lines, 1)
        if n > after
    ]


def derived(row: tuple[Any, ...], stored: list[Line]) -> list[Line]:
    """The lines of a history that the job row holds and no event row stores."""
    status, attempt, worker_id, created_at, started_at, finished_at = row
    lines: list[Line] = []
    if not any(line[2] == "enqueued" for line in stored):
        lines.append(((FIRST, 0, 0), created_at, "enqueued", S.PENDING, 0, None, None))
    # A completed run's end is derived unless stored: a run that a retry from a step
    # followed stored its claim and completion then, before this run's start.
    completed = status == S.COMPLETED and not any(
        line[3] == S.COMPLETED and (started_at is None or line[1] >= started_at) for line in stored
    )
    if status == S.RUNNING or completed:
        lines.append(
            ((started_at, 1, 0), started_at, "claimed", S.RUNNING, attempt, worker_id, None)
        )
    if completed:
        lines.append(
            ((finished_at, 2, 0), finished_at, "completed", S.COMPLETED, attempt, worker_id, None)
        )
    return lines


def owned(c: Conn, worker_id: str, pairs: list[tuple[int, int]]) -> set[int]:
    """The jobs of `pairs` (job id, attempt) that `worker_id` still runs at that attempt."""
    kept: set[int] = set()
    for start in range(0, len(pairs), 400):
        chunk = pairs[start : start + 400]
        sql = Q.OWNED.format(ids=",".join("?" * len(chunk)))
        rows = c.execute(sql, [worker_id, *(job_id for job_id, _ in chunk)])
        attempts = dict(chunk)
        kept.update(job_id for job_id, attempt in rows if attempts[job_id] == attempt)
    return kept


def queues(c: Conn) -> list[tuple[str, bool, JobOptions]]:
    return [
        (name, bool(paused), JobOptions.from_dict(json.loads(defaults)))
        for name, paused, defaults in c.execute(Q.QUEUES_ALL)
    ]


def queue_options(c: Conn, queue: str) -> tuple[bool, JobOptions]:
    row = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
    if row is None:
        return False, JobOptions()
    return bool(row[1]), JobOptions.from_dict(json.loads(row[2]))


def stale_running(c: Conn, now: float, older_than: float) -> list[Job]:
    rows = c.execute(Q.RUNNING_STALE, (now - older_than,)).fetchall()
    return rowmap.jobs(c, rows)


def running_workers(c: Conn) -> set[str]:
    return {r[0] for r in c.execute(Q.WORKERS_WITH_RUNNING)}


def workers(c: Conn) -> list[WorkerInfo]:
    return [
        WorkerInfo(
            id=r[0],
            hostname=r[1],
            pid=r[2],
            queues=tuple(json.loads(r[3])),
            concurrency=r[4],
            version=r[5],
            started_at=cast(Any, utc(r[6])),
            heartbeat_at=cast(Any, utc(r[7])),
            stopped_at=utc(r[8]),
            busy=r[9],
            metrics=r[10],
        )
        for r in c.execute(Q.WORKERS_ALL)
    ]
