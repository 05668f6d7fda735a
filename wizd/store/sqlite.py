"""The SQLite store: one file, WAL, one writer connection, group commit (wizd.store.sql).

Each transaction runs whole on aiosqlite's connection thread: one thread hop per
transaction instead of one per statement (a hop costs ~200 µs, a statement ~20 µs). Writes
take the lock up front (`BEGIN IMMEDIATE`); a second, read-only connection serves reads;
other processes' commits are noticed through `PRAGMA data_version`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio

from wizd.errors import StoreError
from wizd.model import MAX_CHILDREN, MAX_DEPTH
from wizd.store import sqlite_queries as Q
from wizd.store.activity import ActivityMethods
from wizd.store.feed import FeedMethods
from wizd.store.migrations import bundled
from wizd.store.signals import SignalStore
from wizd.store.sql import SQLStore
from wizd.store.sqlite_files import (
    Stamp,
    check_directory,
    create_file,
    immutable_stale,
    read_only_uri,
    refuse_missing,
)
from wizd.store.tokens import TokenMethods
from wizd.store.waits import Wakeups

T = TypeVar("T")
# Seconds between cross-process change checks (PRAGMA data_version): CHANGE_CHECK_INTERVAL
# until the database has been still for CHANGE_CHECK_STILL seconds, then CHANGE_CHECK_IDLE.
# A check and its wake-up cost ~0.25 ms of CPU here, so a daemon that checked every 4 ms
# for ever spent ~6 % of a core doing nothing.
CHANGE_CHECK_INTERVAL = 0.004
CHANGE_CHECK_STILL = 1.0
CHANGE_CHECK_IDLE = 0.025


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every bundled SQLite migration, in order."""
    return bundled("sqlite")


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


BUSY_FIRST_NAP, BUSY_LONGEST_NAP = 0.0001, 0.002  # seconds between tries for the write lock


@dataclass(frozen=True, slots=True)
class SQLiteConfig:
    path: str
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    busy_timeout: float = 5.0
    # Page cache of the connection that writes; the one that reads keeps SQLite's default
    # (2 MiB). The daemon's memory grows by about this much under load.
    cache_size_kib: int = 4_096
    max_depth: int = MAX_DEPTH
    max_children: int = MAX_CHILDREN
    create: bool = True  # False: refuse a database file that does not exist yet
    # True: open the file read-only; never create, migrate or change it (wizd.store.sqlite_files).
    read_only: bool = False
    file_mode: int = 0o600  # of a database file this store creates (its -wal and -shm follow)


