"""The SQLite store: one file, WAL, one writer connection, group commit.

Every operation is a plain function of a `sqlite3.Connection` that runs whole on
aiosqlite's connection thread: one thread hop per transaction instead of one per statement
(a hop costs ~200 µs, a statement ~20 µs). Writes from concurrent callers are queued to a
single writer task that runs everything queued since its last commit in one
`BEGIN IMMEDIATE` transaction, each caller's work in its own savepoint, so one fsync serves
a whole group and one caller's bad input never spoils another's.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar, cast

import aiosqlite
import anyio
import anyio.abc

from wizd.errors import StoreError, WizdError
from wizd.model import (
    MAX_CHILDREN,
    MAX_DEPTH,
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    QueueStats,
    WorkerInfo,
)
from wizd.store import sqlite_admin as admin
from wizd.store import sqlite_flows as flows
from wizd.store import sqlite_ops as ops
from wizd.store import sqlite_queries as Q
from wizd.store import sqlite_reads as reads
from wizd.store import sqlite_rows as rowmap
from wizd.store.base import Finish, Interrupted

T = TypeVar("T")
CHANGE_CHECK_INTERVAL = 0.004  # seconds between cross-process change checks
Op = Callable[[sqlite3.Connection, float], T]
S = JobStatus


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every bundled migration, in order."""
    found = []
    for entry in (resources.files("wizd.store.migrations") / "sqlite").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


LATEST_VERSION = max(v for v, _, _ in migrations())


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (triggers keep their inner `;`)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")
    return out


@dataclass(frozen=True, slots=True)
class SQLiteConfig:
    path: str
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    busy_timeout: float = 5.0
    cache_size_kib: int = 8_192  # per connection; two connections per process
    max_depth: int = MAX_DEPTH
    max_children: int = MAX_CHILDREN
    create: bool = True  # False: refuse a database file that does not exist yet


