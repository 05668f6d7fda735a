"""Jobs finished per queue, status and minute over a recent window: the console's
sparklines, counted by one GROUP BY over the jobs_finished index (status, finished_at),
not by reading the jobs. Portable SQL: the PostgreSQL connection translates the
placeholders (wizd.store.pg_statements.translate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from wizd.store.conn import Conn

T = TypeVar("T")

# The minute of a finish, counted from the window's start: seconds rounded (PostgreSQL) or
# truncated (SQLite) to an integer, then integer division; the same bucket either way
# but for a finish within half a second of a minute's edge.
FINISHED_PER_MINUTE = """
SELECT queue, status, CAST(finished_at - ? AS INTEGER) / 60 AS minute, COUNT(*)
FROM jobs
WHERE status IN ('completed', 'failed') AND finished_at >= ?
GROUP BY queue, status, minute
"""
Counts = dict[str, dict[str, list[int]]]


def per_minute(c: Conn, since: float, minutes: int) -> Counts:
    """{queue: {"completed": [n per minute, oldest first], "failed": [...]}}, for the
    queues that finished a job since `since`."""
    out: Counts = {}
    for queue, status, minute, n in c.execute(FINISHED_PER_MINUTE, (since, since)).fetchall():
        slots = out.setdefault(queue, {"completed": [0] * minutes, "failed": [0] * minutes})
        slots[status][min(max(int(minute), 0), minutes - 1)] += int(n)
    return out


class ActivityMethods:
    """The Store's activity read over a SQLStore's `_read` and clock."""

    clock: Callable[[], float]

    async def _read(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def finished_per_minute(self, minutes: int) -> Counts:
        since = self.clock() - minutes * 60
        return await self._read(lambda c: per_minute(c, since, minutes))
