"""Persistence behind one protocol: SQLite by default, PostgreSQL to scale out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wizd.errors import StoreError
from wizd.store.base import Claimed, Finish, Fired, FiredJob, Interrupted, Store

__all__ = ["Claimed", "Finish", "Fired", "FiredJob", "Interrupted", "Store", "open_store"]


def open_store(url: str, *, clock: Callable[[], float] = time.time, **options: Any) -> Store:
    """A store for `url` (not yet opened): a path, sqlite:///path, :memory:, or postgresql://…"""
    if url.startswith(("postgres://", "postgresql://")):
        raise StoreError("the PostgreSQL backend is not available in this version of wizd")
    from wizd.store.sqlite import SQLiteConfig, SQLiteStore, parse_url

    return SQLiteStore(SQLiteConfig(path=parse_url(url), **options), clock=clock)
