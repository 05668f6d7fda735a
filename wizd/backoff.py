"""Backoff: the delay before a job's retry, fixed or exponential, capped and jittered."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wizd import checks
from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.job_fields import MAX_SECONDS, check_non_negative


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a retry: fixed, or exponential (delay * 2**(attempt-1)), capped, jittered."""

    kind: Literal["fixed", "exponential"] = "exponential"
    delay: float = 1.0
    cap: float | None = 300.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential"):
            raise InvalidJob(
                "backoff.kind", f"must be fixed or exponential, got {shorten(self.kind)}"
            )
        check_non_negative("backoff.delay", self.delay)
        check_non_negative("backoff.cap", self.cap)
        if not 0.0 <= checks.check_number("backoff.jitter", self.jitter) <= 1.0:
            raise InvalidJob("backoff.jitter", f"must be between 0 and 1, got {self.jitter}")

    @classmethod
    def fixed(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        return cls("fixed", delay, None, jitter)

    @classmethod
    def exponential(
        cls, delay: float, *, cap: float | None = 300.0, jitter: float = 0.0
    ) -> Backoff:
        return cls("exponential", delay, cap, jitter)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), at most 100
        years (2**1024 would not even be a float: attempts may number a million)."""
        doubling = min(max(attempt - 1, 0), 64)
        base = self.delay if self.kind == "fixed" else self.delay * 2.0**doubling
        if self.cap is not None:
            base = min(base, self.cap)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(max(base, 0.0), MAX_SECONDS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "delay": self.delay, "cap": self.cap, "jitter": self.jitter}

    def to_json(self) -> str:
        """Compact JSON, cached: every enqueue stores one."""
        return _backoff_json(self)

    @classmethod
    def from_json(cls, text: str) -> Backoff:
        """Parsed and validated once per distinct text (rows share a handful of them)."""
        return _backoff_from_json(text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Backoff:
        if not isinstance(data, Mapping):
            raise InvalidJob("backoff", f"must be a wizd.Backoff or a dict, got {shorten(data)}")
        unknown = set(data) - {"kind", "delay", "cap", "jitter"}
        if unknown:
            raise InvalidJob("backoff", f"unknown keys {sorted(unknown)}")
        return cls(**data)


@functools.lru_cache(maxsize=256)
def _backoff_json(backoff: Backoff) -> str:
    return json.dumps(backoff.to_dict(), separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _backoff_from_json(text: str) -> Backoff:
    return Backoff.from_dict(json.loads(text))


DEFAULT_BACKOFF = Backoff.exponential(1.0, cap=300.0)
