"""Unique jobs: the key, the policies on a conflict, the states that hold a key, and
how those states are stored."""

from __future__ import annotations

from collections.abc import Sequence

from wizd import checks
from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.states import JobStatus, S

CONFLICT_POLICIES = ("return", "raise", "replace")
# What on_conflict="replace" may replace: a job that has not started.
REPLACEABLE: tuple[JobStatus, ...] = (S.WAITING, S.PENDING, S.DELAYED, S.PAUSED)
MAX_KEY_LENGTH = 500


def check_unique_key(value: object) -> str:
    """Any non-empty text of at most 500 characters (research:quantum, user/42/report)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidJob("unique_key", f"must be a non-empty string, got {shorten(value)}")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidJob(
            "unique_key", f"is {len(value)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    return checks.storable("unique_key", value)


def states_text(states: Sequence[JobStatus]) -> str:
    """The stored form of unique_states, matched with LIKE '%,' || status || ',%'."""
    return "," + ",".join(s.value for s in states) + ","
