"""The watch behind `wizd logs -f` and `wizd monitor`: Queue.watch on a second, writable
client of the store, opened for the watch alone.

A watch takes a lease on the store's change feed, which is a write, while these commands
read through a read-only client (issue 20: a user who may only read the database can run
them, and they never change it). So every read stays on that client, and the watch gets
a client of its own. Where this user may not write the store (a SQLite file or folder it
cannot write, which is checked before anything is opened, so that SQLite leaves no -wal
or -shm file behind; a PostgreSQL role without the privilege; a read-only transaction
default), or with --poll, the commands poll the store as they did before and say so once,
on stderr.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import click

from wizd.errors import StoreError, WizdError
from wizd.queue import Queue, connect
from wizd.settings import Settings

# SQLite's primary result codes for a write this process may not make (the extended codes
# keep them in their low byte: SQLITE_READONLY_DIRECTORY is 8 | 6 << 8).
SQLITE_DENIED = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH})
# PostgreSQL's insufficient_privilege and read_only_sql_transaction.
POSTGRES_DENIED = frozenset({"42501", "25006"})

poll_option = click.option(
    "--poll",
    is_flag=True,
    help="Read the store again and again instead of watching it: nothing is written (a "
    "watch's lease is a write, and while one lasts the daemons record every event for it).",
)


class CannotWatch(WizdError):
    """This user may not write the store, so a watch cannot take its lease."""


def denied(exc: BaseException) -> bool:
    """Whether `exc`, or an error that caused it, is the store refusing this user a write."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorcode & 0xFF in SQLITE_DENIED:
            return True
        if getattr(seen, "sqlstate", None) in POSTGRES_DENIED:  # a psycopg error
            return True
        seen = seen.__cause__
    return False


def unwritable(reader: Queue) -> str | None:
    """Why this user cannot write the SQLite file `reader` reads (None: it may, or the
    store is not SQLite). SQLite opens an unwritable file read-only without a word, and
    where it may write the folder it would leave -wal and -shm files there."""
    if reader.store.backend != "sqlite":
        return None
    path = os.path.abspath(str(getattr(reader.store, "path", "")))
    for what in (path, os.path.dirname(path)):
        if not os.access(what, os.W_OK):
            return f"this user may not write {what}"
    return None


@asynccontextmanager
async def writable_client(reader: Queue, settings: Settings) -> AsyncIterator[Queue]:
    """A client that may write the store `reader` reads, for a watch alone; closed on exit.
    Raises CannotWatch where this user may not write the store: when it is opened, or when
    its watch takes or renews its lease inside the block."""
    why = unwritable(reader)
    if why is not None:
        raise CannotWatch(why)
    options = {**settings.store_options(), "create": False}
    try:
        async with connect(settings.database, limits=settings.size_limits(), **options) as q:
            yield q
    except StoreError as exc:
        if denied(exc):
            raise CannotWatch(str(exc).splitlines()[0]) from exc
        raise


def say_polling(every: float, why: str) -> None:
    """The one dim line on stderr that says the command polls instead of watching."""
    text = f"wizd: reading the store every {every:g}s instead of watching it ({why})"
    click.echo(click.style(text, dim=True), err=True)
