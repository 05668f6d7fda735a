"""Signals to jobs and the waits that take them (ctx.wait_for_signal), in the store.

A wait is an entry of the job's history (job_steps, kind 'signal'). Its run arms it
(`arm`, fenced): a signal of that name already sent and not yet taken is taken at once;
a wait past its timeout is recorded as timed out; else the entry is stored `waiting`, with
`wake_at` (its timeout, NULL for none), and the run leaves its slot: its outcome
`wait_signal` (`wait`) makes the job `waiting_signal`, unless a signal came meanwhile.
A signal (`send`) is kept in job_signals; if its job waits for that name, the signal
completes the waiting entry with its data and the job becomes pending. The promoter
(`promote_timed_out`) makes the jobs whose waits are past their timeout pending again;
their next run records the timeout. Every later run of the job replays the completed
entry: `{"data": ...}` or `{"timeout": true}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from wizd.errors import IllegalTransition, JobNotFound
from wizd.model import Job, JobStatus
from wizd.step_model import Armed, SignalWait
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, dialect

S = JobStatus
T = TypeVar("T")
EVENT = "signal"

JOB_STATUS = "SELECT status FROM jobs WHERE id = ?"
SIGNAL_INSERT = "INSERT INTO job_signals (job_id, name, data, sent_at) VALUES (?, ?, ?, ?)"
SIGNAL_OLDEST = """
SELECT id, data FROM job_signals WHERE job_id = ? AND name = ? AND consumed = 0
ORDER BY id LIMIT 1
"""
SIGNAL_TAKE = "UPDATE job_signals SET consumed = 1 WHERE id = ?"
ENTRY = """
SELECT status, result, wake_at FROM job_steps
WHERE job_id = ? AND name = ? AND occurrence = ? AND kind = 'signal'
"""
WAITING_ENTRY = """
SELECT name, occurrence FROM job_steps
WHERE job_id = ? AND kind = 'signal' AND status = 'waiting'
"""
ENTRY_SAVE = """
INSERT INTO job_steps (job_id, name, occurrence, position, kind, status, result, error,
    attempts, started_at, finished_at, wake_at)
VALUES (:id, :name, :occurrence, :position, 'signal', :status, :result, NULL, 1, :now, :now,
    :wake_at)
ON CONFLICT (job_id, name, occurrence) DO UPDATE SET status = excluded.status,
    result = excluded.result, finished_at = excluded.finished_at, wake_at = excluded.wake_at
"""
WAIT = f"""
UPDATE jobs SET status = 'waiting_signal', attempt = attempt - 1, updated_at = :now,
    worker_id = NULL, heartbeat_at = NULL
WHERE {Q.FENCE}
"""
WOKEN = """
UPDATE jobs SET status = 'pending', run_at = :now, updated_at = :now
WHERE id = :id AND status = 'waiting_signal'
"""
TIMED_OUT = """
UPDATE jobs SET status = 'pending', run_at = :now, updated_at = :now
WHERE status = 'waiting_signal' AND id IN
    (SELECT job_id FROM job_steps WHERE status = 'waiting' AND wake_at <= :now)
