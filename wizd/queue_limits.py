"""A queue's limits across every daemon: running jobs at once and a rate (Rate,
QueueLimits), and the limits that can hold its due jobs back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wizd import checks
from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.job_fields import MAX_SECONDS

RATE_UNITS: Mapping[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
RATE_NAMES: Mapping[float, str] = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
RATE_RE = re.compile(r"^\s*(\d{1,12})\s*/\s*(\d{1,12}(?:\.\d{1,12})?)?\s*([a-z]+)\s*$", re.ASCII)
RATE_HINT = "write it as 60/min, 10/s, 1000/h, 5000/d or 5/10s"
MAX_RATE_COUNT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` jobs per `period` seconds."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidJob(
                "rate", f"the count must be an integer >= 1, got {shorten(self.count)}"
            )
        if self.count > MAX_RATE_COUNT:
            raise InvalidJob("rate", f"the count is {self.count}; the limit is {MAX_RATE_COUNT}")
        if not 0 < self.period <= MAX_SECONDS:  # NaN fails the comparison too
            raise InvalidJob("rate", f"the period must be > 0 seconds, got {self.period}")

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        name = RATE_NAMES.get(self.period)
        return f"{self.count}/{name}" if name else f"{self.count}/{self.period:g}s"

    @classmethod
    def parse(cls, value: str | Rate) -> Rate:
        if isinstance(value, Rate):
            return value
        if not isinstance(value, str):
            raise InvalidJob("rate", f"must be text such as 60/min, got {shorten(value)}")
        match = RATE_RE.match(value.lower())
        if match is None or match.group(3) not in RATE_UNITS:
            raise InvalidJob("rate", f"{shorten(value)} is not a rate; {RATE_HINT}")
        count, number, unit = match.groups()
        return cls(int(count), float(number or 1) * RATE_UNITS[unit])


# The limits that can hold a queue's due jobs back (Claimed.throttled, the metric's label).
THROTTLE_LIMITS = ("max_running", "rate", "concurrency_key")


MAX_LIMIT = 1_000_000_000


def check_limit(field_name: str, value: object) -> int:
    return checks.check_int(field_name, value, low=1, high=MAX_LIMIT)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits across every daemon: running jobs at once, and a rate (a token
    bucket of `burst` jobs refilled at the rate). None: no such limit."""

    queue: str
    max_running: int | None = None
    rate: Rate | None = None
    burst: int | None = None

    @property
    def any(self) -> bool:
        return self.max_running is not None or self.rate is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "max_running": self.max_running,
            "rate": None if self.rate is None else str(self.rate),
            "rate_per_second": None if self.rate is None else self.rate.per_second,
            "burst": self.burst,
        }
