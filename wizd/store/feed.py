"""The change feed Queue.watch reads, and the streamed tails of jobs (ctx.stream).

While anybody watches (a live lease in feed_watchers), triggers (SQLite migration 0013,
PostgreSQL 0011) copy every line of every job's history into job_feed: the lines a job's
row holds (enqueued, claimed, completed), every stored event (progress, log, step,
failed, ...) and every streamed piece. A row's id is its place in the commit order (SQLite
writes one transaction at a time; PostgreSQL's feed triggers run at COMMIT under one
advisory lock) and is the watchers' cursor: "rows after id N" is exact, so a watcher that
reconnects with its last cursor misses nothing and sees nothing twice, as long as its
lease (or another watcher's) kept the feed recording meanwhile (LEASE seconds after its
last renewal). Nobody watching, the triggers write nothing (on PostgreSQL they are
disabled meanwhile and cost nothing: wizd.store.pg_feed, migration 0015).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from wizd.errors import CursorExpired, InvalidJob, JobNotFound
from wizd.jobs import Event, utc_at
from wizd.states import JobStatus
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn

T = TypeVar("T")
LEASE = 300.0  # seconds the feed keeps recording for a watcher after its last renewal
PRUNE_MOST = 50_000  # feed rows deleted by one prune at most (a short transaction)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One line of a job's history as a watcher sees it. `cursor` is its place in the
    feed: pass it as `after=` to resume after it."""

    cursor: int
    job_id: int
    queue: str
    at: datetime
    kind: str  # enqueued, claimed, completed, progress, log, step, failed, stream, ...
    status: JobStatus | None
    attempt: int | None
    worker_id: str | None
    message: str | None

    @property
    def final(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    def as_line(self, number: int) -> Event:
        """This event as line `number` of its job's history (q.events)."""
        return Event(
            number,
            self.job_id,
            self.at,
            self.kind,
            self.status,
            self.attempt,
            self.worker_id,
            self.message,
        )


STATUSES = {s.value: s for s in JobStatus}
READ = (
    "SELECT id, job_id, queue, at, kind, status, attempt, worker_id, message FROM job_feed "
    "WHERE id > ?{where} ORDER BY id LIMIT ?"
)


def register(c: Conn, now: float, watcher: str, lease: float, resume: int | None) -> int:
    """Start or renew `watcher`'s lease (the feed records from the commit of this), drop
    expired leases and rows older than any lease can resume; the feed's last id. `resume`,
    a cursor the watcher goes on from: CursorExpired if the feed may lack events after it."""
    recording = c.execute("SELECT 1 FROM feed_watchers LIMIT 1").fetchone() is not None
    if not recording:  # nothing was recorded since the last lease went: no cursor resumes
        lose_before(c, head(c) + 1)
    # Expired leases go in the same transaction as this one comes: the feed never stops.
    c.execute("DELETE FROM feed_watchers WHERE expires_at < ?", (now,))
    prune(c, now - 2 * lease)
    c.execute("DELETE FROM feed_watchers WHERE id = ?", (watcher,))
    c.execute("INSERT INTO feed_watchers (id, expires_at) VALUES (?, ?)", (watcher, now + lease))
    last = head(c)
    if resume is not None:
        if resume > last:
            raise InvalidJob(
                "after", f"cursor {resume} is past the feed's last event ({last}): not this store's"
            )
        oldest = int(c.execute("SELECT lost_before FROM feed_state").fetchone()[0])
        if resume < oldest:
            raise CursorExpired(resume, oldest)
    return last


def sweep(c: Conn, now: float, lease: float) -> int:
    """The daemons' upkeep: drop expired leases (once none is left, the triggers stop
    writing, so nobody watching costs nothing again) and rows no lease can resume from;
    how many leases were dropped."""
    dropped = c.execute("DELETE FROM feed_watchers WHERE expires_at < ?", (now,)).rowcount
    if c.execute("SELECT 1 FROM feed_watchers LIMIT 1").fetchone() is None:
        prune(c, float("inf"))  # no watcher left: every row but the last
    else:
        prune(c, now - 2 * lease)
    return dropped


def prune(c: Conn, older_than: float) -> None:
    """Delete rows older than that (at most PRUNE_MOST a call; never the last row, as
    SQLite's next id is one past the largest and no cursor may be reused), and move the
    feed's start past them. Ids follow commits and `at` nearly so: the boundary is found by
    bisection on the primary key, not by scanning the feed."""
    last = head(c)
    first = c.execute("SELECT MIN(id) FROM job_feed").fetchone()[0]
    if first is None or int(first) >= last:
        return
    top = min(last - 1, int(first) + PRUNE_MOST)
    lo, hi, found = int(first), top, None
    while lo <= hi:
        mid = (lo + hi) // 2
        row = c.execute(
            "SELECT id, at FROM job_feed WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        ).fetchone()
        if row is not None and int(row[0]) <= top and float(row[1]) < older_than:
            found = int(row[0])
            lo = found + 1
        else:
            hi = mid - 1
    if found is not None:
        c.execute("DELETE FROM job_feed WHERE id <= ?", (found,))
        lose_before(c, found)


def lose_before(c: Conn, cursor: int) -> None:
    """No watch resumes from a cursor before `cursor` any more."""
    c.execute("UPDATE feed_state SET lost_before = ? WHERE lost_before < ?", (cursor, cursor))


def head(c: Conn) -> int:
    return int(c.execute("SELECT COALESCE(MAX(id), 0) FROM job_feed").fetchone()[0])


def after(c: Conn, cursor: int, queue: str | None, job: int | None, limit: int) -> list[WatchEvent]:
    """The feed's rows after `cursor`, of the queue and job if given, in order."""
    where, args = "", [cursor]
    if queue is not None:
        where += " AND queue = ?"
        args.append(queue)  # type: ignore[arg-type]
    if job is not None:
        where += " AND job_id = ?"
        args.append(job)
    rows = c.execute(READ.format(where=where), [*args, limit]).fetchall()
    # Built positionally, the status looked up in a dict: the watcher's own CPU per event
    # competes with the daemon's on a small machine (python -m bench.hotpath --watch).
    return [
        WatchEvent(int(r[0]), int(r[1]), r[2], utc_at(float(r[3])), r[4],
                   STATUSES[r[5]] if r[5] else None, r[6], r[7], r[8])
        for r in rows
    ]  # fmt: skip


def append_stream(c: Conn, job_id: int, piece: str, cap: int, worker_id: str, attempt: int) -> bool:
    """Add `piece` to the job's stored stream, keeping its last `cap` characters; fenced
    on the run: False (nothing written) once the job has another run (claimed again,
    interrupted). Its status is not asked: a run's last pieces are written when it ends,
    which may be after its outcome was committed."""
    fence = {"id": job_id, "worker": worker_id, "attempt": attempt}
    if c.execute(Q.STREAM_FENCE, fence).fetchone() is None:
        return False
    row = c.execute("SELECT text, dropped FROM job_streams WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        text, dropped = piece[-cap:], max(len(piece) - cap, 0)
        c.execute(
            "INSERT INTO job_streams (job_id, text, piece, dropped) VALUES (?, ?, ?, ?)",
            (job_id, text, piece, dropped),
        )
        return True
    whole = row[0] + piece
    text, dropped = whole[-cap:], int(row[1]) + max(len(whole) - cap, 0)
    c.execute(
        "UPDATE job_streams SET text = ?, piece = ?, dropped = ? WHERE job_id = ?",
        (text, piece, dropped, job_id),
    )
    return True


def stream_text(c: Conn, job_id: int) -> str:
    """What the job streamed, its older text replaced by a marker once over the cap."""
    row = c.execute("SELECT text, dropped FROM job_streams WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        if c.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            raise JobNotFound(job_id)
        return ""
    text, dropped = row
    return f"[... {dropped} characters dropped]\n{text}" if dropped else str(text)


class FeedMethods:
    """The Store's feed methods over a SQLStore's `_read` / `_write`."""

    async def _read(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def _write(self, op: Callable[[Any, float], T]) -> T:
        raise NotImplementedError

    async def watch_register(
        self, watcher: str, lease: float = LEASE, resume: int | None = None
    ) -> int:
        return await self._write(lambda c, now: register(c, now, watcher, lease, resume))

    async def watch_release(self, watcher: str, linger: float) -> None:
        await self._write(
            lambda c, now: c.execute(
                "UPDATE feed_watchers SET expires_at = ? WHERE id = ? AND expires_at > ?",
                (now + linger, watcher, now + linger),
            )
        )

    async def sweep_feed(self, lease: float = LEASE) -> int:
        return await self._write(lambda c, now: sweep(c, now, lease))

    async def feed_after(
        self, cursor: int, queue: str | None = None, job: int | None = None, limit: int = 500
    ) -> list[WatchEvent]:
        return await self._read(lambda c: after(c, cursor, queue, job, limit))

    async def append_stream(
        self, job_id: int, piece: str, cap: int, *, worker_id: str, attempt: int
    ) -> bool:
        return await self._write(
            lambda c, now: append_stream(c, job_id, piece, cap, worker_id, attempt)
        )

    async def stream_text(self, job_id: int) -> str:
        return await self._read(lambda c: stream_text(c, job_id))
