"""Schedules as data: a schedule to be written (NewSchedule), as stored (Schedule), one
occurrence it enqueued (ScheduleRun), and the job template it keeps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wizd.backoff import Backoff
from wizd.job_fields import encode_json
from wizd.jobs import NewJob
from wizd.states import NOT_FINAL, S


def job_template(new: NewJob) -> dict[str, Any]:
    """The options of a validated job as a schedule keeps them (JSON-ready, user's words);
    options left to the queue's defaults are left out."""
    out: dict[str, Any] = {}
    if new.priority is not None:
        out["priority"] = new.priority
    if new.max_attempts is not None:
        out["attempts"] = new.max_attempts
    if new.backoff is not None:
        out["backoff"] = new.backoff.to_dict()
    if new.timeout is not None:
        out["timeout"] = new.timeout
    if new.ttl is not None:
        out["ttl"] = new.ttl
    if new.tags:
        out["tags"] = list(new.tags)
    if new.context is not None:
        out["context"] = json.loads(new.context)
    if new.unique_key is not None:
        out["unique_key"] = new.unique_key
        out["unique_for"] = new.unique_for
        out["unique_states"] = [s.value for s in new.unique_states]
        out["on_conflict"] = new.on_conflict
    if new.concurrency_key is not None:
        out["concurrency_key"] = new.concurrency_key
    return out


def from_template(
    queue: str, name: str, payload: str, options: Mapping[str, Any], run_at: float
) -> NewJob:
    """The job of one occurrence of a schedule (its options were validated when it was made)."""
    backoff = options.get("backoff")
    context = options.get("context")
    states = options.get("unique_states")
    return NewJob(
        queue=queue,
        name=name,
        payload=payload,
        priority=options.get("priority"),
        max_attempts=options.get("attempts"),
        backoff=None if backoff is None else Backoff.from_dict(backoff),
        timeout=options.get("timeout"),
        run_at=run_at,
        delay=0.0,
        ttl=options.get("ttl"),
        tags=tuple(options.get("tags", ())),
        context=None if context is None else encode_json(context, "context"),
        unique_key=options.get("unique_key"),
        unique_for=options.get("unique_for"),
        unique_states=NOT_FINAL if states is None else tuple(S(x) for x in states),
        on_conflict=options.get("on_conflict", "return"),
        concurrency_key=options.get("concurrency_key"),
    )


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A validated schedule ready to be written (payload and options as JSON text)."""

    key: str | None
    queue: str
    name: str
    payload: str
    options: str
    cron: str | None
    every: float | None
    timezone: str
    catch_up: str
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring job as stored: when it fires (cron in a time zone, or every N seconds),
    the job it enqueues, and the next occurrence not yet enqueued."""

    id: int
    key: str | None
    queue: str
    name: str
    payload: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    every: float | None
    timezone: str
    catch_up: str
    paused: bool
    next_at: datetime
    last_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One occurrence of a schedule that was enqueued: its time, its job, when it was fired.
    job_id is None when the job's unique key was held by another job (nothing enqueued)."""

    schedule_id: int
    fire_at: datetime
    job_id: int | None
    fired_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id,
            "fire_at": self.fire_at.isoformat(),
            "job_id": self.job_id,
            "fired_at": self.fired_at.isoformat(),
        }
