"""What a client awaiting jobs needs from the store: wake-ups when jobs may have become
final, from any process, without busy polling (the client side is wizd.waiting).

A wake-up only says "look again": the waiting client re-reads its jobs' rows, which decide.
Each store counts the wake-ups it has seen (`Wakeups.count`), so that a commit that lands
between a client's read and its next wait is not lost: the client takes the count before
it reads, and a wait for a count already passed returns at once. A client brackets its
waiting with start_waiting / stop_waiting.

- SQLite: the change watcher every store has (`PRAGMA data_version`, wizd.store.sqlite);
  every commit of any process wakes.
- PostgreSQL: a transaction that may have made jobs final (an op wrapped in `making_final`)
  commits with `NOTIFY "wizd_<schema>:final"`, in the same round trip as its COMMIT; a
  client LISTENs on that channel while it waits, with a session of its own
  (`FinalListener`), so that idle daemons are not woken by every outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from wizd.store.conn import group_cache

T = TypeVar("T")
FINAL_KEY = "making_final"  # in a group's cache: an op of the group may make jobs final


def making_final(op: Callable[[Any, float], T]) -> Callable[[Any, float], T]:
    """`op`, marking its group as one that may make jobs final (PostgreSQL notifies)."""

    @functools.wraps(op)
    def run(c: Any, now: float) -> T:
        group_cache(c)[FINAL_KEY] = True
        return op(c, now)

    return run


def makes_final(c: Any) -> bool:
    """Whether the transaction running on `c` may have made jobs final."""
    return bool(group_cache(c).get(FINAL_KEY))


def final_channel(channel: str) -> str:
    """The channel on which PostgreSQL says jobs of the schema (channel) became final."""
    return f"{channel}:final"


class Wakeups:
    """Wake-ups shared by every task of a process that waits: one task watches (the
    leader), the others wait with it; each wake-up moves `count` on."""

    def __init__(self) -> None:
        self.count = 0
        self._watching = False
        self._woken = anyio.Event()

    async def wait(
        self, mark: int, timeout: float, watch: Callable[[float], Awaitable[bool]]
    ) -> None:
        """Return once `count` has moved past `mark` (at once if it has already), or after
        `timeout` seconds. `watch(timeout)` waits for the next change and says whether
        one came; the first waiter runs it for everyone."""
        with anyio.move_on_after(timeout):
            while self.count == mark:
                if self._watching:
                    await self._woken.wait()
                    continue
                self._watching = True
                try:
                    if await watch(timeout):
                        self.count += 1
                    else:
                        return  # the leader's own time is up: so is this wait's
                finally:
                    self._watching = False
                    self._woken.set()
                    self._woken = anyio.Event()


class FinalListener:
    """A PostgreSQL session that LISTENs on the schema's final channel while a task of the
    process waits (between the first start_waiting and the last stop_waiting): a session
    left listening by a client that no longer reads it would hold back the server's
    notification queue. The session itself is kept (and made again after a failure)."""

    def __init__(
        self, connect: Callable[[], Awaitable[Any]], channel: str, suffix: str = "final"
    ) -> None:
        from psycopg import sql  # the PostgreSQL store is made: it is installed

        self._connect = connect
        self.base_channel = channel
        self.channel = f"{channel}:{suffix}"  # final_channel(channel) unless a suffix
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        self._unlisten = sql.SQL("UNLISTEN {}").format(sql.Identifier(self.channel))
        # What a transaction that may have made jobs final commits with: one round trip.
        self.commit_notifying = sql.SQL("NOTIFY {}; COMMIT").format(sql.Identifier(self.channel))
        self._conn: Any = None
        self._lock = anyio.Lock()  # held while the session is made, (un)listens
        self._waiting = 0  # tasks between start_waiting and stop_waiting
        self.wakeups = Wakeups()

    async def start_waiting(self) -> None:
        """Listen from now on: a notification sent after this returns is not lost."""
        async with self._lock:
            self._waiting += 1
            if self._waiting > 1 and self._conn is not None and not self._conn.closed:
                return
            await self._statement(self._listen)

    async def stop_waiting(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._waiting -= 1
                if self._waiting == 0 and self._conn is not None and not self._conn.closed:
                    await self._statement(self._unlisten)

    async def _statement(self, statement: Any) -> None:
        """Run LISTEN or UNLISTEN (making the session first if need be); a failure drops
        the session: waits then sleep out their safety net until it is made again."""
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._connect()
            await self._conn.execute(statement)
        except psycopg.Error:
            await self.close()

    async def wait(self, mark: int, timeout: float) -> None:
        await self.wakeups.wait(mark, timeout, self._watch)

    async def _watch(self, timeout: float) -> bool:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:  # not connected: the caller's safety net reads
            await anyio.sleep(timeout)
            return False
        came = False
        try:
            # Every notification of the packet that brought the first is read with it.
            async for _ in conn.notifies(timeout=timeout, stop_after=1):
                came = True
        except psycopg.Error:
            await self.close()
            return True  # cannot tell: let the caller look
        return came

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await conn.close()


class NotifiedWaits:
    """The Store's waiting and watching methods on PostgreSQL (wizd.store.base), over
    `_final` and, made when first watched, `_feed`: the same listener on the channel the
    change feed's triggers notify (`wizd_<schema>:feed`, wizd.store.feed)."""

    _final: FinalListener
    _feed: FinalListener | None = None

    def _feed_listener(self) -> FinalListener:
        if self._feed is None:
            self._feed = FinalListener(self._final._connect, self._final.base_channel, "feed")
        return self._feed

    async def start_watching(self) -> None:
        await self._feed_listener().start_waiting()

    async def stop_watching(self) -> None:
        await self._feed_listener().stop_waiting()

    async def feed_mark(self) -> int:
        return self._feed_listener().wakeups.count

    async def wait_for_feed(self, mark: int, timeout: float) -> None:
        await self._feed_listener().wait(mark, timeout)

    async def close_feed(self) -> None:
        if self._feed is not None:
            await self._feed.close()

    async def start_waiting(self) -> None:
        await self._final.start_waiting()

    async def stop_waiting(self) -> None:
        await self._final.stop_waiting()

    async def final_mark(self) -> int:
        return self._final.wakeups.count

    async def wait_for_final(self, mark: int, timeout: float) -> None:
        await self._final.wait(mark, timeout)
