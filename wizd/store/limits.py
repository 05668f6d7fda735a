"""Per-queue limits and concurrency keys: applied inside the claim transaction, and set by
operators.

A claim reads its queue's row first (wizd.store.claims.claim). A queue with no limit and no
job ever carrying a concurrency key takes the plain CLAIM at no extra cost. Otherwise the
claim reads the row again (QUEUE_CLAIM_LOCK: SQLite's write lock is held already;
PostgreSQL locks the row), counts what runs, draws from the queue's token bucket kept in
that row, and claims with CLAIM_KEYED when concurrency limits exist. Jobs held back stay pending:
nothing about them changes, and the claim says which limit held them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from wizd.errors import InvalidJob
from wizd.model import THROTTLE_LIMITS, QueueLimits, Rate
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn

# How a claim was throttled: (limit that held pending jobs back, seconds until the rate
# limit frees the next job).
Throttle = tuple[str | None, float | None]
NOT_THROTTLED: Throttle = (None, None)
LIMITS = THROTTLE_LIMITS
# Epoch seconds carry ~0.2 µs of resolution: a bucket refilled to 0.9999999 is full.
TOKEN_SLACK = 1e-6


def applies(row: Sequence[Any]) -> bool:
    """Does the queue row (QUEUE_CLAIM_GET) carry any limit or concurrency keys?"""
    return row[2] is not None or row[3] is not None or bool(row[8])


def claim_rows(
    c: Conn, now: float, row: Sequence[Any], args: dict[str, Any]
) -> tuple[list[Any], Throttle]:
    """Claim under the queue's limits: the rows claimed, and which limit (if any) held
    pending jobs back."""
    row = c.execute(Q.QUEUE_CLAIM_LOCK, {"queue": row[0]}).fetchone() or row
    queue, _, max_running, rate_count, rate_period, burst, tokens, rate_at, keyed = row
    running, pending = c.execute(Q.QUEUE_LOAD, {"queue": queue, "n": args["n"]}).fetchone()
    want = min(args["n"], pending)
    if want == 0:
        return [], NOT_THROTTLED
    throttled: str | None = None
    retry_in: float | None = None
    if max_running is not None and running + want > max_running:
        want = max(max_running - running, 0)
        throttled = "max_running"
    level: float | None = None
    if rate_count is not None:
        per_second = rate_count / rate_period
        level = bucket_level(tokens, rate_at, burst, per_second, now)
        allowed = math.floor(level + TOKEN_SLACK)
        if allowed < want:
            want = allowed
            throttled = "rate"
            retry_in = max(1.0 - (level - allowed), 0.0) / per_second
    if want == 0:
        return [], (throttled, retry_in)
    keyed_limits = c.execute(Q.CLAIM_CONCURRENCY_LIMITS).fetchall() if keyed else []
    statement = Q.CLAIM_KEYED if keyed_limits else Q.CLAIM
    rows = c.execute(statement, {**args, "n": want}).fetchall()
    if level is not None and rows:
        c.execute(Q.QUEUE_TAKE_TOKENS, {"queue": queue, "tokens": level - len(rows), "now": now})
    if len(rows) < want and throttled is None:
        throttled = "concurrency_key"
    return rows, (throttled, retry_in)


def bucket_level(
    tokens: float | None, at: float | None, burst: int | None, per_second: float, now: float
) -> float:
    """Tokens in the bucket now: what was left at `at`, refilled at the rate, at most
    `burst`. A bucket never drawn from is full."""
    cap = float(burst or 1)
    if tokens is None or at is None:
        return cap
    return min(cap, tokens + max(now - at, 0.0) * per_second)


# -- operators' settings --------------------------------------------------------------------
def limits_from_row(row: Sequence[Any]) -> QueueLimits:
    name, max_running, rate_count, rate_period, burst = row[:5]
    rate = None if rate_count is None else Rate(rate_count, rate_period)
    return QueueLimits(name, max_running, rate, burst if rate is not None else None)


def queue_limits(c: Conn, queue: str) -> QueueLimits:
    row = c.execute(Q.QUEUE_LIMITS_GET, (queue,)).fetchone()
    return QueueLimits(queue) if row is None else limits_from_row(row)


def all_queue_limits(c: Conn) -> list[QueueLimits]:
    return [limits_from_row(row) for row in c.execute(Q.QUEUE_LIMITS_ALL)]


def set_queue_limits(c: Conn, now: float, queue: str, changes: dict[str, Any]) -> QueueLimits:
    """Apply `changes` (max_running, rate, burst; None clears) to the queue's limits. A new
    rate or burst starts with a full bucket; other changes keep its level."""
    c.execute(Q.QUEUE_ENSURE, (queue,))
    row = c.execute(Q.QUEUE_LIMITS_GET, (queue,)).fetchone()
    current = limits_from_row(row)
    max_running = changes.get("max_running", current.max_running)
    rate: Rate | None = changes.get("rate", current.rate)
    burst: int | None = changes.get("burst", current.burst)
    if rate is None:
        if changes.get("burst") is not None:
            raise InvalidJob("burst", "applies to a rate limit: give rate too")
        burst = None
    elif burst is None:
        burst = 1
    tokens, at = row[5], row[6]
    if rate != current.rate or burst != current.burst:
        tokens, at = None, None
    c.execute(
        Q.QUEUE_SET_LIMITS,
        {
            "queue": queue,
            "max_running": max_running,
            "rate_count": None if rate is None else rate.count,
            "rate_period": None if rate is None else rate.period,
            "rate_burst": burst,
            "rate_tokens": tokens,
            "rate_at": at,
        },
    )
    return QueueLimits(queue, max_running, rate, burst)


def set_concurrency_limit(c: Conn, now: float, key: str, limit: int | None) -> None:
    if limit is None:
        c.execute(Q.CONCURRENCY_LIMIT_DELETE, (key,))
    else:
        c.execute(Q.CONCURRENCY_LIMIT_SET, (key, limit))


def concurrency_limits(c: Conn) -> dict[str, int]:
    return {key: limit for key, limit in c.execute(Q.CONCURRENCY_LIMITS_ALL)}
