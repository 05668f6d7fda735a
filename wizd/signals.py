"""Durable sleeps and signal waits: entries of a job's history (wizd.steps) that make its
run leave its slot and come back.

`sleep` records its wake time as an entry of kind 'sleep' and, while that time is ahead,
ends the run with Sleeping: the job is delayed until then, not charged an attempt, its
history kept. The next run replays its finished steps up to the sleep, which returns at
once. `wait_for_signal` records a wait (kind 'signal') in the store (wizd.store.signals):
a signal already sent is taken at once; else the run ends with WaitingForSignal, the job
is `waiting_signal` until the signal comes (or the wait's timeout passes), and the next
run's wait returns the signal's data (or raises SignalTimeout, or returns `default`).

Like steps, sleeps and waits are known by position and occurrence (`sleep#2`,
`approval#1`): a processor must call them in the same order on every run.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from wizd.arguments import UNSET, Unset, epoch, seconds
from wizd.errors import InvalidJob, LostJob, SignalTimeout, Sleeping, WaitingForSignal
from wizd.model import compact_json
from wizd.step_model import SignalWait, check_signal_name
from wizd.steps import History

MAX_WAIT = 100 * 365.25 * 86400  # seconds: as far as a delay reaches (RetryLater's limit)


async def sleep(history: History, when: float | int | timedelta | datetime) -> None:
    """Come back at `when` (seconds from now, or an aware datetime): see the module."""
    clock = history.store.clock
    if isinstance(when, datetime):
        until = epoch("sleep", when) or 0.0
    else:
        until = clock() + _seconds("sleep", when)
    position, occurrence = history.number("sleep")
    stored = await history.replayed(position, "sleep", occurrence, "sleep")
    if stored is None:
        entry = ("sleep", occurrence, position)
        result = compact_json({"until": until})
        await history.save(entry, "completed", result, None, 1, time.monotonic(), None, "sleep")
    else:
        until = float(stored.result["until"])
    left = until - clock()
    if left > 0:
        wake = datetime.fromtimestamp(until).astimezone().isoformat(timespec="seconds")
        raise Sleeping(min(left, MAX_WAIT), f"sleeping until {wake}")


async def wait_for_signal(
    history: History,
    name: str,
    timeout: float | int | timedelta | None,
    default: Any | Unset,
) -> Any:
    """The data of signal `name` sent to the job: see the module."""
    check_signal_name(name)
    limit = None if timeout is None else _seconds("timeout", timeout)
    position, occurrence = history.number(name)
    stored = await history.replayed(position, name, occurrence, "signal")
    job = history.job
    if stored is not None and stored.status == "completed":
        if stored.result.get("timeout"):
            return _timed_out(job.id, name, default)
        return stored.result["data"]
    wait = SignalWait(job.id, history.worker_id, job.attempt, name, occurrence, position, limit)
    armed, data = await history.store.arm_signal(wait)
    if armed == "lost":
        raise LostJob(f"job {job.id} attempt {job.attempt} is no longer ours")
    if armed == "data":
        return json.loads(data or "null")
    if armed == "timeout":
        return _timed_out(job.id, name, default)
    raise WaitingForSignal(name)


def _timed_out(job_id: int, name: str, default: Any | Unset) -> Any:
    if default is UNSET:
        raise SignalTimeout(job_id, name)
    return default


def _seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise InvalidJob(field, f"must be seconds (a number or timedelta), got {value!r}")
    found = seconds(field, value)
    if found is None or found > MAX_WAIT:
        raise InvalidJob(field, "must be at most 100 years")
    return found
