"""Claim: promote a queue's due jobs, then move up to n pending jobs to running for a
worker, within the queue's limits (wizd.store.limits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wizd.model import JobStatus
from wizd.store import limits
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.base import Claimed
from wizd.store.conn import Conn, dialect

S = JobStatus


@dataclass(frozen=True, slots=True)
class ClaimRows:
    """What a claim took in its transaction; `claimed()` builds its Jobs after it."""

    rows: rowmap.JobRows | None = None
    throttled: str | None = None
    retry_in: float | None = None

    def claimed(self) -> Claimed:
        return Claimed(self.rows.build() if self.rows else (), self.throttled, self.retry_in)


def claim(c: Conn, now: float, queue: str, worker_id: str, n: int) -> ClaimRows:
    """Promote, then claim up to n jobs. A queue without limits costs what it always did
    (its row, the promotion, one CLAIM); limits are applied by wizd.store.limits. A claim
    stores no event: the job row holds its run (wizd.store.reads.events)."""
    row = c.execute(Q.QUEUE_CLAIM_GET, (queue,)).fetchone()
    if row is not None and row[1]:
        return ClaimRows()
    promoted = c.execute(Q.PROMOTE_QUEUE, {"now": now, "queue": queue}).fetchall()
    if promoted:
        rowmap.events(c, now, [(r[0], "promoted", S.PENDING, r[1], None, None) for r in promoted])
    args = {"worker": worker_id, "now": now, "queue": queue, "n": n}
    if row is None or not limits.applies(row):
        rows = c.execute(Q.CLAIM, args).fetchall()
        throttle = limits.NOT_THROTTLED
    else:
        rows, throttle = limits.claim_rows(c, now, row, args)
    return claimed_rows(c, queue, rows, throttle)


def claimed_rows(
    c: Conn, queue: str, rows: list[Any], throttle: limits.Throttle = limits.NOT_THROTTLED
) -> ClaimRows:
    """The ClaimRows of rows (JOB_COLUMNS, then on PostgreSQL the job's dependencies) that
    a claim statement moved from pending to running."""
    if not rows:
        return ClaimRows(None, *throttle)
    rowmap.moved(c, (queue for _ in rows), S.PENDING, S.RUNNING)
    if dialect(c) == "postgres":  # its claim statements return each job's dependencies
        return claimed_with_deps(rows, throttle)
    rows.sort(key=_claim_order)  # RETURNING order is not the claim order
    return ClaimRows(rowmap.JobRows.read(c, rows), *throttle)


def claimed_with_deps(
    rows: list[Any], throttle: limits.Throttle = limits.NOT_THROTTLED
) -> ClaimRows:
    """The ClaimRows of claimed rows that end with their job's dependencies (PostgreSQL's
    CLAIMED_DEPS and wizd_claim)."""
    rows.sort(key=_claim_order)  # RETURNING order is not the claim order
    return ClaimRows(rowmap.JobRows.with_deps(rows), *throttle)


def _claim_order(row: Sequence[Any]) -> tuple[int, float, int]:
    return (-row[5], row[10], row[0])  # priority DESC, run_at, id
