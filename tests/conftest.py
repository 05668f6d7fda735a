"""Shared fixtures: a clock the tests move by hand, the store backends, an open Queue.

The behavioural store tests run once per backend: append a param to `backend_url` (and the
set-up of an empty database for it) to run them all against another store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import wizd
from wizd.store import Store

T = TypeVar("T")

START = 1_750_000_000.0
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_DB = "wizd_test"


class FakeClock:
    """A clock that moves only when told: pass it as `wizd.connect(url, clock=clock)`."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@contextlib.asynccontextmanager
async def in_own_task(cm: contextlib.AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit `cm` in one task of its own.

    pytest-asyncio runs a fixture's set-up and its teardown in different tasks, while an
    anyio task group (the store's writer) must be left by the task that entered it.
    """
    entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    leave = asyncio.Event()

    async def host() -> None:
        try:
            async with cm as value:
                entered.set_result(value)
                await leave.wait()
        except BaseException as exc:
            if entered.done():
                raise
            entered.set_exception(exc)

    task = asyncio.create_task(host())
    try:
        yield await entered
    finally:
        leave.set()
        await task


@contextlib.contextmanager
def sqlite_file(path: str) -> Iterator[sqlite3.Connection]:
    """A plain connection to look into (or tamper with) a SQLite file: commits, then closes."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def stored_event_rows(q: wizd.Queue, job_id: int) -> int:
    """Event rows left in the database for a job id, whether or not the job still exists."""
    if q.store.backend == "postgres":
        import psycopg

        config = q.store.config  # type: ignore[attr-defined]
        with psycopg.connect(config.conninfo) as pg:
            sql = f"SELECT COUNT(*) FROM {config.schema}.job_events WHERE job_id = %s"
            row = pg.execute(sql, (job_id,)).fetchone()
    else:
        with sqlite_file(q.store.path) as db:  # type: ignore[attr-defined]
            sql = "SELECT COUNT(*) FROM job_events WHERE job_id = ?"
            row = db.execute(sql, (job_id,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A path for a new SQLite database file."""
    return str(tmp_path / "wizd.db")


@pytest.fixture(scope="session")
def postgres_database() -> str:
    """The URL of the tests' PostgreSQL database (made if missing). The server must run on
    127.0.0.1:5432 (.ci/run makes sure it does): a test that needs it fails without it."""
    import psycopg

    try:
        with psycopg.connect(PG_SERVER + "/postgres", autocommit=True, connect_timeout=5) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).fetchone():
                c.execute(f"CREATE DATABASE {PG_DB}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_SERVER}: {exc}")
    return f"{PG_SERVER}/{PG_DB}"


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A wizd URL on a schema of its own, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_database}?schema={schema}"
    with psycopg.connect(postgres_database, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, store_url: str) -> str:
    """The URL of an empty store, once per backend."""
    if request.param == "sqlite":
        return store_url
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def q(backend_url: str, clock: FakeClock) -> AsyncIterator[wizd.Queue]:
    """An open Queue on an empty store whose time is `clock`."""
    async with in_own_task(wizd.connect(backend_url, clock=clock)) as queue:
        yield queue


@pytest.fixture
async def sqlite_q(store_url: str, clock: FakeClock) -> AsyncIterator[wizd.Queue]:
    """`q` on SQLite only, for tests about the SQLite file itself."""
    async with in_own_task(wizd.connect(store_url, clock=clock)) as queue:
        yield queue


@pytest.fixture
def store(q: wizd.Queue) -> Store:
    return q.store


@pytest.fixture
async def other(backend_url: str) -> AsyncIterator[wizd.Queue]:
    """A second client of the same store: another connection, as another process has."""
    async with in_own_task(wizd.connect(backend_url)) as queue:
        yield queue
