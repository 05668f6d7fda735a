"""One error hierarchy for wizd. Messages name the field, the value and the limit."""

from __future__ import annotations

from typing import Any


class WizdError(Exception):
    """Base of every error wizd raises on purpose."""


class InvalidJob(WizdError, ValueError):
    """A job or an option was refused before anything was written."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class JobNotFound(WizdError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} does not exist")


class IllegalTransition(WizdError):
    """The job's current status does not allow the requested change."""

    def __init__(self, job_id: int, current: str, target: str, action: str | None = None) -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        what = action or f"move to {target}"
        super().__init__(f"job {job_id} is {current}: cannot {what}")


class DependencyError(InvalidJob):
    """A dependency does not exist, or would close a cycle."""

    def __init__(self, message: str, cycle: list[int] | None = None) -> None:
        self.cycle = cycle or []
        super().__init__("depends_on", message)


class DuplicateJob(InvalidJob):
    """A job with the same unique key still holds it (enqueue with on_conflict="raise", or a
    "replace" that found the holder already started)."""

    def __init__(self, key: str, job_id: int, status: str, why: str = "") -> None:
        self.key = key
        self.job_id = job_id
        self.status = status
        super().__init__(
            "unique_key", f"job {job_id} ({status}) already holds the key {key!r}" + why
        )


class ScheduleNotFound(WizdError, LookupError):
    """No schedule has this id or key."""

    def __init__(self, ref: int | str) -> None:
        self.ref = ref
        super().__init__(f"schedule {ref} does not exist")


class TokenNotFound(WizdError, LookupError):
    """No API token has this id."""

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"token {token_id!r} does not exist")


class QueueNotFound(WizdError, LookupError):
    """No queue has this name: no job, setting or pause ever named it."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} does not exist")


class QueueNotEmpty(WizdError):
    """A queue that still has jobs or schedules cannot be removed."""

    def __init__(self, queue: str, what: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} is not empty: {what}")


class StoreError(WizdError):
    """The database cannot be used: corrupt, locked too long, foreign or too new."""


class LostJob(WizdError):
    """A worker tried to finish a run it no longer owns (reaped, cancelled or re-claimed)."""


class NonDeterministic(WizdError):
    """A run called its durable steps in another order than the job's stored history: the
    stored results cannot be replayed safely, so the run fails instead of getting wrong
    values (change the processor back, or `wizd retry ID --from-step NAME`)."""

    def __init__(self, job_id: int, position: int, expected: str, called: str) -> None:
        self.job_id = job_id
        self.position = position
        self.expected = expected
        self.called = called
        super().__init__(
            f"job {job_id}: step {position} of its history is {expected}, but this run "
            f"called {called} there (the processor is not deterministic)"
        )


class RetryLater(WizdError):
    """Raised by a processor: run this job again in `seconds`, without charging an attempt."""

    def __init__(self, seconds: float = 0.0, reason: str = "") -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidJob(
                "seconds", f"must be a number of seconds, got {type(seconds).__name__}"
            )
        if not 0 <= seconds <= 100 * 365.25 * 86400:  # NaN fails the comparison too
            shown = (
                f"{seconds:g}" if isinstance(seconds, float) or abs(seconds) < 10**30 else "more"
            )
            raise InvalidJob("seconds", f"must be between 0 and 100 years, got {shown}")
        self.seconds = float(seconds)
        self.reason = reason
        super().__init__(f"retry in {seconds}s" + (f": {reason}" if reason else ""))


class SignalTimeout(WizdError, TimeoutError):
    """Raised in a processor by `ctx.wait_for_signal(name, timeout=...)` when no signal of
    that name came in time (and no `default` was given)."""

    def __init__(self, job_id: int, name: str) -> None:
        self.job_id = job_id
        self.name = name
        super().__init__(f"job {job_id}: no signal {name!r} came before the wait's timeout")


class LeavesRun(BaseException):
    """Raised to the daemon by `ctx.sleep` and `ctx.wait_for_signal`: the run leaves its slot
    and the job comes back later. A BaseException, as a cancellation is, so that a
    processor's `except Exception:` does not swallow it (a processor must let it through)."""


class Sleeping(LeavesRun):
    """`ctx.sleep`: run this job again in `seconds`, without charging an attempt."""

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds = seconds
        self.reason = reason
        super().__init__(reason)


class WaitingForSignal(LeavesRun):
    """`ctx.wait_for_signal`: the job waits for signal `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"waiting for signal {name!r}")


class ConfigError(WizdError):
    """A setting is unknown or has a bad value."""


class WaitTimeout(WizdError, TimeoutError):
    """A job awaited (Queue.wait, result, wait_many, as_completed) was not final in time."""

    def __init__(self, job_id: int, status: str, timeout: float) -> None:
        self.job_id = job_id
        self.status = status
        self.timeout = timeout
        super().__init__(f"job {job_id} is still {status} after waiting {timeout:g}s")


class JobFailed(WizdError):
    """The job awaited for its result failed or was cancelled: `.job` holds it."""

    def __init__(self, job: Any) -> None:
        self.job = job
        why = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{why}")


class CursorExpired(WizdError, LookupError):
    """A watch resumed (`after=`) from a cursor older than the change feed still covers:
    its rows were pruned, or nobody watched for a while and the feed recorded nothing."""

    def __init__(self, cursor: int, oldest: int) -> None:
        self.cursor = cursor
        self.oldest = oldest
        super().__init__(
            f"cursor {cursor} is older than the change feed covers (it resumes from cursor "
            f"{oldest} on), so events after it may be lost; watch again without after= and "
            "read the job's history (q.events) for what came before"
        )