def parse_url(url: str) -> str:
    """A path, `sqlite:///path`, `sqlite:///:memory:` or `:memory:`."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :] or ":memory:"
    if url.startswith("sqlite://"):
        return url[len("sqlite://") :] or ":memory:"
    return url


class SQLiteStore:
    """The Store protocol on one SQLite file (see wizd.store.base for each method's contract)."""

    backend = "sqlite"

    def __init__(self, config: SQLiteConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: list[tuple[Op[Any], _Waiter]] = []
        self._flushing = False  # a caller is running a group commit right now
        self._open = False
        self._closed = False
        self._committed = anyio.Event()
        # A plain connection read from the event loop: PRAGMA data_version costs a few µs
        # and takes no lock, so a thread hop would cost more than the check itself.
        self._watch: sqlite3.Connection | None = None
        self._seen_version = -1

    @property
    def memory(self) -> bool:
        return self.config.path == ":memory:"

    @property
    def path(self) -> str:
        return self.config.path

    # -- life cycle ------------------------------------------------------------------------
    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, check the file is a wizd database we understand, migrate, start the writer."""
        if not self.memory:
            check_directory(self.config.path, self.config.create)
        self._writer = await self._connect()
        try:
            await self._call(self._writer, self._migrate)
            if self.memory:
                self._reader = self._writer
            else:
                self._reader = await self._connect()
                await self._call(self._reader, lambda c: c.execute("PRAGMA query_only=ON"))
        except BaseException:
            await self._writer.close()
            raise
        if not self.memory:
            self._watch = sqlite3.connect(
                self.config.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            self._seen_version = self._watch.execute(Q.DATA_VERSION).fetchone()[0]
        self._open = True

    async def close(self) -> None:
        """Close the connections (shielded: a cancelled caller still leaves no thread
        behind). Writes not yet started fail with StoreError."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for _, waiter in self._pending:
                waiter.fail(StoreError("store closed before the write ran"))
            self._pending.clear()
            if self._watch is not None:
                self._watch.close()
            if self._reader is not None and self._reader is not self._writer:
                await self._reader.close()
            if self._writer is not None:
                await self._writer.close()

    async def _connect(self) -> aiosqlite.Connection:
        cfg = self.config
        try:
            conn = await aiosqlite.connect(
                cfg.path,
                isolation_level=None,
                timeout=cfg.busy_timeout,
                check_same_thread=False,
                factory=rowmap.GroupConnection,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {cfg.path}: {exc}") from exc

        def setup(c: sqlite3.Connection) -> None:
            c.execute(f"PRAGMA busy_timeout={int(cfg.busy_timeout * 1000)}")
            self._refuse_foreign(c)  # before any pragma changes the file
            for pragma in Q.PRAGMAS:
                c.execute(pragma)
            c.execute(f"PRAGMA synchronous={cfg.synchronous}")
            c.execute(f"PRAGMA cache_size=-{cfg.cache_size_kib}")

        try:
            await self._call(conn, setup)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _refuse_foreign(self, c: sqlite3.Connection) -> None:
        """Refuse a SQLite file that is not a wizd database, or one from a newer wizd."""
        names = {r[0] for r in c.execute(Q.TABLE_NAMES)}
        if names and "schema_version" not in names:
            raise StoreError(
                f"{self.config.path} is a SQLite database but not a wizd one "
                f"(it has tables {sorted(names)[:5]} and no schema_version)"
            )
        if names:
            current = c.execute(Q.SCHEMA_VERSION_GET).fetchone()[0]
            if current > LATEST_VERSION:
                raise StoreError(
                    f"{self.config.path} has schema version {current}, newer than this wizd "
                    f"knows ({LATEST_VERSION}); upgrade wizd"
                )

    def _migrate(self, c: sqlite3.Connection) -> int:
        self._begin(c)
        try:
            self._refuse_foreign(c)  # again, under the write lock
            c.execute(Q.SCHEMA_VERSION_CREATE)
            current = c.execute(Q.SCHEMA_VERSION_GET).fetchone()[0]
            for version, _name, sql in migrations():
                if version > current:
                    for statement in split_statements(sql):
                        c.execute(statement)
                    c.execute(Q.SCHEMA_VERSION_SET, (version, self.clock()))
            c.execute("COMMIT")
            return LATEST_VERSION
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _begin(self, c: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock up front, so busy_timeout applies; a deferred
        # transaction that upgrades from read to write fails at once with SQLITE_BUSY.
        c.execute("BEGIN IMMEDIATE")

    async def _call(self, conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the connection's own thread: one hop for the whole of it."""
        execute: Callable[[Callable[[], T]], Awaitable[T]] = conn._execute
        try:
            return await execute(lambda: fn(conn._conn))
        except sqlite3.DatabaseError as exc:
            raise self._store_error(exc) from exc

    def _store_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"database {self.config.path} is locked: another process held the write lock "
                f"for more than busy_timeout={self.config.busy_timeout}s ({text})"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreError(f"database {self.config.path} is corrupt or not SQLite ({text})")
        return StoreError(f"database {self.config.path}: {text}")

    # -- the writer ------------------------------------------------------------------------
    async def _write(self, op: Op[T]) -> T:
        """Run `op` in the next group commit and return its own outcome.

        There is no writer task: whoever finds no group commit running runs one, for every
        op queued so far, then hands the lead to the next queued caller. Ops that arrive
        while a group runs go into the next group, so one transaction (and one fsync)
        serves everything that arrived within a commit's time."""
        if not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        waiter = _Waiter()
        entry = (op, waiter)
        self._pending.append(entry)
        try:
            while not waiter.done:
                if self._flushing:
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
                    continue
                self._flushing = True
                try:
                    with anyio.CancelScope(shield=True):  # a group runs to its end
                        await self._flush()
                finally:
                    self._flushing = False
                    self._hand_over()
        except BaseException:
            if entry in self._pending:  # never started: it never will
                self._pending.remove(entry)
                self._hand_over()
            raise
        return cast(T, waiter.outcome())

    def _hand_over(self) -> None:
        """Wake the first queued caller so that it runs the next group."""
        if self._pending and not self._flushing:
            self._pending[0][1].event.set()

    async def _flush(self) -> None:
        assert self._writer is not None
        batch, self._pending = self._pending, []
        ops = [op for op, _ in batch]
        try:
            outcomes, changed = await self._call(
                self._writer, functools.partial(self._run_group, ops=ops)
            )
        except Exception as exc:  # the whole group failed: every caller hears it
            for _, waiter in batch:
                waiter.fail(exc)
            return
        if changed:
            self._committed.set()
            self._committed = anyio.Event()
        for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                waiter.succeed(value)
            else:
                waiter.fail(value)

    def _run_group(
        self, c: sqlite3.Connection, ops: list[Op[Any]]
    ) -> tuple[list[tuple[bool, Any]], bool]:
        """Run every op in one transaction; return each op's outcome and whether any row
        changed (a claim that found nothing must not wake the daemon's own watchers).

        The group runs without savepoints first (they cost two statements per op); only if
        an op refuses its input is the group rolled back and run again with each op in a
        savepoint of its own, so that the refusal undoes that op alone."""
        if len(ops) > 1:
            try:
                return self._attempt_group(c, ops, isolated=False)
            except _Refused:
                pass
        return self._attempt_group(c, ops, isolated=True)

    def _attempt_group(
        self, c: sqlite3.Connection, ops: list[Op[Any]], *, isolated: bool
    ) -> tuple[list[tuple[bool, Any]], bool]:
        now = self.clock()
        before = c.total_changes
        rowmap.reset_group_cache(c)
        self._begin(c)
        outcomes: list[tuple[bool, Any]] = []
        try:
            if len(ops) == 1:
                outcomes.append((True, ops[0](c, now)))
            elif not isolated:
                try:
                    outcomes.extend((True, op(c, now)) for op in ops)
                except sqlite3.OperationalError:
                    raise  # the database itself failed (locked, I/O): the group fails
                except Exception:
                    raise _Refused from None
            else:
                for op in ops:
                    c.execute("SAVEPOINT op")
                    try:
                        outcomes.append((True, op(c, now)))
                    except sqlite3.OperationalError:
                        raise
                    except Exception as exc:  # this op's own failure spoils no other op
                        c.execute("ROLLBACK TO op")
                        outcomes.append((False, _as_store_error(exc)))
                    c.execute("RELEASE op")
            c.execute("COMMIT")
        except WizdError as exc:  # the single op refused: nothing written
            c.execute("ROLLBACK")
            return [(False, exc)], False
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return outcomes, c.total_changes != before

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        return await self._call(self._reader, fn)

    # -- enqueue ---------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        items = list(jobs)
        limits = ops.Limits(self.config.max_depth, self.config.max_children)
        return await self._write(lambda c, now: ops.enqueue(c, now, items, limits))

    # -- reads -----------------------------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        return await self._read(lambda c: rowmap.get(c, job_id))

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        ids = list(job_ids)
        return await self._read(lambda c: rowmap.get_many(c, ids))

    async def list_jobs(self, f: JobFilter) -> list[Job]:
        return await self._read(lambda c: rowmap.list_jobs(c, f))

    async def peek(self, queue: str, n: int) -> list[Job]:
        return await self._read(lambda c: reads.peek(c, self.clock(), queue, n))

    async def counts(self, queue: str | None = None) -> dict[str, dict[str, int]]:
        return await self._read(lambda c: reads.counts(c, queue))

    async def recount(self) -> dict[str, dict[str, int]]:
        return await self._read(reads.recount)

    async def oldest_pending(self, queue: str) -> float | None:
        return await self._read(lambda c: reads.oldest_pending(c, queue))

    async def stats(self, queue: str, window: float) -> QueueStats:
        return await self._read(lambda c: reads.stats(c, self.clock(), queue, window))

    async def events(self, job_id: int, after: int = 0) -> list[Event]:
        return await self._read(lambda c: reads.events(c, job_id, after))

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def owned(self, worker_id: str, runs: Sequence[tuple[int, int]]) -> set[int]:
        pairs = list(runs)
        return await self._read(lambda c: reads.owned(c, worker_id, pairs)) if pairs else set()

    async def wait_for_change(self, timeout: float) -> None:
        """Return soon after any connection commits (this process's writer at once, others'
        within a few ms through `PRAGMA data_version`), or after `timeout` seconds."""
        watch = self._watch
        with anyio.move_on_after(timeout):
            while True:
                with anyio.move_on_after(CHANGE_CHECK_INTERVAL):
                    await self._committed.wait()
                    return
                if watch is None:
                    continue
                try:
                    version = watch.execute(Q.DATA_VERSION).fetchone()[0]
                except sqlite3.Error:
                    return  # cannot tell: let the caller look
                if version != self._seen_version:
                    self._seen_version = version
                    return

    # -- flows -----------------------------------------------------------------------------
    async def add_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        ids = list(deps)
        return await self._write(lambda c, now: flows.add_dependencies(c, now, job_id, ids))

    async def remove_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        ids = list(deps)
        return await self._write(lambda c, now: flows.remove_dependencies(c, now, job_id, ids))

    async def dependencies(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.DEPENDENCIES, job_id))

    async def dependents(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.DEPENDENTS, job_id))

    async def children(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.CHILDREN, job_id))

    async def subtree(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.SUBTREE, job_id))

    async def dispatch(self, job_id: int) -> int:
        return await self._write(lambda c, now: flows.dispatch(c, now, job_id))

    # -- queues ----------------------------------------------------------------------------
    async def queues(self) -> list[tuple[str, bool, JobOptions]]:
        return await self._read(reads.queues)

    async def queue_options(self, queue: str) -> tuple[bool, JobOptions]:
        return await self._read(lambda c: reads.queue_options(c, queue))

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._write(lambda c, now: admin.set_queue_paused(c, now, queue, paused))

    async def set_queue_defaults(self, queue: str, overrides: dict[str, Any]) -> JobOptions:
        return await self._write(lambda c, now: admin.set_queue_defaults(c, now, queue, overrides))

    # -- the hot path ----------------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> list[Job]:
        if n < 1:
            return []
        return await self._write(lambda c, now: ops.claim(c, now, queue, worker_id, n))

    async def finish(self, items: Sequence[Finish]) -> list[bool]:
        batch = list(items)
        return await self._write(lambda c, now: [ops.finish(c, now, f) for f in batch])

    async def heartbeat(self, worker_id: str, busy: int) -> set[int]:
        return await self._write(lambda c, now: ops.heartbeat(c, now, worker_id, busy))

    async def progress(
        self, job_id: int, worker_id: str, attempt: int, value: float | None, message: str | None
    ) -> bool:
        return await self._write(
            lambda c, now: ops.progress(c, now, job_id, worker_id, attempt, value, message)
        )

    async def log(
        self, job_id: int, message: str, *, worker_id: str | None = None, attempt: int | None = None
    ) -> None:
        await self._write(lambda c, now: ops.log(c, now, job_id, message, worker_id, attempt))

    async def promote_due(self) -> int:
        return await self._write(ops.promote_due)

    async def expire(self) -> list[int]:
        return await self._write(ops.expire)

    # -- recovery --------------------------------------------------------------------------
    async def recover_worker(self, worker_id: str, reason: str) -> list[Interrupted]:
        return await self._write(lambda c, now: ops.recover_worker(c, now, worker_id, reason))

    async def reap_hung(self, older_than: float, reason: str = "hung") -> list[Interrupted]:
        return await self._write(lambda c, now: ops.reap_hung(c, now, older_than, reason))

    async def stale_running(self, older_than: float) -> list[Job]:
        return await self._read(lambda c: reads.stale_running(c, self.clock(), older_than))

    async def running_workers(self) -> set[str]:
        return await self._read(reads.running_workers)

    # -- operator changes ------------------------------------------------------------------
    async def cancel(self, job_ids: Sequence[int], reason: str = "cancelled") -> list[Job]:
        ids = list(job_ids)
        return await self._write(lambda c, now: admin.cancel(c, now, ids, reason))

    async def retry(self, job_ids: Sequence[int]) -> list[Job]:
        ids = list(job_ids)
        return await self._write(lambda c, now: admin.retry(c, now, ids))

    async def pause_job(self, job_id: int) -> Job:
        return await self._write(lambda c, now: admin.pause_job(c, now, job_id))

    async def resume_job(self, job_id: int) -> Job:
        return await self._write(lambda c, now: admin.resume_job(c, now, job_id))

    async def delete(self, job_ids: Sequence[int]) -> list[int]:
        ids = list(job_ids)
        return await self._write(lambda c, now: admin.delete(c, now, ids))

    async def cleanup(
        self, older_than: float, statuses: Sequence[JobStatus], dry_run: bool
    ) -> list[int]:
        chosen = admin.cleanup_statuses(statuses)
        if dry_run:
            return await self._read(
                lambda c: admin.cleanup_candidates(c, self.clock(), chosen, older_than)
            )
        return await self._write(lambda c, now: admin.cleanup(c, now, chosen, older_than))

    # -- the agent registry ----------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        await self._write(lambda c, now: admin.register_worker(c, now, info))

    async def worker_stopped(self, worker_id: str) -> None:
        await self._write(lambda c, now: admin.worker_stopped(c, now, worker_id))

    async def workers(self) -> list[WorkerInfo]:
        return await self._read(reads.workers)

    async def prune_workers(self, older_than: float) -> None:
        await self._write(lambda c, now: admin.prune_workers(c, now, older_than))


def _as_store_error(exc: Exception) -> Exception:
    if isinstance(exc, WizdError):
        return exc
    return StoreError(f"write refused by the database: {type(exc).__name__}: {exc}")


class _Refused(Exception):
    """An op of an unisolated group refused its input: run the group again, isolated."""


class _Waiter:
    __slots__ = ("_error", "_value", "done", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        self._value = value
        self.done = True
        self.event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self.done = True
        self.event.set()

    def outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


# -- files -------------------------------------------------------------------------------


def check_directory(path: str, create: bool) -> None:
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(parent):
        raise StoreError(f"database directory {parent} does not exist")
    if not create and not os.path.exists(path):
        raise StoreError(f"database {path} does not exist (a daemon or `wizd create` makes it)")
