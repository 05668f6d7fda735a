"""The client API's arguments, checked one by one: job and schedule references, seconds,
times, names, free text, page sizes. Each returns the value as the store wants it or raises
InvalidJob naming the argument, so a wrong type or an impossible value never reaches a
database (where the two backends would fail in two different ways)."""

from __future__ import annotations

import builtins
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from wizd.checks import MAX_INT, check_bool, check_int, check_number, shorten
from wizd.checks import check_text as check_text  # the API checks free text through here
from wizd.errors import InvalidJob
from wizd.model import (
    Job,
    JobStatus,
    Schedule,
    check_epoch,
    check_identifier,
    check_non_negative,
    parse_status,
)

Seconds = float | int | timedelta
MAX_PAGE = 10_000
MAX_TEXT = 1024 * 1024  # free text the API takes that has no cap of its own (prompts, keys)


class Unset(enum.Enum):
    """An argument left out (None has a meaning of its own: clear the setting)."""

    UNSET = "unset"


UNSET = Unset.UNSET


def seconds(field: str, value: Seconds | None) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return check_non_negative(field, value)


def required_seconds(field: str, value: object, *, positive: bool = True) -> float:
    """A duration that may not be None (a window, an age): > 0 seconds unless not positive."""
    if value is None:
        raise InvalidJob(field, "must be a number of seconds or a timedelta, got None")
    checked = seconds(field, value)  # type: ignore[arg-type]
    assert checked is not None
    if positive and checked == 0:
        raise InvalidJob(field, "must be > 0 seconds, got 0")
    return checked


def epoch(field: str, value: object) -> float | None:
    """A datetime with a time zone, or epoch seconds, as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidJob(field, f"needs a timezone (UTC), got naive {value.isoformat()}")
        try:
            return check_epoch(field, value.timestamp())
        except (OverflowError, ValueError):  # the edges of datetime's range
            raise InvalidJob(field, f"must be a time between 1970 and 9999, got {value}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(field, f"must be a datetime or epoch seconds, got {shorten(value)}")
    number = check_number(field, value)
    return check_epoch(field, number)


def job_id(value: object, field: str = "id") -> int:
    """A job's id: a Job, a positive integer that fits a database's 64-bit id, or its digits."""
    if isinstance(value, Job):
        return value.id
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdecimal() and len(digits) <= 40:
            value = int(digits)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(field, f"must be a job id (a positive integer), got {shorten(value)}")
    return check_int(field, value, low=1, high=MAX_INT)


def job_ids(values: object, field: str = "id", *, empty: bool = False) -> builtins.list[int]:
    """Ids of jobs (one, or an iterable of them), without repeats, in the order given: at
    least one unless `empty` (where None is none)."""
    if values is None and empty:
        return []
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        values = [values]
    ids = builtins.list(dict.fromkeys(job_id(v, field) for v in values))
    if not ids and not empty:
        raise InvalidJob(field, "give at least one job id")
    return ids


def indexes(field: str, value: object) -> tuple[int, ...]:
    """Indexes of earlier items of one enqueue call."""
    if not isinstance(value, builtins.list | tuple):
        raise InvalidJob(field, f"must be a list of item indexes, got {shorten(value)}")
    return tuple(check_int(field, i, low=0, high=MAX_INT) for i in value)


def log_line(value: object, limit: int, field: str = "message") -> str:
    """A log line or progress message: text both databases can store, within `limit` bytes."""
    return check_text(field, value, limit=limit, empty=True)


def schedule_ref(value: object) -> int | str:
    """A schedule's id (a positive integer, or its digits) or its key."""
    if isinstance(value, Schedule):
        return value.id
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise InvalidJob("schedule", f"must be a schedule id or key, got {shorten(value)}")
        return check_int("schedule", value, high=MAX_INT)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        return schedule_ref(int(value.strip()))
    if isinstance(value, str):
        return check_identifier("schedule", value)
    raise InvalidJob("schedule", f"must be a schedule id or key, got {shorten(value)}")


def unique_states_of(states: object) -> tuple[JobStatus, ...]:
    if isinstance(states, str | JobStatus):
        items: builtins.list[object] = [states]
    elif isinstance(states, Iterable) and not isinstance(states, bytes | Mapping):
        items = builtins.list(states)
    else:
        raise InvalidJob("unique_states", f"must be a list of statuses, got {shorten(states)}")
    chosen = []
    for state in items:
        try:
            chosen.append(status(state))
        except InvalidJob as exc:
            raise InvalidJob("unique_states", str(exc).split(": ", 1)[1]) from None
    return tuple(dict.fromkeys(chosen))


def status(value: object, field: str = "status") -> JobStatus:
    if not isinstance(value, str):
        raise InvalidJob(field, f"must be a status name, got {shorten(value)}")
    return parse_status(value)


def statuses(value: object, field: str = "status") -> tuple[JobStatus, ...]:
    """One status or a list of them (an empty list selects none in particular)."""
    if isinstance(value, str):
        return (status(value, field),)
    if isinstance(value, bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidJob(field, f"must be a status or a list of them, got {shorten(value)}")
    return tuple(status(s, field) for s in value)


def name(field: str, value: object) -> str | None:
    """An optional queue, job or key name."""
    return None if value is None else check_identifier(field, value)


def text(field: str, value: object, limit: int = MAX_TEXT) -> str | None:
    """Optional free text both databases can store, of at most `limit` bytes."""
    return None if value is None else check_text(field, value, limit=limit, empty=True)


def page(field: str, value: object, low: int = 1, high: int = MAX_PAGE) -> int:
    """A count of rows to return (or skip, with low=0)."""
    return check_int(field, value, low=low, high=high)


def offset(field: str, value: object) -> int:
    return check_int(field, value, low=0, high=MAX_INT)


def flag(field: str, value: object) -> bool:
    return check_bool(field, value)


def progress(value: object) -> float | None:
    if value is None:
        return None
    number = check_number("progress", value)
    if not 0.0 <= number <= 1.0 or math.isnan(number):
        raise InvalidJob("progress", f"must be between 0 and 1, got {value}")
    return number


def one_of(field: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidJob(field, f"must be one of {', '.join(choices)}, got {shorten(value)}")
    return value


def options_of(field: str, value: object) -> dict[str, Any]:
    """A dict of options (an enqueue_many item)."""
    if not isinstance(value, Mapping):
        raise InvalidJob(field, f"must be a dict, got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise InvalidJob(field, "its keys must be option names (strings)")
    return dict(value)
