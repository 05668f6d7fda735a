"""Shared fixtures: a clock the tests move by hand, the store backends, an open Queue.

The behavioural store tests run once per backend: append a param to `backend_url` (and the
set-up of an empty database for it) to run them all against another store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import wizd
from wizd.store import Store

T = TypeVar("T")

START = 1_750_000_000.0


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A path for a new SQLite database file."""
    return str(tmp_path / "wizd.db")


@pytest.fixture(params=["sqlite"])
def backend_url(request: pytest.FixtureRequest, store_url: str) -> Iterator[str]:
    """The URL of an empty store, once per backend."""
    if request.param == "sqlite":
        yield store_url
    else:  # pragma: no cover - a new param needs its set-up here
        raise NotImplementedError(request.param)


@pytest.fixture
async def q(backend_url: str, clock: FakeClock) -> AsyncIterator[wizd.Queue]:
    """An open Queue on an empty store whose time is `clock`."""
    async with in_own_task(wizd.connect(backend_url, clock=clock)) as queue:
        yield queue


@pytest.fixture
def store(q: wizd.Queue) -> Store:
    return q.store
