"""What the store's transaction functions need of a database connection.

The functions in ops, flows, rows, reads, admin, limits and schedules run whole inside one
transaction and speak to the database through this small DB-API subset only, naming every
statement by its constant in sqlite_queries. The SQLite store hands them a
`sqlite3.Connection`; the PostgreSQL store hands them a connection that runs, for each of
those constants, the statement of the same name in postgres_queries. So the flows logic
exists once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


def dialect(c: Conn) -> Dialect:
    """Which database `c` talks to (a plain sqlite3 connection says nothing: sqlite)."""
    found: Dialect = getattr(c, "dialect", "sqlite")
    return found


def expand(c: Conn, sql: str, n: int, width: int = 1) -> str:
    """A named statement with `{items}` replaced by n placeholders, or by n rows of `width`
    placeholders each: the statement to execute with n (x width) parameters."""
    own = getattr(c, "expand", None)
    if own is not None:
        expanded: str = own(sql, n, width)
        return expanded
    item = "?" if width == 1 else "(" + ", ".join("?" * width) + ")"
    return sql.format(items=", ".join([item] * n))


def insert_many(c: Conn, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run a named INSERT … VALUES (…) statement once per row: SQLite's executemany, or
    (a connection with its own insert_many) one multi-row statement per chunk of rows."""
    own = getattr(c, "insert_many", None)
    if own is not None:
        own(sql, rows)
    else:
        c.executemany(sql, rows)


def group_cache(c: Conn) -> dict[Any, Any]:
    """The current group transaction's cache (queue defaults read once per group, not once
    per job); a throwaway dict on a connection that keeps none."""
    cache: dict[Any, Any] | None = getattr(c, "group_cache", None)
    return cache if cache is not None else {}


def reset_group_cache(c: Conn) -> None:
    cache: dict[Any, Any] | None = getattr(c, "group_cache", None)
    if cache is not None:
        cache.clear()
