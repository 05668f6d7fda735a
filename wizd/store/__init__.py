"""Persistence behind one protocol: SQLite by default, PostgreSQL to scale out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wizd.store.base import Claimed, Finish, Fired, FiredJob, Interrupted, Store

__all__ = ["Claimed", "Finish", "Fired", "FiredJob", "Interrupted", "Store", "open_store"]


POSTGRES_ONLY = frozenset(
    {"schema", "pool_size", "connect_timeout", "lock_timeout", "idle_in_transaction_timeout"}
)
POSTGRES_OPTIONS = POSTGRES_ONLY | {"max_depth", "max_children", "create", "read_only"}


def open_store(url: str, *, clock: Callable[[], float] = time.time, **options: Any) -> Store:
    """A store for `url` (not yet opened): a path, sqlite:///path, :memory:, or postgresql://…

    Options a backend does not have are ignored (SQLite's synchronous and busy_timeout on
    PostgreSQL; PostgreSQL's schema, pool_size and connect_timeout on SQLite), so that one
    set of settings serves either URL. size_limits (wizd.SizeLimits) caps what a run's
    outcome may hold (its result and error)."""
    limits = options.pop("size_limits", None)
    store = _open(url, clock, options)
    if limits is not None:
        store.size_limits = limits
    return store


def _open(url: str, clock: Callable[[], float], options: dict[str, Any]) -> Store:
    if url.startswith(("postgres://", "postgresql://")):
        from wizd.store import postgres

        conninfo, from_url = postgres.parse_url(url)
        pg_options = {k: v for k, v in options.items() if k in POSTGRES_OPTIONS}
        pg_options = {k: v for k, v in pg_options.items() if v is not None}
        config = postgres.PostgresConfig(conninfo=conninfo, **{**pg_options, **from_url})
        return postgres.PostgresStore(config, clock=clock)
    from wizd.store.sqlite import SQLiteConfig, SQLiteStore, parse_url

    sqlite_options = {k: v for k, v in options.items() if k not in POSTGRES_ONLY}
    return SQLiteStore(SQLiteConfig(path=parse_url(url), **sqlite_options), clock=clock)
