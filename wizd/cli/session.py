"""One way for every operator command to reach the store: settings, then a client, then anyio."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from wizd.errors import WizdError
from wizd.queue import Queue, connect
from wizd.settings import Settings, load_settings

T = TypeVar("T")


def current_settings() -> Settings:
    """Settings of this invocation: the subcommand's --database/--config, else the group's
    flags, then WIZD_* environment, the TOML file and defaults."""
    ctx = click.get_current_context()
    obj: dict[str, Any] = ctx.ensure_object(dict)
    own: dict[str, Any] = obj.get("command", {})
    flags: dict[str, Any] = dict(obj.get("flags", {}))
    if "database" in own:
        flags["database"] = own["database"]
    return load_settings(own.get("config_file", obj.get("config_file")), **flags)


async def until_interrupted(work: Awaitable[T]) -> T:
    """`work`, cancelled by Ctrl-C through a cancel scope rather than by a KeyboardInterrupt
    thrown into the event loop, so the client still closes the store; then KeyboardInterrupt."""
    done: list[T] = []
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()

            tg.start_soon(watch)
            done.append(await work)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the task group wraps what `work` raised
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if not done:
        raise KeyboardInterrupt
    return done[0]


def with_queue(
    work: Callable[[Queue, Settings], Awaitable[T]],
    *,
    create: bool = False,
    read_only: bool = False,
) -> T:
    """Run `work(queue, settings)` on a client of the configured store; closed afterwards.
    A SQLite file that does not exist is refused (a typo must not make an empty database)
    unless `create`: a new one is announced on stderr once the command succeeded, and
    removed again if the command's input was refused. With `read_only` (commands that
    only read) the store is opened read-only: nothing is created, migrated or written, and
    a user who may only read the database can run the command."""
    settings = current_settings()
    options = {**settings.store_options(), "create": create, "read_only": read_only}
    created: list[str] = []  # the SQLite file this command made, if it made one

    async def main() -> T:
        async with connect(settings.database, limits=settings.size_limits(), **options) as q:
            if getattr(q.store, "created", False):
                created.append(str(getattr(q.store, "path", settings.database)))
            return await until_interrupted(work(q, settings))

    try:
        result = anyio.run(main)
    except WizdError:
        # Refused input changes nothing: not even the new, empty database made to hold it.
        for path in map(os.path.abspath, created):
            for name in (path, f"{path}-wal", f"{path}-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        raise
    if created:
        announce_created(os.path.abspath(created[0]))
    return result


def announce_created(path: str) -> None:
    """Say on stderr where a command made a new database (often ./wizd.db by default)."""
    click.echo(f"wizd: created a new database at {path}", err=True)
