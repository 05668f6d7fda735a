"""The change feed on PostgreSQL: its triggers are on only while somebody watches.

Disabled, the feed's triggers cost the hot path nothing (migration 0015, whose header says
why a watch "from now" still sees every later commit). A registration turns them on when
no lease is held, a sweep turns them off once the last lease is dropped; both run in a
transaction of their own, beside the group commit (switching locks the jobs tables until
its COMMIT, which must not hold up the rest of a group), serialized by wizd_feed_hold().
"""

from __future__ import annotations

from typing import Any, TypeVar

from wizd.errors import StoreError
from wizd.store import feed
from wizd.store.feed import LEASE, FeedMethods
from wizd.store.sql import Op

try:
    import psycopg.errors
except ImportError:  # pragma: no cover - checked when a postgresql:// URL is opened
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")


def register(c: Any, now: float, watcher: str, lease: float, resume: int | None) -> int:
    """feed.register, with the triggers turned on first (waiting, at most lock_timeout,
    for the writers in flight if no lease was held). A role that may not take a lease,
    or whose store cannot turn the triggers on, gets PostgreSQL's InsufficientPrivilege."""
    try:
        c.conn.execute("SELECT wizd_feed_switch(true)")
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreError(
            "database: the change feed could not start within postgres_lock_timeout "
            "(writers, a vacuum or another watch's start held the jobs tables); try again"
        ) from exc
    return feed.register(c, now, watcher, lease, resume)


def sweep(c: Any, now: float, lease: float) -> int:
    """feed.sweep, then the triggers off if no lease is left (left on if the tables are
    busy: the next sweep tries again)."""
    c.conn.execute("SELECT wizd_feed_hold()")
    dropped = feed.sweep(c, now, lease)
    c.conn.execute("SELECT wizd_feed_switch(false)")
    return dropped


class PgFeedMethods(FeedMethods):
    """The feed methods of the PostgreSQL store: leases start and end apart."""

    async def _apart(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def watch_register(
        self, watcher: str, lease: float = LEASE, resume: int | None = None
    ) -> int:
        return await self._apart(lambda c, now: register(c, now, watcher, lease, resume))

    async def sweep_feed(self, lease: float = LEASE) -> int:
        return await self._apart(lambda c, now: sweep(c, now, lease))