def parse_url(url: str) -> str:
    """A path, `sqlite:///path`, `sqlite:///:memory:` or `:memory:`."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :] or ":memory:"
    if url.startswith("sqlite://"):
        return url[len("sqlite://") :] or ":memory:"
    return url


class GroupConnection(sqlite3.Connection):
    """A connection that carries a cache valid for one group transaction."""

    group_cache: dict[Any, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_cache = {}


class SQLiteStore(SignalStore, SQLStore, FeedMethods, TokenMethods, ActivityMethods):
    """The Store protocol on one SQLite file (see wizd.store.base for each method's contract)."""

    backend = "sqlite"
    database_failures = (sqlite3.OperationalError,)

    def __init__(self, config: SQLiteConfig, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock, max_depth=config.max_depth, max_children=config.max_children)
        self.config = config
        self.read_only = config.read_only
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # A plain connection read from the event loop: PRAGMA data_version costs a few µs
        # and takes no lock, so a thread hop would cost more than the check itself.
        self._watch: sqlite3.Connection | None = None
        self._seen_version = -1
        self._last_change = 0.0  # monotonic time of the last change seen
        self.wakeups = Wakeups()  # one watch shared by every waiting task
        self.created = False  # whether open() created the database file
        # The file's stamp when a read-only reader opened it immutable (sqlite_files).
        self._immutable: Stamp | None = None

    @property
    def memory(self) -> bool:
        return self.config.path == ":memory:"

    @property
    def path(self) -> str:
        return self.config.path

    # -- life cycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, check the file is a wizd database we understand, migrate, start the writer.
        Read-only: connect without creating or changing anything, and refuse a file that
        is missing, empty or of another schema version."""
        if self.config.read_only:
            await self._open_read_only()
            self._open = True
            return
        if not self.memory:
            check_directory(self.config.path, self.config.create)
            self.created = create_file(self.config.path, self.config.file_mode)
        self._writer = await self._connect(self.config.cache_size_kib)
        try:
            # Every write, the migration's too, begins in _begin, which waits for the lock.
            await self._call(self._writer, lambda c: c.execute("PRAGMA busy_timeout=0"))
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

    async def _open_read_only(self) -> None:
        """The reader alone, on `mode=ro` (immutable while no connection has the file
        open: sqlite_files); writes fail with StoreError."""
        if self.memory:
            raise StoreError("a read-only :memory: database would be empty: open a file")
        refuse_missing(self.config.path)
        uri, self._immutable = read_only_uri(self.config.path)
        self._reader = await self._connect(uri=uri)

    async def close(self) -> None:
        """Close the connections (shielded: a cancelled caller still leaves no thread
        behind). Writes not yet started fail with StoreError."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            self._fail_pending()
            if self._watch is not None:
                self._watch.close()
            if self._reader is not None and self._reader is not self._writer:
                await self._reader.close()
            if self._writer is not None:
                await self._writer.close()

    async def _connect(
        self, cache_size_kib: int | None = None, *, uri: str | None = None
    ) -> aiosqlite.Connection:
        """A connection to the file (to `uri`, read-only, if given), checked and set up."""
        cfg = self.config
        try:
            conn = await aiosqlite.connect(
                uri or cfg.path,
                isolation_level=None,
                timeout=cfg.busy_timeout,
                check_same_thread=False,
                factory=GroupConnection,
                uri=uri is not None,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {cfg.path}: {exc}") from exc

        def setup(c: sqlite3.Connection) -> None:
            c.execute(f"PRAGMA busy_timeout={int(cfg.busy_timeout * 1000)}")
            self._refuse_foreign(c)  # before any pragma changes the file
            if uri is not None:
                self._refuse_unreadable(c)
                c.execute("PRAGMA query_only=ON")
            for pragma in Q.PRAGMAS if uri is None else Q.READER_PRAGMAS:
                c.execute(pragma)
            c.execute(f"PRAGMA synchronous={cfg.synchronous}")
            if cache_size_kib is not None:
                c.execute(f"PRAGMA cache_size=-{cache_size_kib}")

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

    def _refuse_unreadable(self, c: sqlite3.Connection) -> None:
        """What a read-only store cannot read: an empty file, or an older schema (which
        only a writer migrates)."""
        if not c.execute(Q.TABLE_NAMES).fetchall():
            raise StoreError(
                f"{self.config.path} is not a wizd database: it is empty "
                "(a daemon or `wizd create` makes one)"
            )
        current = c.execute(Q.SCHEMA_VERSION_GET).fetchone()[0]
        latest = migrations()[-1][0]
        if current < latest:
            raise StoreError(
                f"{self.config.path} has schema version {current}, older than this wizd's "
                f"({latest}); read commands never migrate: start the daemon (or run any "
                "writing command) on it once to migrate it"
            )

    def _migrate(self, c: sqlite3.Connection) -> int:
        """Bring the schema up to date. The version is read first, without the write lock:
        a current database (nearly always) is opened while other processes write."""
        latest = migrations()[-1][0]
        names = {r[0] for r in c.execute(Q.TABLE_NAMES)}
        if "schema_version" in names and c.execute(Q.SCHEMA_VERSION_GET).fetchone()[0] >= latest:
            return latest
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
            return latest
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _begin(self, c: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: the write lock up front (a deferred transaction that upgrades
        from read to write fails at once with SQLITE_BUSY), waited for in short naps.

        SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries, so a writer
        that finds the lock taken by another process lost milliseconds each time even when
        the holder was done within microseconds. The writer's busy_timeout is 0 once it is
        set up; this waits 0.1 ms doubling to 2 ms between tries, busy_timeout in all."""
        deadline = None
        nap = BUSY_FIRST_NAP
        while True:
            try:
                c.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                if deadline is None:
                    deadline = time.monotonic() + self.config.busy_timeout
                elif time.monotonic() > deadline:
                    raise
            time.sleep(nap)
            nap = min(nap * 2, BUSY_LONGEST_NAP)

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

    async def _run_on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError(f"database {self.config.path} is open read-only: nothing is written")
        return await self._call(self._writer, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        if self._immutable is not None and immutable_stale(self.config.path, self._immutable):
            await self._reopen_reader()
        return await self._call(self._reader, fn)

    async def _reopen_reader(self) -> None:
        """Another connection has opened or written the file since this immutable reader
        opened it: commits may sit in the WAL, which an immutable reader never looks at, and
        its cached pages may be stale. Open it again (normally, if a -wal now exists)."""
        old = self._reader
        assert old is not None
        self._immutable = None
        uri, self._immutable = read_only_uri(self.config.path)
        self._reader = await self._connect(uri=uri)
        await old.close()

    def _rollback(self, c: sqlite3.Connection) -> None:
        if c.in_transaction:
            c.execute("ROLLBACK")

    def _changes(self, c: sqlite3.Connection) -> int:
        return c.total_changes

    async def wait_for_change(self, timeout: float) -> None:
        """Return soon after any connection commits (this process's writer at once, others'
        through `PRAGMA data_version` within 4 ms, or 25 ms once the database has been still
        for a second), or after `timeout` seconds. Concurrent callers share one watch."""
        await self.wakeups.wait(self.wakeups.count, timeout, self._next_change)

    async def start_waiting(self) -> None:
        self._watcher()  # a read-only store's watch starts before the caller reads

    async def stop_waiting(self) -> None:
        pass

    async def final_mark(self) -> int:
        return self.wakeups.count

    async def wait_for_final(self, mark: int, timeout: float) -> None:
        """Every commit may have made jobs final: the change watcher wakes the caller."""
        await self.wakeups.wait(mark, timeout, self._next_change)

    # Watching (wizd.watching): every commit may have fed the change feed.
    start_watching = start_waiting
    stop_watching = stop_waiting
    feed_mark = final_mark
    wait_for_feed = wait_for_final

    async def _next_change(self, timeout: float) -> bool:
        """Whether a commit came within `timeout` seconds (watched by one task at a time:
        wizd.store.waits.Wakeups)."""
        watch = self._watcher()
        with anyio.move_on_after(timeout):
            while True:
                still = time.monotonic() - self._last_change > CHANGE_CHECK_STILL
                every = CHANGE_CHECK_IDLE if still else CHANGE_CHECK_INTERVAL
                committed = await self._committed_within(every)
                if watch is None:
                    if committed:
                        return True
                    continue
                try:
                    version = watch.execute(Q.DATA_VERSION).fetchone()[0]
                except sqlite3.Error:
                    return True  # cannot tell: let the caller look
                # The caller looks at everything committed so far: a commit seen here (this
                # process's own included) must not wake the next wait as well.
                if committed or version != self._seen_version:
                    self._seen_version = version
                    self._last_change = time.monotonic()
                    return True
        return False

    def _watcher(self) -> sqlite3.Connection | None:
        """The connection that reads data_version. A read-only store makes it on first use
        (plain `mode=ro`), unless its reader is immutable: no other connection has the file
        open, so nothing can commit until one does (and the reader then opens it again)."""
        if self._watch is None and self.read_only and self._immutable is None and self._open:
            uri = read_only_uri(self.config.path)[0].replace("&immutable=1", "")
            try:
                self._watch = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False, timeout=0
                )
                self._seen_version = self._watch.execute(Q.DATA_VERSION).fetchone()[0]
            except sqlite3.Error:
                self._watch = None
        return self._watch
