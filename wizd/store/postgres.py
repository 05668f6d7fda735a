"""The PostgreSQL store: many daemons on many hosts share one database.

The transaction functions are the SQLite store's (wizd.store.sql): each runs whole on a
worker thread with a pooled psycopg connection, naming statements by their sqlite_queries
constant; `PgConn` (wizd.store.pg_statements) runs the PostgreSQL statement of the same
name (postgres_queries). Writes are grouped as on SQLite, so one commit serves everything
that arrived while the previous one ran. Claims skip rows that other daemons hold (FOR
UPDATE SKIP LOCKED); a transaction that deadlocks with another daemon's is run again.
Recovery (the reaper, start-up recovery, expiry) skips held rows too, and runs in a
transaction of its own beside the group commit. Every session is bounded (lock_timeout,
idle_in_transaction_session_timeout, TCP keepalives: wizd.store.pg_session), so a daemon
frozen inside a transaction stalls no other.

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
import time
import weakref
from collections.abc import Callable, Iterable
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread

from wizd.errors import StoreError
from wizd.model import JobOptions, NewJob, utc_at
from wizd.store import ops
from wizd.store import postgres_queries as PQ
from wizd.store import sqlite_queries as Q
from wizd.store.activity import ActivityMethods as Activity
from wizd.store.base import Claimed, Finish, Interrupted
from wizd.store.migrations import bundled
from wizd.store.pg_feed import PgFeedMethods
from wizd.store.pg_session import PostgresConfig, connect_async, parse_url
from wizd.store.pg_statements import PgConn, lock_timed_out
from wizd.store.pg_upkeep import fold_counts, vacuum_if_due, withdraw_slots
from wizd.store.signals import SignalStore
from wizd.store.sql import Op, PlainEnqueue, SQLStore
from wizd.store.tokens import TokenMethods
from wizd.store.waits import FinalListener, NotifiedWaits, makes_final, making_final

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - checked when a postgresql:// URL is opened
    psycopg = None  # type: ignore[assignment]

__all__ = ["LATEST_VERSION", "PostgresConfig", "PostgresStore", "migrations", "parse_url"]

T = TypeVar("T")
RETRIES = 8  # deadlocks with another daemon's transaction, run again
CHECK_IDLE = 2.0  # seconds idle after which a pooled connection is pinged before use
LISTEN_RETRY = (0.5, 30.0)  # backoff of the LISTEN connection after a failure: first, max
# Free slots a daemon offers to hand-overs between two of its claims (schema 7): enough for
# jobs enqueued one after another while its last job's outcome is being written, and all
# that a daemon whose host vanished can strand per queue until the reaper recovers them.
HANDED_SLOTS = 4


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every bundled PostgreSQL migration, in order."""
    return bundled("postgres")


LATEST_VERSION = max(v for v, _, _ in migrations())


class PostgresStore(SignalStore, NotifiedWaits, SQLStore, PgFeedMethods, TokenMethods, Activity):
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
        # Clients awaiting jobs listen on a session of their own (wizd.store.waits).
        self._final = FinalListener(partial(connect_async, config), self.channel)

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
            with psycopg.connect(cfg.conninfo, **cfg.connect_kwargs()) as conn:
                if cfg.read_only:
                    from wizd.store.postgres_read_only import check_readable  # needs psycopg

                    conn.execute(cfg.session_setup())
                    check_readable(conn, cfg.schema, cfg.display, LATEST_VERSION)
                else:
                    # Without a lock timeout: the migration lock waits for another daemon's
                    # migration to end, however long it works (a frozen one's is ended by
                    # idle_in_transaction_session_timeout).
                    conn.execute(cfg.session_setup(lock_timeout=False))
                    self._migrate(conn)
        except psycopg.Error as exc:
            raise self._store_error(exc) from exc
        setup = cfg.session_setup()

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(setup)

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
            kwargs=cfg.connect_kwargs(),
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
            await self._final.close()
            await self.close_feed()
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

    def _commit(self, c: PgConn) -> None:
        """COMMIT; a transaction that may have made jobs final notifies the clients that
        await jobs in the same round trip (wizd.store.waits)."""
        if makes_final(c):
            c.conn.execute(self._final.commit_notifying)
        else:
            c.execute("COMMIT")

    # -- recovery, beside the group commit -------------------------------------------------
    async def recover_worker(self, worker_id: str, reason: str) -> list[Interrupted]:
        return await self._apart(
            making_final(lambda c, now: ops.recover_worker(c, now, worker_id, reason))
        )

    async def reap_hung(self, older_than: float, reason: str = "hung") -> list[Interrupted]:
        return await self._apart(
            making_final(lambda c, now: ops.reap_hung(c, now, older_than, reason))
        )

    async def expire(self) -> list[int]:
        return await self._apart(making_final(ops.expire))

    async def _apart(self, op: Op[T]) -> T:
        """Run `op` in a transaction of its own on a pooled connection, beside the group
        commit. Recovery changes other daemons' rows: it skips those another transaction
        holds (a later pass takes them), and a wait it cannot skip (a parent's row, bounded
        by lock_timeout) holds up no heartbeat, outcome or enqueue of this process."""
        if not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        with anyio.CancelScope(shield=True):  # as a group: it runs to its end
            outcomes, changed = await self._run_on_writer(partial(self._run_group, ops=[op]))
        if changed:
            self._changed()
        ((ok, value),) = outcomes
        if not ok:
            raise value
        return cast(T, value)

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
        await self._write(partial(withdraw_slots, queue=queue, worker_id=worker_id))
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
            except psycopg.errors.LockNotAvailable as exc:  # the connection is fine
                raise lock_timed_out(exc) from exc
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
                conn = await connect_async(self.config)
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

    # -- PostgreSQL's own upkeep -----------------------------------------------------------
    async def promote_due(self) -> int:
        """Promote due jobs, fold the count deltas into the totals (one daemon at a time:
        the others skip the fold while one holds its lock), and vacuum the jobs table when
        it is due (wizd.store.pg_upkeep)."""
        promoted = await super().promote_due()
        await self._write(fold_counts)
        await self._read(vacuum_if_due)
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
            # With keepalives (wizd.store.pg_session), the server ends this session within
            # about 25 s of the daemon's host vanishing, and so its lock: no job is handed
            # over to it after that.
            conn = await connect_async(self.config)
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
