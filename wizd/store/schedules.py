"""Recurring jobs in the store: schedules kept, listed, paused and removed, and the pass
that enqueues their due occurrences, each exactly once across every daemon.

Two things make an occurrence enqueued once when several daemons fire at the same moment:
the schedule moves on only from the next occurrence this pass read (SCHEDULE_ADVANCE, one
conditional statement: of concurrent passes one changes the row, the others nothing), and
each occurrence inserts its (schedule, fire time) row before its job (the primary key of
schedule_runs refuses a second one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from wizd.errors import DuplicateJob, InvalidJob, ScheduleNotFound
from wizd.model import NewSchedule, Schedule, ScheduleRun, from_template, utc, utc_at
from wizd.recurrence import Timing, plan
from wizd.store import ops
from wizd.store import sqlite_queries as Q
from wizd.store.base import Fired, FiredJob
from wizd.store.conn import Conn

DUE_PER_PASS = 100  # schedules looked at per pass; the rest in the next one
BROKEN_RETRY = 3600.0  # a schedule whose timing cannot be computed is looked at hourly


def schedule_from_row(row: Sequence[Any]) -> Schedule:
    return Schedule(
        id=row[0],
        key=row[1],
        queue=row[2],
        name=row[3],
        payload=json.loads(row[4]),
        options=json.loads(row[5]),
        cron=row[6],
        every=row[7],
        timezone=row[8],
        catch_up=row[9],
        paused=bool(row[10]),
        next_at=utc_at(row[11]),
        last_at=utc(row[12]),
        created_at=utc_at(row[13]),
        updated_at=utc_at(row[14]),
    )


def timing_of(s: Schedule) -> Timing:
    return Timing(s.cron, s.every, s.timezone)


def create(c: Conn, now: float, spec: NewSchedule) -> Schedule:
    timing = Timing(spec.cron, spec.every, spec.timezone)
    args = {
        "key": spec.key,
        "queue": spec.queue,
        "name": spec.name,
        "payload": spec.payload,
        "options": spec.options,
        "cron": spec.cron,
        "every": spec.every,
        "timezone": spec.timezone,
        "catch_up": spec.catch_up,
        "paused": int(spec.paused),
        "next_at": timing.first_after(now, now),
        "now": now,
    }
    return schedule_from_row(c.execute(Q.SCHEDULE_UPSERT, args).fetchone())


def get(c: Conn, ref: int | str) -> Schedule:
    if isinstance(ref, int):
        row = c.execute(Q.SCHEDULE_GET, (ref,)).fetchone()
    else:
        row = c.execute(Q.SCHEDULE_GET_BY_KEY, (ref,)).fetchone()
    if row is None:
        raise ScheduleNotFound(ref)
    return schedule_from_row(row)


def all_schedules(c: Conn) -> list[Schedule]:
    return [schedule_from_row(row) for row in c.execute(Q.SCHEDULES_ALL)]


def delete(c: Conn, now: float, ref: int | str) -> Schedule:
    schedule = get(c, ref)
    c.execute(Q.SCHEDULE_DELETE, (schedule.id,))
    return schedule


def set_paused(c: Conn, now: float, ref: int | str, paused: bool) -> Schedule:
    schedule = get(c, ref)
    next_at = schedule.next_at.timestamp()
    if not paused and schedule.paused:  # what fell in the pause is not caught up
        next_at = timing_of(schedule).first_after(next_at, now)
    args = {"id": schedule.id, "paused": int(paused), "next_at": next_at, "now": now}
    return schedule_from_row(c.execute(Q.SCHEDULE_SET_PAUSED, args).fetchone())


def runs(c: Conn, ref: int | str, limit: int) -> list[ScheduleRun]:
    schedule = get(c, ref)
    return [
        ScheduleRun(r[0], utc_at(r[1]), r[2], utc_at(r[3]))
        for r in c.execute(Q.SCHEDULE_RUNS, (schedule.id, limit))
    ]


def next_due(c: Conn) -> float | None:
    value = c.execute(Q.SCHEDULES_NEXT_DUE).fetchone()[0]
    return None if value is None else float(value)


def prune_runs(c: Conn, now: float, older_than: float) -> None:
    c.execute(Q.SCHEDULE_RUNS_PRUNE, (now - older_than,))


def fire(c: Conn, now: float, limits: ops.Limits) -> Fired:
    """Enqueue every due occurrence of every unpaused schedule (see the module's doc)."""
    fired = Fired()
    inserter = ops.Inserter(c, now, limits)
    for row in c.execute(Q.SCHEDULES_DUE, {"now": now, "n": DUE_PER_PASS}).fetchall():
        schedule = schedule_from_row(row)
        seen = cast(float, row[11])
        try:
            todo = plan(timing_of(schedule), seen, now, schedule.catch_up)
            template = from_template(schedule.queue, schedule.name, row[4], schedule.options, now)
        except (InvalidJob, ValueError, TypeError) as exc:  # e.g. a zone this host lacks
            fired.errors.append((schedule.id, f"{type(exc).__name__}: {exc}"))
            _advance(c, now, schedule.id, seen, now + BROKEN_RETRY, None)
            continue
        last = todo.fire[-1] if todo.fire else None
        if not _advance(c, now, schedule.id, seen, todo.next_at, last):
            continue  # another daemon moved it on first: it enqueues these occurrences
        fired.missed += todo.missed
        for fire_at in todo.fire:
            if c.execute(Q.SCHEDULE_RUN_INSERT, (schedule.id, fire_at, now)).fetchone() is None:
                continue  # this occurrence was enqueued already
            try:
                job = inserter.insert(replace(template, run_at=fire_at), [])
            except DuplicateJob:  # on_conflict raise/replace, and the holder stays
                job = None
            if job is None or job.id in inserter.existing:
                fired.duplicates += 1
                continue
            c.execute(Q.SCHEDULE_RUN_JOB, (job.id, schedule.id, fire_at))
            message = f"schedule {schedule.key or schedule.id} at {utc_at(fire_at).isoformat()}"
            inserter.events.append((job.id, "scheduled", None, 0, None, message))
            fired.jobs.append(FiredJob(schedule.id, fire_at, job))
    inserter.written()
    return fired


def _advance(
    c: Conn, now: float, schedule_id: int, seen: float, next_at: float, last: float | None
) -> bool:
    args = {"id": schedule_id, "seen": seen, "next_at": next_at, "last_at": last, "now": now}
    return bool(c.execute(Q.SCHEDULE_ADVANCE, args).rowcount)
