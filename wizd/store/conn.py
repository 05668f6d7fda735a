"""What the store's transaction functions need of a database connection.

The functions in ops, flows, rows, reads, admin, limits and schedules run whole inside one
transaction and speak to the database through this small DB-API subset only, naming every
statement by its constant in sqlite_queries. The SQLite store hands them a
`sqlite3.Connection`; the PostgreSQL store hands them a connection that runs, for each of
those constants, the statement of the same name in postgres_queries. So the flows logic
exists once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
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


def execute_rows(
    c: Conn, sql: str, rows: Sequence[Sequence[Any]], tail: Sequence[Any] = ()
) -> Cursor:
    """Run a named statement whose `{items}` are `rows` (values of one column each, or rows
    of several), then the `tail` parameters: SQLite gets that many placeholders; a connection
    with its own execute_rows passes them its way (PostgreSQL: one array per column)."""
    own = getattr(c, "execute_rows", None)
    if own is not None:
        cursor: Cursor = own(sql, rows, tail)
        return cursor
    width = len(rows[0])
    item = "?" if width == 1 else "(" + ", ".join("?" * width) + ")"
    expanded = sql.format(items=", ".join([item] * len(rows)))
    return c.execute(expanded, [value for row in rows for value in row] + list(tail))


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
