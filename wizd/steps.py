"""Durable steps: what one run of a job calls through `ctx.step`, replayed from the job's
stored history instead of run again.

A run numbers its step calls as it makes them: `position` (1, 2, … in call order) and the
`occurrence` of each name (`search#1`, `search#2` for a step called in a loop). The first
run of a step calls its body and stores its JSON result, fenced on the run; every later run
of the job (a retry, a recovery after a crash or a hang) finds the entry at the same
position and returns the stored result without calling the body. An entry whose name or
occurrence differs from the call fails the run with NonDeterministic: replaying it would
hand the processor another step's value.

A body runs at least once, not exactly once: a crash after it returned and before its
result was stored runs it again. `key()` gives each step a key that stays the same across
runs, for the idempotency keys of the services a body calls.

Sleeps and signal waits (wizd.signals) are entries of the same history, of kind 'sleep'
and 'signal', numbered and replayed the same way.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread

from wizd.checks import SizeLimits, check_int
from wizd.errors import InvalidJob, LostJob, NonDeterministic
from wizd.model import Backoff, Job
from wizd.step_model import Step, StepOutcome, StepStatus, check_step_name, step_label
from wizd.store import Store
from wizd.store.outcomes import encode_result

MAX_STEP_ATTEMPTS = 1000


def step_key(job_id: int, name: str, occurrence: int) -> str:
    """The idempotency key of a step: the same in every run of the job."""
    return f"{job_id}:{step_label(name, occurrence)}"


class History:
    """One run's steps: the job's stored history, replayed in call order, and the new steps
    this run finishes, written fenced on (job id, worker id, attempt)."""

    def __init__(self, job: Job, store: Store, worker_id: str, limits: SizeLimits) -> None:
        self.job = job
        self.store = store
        self.worker_id = worker_id
        self.limits = limits
        self.calls = 0  # step calls made by this run: the position of the last
        self.occurrences: dict[str, int] = {}
        self._stored: dict[int, Step] | None = None  # by position
        self._positions: dict[str, int] = {}  # the position of each stored label
        self._loading = anyio.Lock()

    def key(self, name: str, occurrence: int | None = None) -> str:
        """The key of step `name`'s `occurrence`; by default of its next call."""
        check_step_name(name)
        if occurrence is None:
            occurrence = self.occurrences.get(name, 0) + 1
        return step_key(self.job.id, name, check_int("occurrence", occurrence))

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        attempts: int,
        backoff: Backoff | None,
    ) -> Any:
        check_step_name(name)
        if not callable(fn):
            raise InvalidJob("step", f"{name}: {fn!r} is not callable")
        check_int("attempts", attempts, high=MAX_STEP_ATTEMPTS)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidJob("backoff", f"must be a wizd.Backoff, got {type(backoff).__name__}")
        # Numbered before the first await, so steps started together (a task group, gather)
        # are numbered in the order they were called.
        position, occurrence = self.number(name)
        stored = await self.replayed(position, name, occurrence, "step")
        if stored is not None and stored.status == "completed":
            return stored.result
        where = (name, occurrence, position)
        call = functools.partial(fn, *args, **(kwargs or {}))
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                value = await _run(call)
                break
            except Exception as exc:
                if tries < attempts:
                    await anyio.sleep((backoff or Backoff()).delay_for(tries))
                    continue
                error = f"{type(exc).__name__}: {exc}"
                await self.save(where, "failed", None, error, tries, started, exc)
                raise
        try:
            encoded = encode_result(value, self.limits.result)
        except InvalidJob as exc:
            refused = InvalidJob("step", f"{step_label(name, occurrence)}: {exc}")
            await self.save(where, "failed", None, str(refused), tries, started, refused)
            raise refused from None
        await self.save(where, "completed", encoded, None, tries, started, None)
        # What a replay would return, so the first run sees the same value (a tuple comes
        # back as a list, a dict's int keys as strings).
        return json.loads(encoded)

    def number(self, name: str) -> tuple[int, int]:
        """The position and occurrence of the entry called now (steps, sleeps and signal
        waits share both counts)."""
        self.calls += 1
        occurrence = self.occurrences[name] = self.occurrences.get(name, 0) + 1
        return self.calls, occurrence

    async def replayed(self, position: int, name: str, occurrence: int, kind: str) -> Step | None:
        """The stored entry this call replays (None: none stored); NonDeterministic when
        the history holds another entry there, or this one elsewhere."""
        stored = await self._entry(position)
        label = step_label(name, occurrence)
        if stored is None:
            elsewhere = self._positions.get(label)
            if elsewhere is not None:  # a gap here, and this step stored at another place
                expected = f"(none; {label} is step {elsewhere})"
                raise NonDeterministic(self.job.id, position, expected, label)
        elif stored.label != label or stored.kind != kind:
            expected = stored.label if stored.kind == kind else f"{stored.kind} {stored.label}"
            called = label if stored.kind == kind else f"{kind} {label}"
            raise NonDeterministic(self.job.id, position, expected, called)
        return stored

    async def save(
        self,
        where: tuple[str, int, int],
        status: StepStatus,
        result_json: str | None,
        error: str | None,
        tries: int,
        started: float,
        cause: BaseException | None,
        kind: str = "step",
    ) -> None:
        """Store the entry's outcome, fenced; LostJob (from `cause`) if the run lost its job."""
        name, occurrence, position = where
        job = self.job
        took = time.monotonic() - started
        out = StepOutcome(
            job.id, self.worker_id, job.attempt, name, occurrence, position, status,
            result_json, error, tries, took, kind,
        )  # fmt: skip
        # Shielded: the result of a body that returned is kept even if the run is being
        # cancelled meanwhile (fenced all the same: a run that lost its job stores nothing).
        with anyio.CancelScope(shield=True):
            owned = await self.store.save_step(out)
        if not owned:
            message = (
                f"job {job.id} attempt {job.attempt} is no longer ours: "
                f"step {step_label(name, occurrence)} was not stored"
            )
            raise LostJob(message) from cause

    async def _entry(self, position: int) -> Step | None:
        """The stored entry at `position` (the history is read once per run)."""
        if self._stored is None:
            async with self._loading:
                if self._stored is None:
                    steps = await self.store.steps(self.job.id)
                    self._positions = {step.label: step.position for step in steps}
                    self._stored = {step.position: step for step in steps}
        # By position, not index: a step cut short (a crash, a cancel) while a later one,
        # started beside it, finished, leaves a gap.
        return self._stored.get(position)


async def _run(call: Callable[[], Any]) -> Any:
    """Await an async body; run a sync one in a thread that is waited for, never abandoned
    (a cancelled run goes on once the thread returns)."""
    fn = call.func if isinstance(call, functools.partial) else call
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        return await call()
    value = await anyio.to_thread.run_sync(call)
    if inspect.isawaitable(value):  # a sync callable that returned a coroutine
        value = await value
    return value
