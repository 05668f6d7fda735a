"""The SQLite store: one file, WAL, one writer connection, group commit.

Every operation is a plain function of a `sqlite3.Connection` that runs whole on
aiosqlite's connection thread: one thread hop per transaction instead of one per statement
(a hop costs ~200 µs, a statement ~20 µs). Writes from concurrent callers are queued to a
single writer task that runs everything queued since its last commit in one
`BEGIN IMMEDIATE` transaction, each caller's work in its own savepoint, so one fsync serves
a whole group and one caller's bad input never spoils another's.
"""

from __future__ import annotations

import contextlib
import functools
import json
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

from wizd.errors import (
    IllegalTransition,
    InvalidJob,
    JobNotFound,
    StoreError,
    WizdError,
)
from wizd.model import (
    ALL_STATUSES,
    FINAL,
    MAX_CHILDREN,
    MAX_DEPTH,
    PAUSABLE,
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    QueueStats,
    WorkerInfo,
    can_transition,
    utc,
    zero_counts,
)
from wizd.store import sqlite_flows as flows
from wizd.store import sqlite_ops as ops
from wizd.store import sqlite_queries as Q
from wizd.store import sqlite_rows as rowmap
from wizd.store.base import Finish, Interrupted

T = TypeVar("T")
CHANGE_CHECK_INTERVAL = 0.004  # seconds between cross-process change checks
Op = Callable[[sqlite3.Connection, float], T]
S = JobStatus
FINAL_VALUES = tuple(s.value for s in FINAL)


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
        def run(c: sqlite3.Connection) -> list[Job]:
            rows = c.execute(Q.PEEK, {"queue": queue, "n": n, "now": self.clock()}).fetchall()
            return rowmap.jobs(c, rows)

        return await self._read(run)

    async def counts(self, queue: str | None = None) -> dict[str, dict[str, int]]:
        def run(c: sqlite3.Connection) -> dict[str, dict[str, int]]:
            rows = (
                c.execute(Q.COUNTS_QUEUE, (queue,))
                if queue is not None
                else c.execute(Q.COUNTS_ALL)
            ).fetchall()
            out: dict[str, dict[str, int]] = {}
            if queue is not None:
                out[queue] = zero_counts()
            for q, status, n in rows:
                out.setdefault(q, zero_counts())[status] = n
            return out

        return await self._read(run)

    async def recount(self) -> dict[str, dict[str, int]]:
        def run(c: sqlite3.Connection) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for q, status, n in c.execute(Q.RECOUNT_ALL):
                out.setdefault(q, zero_counts())[status] = n
            return out

        return await self._read(run)

    async def oldest_pending(self, queue: str) -> float | None:
        def run(c: sqlite3.Connection) -> float | None:
            value = c.execute(Q.OLDEST_PENDING, {"q": queue}).fetchone()[0]
            return None if value is None else float(value)

        return await self._read(run)

    async def stats(self, queue: str, window: float) -> QueueStats:
        def run(c: sqlite3.Connection) -> QueueStats:
            now = self.clock()
            since = now - window
            counts = zero_counts()
            for _, status, n in c.execute(Q.COUNTS_QUEUE, (queue,)):
                counts[status] = n
            done, avg_run = c.execute(Q.STATS_FINISHED, (since, queue)).fetchone()
            (avg_wait,) = c.execute(Q.STATS_WAIT, (queue, since)).fetchone()
            oldest = c.execute(Q.OLDEST_PENDING, {"q": queue}).fetchone()[0]
            paused = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
            return QueueStats(
                queue=queue,
                counts=counts,
                paused=bool(paused and paused[1]),
                avg_wait_seconds=avg_wait,
                avg_run_seconds=avg_run,
                throughput_per_minute=done / (window / 60.0),
                window_seconds=window,
                oldest_pending_age_seconds=None if oldest is None else max(now - oldest, 0.0),
            )

        return await self._read(run)

    async def events(self, job_id: int, after: int = 0) -> list[Event]:
        def run(c: sqlite3.Connection) -> list[Event]:
            if c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
                raise JobNotFound(job_id)
            return [
                Event(
                    id=r[0],
                    job_id=r[1],
                    at=cast(Any, utc(r[2])),
                    kind=r[3],
                    status=S(r[4]) if r[4] else None,
                    attempt=r[5],
                    worker_id=r[6],
                    message=r[7],
                )
                for r in c.execute(Q.EVENTS, (job_id, after))
            ]

        return await self._read(run)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def owned(self, worker_id: str, runs: Sequence[tuple[int, int]]) -> set[int]:
        pairs = list(runs)

        def run(c: sqlite3.Connection) -> set[int]:
            kept: set[int] = set()
            for start in range(0, len(pairs), 400):
                chunk = pairs[start : start + 400]
                sql = Q.OWNED.format(ids=",".join("?" * len(chunk)))
                rows = c.execute(sql, [worker_id, *(job_id for job_id, _ in chunk)])
                attempts = dict(chunk)
                kept.update(job_id for job_id, attempt in rows if attempts[job_id] == attempt)
            return kept

        return await self._read(run) if pairs else set()

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
        def run(c: sqlite3.Connection) -> list[tuple[str, bool, JobOptions]]:
            return [
                (name, bool(paused), JobOptions.from_dict(json.loads(defaults)))
                for name, paused, defaults in c.execute(Q.QUEUES_ALL)
            ]

        return await self._read(run)

    async def queue_options(self, queue: str) -> tuple[bool, JobOptions]:
        def run(c: sqlite3.Connection) -> tuple[bool, JobOptions]:
            row = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
            if row is None:
                return False, JobOptions()
            return bool(row[1]), JobOptions.from_dict(json.loads(row[2]))

        return await self._read(run)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        def op(c: sqlite3.Connection, now: float) -> None:
            c.execute(Q.QUEUE_ENSURE, (queue,))
            c.execute(Q.QUEUE_SET_PAUSED, (int(paused), queue))

        await self._write(op)

    async def set_queue_defaults(self, queue: str, overrides: dict[str, Any]) -> JobOptions:
        def op(c: sqlite3.Connection, now: float) -> JobOptions:
            c.execute(Q.QUEUE_ENSURE, (queue,))
            row = c.execute(Q.QUEUE_GET, (queue,)).fetchone()
            merged = {**json.loads(row[2]), **overrides}
            options = JobOptions.from_dict(merged)  # validates before anything is kept
            c.execute(Q.QUEUE_SET_DEFAULTS, (json.dumps(merged), queue))
            rowmap.group_cache(c).pop(("queue_defaults", queue), None)
            return options

        return await self._write(op)

    # -- the hot path ----------------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> list[Job]:
        if n < 1:
            return []
        return await self._write(lambda c, now: ops.claim(c, now, queue, worker_id, n))

    async def finish(self, items: Sequence[Finish]) -> list[bool]:
        batch = list(items)
        return await self._write(lambda c, now: [ops.finish(c, now, f) for f in batch])

    async def heartbeat(self, worker_id: str, busy: int) -> set[int]:
        def op(c: sqlite3.Connection, now: float) -> set[int]:
            args = {"now": now, "worker": worker_id, "busy": busy}
            owned = {r[0] for r in c.execute(Q.HEARTBEAT_JOBS, args)}
            c.execute(Q.HEARTBEAT_WORKER, args)
            return owned

        return await self._write(op)

    async def progress(
        self, job_id: int, worker_id: str, attempt: int, value: float | None, message: str | None
    ) -> bool:
        def op(c: sqlite3.Connection, now: float) -> bool:
            args = {
                "id": job_id,
                "worker": worker_id,
                "attempt": attempt,
                "progress": value,
                "message": message,
                "now": now,
            }
            if c.execute(Q.PROGRESS, args).rowcount == 0:
                return False
            text = f"{value:.0%}" if value is not None else ""
            if message:
                text = f"{text} {message}".strip()
            rowmap.event(c, now, job_id, "progress", None, attempt, worker_id, text)
            return True

        return await self._write(op)

    async def log(
        self, job_id: int, message: str, *, worker_id: str | None = None, attempt: int | None = None
    ) -> None:
        def op(c: sqlite3.Connection, now: float) -> None:
            if c.execute(Q.GET_STATUS, (job_id,)).fetchone() is None:
                raise JobNotFound(job_id)
            rowmap.event(c, now, job_id, "log", None, attempt, worker_id, message)

        await self._write(op)

    async def promote_due(self) -> int:
        def op(c: sqlite3.Connection, now: float) -> int:
            rows = c.execute(Q.PROMOTE_ALL, {"now": now}).fetchall()
            rowmap.events(c, now, [(r[0], "promoted", S.PENDING, r[1], None, None) for r in rows])
            return len(rows)

        return await self._write(op)

    async def expire(self) -> list[int]:
        return await self._write(ops.expire)

    # -- recovery --------------------------------------------------------------------------
    async def recover_worker(self, worker_id: str, reason: str) -> list[Interrupted]:
        def op(c: sqlite3.Connection, now: float) -> list[Interrupted]:
            rows = c.execute(Q.RUNNING_OF_WORKER, (worker_id,)).fetchall()
            return ops.interrupt(c, now, rowmap.jobs(c, rows), reason)

        return await self._write(op)

    async def reap_hung(self, older_than: float, reason: str = "hung") -> list[Interrupted]:
        def op(c: sqlite3.Connection, now: float) -> list[Interrupted]:
            rows = c.execute(Q.RUNNING_STALE, (now - older_than,)).fetchall()
            return ops.interrupt(c, now, rowmap.jobs(c, rows), reason)

        return await self._write(op)

    async def stale_running(self, older_than: float) -> list[Job]:
        def run(c: sqlite3.Connection) -> list[Job]:
            rows = c.execute(Q.RUNNING_STALE, (self.clock() - older_than,)).fetchall()
            return rowmap.jobs(c, rows)

        return await self._read(run)

    async def running_workers(self) -> set[str]:
        return await self._read(lambda c: {r[0] for r in c.execute(Q.WORKERS_WITH_RUNNING)})

    # -- operator changes ------------------------------------------------------------------
    async def cancel(self, job_ids: Sequence[int], reason: str = "cancelled") -> list[Job]:
        ids = list(job_ids)

        def op(c: sqlite3.Connection, now: float) -> list[Job]:
            jobs = rowmap.get_many(c, ids)  # raises JobNotFound before anything changes
            for job in jobs:
                if not can_transition(job.status, S.CANCELLED):
                    raise IllegalTransition(job.id, job.status, S.CANCELLED, "cancel it")
            for job in jobs:
                flows.cancel_tree(c, now, job.id, reason)
            return rowmap.get_many(c, ids)

        return await self._write(op)

    async def retry(self, job_ids: Sequence[int]) -> list[Job]:
        ids = list(job_ids)

        def op(c: sqlite3.Connection, now: float) -> list[Job]:
            for job in rowmap.get_many(c, ids):
                if job.status not in (S.FAILED, S.CANCELLED):
                    raise IllegalTransition(
                        job.id, job.status, S.PENDING, "retry it (only failed or cancelled jobs)"
                    )
            for job in rowmap.get_many(c, ids):
                # Unfinished dependencies still hold it; a deadline is renewed for as long.
                target = S.PENDING if flows.deps_satisfied(c, job) else S.WAITING
                expires = None
                if job.expires_at is not None:
                    expires = now + (job.expires_at - job.created_at).total_seconds()
                args = {"id": job.id, "now": now, "status": target, "expires_at": expires}
                c.execute(Q.RETRY_JOB, args)
                rowmap.event(c, now, job.id, "retried", target, 0, None, None)
            return rowmap.get_many(c, ids)

        return await self._write(op)

    async def pause_job(self, job_id: int) -> Job:
        def op(c: sqlite3.Connection, now: float) -> Job:
            job = rowmap.get(c, job_id)
            if job.status not in PAUSABLE:
                raise IllegalTransition(job_id, job.status, S.PAUSED, "pause it")
            flows.set_status(c, now, job, S.PAUSED, "paused")
            return rowmap.get(c, job_id)

        return await self._write(op)

    async def resume_job(self, job_id: int) -> Job:
        def op(c: sqlite3.Connection, now: float) -> Job:
            job = rowmap.get(c, job_id)
            if job.status is not S.PAUSED:
                raise IllegalTransition(job_id, job.status, S.PENDING, "resume it (not paused)")
            flows.set_status(c, now, job, flows.ready_status(c, now, job), "resumed")
            return rowmap.get(c, job_id)

        return await self._write(op)

    async def delete(self, job_ids: Sequence[int]) -> list[int]:
        ids = list(job_ids)

        def op(c: sqlite3.Connection, now: float) -> list[int]:
            for job in rowmap.get_many(c, ids):
                if job.status is S.RUNNING:
                    raise IllegalTransition(
                        job.id, job.status, S.CANCELLED, "delete a running job; cancel it first"
                    )
                if c.execute(Q.LIVE_DEPENDENTS, (job.id,)).fetchone()[0]:
                    raise IllegalTransition(
                        job.id, job.status, job.status, "delete it: unfinished jobs depend on it"
                    )
                if c.execute(Q.LIVE_CHILDREN, (job.id,)).fetchone()[0]:
                    raise IllegalTransition(
                        job.id, job.status, job.status, "delete it: it has unfinished children"
                    )
            parents = {job.parent_id for job in rowmap.get_many(c, ids) if job.parent_id}
            for job_id in ids:
                c.execute(Q.DELETE_JOB_EVENTS, (job_id,))
                c.execute(Q.DELETE_JOB, (job_id,))
            for parent_id in parents - set(ids):  # its last unfinished child may be gone
                flows.release_parent(c, now, parent_id)
            return ids

        return await self._write(op)

    async def cleanup(
        self, older_than: float, statuses: Sequence[JobStatus], dry_run: bool
    ) -> list[int]:
        chosen = [S(s) for s in statuses]
        for s in chosen:
            if s not in FINAL:
                raise InvalidJob("statuses", f"cleanup removes final jobs only; {s} is not final")

        def select(c: sqlite3.Connection, now: float) -> list[int]:
            sql = Q.CLEANUP_CANDIDATES.format(statuses=",".join("?" * len(chosen)))
            return [r[0] for r in c.execute(sql, (*chosen, now - older_than))]

        if dry_run:
            return await self._read(lambda c: select(c, self.clock()))

        def op(c: sqlite3.Connection, now: float) -> list[int]:
            ids = select(c, now)
            c.executemany(Q.DELETE_JOB_EVENTS, ((i,) for i in ids))
            c.executemany(Q.DELETE_JOB, ((i,) for i in ids))
            return ids

        return await self._write(op)

    # -- the agent registry ----------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        def op(c: sqlite3.Connection, now: float) -> None:
            c.execute(
                Q.WORKER_REGISTER,
                (
                    info.id,
                    info.hostname,
                    info.pid,
                    json.dumps(list(info.queues)),
                    info.concurrency,
                    info.version,
                    now,
                    now,
                ),
            )

        await self._write(op)

    async def worker_stopped(self, worker_id: str) -> None:
        await self._write(lambda c, now: c.execute(Q.WORKER_STOPPED, (now, worker_id)) and None)

    async def workers(self) -> list[WorkerInfo]:
        def run(c: sqlite3.Connection) -> list[WorkerInfo]:
            return [
                WorkerInfo(
                    id=r[0],
                    hostname=r[1],
                    pid=r[2],
                    queues=tuple(json.loads(r[3])),
                    concurrency=r[4],
                    version=r[5],
                    started_at=cast(Any, utc(r[6])),
                    heartbeat_at=cast(Any, utc(r[7])),
                    stopped_at=utc(r[8]),
                    busy=r[9],
                )
                for r in c.execute(Q.WORKERS_ALL)
            ]

        return await self._read(run)

    async def prune_workers(self, older_than: float) -> None:
        await self._write(lambda c, now: c.execute(Q.WORKERS_PRUNE, (now - older_than,)) and None)


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


# -- operations: each runs inside the writer's transaction ----------------------------------


def check_directory(path: str, create: bool) -> None:
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(parent):
        raise StoreError(f"database directory {parent} does not exist")
    if not create and not os.path.exists(path):
        raise StoreError(f"database {path} does not exist (a daemon or `wizd create` makes it)")


def database_size(path: str) -> int:
    """Bytes on disk of the database and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(path + suffix)
    return total


ALL = ALL_STATUSES
