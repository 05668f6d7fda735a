"""The PostgreSQL store: many daemons on many hosts share one database.

The transaction functions are the SQLite store's (wizd.store.sql): each runs whole on a
worker thread with a pooled psycopg connection, naming statements by their sqlite_queries
constant; `PgConn` runs the PostgreSQL statement of the same name (postgres_queries).
Writes are grouped as on SQLite, so one commit serves everything that arrived while the
previous one ran. Claims skip rows that other daemons hold (FOR UPDATE SKIP LOCKED); a
transaction that deadlocks with another daemon's is run again.

Idle daemons wait on LISTEN: a trigger notifies `wizd_<schema>` whenever jobs of a queue
become pending (payload: the queue). A lost notification costs at most a poll interval:
callers still poll. A job enqueued alone into a queue where a daemon waits idle is handed
over to that daemon instead (schema 7, the trigger wizd_hand_over): inserted already
claimed for it, and sent to its own channel `wizd_<schema>:<key>` with its row, so that
the daemon starts it without a round trip (handed_over).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import anyio.to_thread

from wizd.errors import StoreError
from wizd.model import MAX_CHILDREN, MAX_DEPTH, JobOptions, NewJob, utc_at
from wizd.store import ops
from wizd.store import postgres_queries as PQ
from wizd.store import sqlite_queries as Q
from wizd.store.base import Claimed, Finish
from wizd.store.migrations import bundled
from wizd.store.sql import PlainEnqueue, SQLStore

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql
    from psycopg.pq import TransactionStatus
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - checked when a postgresql:// URL is opened
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,39}")
MAX_PARAMS = 30_000  # parameters per statement (PostgreSQL allows 65,535)
RETRIES = 8  # deadlocks with another daemon's transaction, run again
CHECK_IDLE = 2.0  # seconds idle after which a pooled connection is pinged before use
VACUUM_DEAD = 20_000  # dead row versions of jobs (10,000 jobs run) that make a vacuum due
VACUUM_EVERY = 5.0  # seconds: the least time between two vacuums of jobs
LISTEN_RETRY = (0.5, 30.0)  # backoff of the LISTEN connection after a failure: first, max
# Free slots a daemon offers to hand-overs between two of its claims (schema 7): enough for
# jobs enqueued one after another while its last job's outcome is being written, and all
# that a daemon whose host vanished can strand per queue until the reaper recovers them.
HANDED_SLOTS = 4
# The listening session asks the server to notice within about 25 s that the daemon's host
# has vanished (no FIN: a power loss, a partition), ending the session and so its lock,
# after which no job is handed over to it.
LISTENER_SETTINGS = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 15000"
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every bundled PostgreSQL migration, in order."""
    return bundled("postgres")


