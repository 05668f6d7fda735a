"""What the store's transaction functions run on PostgreSQL: `PgConn`, a psycopg connection
that speaks the sqlite_queries statement names (wizd.store.conn), running for each the
PostgreSQL statement of the same name in postgres_queries.

A statement that waited longer than the session's lock_timeout for a lock (another
transaction, maybe a frozen daemon's, holds the row) raises a StoreError: the op that ran it
fails alone (its group runs again with each op in a savepoint), and its caller retries (a
worker writes an outcome again, the daemon's next heartbeat comes, a client is told).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wizd.errors import StoreError
from wizd.store import postgres_queries as PQ
from wizd.store import sqlite_queries as Q

try:
    import psycopg
    import psycopg.errors
    from psycopg.pq import TransactionStatus
except ImportError:  # pragma: no cover - checked when a postgresql:// URL is opened
    psycopg = None  # type: ignore[assignment]

MAX_PARAMS = 30_000  # parameters per statement (PostgreSQL allows 65,535)

# -- statements --------------------------------------------------------------------------

# SQLite text of every named statement -> the PostgreSQL text of the same name.
_NAMED: dict[str, str] = {
    value: getattr(PQ, name)
    for name, value in vars(Q).items()
    if name.isupper() and isinstance(value, str) and hasattr(PQ, name)
}


def _quoted(value: Any) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# How a column's values become elements of its array literal. The arrays go as text
# ('{1,2,3}', cast by the statement): psycopg's list dumper costs about a microsecond per
# element, 0.5 ms for the four columns of 100 completions, a third of the statement.
_ARRAY_OF: dict[str, Callable[[Any], str]] = {
    "float8": lambda value: repr(float(value)),
    "text": _quoted,
    "int": lambda value: str(int(value)),
    "bigint": lambda value: str(int(value)),
}


def _array(kind: Callable[[Any], str], column: Iterable[Any]) -> str:
    """A PostgreSQL array literal of `column`'s values (None: NULL)."""
    return "{" + ",".join("NULL" if value is None else kind(value) for value in column) + "}"


# SQLite text of an INSERT -> the PostgreSQL statement inserting many rows from arrays, and
# the conversion of each column.
_MANY: dict[str, tuple[str, list[Callable[[Any], str]]]] = {
    getattr(Q, name): (getattr(PQ, f"{name}_MANY"), [_ARRAY_OF[t] for t in types])
    for name, types in (
        (name[: -len("_TYPES")], value)
        for name, value in vars(PQ).items()
        if name.endswith("_TYPES")
    )
}
# SQLite text of a statement with {items} -> the conversion of each of its array columns.
_ITEMS: dict[str, list[Callable[[Any], str]]] = {
    getattr(Q, name[: -len("_ARRAYS")]): [_ARRAY_OF[t] for t in types]
    for name, types in vars(PQ).items()
    if name.endswith("_ARRAYS")
}
_PARAM = re.compile(r"\?|(?<![:\w]):([A-Za-z_]\w*)")
_translated: dict[str, str] = {}


class Expanded(str):
    """PostgreSQL text to run as it is: made from a named statement (PgConn.insert_many's
    rows)."""


def translate(sqlite_sql: str) -> str:
    """The PostgreSQL text for a statement the transaction functions run."""
    if isinstance(sqlite_sql, Expanded):
        return sqlite_sql
    pg = _NAMED.get(sqlite_sql)
    if pg is not None:
        return pg
    pg = _translated.get(sqlite_sql)
    if pg is None:
        # Built at run time from a named statement (an IN list of ids, a filter).
        text = sqlite_sql.replace("%", "%%").replace(Q.TAG_FILTER, PQ.TAG_FILTER)
        pg = _PARAM.sub(lambda m: f"%({m.group(1)})s" if m.group(1) else "%s", text)
        if len(_translated) > 1024:
            _translated.clear()
        _translated[sqlite_sql] = pg
    return pg


class PgConn:
    """A psycopg connection that speaks the transaction functions' statement names."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.group_cache: dict[Any, Any] = {}
        self.changes = 0

    def execute(self, sqlite_sql: str, parameters: Any = None, /) -> psycopg.Cursor[Any]:
        return self._run(sqlite_sql, parameters, None)

    def _run(self, sqlite_sql: str, parameters: Any, prepare: bool | None) -> psycopg.Cursor[Any]:
        try:
            cur = self.conn.execute(translate(sqlite_sql), parameters, prepare=prepare)
        except psycopg.errors.LockNotAvailable as exc:
            raise lock_timed_out(exc) from exc
        if cur.rowcount > 0 and cur.statusmessage and not cur.statusmessage.startswith("SELECT"):
            self.changes += cur.rowcount
        return cur

    def executemany(self, sqlite_sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        rows = list(parameters)
        try:
            cur.executemany(translate(sqlite_sql), rows)
        except psycopg.errors.LockNotAvailable as exc:
            raise lock_timed_out(exc) from exc
        self.changes += len(rows)
        return cur

    def execute_rows(
        self, sqlite_sql: str, rows: Sequence[Sequence[Any]], tail: Sequence[Any]
    ) -> psycopg.Cursor[Any]:
        """wizd.store.conn.execute_rows: the statement of that name with one array per column
        of `rows` (its X_ARRAYS in postgres_queries), then `tail`."""
        columns = [
            _array(kind, column)
            for kind, column in zip(_ITEMS[sqlite_sql], zip(*rows, strict=True), strict=True)
        ]
        # Not prepared: psycopg prepares a statement run five times, and the prepared
        # completion of 100 jobs took 4.1-4.6 ms where the unprepared one takes 2.4-2.6 ms.
        return self._run(sqlite_sql, [*columns, *tail], False)

    def insert_many(self, sqlite_sql: str, rows: list[tuple[Any, ...]]) -> None:
        """wizd.store.conn.insert_many: all the rows in one statement, one array per column
        where the statement has an array form (`_MANY`), else many VALUES rows per chunk
        (a round trip and a statement per chunk instead of per row)."""
        if not rows:
            return
        try:
            self._insert_many(sqlite_sql, rows)
        except psycopg.errors.LockNotAvailable as exc:
            raise lock_timed_out(exc) from exc

    def _insert_many(self, sqlite_sql: str, rows: list[tuple[Any, ...]]) -> None:
        many = _MANY.get(sqlite_sql)
        if many is not None:
            sql, kinds = many
            columns = [
                _array(kind, column)
                for kind, column in zip(kinds, zip(*rows, strict=True), strict=True)
            ]
            self.conn.execute(sql, columns)
            self.changes += len(rows)
            return
        head, _, row = _NAMED[sqlite_sql].rpartition("VALUES")
        row = row.strip()
        size = max(1, MAX_PARAMS // len(rows[0]))
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            sql = Expanded(f"{head}VALUES {', '.join([row] * len(chunk))}")
            self.conn.execute(sql, [value for values in chunk for value in values])
            self.changes += len(chunk)

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != TransactionStatus.IDLE


def lock_timed_out(exc: BaseException) -> StoreError:
    """The error of a statement that waited for a lock longer than lock_timeout."""
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(
        "database: waited longer than postgres_lock_timeout for a row another transaction "
        f"holds (a daemon frozen inside one?); try again ({first_line})"
    )