RETURNING id, attempt
"""
WAITS_OF = """
SELECT s.job_id, s.name, s.wake_at FROM job_steps s JOIN jobs j ON j.id = s.job_id
WHERE s.status = 'waiting' AND s.kind = 'signal' AND j.status = 'waiting_signal'
ORDER BY s.job_id
"""


def arm(c: Conn, now: float, w: SignalWait) -> tuple[Armed, str | None]:
    """("data", its JSON) when a signal is there for the wait, ("timeout", None) when the
    wait is past its timeout, ("wait", None) when the job is to wait (the entry stored
    `waiting`), ("lost", None) when the run no longer owns its job (nothing written)."""
    fence = {"id": w.job_id, "worker": w.worker_id, "attempt": w.attempt, "now": now}
    if c.execute(Q.STEP_FENCE, fence).rowcount == 0:
        return "lost", None
    row = c.execute(ENTRY, (w.job_id, w.name, w.occurrence)).fetchone()
    if row is not None and row[0] == "completed":  # a signal completed it: replay that
        return ("timeout", None) if row[1] == TIMED_OUT_RESULT else ("data", _data(row[1]))
    entry: dict[str, Any] = {"id": w.job_id, "name": w.name, "occurrence": w.occurrence}
    entry.update(position=w.position, now=now, wake_at=None)
    data = _take(c, w.job_id, w.name)
    if data is not None:
        c.execute(ENTRY_SAVE, {**entry, "status": "completed", "result": _wrap(data)})
        rowmap.event(c, now, w.job_id, EVENT, None, w.attempt, w.worker_id, _took(w.name))
        return "data", data
    first_wake = None if w.timeout is None else now + w.timeout
    wake_at = first_wake if row is None else row[2]
    if wake_at is not None and wake_at <= now:
        c.execute(ENTRY_SAVE, {**entry, "status": "completed", "result": TIMED_OUT_RESULT})
        note = f"{w.name}#{w.occurrence}: no signal {w.name!r} came before the timeout"
        rowmap.event(c, now, w.job_id, EVENT, None, w.attempt, w.worker_id, note)
        return "timeout", None
    if row is None:
        entry.update(status="waiting", result=None, wake_at=wake_at)
        c.execute(ENTRY_SAVE, entry)
    return "wait", None


TIMED_OUT_RESULT = '{"timeout":true}'


def wait(c: Conn, now: float, job_id: int, worker_id: str, attempt: int, name: str) -> None:
    """The run's outcome `wait_signal` (its fence checked by the caller): the job waits for
    signal `name`, not charged an attempt; pending at once if the signal came meanwhile."""
    fence = {"id": job_id, "worker": worker_id, "attempt": attempt, "now": now}
    c.execute(WAIT, fence)
    note = f"waiting for signal {name!r}"
    rowmap.event(c, now, job_id, "waiting_signal", S.WAITING_SIGNAL, attempt - 1, worker_id, note)
    deliver(c, now, job_id)


def send(c: Conn, now: float, job_id: int, name: str, data_json: str) -> Job:
    """Keep signal `name` for the job; if it waits for that name, the wait takes it and the
    job becomes pending. JobNotFound; IllegalTransition for a final job (it would never
    read the signal)."""
    lock = JOB_STATUS + (" FOR UPDATE" if dialect(c) == "postgres" else "")
    row = c.execute(lock, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    status = S(row[0])
    if status.final:
        raise IllegalTransition(job_id, status, S.PENDING, f"send it signal {name!r}")
    c.execute(SIGNAL_INSERT, (job_id, name, data_json, now))
    rowmap.event(c, now, job_id, EVENT, None, None, None, f"signal {name!r} sent")
    if status == S.WAITING_SIGNAL:
        deliver(c, now, job_id)
    return rowmap.get(c, job_id)


def deliver(c: Conn, now: float, job_id: int) -> bool:
    """If the job waits for a signal that has come: the wait takes it, the job is pending."""
    waiting = c.execute(WAITING_ENTRY, (job_id,)).fetchone()
    if waiting is None:
        return False
    name, occurrence = waiting
    data = _take(c, job_id, name)
    if data is None:
        return False
    entry = {"id": job_id, "name": name, "occurrence": occurrence, "position": 0, "now": now}
    entry["wake_at"] = None
    c.execute(ENTRY_SAVE, {**entry, "status": "completed", "result": _wrap(data)})
    c.execute(WOKEN, {"id": job_id, "now": now})
    rowmap.event(c, now, job_id, EVENT, S.PENDING, None, None, _took(name))
    return True


def promote_timed_out(c: Conn, now: float) -> int:
    """Make pending the jobs whose signal waits are past their timeout (their next run
    records the timeout); how many."""
    rows = c.execute(TIMED_OUT, {"now": now}).fetchall()
    note = "signal wait timed out"
    rowmap.events(c, now, [(r[0], "promoted", S.PENDING, r[1], None, note) for r in rows])
    return len(rows)


def waits(c: Conn) -> list[tuple[int, str, float | None]]:
    """(job id, signal name, timeout time or None) of every job waiting for a signal."""
    return [(r[0], r[1], r[2]) for r in c.execute(WAITS_OF).fetchall()]


def _take(c: Conn, job_id: int, name: str) -> str | None:
    """The JSON data of the oldest signal `name` not yet taken, now taken; None if none."""
    row = c.execute(SIGNAL_OLDEST, (job_id, name)).fetchone()
    if row is None:
        return None
    c.execute(SIGNAL_TAKE, (row[0],))
    return str(row[1])


def _wrap(data_json: str) -> str:
    return '{"data":' + data_json + "}"


def _data(result: str) -> str:
    """The data's JSON text out of a completed entry's `{"data":...}`."""
    return result[len('{"data":') : -1]


def _took(name: str) -> str:
    return f"signal {name!r} taken by its wait"


class SignalStore:
    """The Store's signal methods over SQLStore's transactions (wizd.store.base)."""

    if TYPE_CHECKING:

        async def _write(self, op: Callable[[Any, float], T]) -> T: ...
        async def _read(self, fn: Callable[[Any], T]) -> T: ...

    async def signal(self, job_id: int, name: str, data_json: str) -> Job:
        return await self._write(lambda c, now: send(c, now, job_id, name, data_json))

    async def arm_signal(self, w: SignalWait) -> tuple[Armed, str | None]:
        return await self._write(lambda c, now: arm(c, now, w))

    async def signal_waits(self) -> list[tuple[int, str, float | None]]:
        return await self._read(waits)