LATEST_VERSION = max(v for v, _, _ in migrations())


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    conninfo: str  # a libpq URL, without wizd's own parameters
    schema: str = "wizd"
    pool_size: int = 10
    connect_timeout: float = 10.0
    max_depth: int = MAX_DEPTH
    max_children: int = MAX_CHILDREN
    create: bool = True  # False: refuse a database where wizd has not made its tables
    # True: create and migrate nothing, and run every transaction read-only.
    read_only: bool = False

    def __post_init__(self) -> None:
        if not SCHEMA_RE.fullmatch(self.schema):
            raise StoreError(
                f"postgres schema {self.schema!r}: use 1-40 of [a-z0-9_], not starting with a digit"
            )
        if not 1 <= self.pool_size <= 1000:
            raise StoreError(f"postgres pool size must be 1-1000, got {self.pool_size}")

    @property
    def display(self) -> str:
        """The URL without a password, for messages."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or ""
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{user}{host}{port}{parts.path} (schema {self.schema})"


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split wizd's own query parameters (schema, pool_size) off a postgresql:// URL."""
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            ours["schema"] = value
        elif key == "pool_size":
            if not value.isdigit():
                raise StoreError(f"pool_size in the database URL must be a number, got {value!r}")
            ours["pool_size"] = int(value)
        else:
            theirs.append((key, value))
    # Percent-encoded as libpq decodes them: it reads a "+" as a plus, not as a space.
    return urlunsplit(parts._replace(query=urlencode(theirs, quote_via=quote))), ours


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
        cur = self.conn.execute(translate(sqlite_sql), parameters, prepare=prepare)
        if cur.rowcount > 0 and cur.statusmessage and not cur.statusmessage.startswith("SELECT"):
            self.changes += cur.rowcount
        return cur

    def executemany(self, sqlite_sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        rows = list(parameters)
        cur.executemany(translate(sqlite_sql), rows)
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


class PostgresStore(SQLStore):
    """The Store protocol on PostgreSQL (see wizd.store.base for each method's contract)."""

    backend = "postgres"
    database_failures = (
        (psycopg.OperationalError, psycopg.InterfaceError) if psycopg is not None else ()
    )

    def __init__(self, config: PostgresConfig, *, clock: Callable[[], float] = time.time) -> None:
        if psycopg is None:
            raise StoreError("the PostgreSQL backend needs psycopg: pip install 'wizd[postgres]'")
        super().__init__(clock=clock, max_depth=config.max_depth, max_children=config.max_children)
        self.config = config
        self.read_only = config.read_only
        self._pool: ConnectionPool | None = None
        self._listen: psycopg.AsyncConnection[Any] | None = None
        self._loop: psycopg.AsyncConnection[Any] | None = None  # claims, single enqueues
        self._loop_lock = asyncio.Lock()  # held while it is (re)made
        self._loop_used = 0.0  # monotonic time of its last statement
        # Each queue's defaults as last read: their text (None: the queue has no row), and
        # the options made of it (_enqueue_alone).
        self._queue_defaults: dict[str, tuple[str | None, JobOptions]] = {}
        self._listen_failures = 0
        self._listen_retry_at = 0.0
        self._listening = False
        self._notified = anyio.Event()
        self.channel = f"wizd_{config.schema}"
        # The listening session's key (schema 7), while it is connected, and its channel.
        self._listen_key: int | None = None
        self._own_channel = ""
        # Rows of jobs handed over to this store's workers, by (queue, worker), until that
        # worker asks for them (handed_over).
        self._handed: dict[tuple[str, str], list[list[Any]]] = {}

    @property
    def path(self) -> str:
        return self.config.display

    # -- life cycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, create the schema and tables (once, under a lock) or check them."""
        await anyio.to_thread.run_sync(self._open_sync)
        self._open = True

    def _open_sync(self) -> None:
        cfg = self.config
        try:
            with psycopg.connect(
                cfg.conninfo, autocommit=True, connect_timeout=int(cfg.connect_timeout)
            ) as conn:
                if cfg.read_only:
                    from wizd.store.postgres_read_only import check_readable  # needs psycopg

                    check_readable(conn, cfg.schema, cfg.display, LATEST_VERSION)
                else:
                    self._migrate(conn)
        except psycopg.Error as exc:
            raise self._store_error(exc) from exc
        search_path = f"SET search_path TO {cfg.schema}"

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(search_path)
            if cfg.read_only:
                conn.execute("SET default_transaction_read_only = on")

        # A connection back from use within the last few seconds is handed out unchecked
        # (a check costs a round trip per transaction); one idle longer is pinged first.
        # A connection that died unchecked fails its transaction, which callers retry.
        returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

        def reset(conn: psycopg.Connection[Any]) -> None:
            returned[conn] = time.monotonic()

        def check(conn: psycopg.Connection[Any]) -> None:
            if time.monotonic() - returned.get(conn, 0.0) > CHECK_IDLE:
                ConnectionPool.check_connection(conn)

        self._pool = ConnectionPool(
            cfg.conninfo,
            min_size=1,
            max_size=cfg.pool_size,
            kwargs={"autocommit": True, "connect_timeout": int(cfg.connect_timeout)},
            configure=configure,
            reset=reset,
            check=check,
            timeout=cfg.connect_timeout,
            reconnect_timeout=0,  # keep trying for as long as the daemon lives
            name=f"wizd-{cfg.schema}",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=cfg.connect_timeout)
        except Exception as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to {cfg.display}: {exc}") from exc

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        cfg = self.config
        schema = sql.Identifier(cfg.schema)
        with conn.transaction():
            conn.execute(PQ.MIGRATION_LOCK, (cfg.schema,))
            tables = {r[0] for r in conn.execute(PQ.TABLE_NAMES, (cfg.schema,))}
            if tables and "schema_version" not in tables:
                raise StoreError(
                    f"{cfg.display} holds tables {sorted(tables)[:5]} but no schema_version: "
                    "it is not a wizd schema (choose another with postgres_schema)"
                )
            if not tables and not cfg.create:
                raise StoreError(
                    f"{cfg.display} has no wizd tables (a daemon or `wizd create` makes them)"
                )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
            conn.execute(PQ.SCHEMA_VERSION_CREATE)
            current = conn.execute(PQ.SCHEMA_VERSION_GET).fetchone()[0]  # type: ignore[index]
            if current > LATEST_VERSION:
                raise StoreError(
                    f"{cfg.display} has schema version {current}, newer than this wizd knows "
                    f"({LATEST_VERSION}); upgrade wizd"
                )
            for version, _name, script in migrations():
                if version > current:
                    conn.execute(script.encode())
                    conn.execute(PQ.SCHEMA_VERSION_SET, (version, self.clock()))

    async def close(self) -> None:
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            await self._requeue_handed()
            self._closed = True
            self._fail_pending()
            if self._listen is not None:
                await self._listen.close()
            await self._drop_loop_connection()
            if self._pool is not None:
                await anyio.to_thread.run_sync(self._pool.close)

    # -- connections -----------------------------------------------------------------------
    def _store_error(self, exc: BaseException) -> StoreError:
        return StoreError(f"database {self.config.display}: {exc}")

    def _with_conn(self, fn: Callable[[Any], T]) -> T:
        """On a worker thread: run `fn` with a pooled connection, again after a deadlock."""
        assert self._pool is not None
        for attempt in range(RETRIES):
            try:
                with self._pool.connection() as conn:
                    return fn(PgConn(conn))
            except _RETRIED:  # a deadlock with another daemon's transaction
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.001 * 2**attempt)
            except psycopg.Error as exc:
                raise self._store_error(exc) from exc
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg_pool"):  # PoolTimeout, closed
                    raise self._store_error(exc) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_on_writer(self, fn: Callable[[Any], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(self._with_conn, fn)
        except psycopg.Error as exc:
            raise self._store_error(exc) from exc

    async def _read(self, fn: Callable[[Any], T]) -> T:
        if self._pool is None or not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        return await self._run_on_writer(fn)

    def _begin(self, c: PgConn) -> None:
        c.execute("BEGIN")

    def _rollback(self, c: PgConn) -> None:
        if c.in_transaction and not c.conn.closed:
            c.execute("ROLLBACK")

    def _changes(self, c: PgConn) -> int:
        return c.changes

    # -- the hot path ----------------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> Claimed:
        """One statement in autocommit on the loop connection (wizd_claim: the queue's
        row, the promotion of its due delayed jobs, the claim, and the worker's offer of
        free slots to hand-overs, schema 7), sent from the event loop and never waiting for
        a group commit: a daemon's claims run beside the commits of its outcomes, on
        another connection. A queue with limits is claimed in a transaction of its own
        under them (wizd.store.limits)."""
        if n < 1:
            return Claimed()
        if not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        claim = _Claim(queue, worker_id, n, self._listen_key)
        rows = await self._claim_alone(claim)
        if rows is not None:
            return ops.claimed_with_deps(rows).claimed()
        taken = await self._write(claim)
        return taken.claimed()

    def handed_over(self, queue: str, worker_id: str) -> Claimed:
        handed = self._handed.pop((queue, worker_id), None)
        return Claimed() if handed is None else ops.claimed_with_deps(handed).claimed()

    async def stop_claiming(self, queue: str, worker_id: str) -> None:
        await self._write(partial(_withdraw_slots, queue=queue, worker_id=worker_id))
        await self._requeue_handed([(queue, worker_id)])

    async def _requeue_handed(self, keys: Iterable[tuple[str, str]] | None = None) -> None:
        """Jobs handed over that no worker took (it stopped claiming first) go back to
        pending, their attempt not charged, as the runs of a shutdown do: those of the
        (queue, worker) keys given, or all."""
        rows = [row for key in list(keys or self._handed) for row in self._handed.pop(key, ())]
        finishes = [
            Finish(row[0], row[20], row[6], "requeue", error="daemon shut down; not charged")
            for row in rows
        ]
        if finishes and self._open:
            with suppress(StoreError):  # the database is away: the reaper recovers them
                await self.finish(finishes)

    async def _run_ops(self, group: list[Any]) -> tuple[list[tuple[bool, Any]], bool]:
        """An enqueue of one plain job alone in its group (a producer enqueueing one job at
        a time) is one statement in autocommit on the loop connection, sent from the event
        loop: one round trip and no thread hop, where a transaction on the writer's thread
        costs two hops and at least three round trips. Anything else runs on the writer, as
        does an enqueue of a job that is not starts_pending_alone, and one whose queue's
        defaults have changed (_enqueue_alone)."""
        if len(group) == 1:
            op, now = group[0], self.clock()
            if (
                isinstance(op, PlainEnqueue)
                and len(op.items) == 1
                and ops.starts_pending_alone(op.items[0], now)
            ):
                created = await self._enqueue_alone(op.items[0], now)
                if created is not None:
                    return [(True, created)], True
        return await super()._run_ops(group)

    async def _claim_alone(self, claim: _Claim) -> list[Any] | None:
        """wizd_claim's rows, or None when the queue has limits (nothing was claimed). A
        deadlock is run again; a loop connection found dead after it sat idle is replaced
        once, at once (a claim whose rows never arrived is reaped, never lost); any other
        failure fails the claim (the claimer backs off). Concurrent claims (of a daemon's
        queues) and single enqueues take turns on the connection (psycopg's lock)."""
        for attempt in range(RETRIES):
            conn = await self._loop_connection()
            idle = self._loop_idle()
            try:
                cur = await conn.execute(PQ.CLAIM_QUEUE, claim.args(self.clock()))
                rows = await cur.fetchall()
            except _RETRIED as exc:
                if attempt == RETRIES - 1:
                    raise self._store_error(exc) from exc
                await anyio.sleep(0.001 * 2**attempt)
                continue
            except psycopg.Error as exc:
                await self._drop_loop_connection()
                if isinstance(exc, psycopg.OperationalError) and idle and attempt == 0:
                    continue
                raise self._store_error(exc) from exc
            self._loop_used = time.monotonic()
            return claim.taken(rows)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _enqueue_alone(self, new: NewJob, now: float) -> ops.Created | None:
        """INSERT_JOB_IF_DEFAULTS of a job that starts_pending_alone, prepared with its
        queue's defaults as this store last read them (and maybe handed over to an idle
        daemon); None, with nothing written, when they have changed since. An insert is
        never sent twice (it may have been written): a loop connection that sat idle is
        pinged first instead."""
        conn = await self._loop_connection(ping=True)
        try:
            defaults = self._queue_defaults.get(new.queue)
            if defaults is None:
                found = await (await conn.execute(PQ.QUEUE_GET, (new.queue,))).fetchone()
                text = None if found is None else found[2]
                options = JobOptions.from_dict(json.loads(text)) if text else JobOptions()
                if len(self._queue_defaults) >= 1024:
                    self._queue_defaults.clear()
                defaults = self._queue_defaults[new.queue] = (text, options)
            row = ops.plain_pending_row(new, defaults[1], now)
            values = (*row.values, new.queue, defaults[0], new.queue)
            inserted = await (await conn.execute(PQ.INSERT_JOB_IF_DEFAULTS, values)).fetchone()
        except psycopg.Error as exc:
            await self._drop_loop_connection()
            raise self._store_error(exc) from exc
        self._loop_used = time.monotonic()
        if inserted is None:  # changed since this store read them: read them again
            del self._queue_defaults[new.queue]
            return None
        if inserted[1] is not None:  # handed over: claimed by the worker it names
            row = ops.handed_row(row, inserted[1])
        return ops.Created([inserted[0]], [row], now, utc_at(now))

    async def _loop_connection(self, *, ping: bool = False) -> psycopg.AsyncConnection[Any]:
        """The connection of the statements sent from the event loop (claims, single
        enqueues; psycopg's lock makes them take turns), made on first use and after a
        failure, by one caller while the others wait; with `ping`, checked first if it
        sat idle longer than CHECK_IDLE."""
        conn = self._loop
        if conn is not None and not conn.closed and not (ping and self._loop_idle()):
            return conn
        async with self._loop_lock:
            conn = self._loop
            if conn is not None and not conn.closed:
                if not (ping and self._loop_idle()):
                    return conn
                try:
                    await conn.execute("SELECT 1")
                    self._loop_used = time.monotonic()
                    return conn
                except psycopg.Error:
                    await self._drop_loop_connection()
            try:
                conn = await self._connect_async(self._search_path())
            except psycopg.Error as exc:
                raise self._store_error(exc) from exc
            self._loop = conn
            self._loop_used = time.monotonic()
            return conn

    def _loop_idle(self) -> bool:
        return time.monotonic() - self._loop_used > CHECK_IDLE

    async def _drop_loop_connection(self) -> None:
        await _close(self._loop)
        self._loop = None

    async def _connect_async(self, first: sql.Composed) -> psycopg.AsyncConnection[Any]:
        """A connection of its own in autocommit (for the event loop), after its first
        statement."""
        cfg = self.config
        conn = await psycopg.AsyncConnection.connect(
            cfg.conninfo, autocommit=True, connect_timeout=int(cfg.connect_timeout)
        )
        await conn.execute(first)
        return conn

    # -- PostgreSQL's own upkeep -----------------------------------------------------------
    async def promote_due(self) -> int:
        """Promote due jobs, fold the count deltas into the totals (one daemon at a time:
        the others skip the fold while one holds its lock), and vacuum the jobs table when
        it is due (_vacuum_if_due)."""
        promoted = await super().promote_due()
        await self._write(_fold_counts)
        await self._read(_vacuum_if_due)
        return promoted

    # -- change notifications --------------------------------------------------------------
    async def wait_for_change(self, timeout: float) -> None:
        """Return when jobs of any queue became pending (NOTIFY), or after `timeout`."""
        with anyio.move_on_after(timeout):
            if self._listening:  # another task listens: wake with it
                await self._notified.wait()
                return
            self._listening = True
            try:
                await self._next_notification(timeout)
            finally:
                self._listening = False
                self._notified.set()
                self._notified = anyio.Event()

    async def _next_notification(self, timeout: float) -> None:
        fresh = self._listen is None or self._listen.closed
        conn = await self._listener()
        if conn is None:  # not connected: poll
            await anyio.sleep(timeout)
            return
        if fresh:
            # LISTEN has just taken effect: jobs that became pending before it were not
            # notified to us (a daemon that has just said it is ready, or reconnected), so
            # the caller looks now.
            return
        try:
            # Every notification of the packet that brought the first is read (the rest of
            # a packet would be lost with the generator): a hand-over must not be.
            async for notify in conn.notifies(timeout=timeout, stop_after=1):
                if notify.channel == self._own_channel:
                    self._take_handed(notify.payload)
        except psycopg.Error:
            await self._drop_listener()

    def _take_handed(self, payload: str) -> None:
        """Keep a job handed over to one of this store's workers (wizd_hand_over's JSON of
        its row) until that worker asks (handed_over): as a claim's row, JOB_COLUMNS and
        its dependencies (none: a job enqueued alone has no links)."""
        job = json.loads(payload)
        row = [job[column] for column in _JOB_COLUMN_NAMES]
        row.append([])
        if row[9] is not None:
            row[9] = float(row[9])  # timeout: JSON writes a whole float as an integer
        self._handed.setdefault((row[1], row[20]), []).append(row)

    async def _listener(self) -> psycopg.AsyncConnection[Any] | None:
        """The listening session (made on first use and after a failure): LISTEN on the
        schema's channel and on its own, whose key it holds a session lock on."""
        if self._listen is not None and not self._listen.closed:
            return self._listen
        if time.monotonic() < self._listen_retry_at:
            return None
        try:
            conn = await self._connect_async(self._search_path())
            await conn.execute(LISTENER_SETTINGS)
            found = await (await conn.execute(PQ.LISTENER_KEY)).fetchone()
            assert found is not None
            key = found[0]
            own = f"{self.channel}:{key}"
            await conn.execute(
                sql.SQL("LISTEN {}; LISTEN {}").format(
                    sql.Identifier(self.channel), sql.Identifier(own)
                )
            )
        except psycopg.Error:
            self._listen_failures += 1
            first, most = LISTEN_RETRY
            self._listen_retry_at = time.monotonic() + min(
                first * 2 ** (self._listen_failures - 1), most
            )
            return None
        self._listen_failures = 0
        self._listen = conn
        self._listen_key, self._own_channel = key, own
        return conn

    async def _drop_listener(self) -> None:
        self._listen_key, self._own_channel = None, ""
        await _close(self._listen)
        self._listen = None

    def _search_path(self) -> sql.Composed:
        """The first statement of a connection made from the event loop."""
        first = sql.SQL("SET search_path TO {}").format(sql.Identifier(self.config.schema))
        if self.config.read_only:
            first += sql.SQL("; SET default_transaction_read_only = on")
        return first


async def _close(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is not None:
        with anyio.CancelScope(shield=True):
            await conn.close()


_RETRIED: tuple[type[BaseException], ...] = (
    (psycopg.errors.DeadlockDetected, psycopg.errors.TransactionRollback)
    if psycopg is not None
    else ()
)


_JOB_COLUMN_NAMES = [column.strip() for column in Q.JOB_COLUMNS.split(",")]


class _Claim:
    """A claim as one statement (wizd_claim: the queue's row, the promotion of its due
    delayed jobs, the claim and the offer of free slots, run inside the server), sent by
    PostgresStore.claim. A queue with limits is claimed by wizd.store.ops.claim, in a
    group's transaction (the op)."""

    __slots__ = ("listener", "n", "queue", "worker_id")

    def __init__(self, queue: str, worker_id: str, n: int, listener: int | None) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.n = n
        self.listener = listener  # the listening session's key (schema 7), if connected

    def __call__(self, c: PgConn, now: float) -> ops.ClaimRows:
        """The claim of a queue with limits, inside a group's transaction."""
        return ops.claim(c, now, self.queue, self.worker_id, self.n)

    def args(self, now: float) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "worker": self.worker_id,
            "now": now,
            "n": self.n,
            "listener": self.listener,
            "slots": HANDED_SLOTS,
        }

    def taken(self, rows: list[Any]) -> list[Any] | None:
        """wizd_claim's rows, or None when the queue has limits (and nothing was claimed)."""
        return None if rows and rows[0][0] is None else rows


def _vacuum_if_due(c: PgConn) -> None:
    """VACUUM jobs once a burst has left VACUUM_DEAD dead row versions, at most once every
    VACUUM_EVERY seconds, one daemon at a time (the others skip while one holds the lock).

    Every claim leaves a dead entry in the claim index (jobs_claim), ahead of the pending
    jobs that came after it, and each claim walks them all until a vacuum removes them:
    after a burn-down of 100,000 jobs a claim read 496 index pages where it reads 3, and
    took 0.83 ms instead of 0.55. Autovacuum looks at each table about once a minute.
    A vacuum does not block claims and completions; a user who does not own the table
    gets PostgreSQL's warning and no vacuum."""
    due = c.conn.execute(PQ.JOBS_VACUUM_DUE, {"dead": VACUUM_DEAD, "every": VACUUM_EVERY})
    row = due.fetchone()
    if row is None or not row[0]:
        return
    locked = c.conn.execute(PQ.VACUUM_LOCK).fetchone()
    if locked is None or not locked[0]:
        return
    try:
        c.conn.execute(PQ.VACUUM_PACE)
        c.conn.execute(PQ.VACUUM_JOBS)
    finally:
        c.conn.execute(PQ.VACUUM_UNPACE)
        c.conn.execute(PQ.VACUUM_UNLOCK)


def _fold_counts(c: PgConn, now: float) -> None:
    """Fold the count deltas, and forget the free slots offered by listening sessions that
    have ended (one daemon at a time)."""
    locked = c.conn.execute(PQ.COUNTS_FOLD_LOCK).fetchone()
    if locked is not None and locked[0]:
        c.conn.execute(PQ.COUNTS_FOLD)
        c.conn.execute(PQ.FREE_SLOTS_PRUNE)


def _withdraw_slots(c: PgConn, now: float, queue: str, worker_id: str) -> None:
    c.conn.execute(PQ.FREE_SLOTS_WITHDRAW, (queue, worker_id))
