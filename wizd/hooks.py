"""What a queue's worker reports as it goes: the Hooks protocol (metrics implement it)."""

from __future__ import annotations

from typing import Protocol

from wizd.model import Job


class Hooks(Protocol):
    """What the worker reports as it goes (metrics implement this)."""

    def job_started(self, job: Job, wait_seconds: float) -> None: ...
    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None: ...
    def recovered(self, queue: str, reason: str, n: int) -> None: ...
    def throttled(self, queue: str, limit: str, seconds: float) -> None: ...


class NoHooks:
    def job_started(self, job: Job, wait_seconds: float) -> None:
        pass

    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None:
        pass

    def recovered(self, queue: str, reason: str, n: int) -> None:
        pass

    def throttled(self, queue: str, limit: str, seconds: float) -> None:
        pass
