"""When a schedule fires: a cron expression in a time zone (stepped by croniter) or a fixed
interval, and which due occurrences a catch-up policy enqueues.

Pure computation on epoch seconds (UTC); the store keeps the next occurrence of each
schedule and calls `plan` when it is due.

Daylight saving time, for cron expressions (croniter works in the schedule's zone):
- fall back: a wall time that happens twice (01:30 on the last Sunday of October in
  Lisbon) fires once, at its first occurrence, when the hour field names hours; an
  expression whose hour field is `*` fires in both passes (every hour that really passed).
- spring forward: a wall time that does not exist (01:30 on the last Sunday of March in
  Lisbon) fires as croniter defines it: at the first instant after the gap, when the clocks
  jump (02:00 local, 01:00 UTC), once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wizd.errors import InvalidJob
from wizd.model import MAX_SECONDS

CATCH_UP = ("latest", "all", "none")
# An occurrence is missed when no daemon fired it within this long of its time; catch_up
# decides what becomes of missed occurrences (`none` drops them).
MISFIRE_GRACE = 60.0
# At most this many occurrences are enqueued per schedule per pass (and, for a cron
# expression, counted as missed: a longer gap is jumped over, not walked).
MAX_CATCH_UP = 1000
MIN_EVERY = 0.001


def croniter(expression: str, start: datetime | None = None) -> Any:
    """croniter's iterator, imported when first needed: the command line starts faster."""
    from croniter import croniter as iterator

    return iterator(expression, start)


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise InvalidJob("timezone", f"must be an IANA time zone such as UTC, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJob(
            "timezone", f"unknown time zone {name!r}; use an IANA name such as Europe/Lisbon"
        ) from None


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression in `timezone`, or every `every` seconds (exactly one of them)."""

    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise InvalidJob("cron", "give cron or every, exactly one of them")
        if self.every is not None:
            every = self.every
            if isinstance(every, bool) or not isinstance(every, int | float):
                raise InvalidJob("every", f"must be a number of seconds, got {every!r}")
            if not math.isfinite(every) or not MIN_EVERY <= every <= MAX_SECONDS:
                raise InvalidJob(
                    "every", f"must be between {MIN_EVERY} seconds and 100 years, got {every}"
                )
        zone(self.timezone)
        if self.cron is not None:
            _expression(self.cron)

    def describe(self) -> str:
        if self.cron is not None:
            return f"{self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {self.every:g}s"

    def next_after(self, ts: float) -> float:
        """The first occurrence strictly after `ts`, for a sequence with an occurrence at
        `ts` (an interval steps from it; a cron expression from the clock)."""
        if self.every is not None:
            return ts + self.every
        assert self.cron is not None
        tz = zone(self.timezone)
        it = croniter(self.cron, datetime.fromtimestamp(ts, tz))
        while True:
            at: datetime = it.get_next(datetime)
            if not self._repeated(at):
                return at.timestamp()

    def first_after(self, anchor: float, now: float) -> float:
        """The first occurrence after `now` of the sequence that has one at `anchor`."""
        if self.every is not None:
            if now < anchor:
                return anchor
            return anchor + (math.floor((now - anchor) / self.every) + 1) * self.every
        return self.next_after(now)

    def last_at_or_before(self, anchor: float, now: float) -> float:
        """The last occurrence at or before `now` (>= anchor, an occurrence <= now)."""
        if self.every is not None:
            return anchor + math.floor((now - anchor) / self.every) * self.every
        assert self.cron is not None
        tz = zone(self.timezone)
        it = croniter(self.cron, datetime.fromtimestamp(now + 0.001, tz))
        while True:
            at: datetime = it.get_prev(datetime)
            if not self._repeated(at):
                return max(at.timestamp(), anchor)

    def _repeated(self, at: datetime) -> bool:
        """`at` is the second pass of a wall time that happens twice (fall back), and the
        expression names its hours: that wall time has already fired."""
        if at.fold != 1 or at.replace(fold=0).utcoffset() == at.utcoffset():
            return False
        assert self.cron is not None
        return _expression(self.cron)[1] != ["*"]


@functools.lru_cache(maxsize=512)
def _expression(cron: str) -> list[list[object]]:
    """The expanded fields of a cron expression (validated once per distinct text)."""
    if not isinstance(cron, str) or not cron.strip():
        raise InvalidJob("cron", f"must be a cron expression such as '0 9 * * *', got {cron!r}")
    try:
        it = croniter(cron)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
        raise InvalidJob("cron", f"{cron!r} is not a cron expression: {exc}") from None
    try:
        it.get_next(float)
    except ValueError:  # CroniterBadDateError: no date matches (the 30th of February)
        raise InvalidJob("cron", f"{cron!r} never occurs: no date matches it") from None
    expanded: list[list[object]] = it.expanded
    return expanded


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a due schedule: enqueue `fire` (occurrence times), count `missed`
    occurrences that the catch-up policy drops, and move the schedule on to `next_at`."""

    fire: list[float]
    missed: int
    next_at: float


def plan(timing: Timing, next_at: float, now: float, catch_up: str) -> Plan:
    """The occurrences from `next_at` (the first not yet enqueued) up to `now`, by policy:
    all: every one (at most MAX_CATCH_UP per pass; the rest in the next pass);
    latest: the last one only; none: the last one only if it is not missed (due within
    MISFIRE_GRACE), so an occurrence on time still fires."""
    if next_at > now:
        return Plan([], 0, next_at)
    times: list[float] = []
    following = next_at
    while following <= now and len(times) < MAX_CATCH_UP:
        times.append(following)
        following = timing.next_after(following)
    if catch_up == "all":
        return Plan(times, 0, following)
    total = len(times)
    last = times[-1]
    if following <= now:  # more than MAX_CATCH_UP are due: jump to the last one
        last = timing.last_at_or_before(next_at, now)
        following = timing.first_after(last, now)
        if timing.every is not None:
            total = round((last - next_at) / timing.every) + 1
        else:  # a cron expression's occurrences are counted up to the cap, plus the last
            total += 1
    fire = [last] if catch_up == "latest" or now - last <= MISFIRE_GRACE else []
    return Plan(fire, total - len(fire), following)
