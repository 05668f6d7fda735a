"""Job states: the statuses, the one transition table the store enforces, the groups
of states callers act on, the words accepted for a status, and counts per status."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from wizd.checks import shorten
from wizd.errors import InvalidJob


class JobStatus(StrEnum):
    WAITING = "waiting"  # dependencies not yet completed
    PENDING = "pending"  # claimable now
    DELAYED = "delayed"  # claimable from run_at
    RUNNING = "running"
    WAITING_CHILDREN = "waiting_children"
    WAITING_SIGNAL = "waiting_signal"  # its run left its slot until a signal (or timeout)
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


S = JobStatus
FINAL: frozenset[JobStatus] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
ALL_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)

# The one transition table. The store refuses every change that is not listed here.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.WAITING: frozenset({S.PENDING, S.DELAYED, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.PENDING: frozenset({S.RUNNING, S.WAITING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.DELAYED: frozenset({S.PENDING, S.WAITING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.FAILED, S.DELAYED, S.PENDING, S.WAITING_CHILDREN, S.WAITING_SIGNAL}
        | {S.CANCELLED}
    ),
    # completed: a distributed parent is consolidated when its sub-tasks are all final.
    # waiting: its children are done but a dependency of its own is not.
    S.WAITING_CHILDREN: frozenset({S.PENDING, S.WAITING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    # pending: the signal it waits for came, or its wait timed out (wizd.store.signals);
    # failed: its ttl passed while it waited.
    S.WAITING_SIGNAL: frozenset({S.PENDING, S.CANCELLED, S.FAILED}),
    S.PAUSED: frozenset({S.PENDING, S.DELAYED, S.WAITING, S.CANCELLED, S.FAILED}),
    # Only `retry --from-step` runs a completed job again (wizd.store.steps.retry_from).
    S.COMPLETED: frozenset({S.PENDING, S.WAITING}),
    # Only an explicit retry (requeue) leaves failed or cancelled; a distributed job's
    # retry waits for its sub-tasks again.
    S.FAILED: frozenset({S.PENDING, S.WAITING, S.WAITING_CHILDREN}),
    S.CANCELLED: frozenset({S.PENDING, S.WAITING, S.WAITING_CHILDREN}),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: JobStatus) -> tuple[JobStatus, ...]:
    """Every status from which `target` may be reached, in table order."""
    return tuple(s for s in ALL_STATUSES if target in TRANSITIONS[s])


NOT_FINAL: tuple[JobStatus, ...] = tuple(s for s in ALL_STATUSES if s not in FINAL)
PAUSABLE: tuple[JobStatus, ...] = sources_of(S.PAUSED)
CANCELLABLE: tuple[JobStatus, ...] = sources_of(S.CANCELLED)
RETRYABLE: tuple[JobStatus, ...] = (S.FAILED, S.CANCELLED)

# Words the seeds use for our statuses; `hung` is handled by callers (running + stale heartbeat).
STATUS_ALIASES: Mapping[str, JobStatus] = {
    "active": S.RUNNING,
    "processing": S.RUNNING,
    "queued": S.PENDING,
    "scheduled": S.DELAYED,
    "done": S.COMPLETED,
    "canceled": S.CANCELLED,
}


def parse_status(value: str | JobStatus) -> JobStatus:
    if isinstance(value, JobStatus):
        return value
    if not isinstance(value, str):
        raise InvalidJob("status", f"must be a status name, got {shorten(value)}")
    word = value.strip().lower()
    if word in STATUS_ALIASES:
        return STATUS_ALIASES[word]
    try:
        return JobStatus(word)
    except ValueError:
        known = ", ".join([*ALL_STATUSES, *STATUS_ALIASES])
        raise InvalidJob("status", f"unknown status {shorten(value)}; known: {known}") from None


def zero_counts() -> dict[str, int]:
    return {s.value: 0 for s in ALL_STATUSES}
