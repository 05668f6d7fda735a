"""Durable steps as data: one entry of a job's history (Step), as the store keeps it, and
the name a step is known by (`search#2`: the second call of a step named search)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.jobs import utc_at

MAX_STEP_NAME = 200  # characters
StepStatus = Literal["completed", "failed", "waiting"]  # waiting: a signal wait


def check_step_name(name: object) -> str:
    """A step's name: non-empty text of at most MAX_STEP_NAME characters, without '#'
    (which separates the name from the occurrence in `search#2`)."""
    return _history_name("step", name)


def check_signal_name(name: object) -> str:
    """A signal's name: as a step's (printable text, at most MAX_STEP_NAME, no '#')."""
    return _history_name("signal", name)


def _history_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(what, f"a {what}'s name must be non-empty text, got {shorten(name)}")
    if len(name) > MAX_STEP_NAME or "#" in name or not name.isprintable():
        raise InvalidJob(
            what,
            f"{shorten(name)}: a {what}'s name is printable text of at most {MAX_STEP_NAME} "
            "characters, without '#'",
        )
    return name


def step_label(name: str, occurrence: int) -> str:
    return f"{name}#{occurrence}"


@dataclass(frozen=True, slots=True)
class Step:
    """One finished entry of a job's history. `position` orders the entries as the
    processor called them (from 1); `occurrence` numbers the calls of one name (from 1).
    A completed step's `result` is replayed by every later run of the job; a failed one
    (its `error` kept) runs again. `attempts` counts the runs of its body, over all runs
    of the job."""

    job_id: int
    name: str
    occurrence: int
    position: int
    kind: str
    status: StepStatus
    result: Any
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime

    @property
    def label(self) -> str:
        return step_label(self.name, self.occurrence)

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Step:
        job_id, name, occurrence, position, kind, status, result, error, attempts, t0, t1 = row
        return cls(
            job_id,
            name,
            occurrence,
            position,
            kind,
            status,
            None if result is None else json.loads(result),
            error,
            attempts,
            utc_at(t0),
            utc_at(t1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "occurrence": self.occurrence,
            "label": self.label,
            "position": self.position,
            "kind": self.kind,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration": round(self.duration, 6),
        }


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one step of a run ended, as the run writes it (fenced on job, worker, attempt).
    `result_json`: a completed step's result already encoded as JSON text within the size
    limit; `duration`: seconds its body took, all its attempts in this run included."""

    job_id: int
    worker_id: str
    attempt: int
    name: str
    occurrence: int
    position: int
    status: StepStatus
    result_json: str | None
    error: str | None
    attempts: int
    duration: float
    kind: str = "step"


Armed = Literal["lost", "data", "timeout", "wait"]


@dataclass(frozen=True, slots=True)
class SignalWait:
    """A run's wait for signal `name` (its `occurrence`-th, at `position` of the history),
    fenced on (job_id, worker_id, attempt); `timeout` in seconds from when it is first armed."""

    job_id: int
    worker_id: str
    attempt: int
    name: str
    occurrence: int
    position: int
    timeout: float | None
