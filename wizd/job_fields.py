"""Checks of a job's fields: priority, queue and job names, seconds and times, attempts,
tags, and the compact JSON wizd stores payloads, contexts and results as."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from wizd import checks
from wizd.checks import shorten
from wizd.errors import InvalidJob

JSON = Any
"""A JSON-serialisable value."""


PRIORITY_NAMES: Mapping[str, int] = {"low": 1, "normal": 3, "high": 4, "critical": 5}
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 1, 5, 3


def parse_priority(value: int | str) -> int:
    """1..5 (5 = highest); the names low/normal/high/critical are accepted."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in PRIORITY_NAMES:
            return PRIORITY_NAMES[word]
        try:
            value = int(word)
        except ValueError:
            raise InvalidJob(
                "priority", f"{shorten(value)} is not 1-5 or one of {', '.join(PRIORITY_NAMES)}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob("priority", f"must be an integer 1-5, got {shorten(value)}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidJob("priority", f"must be between 1 and 5, got {shorten(value)}")
    return value


NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")  # use fullmatch: `$` would allow a "\n"
MAX_NAME_LENGTH = 200


_VALID_NAMES: set[str] = set()  # names that passed check_identifier (a few, used again and again)


def check_identifier(field_name: str, value: object) -> str:
    """Queue and job names: 1-200 characters of [A-Za-z0-9_.:-]."""
    if isinstance(value, str) and value in _VALID_NAMES:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidJob(field_name, f"must be a non-empty string, got {shorten(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJob(
            field_name, f"is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not NAME_RE.fullmatch(value):
        raise InvalidJob(
            field_name, f"{shorten(value)} may only contain letters, digits and _ . : -"
        )
    if len(_VALID_NAMES) >= 4096:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(value)
    return value


def check_non_negative(field_name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(field_name, f"must be a number of seconds, got {shorten(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidJob(field_name, f"must be a finite number of seconds, got {value}")
    if value < 0:
        raise InvalidJob(field_name, f"must be >= 0 seconds, got {shorten(value)}")
    if value > MAX_SECONDS:
        shown = f"{value:g}" if isinstance(value, float) else shorten(value)
        raise InvalidJob(
            field_name, f"is {shown} seconds; the limit is {MAX_SECONDS:g} (100 years)"
        )
    return float(value)


MAX_SECONDS = 100 * 365.25 * 86400
MAX_EPOCH = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds


def check_epoch(field_name: str, value: float) -> float:
    if not 0 <= value <= MAX_EPOCH:  # NaN fails the comparison too
        raise InvalidJob(field_name, f"must be a time between 1970 and 9999, got {value}")
    return value


def check_positive(field_name: str, value: float | None) -> float | None:
    if value is None:
        return None
    checked = check_non_negative(field_name, value)
    if checked == 0:
        raise InvalidJob(field_name, "must be > 0 seconds, got 0")
    return checked


MAX_ATTEMPTS = 1_000_000


def check_attempts(value: object) -> int:
    return checks.check_int("attempts", value, low=1, high=MAX_ATTEMPTS)


# Compact JSON for what wizd stores; one encoder made once (json.dumps with options builds
# a new JSONEncoder on every call).
compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_payload(payload: object, limit: int, field_name: str = "payload") -> str:
    """The payload as compact JSON text; it must be a JSON object within `limit` bytes."""
    if type(payload) is not dict:
        payload = as_object(field_name, payload)
    return checks.encode_json(field_name, payload, limit)


def encode_json(value: object, field_name: str, limit: int | None = None) -> str:
    return checks.encode_json(field_name, value, limit)


def as_object(field_name: str, value: object) -> dict[str, Any]:
    """A mapping given where a JSON object is wanted, as a dict; anything else is refused."""
    if not isinstance(value, Mapping):
        raise InvalidJob(field_name, f"must be a JSON object, got {type(value).__name__}")
    return dict(value)


def as_tags(tags: object, limit: int = checks.DEFAULT_LIMITS.tags) -> tuple[str, ...]:
    """Tags as a tuple without repeats: at most `limit` of them, each 1-200 characters."""
    if tags is None:
        return ()
    if isinstance(tags, str | bytes | Mapping) or not isinstance(tags, Sequence | set | frozenset):
        raise InvalidJob("tags", f"must be a list of non-empty strings, got {shorten(tags)}")
    if len(tags) > limit:
        raise InvalidJob("tags", f"{len(tags)} tags; the limit is {limit}")
    for tag in tags:
        checks.check_text("tags", tag, limit=checks.MAX_TAG_LENGTH)
    return tuple(dict.fromkeys(tags))
