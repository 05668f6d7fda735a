"""The processor zoo: every way a user may write a processor runs, through a real daemon.

One daemon serves apps/zoo_agents.py at concurrency 1 and at 50, on SQLite and on
PostgreSQL. Each processor's first await is a construct of its own (anyio and asyncio
cancel scopes and timeouts, task groups, threads, the context's calls), or it never awaits,
or it is synchronous, an object, a bound method, a partial, a sync wrapper returning a
coroutine; some raise, one times out, one is cancelled while inside its own scope.
Synchronous ones call the context without await (wizd.sync_context): log, progress, stream,
steps, and a durable sleep or signal wait that leaves the run and comes back. Every job must
end as its processor says, in one attempt, and SIGTERM must then stop the daemon with exit
code 0 and no traceback.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

import wizd
from tests.acceptance.conftest import Harness, wait_until

pytestmark = pytest.mark.slow

AGENT = "zoo"
TIMEOUT = 0.3  # the job timeout of `times_out`

# name -> the result a completed job must have (a callable gets the job).
COMPLETES: dict[str, Any] = {
    "fail_after": "fail_after",
    "move_on_after": "moved on: True",
    "task_group": [0, 1, 2],
    "asyncio_timeout": "asyncio_timeout",
    "asyncio_wait_for": "asyncio_wait_for",
    "asyncio_gather": [1, 2],
    "asyncio_task_group": 7,
    "to_thread": "to_thread",
    "shielded": "shielded",
    "ctx_log": "ctx_log",
    "ctx_progress": "ctx_progress",
    "ctx_spawn": None,  # the child's id: checked below
    "ctx_children": 0,
    "sync": lambda job: f"sync {job.id}",
    "async_callable": "async_callable",
    "bound_method": "bound_method",
    "partial": "partial",
    "sync_wrapper": "sync_wrapper",
    "never_awaits": "never_awaits",
    "sleeps_inside_try": "slept",
    "sync_ctx": ["found owls", "HOOT"],
    "sync_sleeps": "slept",
    "sync_waits_signal": lambda job: f"signal {job.id}",
    "sync_wrapper_ctx": "sync_wrapper_ctx",
}
# name -> the start of the failed job's error (a callable gets the job).
FAILS: dict[str, Any] = {
    "raises": lambda job: f"ValueError: boom {job.id}",
    "sync_raises": "KeyError: 'sync boom'",
    "unserializable": "result: ",
    "exits": "SystemExit: 3",
    "raises_cancelled": "CancelledError: a library gave up",
    "times_out": f"timed out after {TIMEOUT:g}s",
    "sync_exits": "SystemExit: bye",
    "sync_times_out": f"timed out after {TIMEOUT:g}s (its thread returned after ",
}
CANCELLED = ("cancelled_inside", "sync_cancelled")  # each cancelled once it is running
KINDS = [*COMPLETES, *FAILS, *CANCELLED]


@pytest.fixture
def zoo_harness(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


def expected(table: dict[str, Any], job: wizd.Job) -> Any:
    want = table[job.name]
    return want(job) if callable(want) else want


@pytest.mark.parametrize("concurrency", [1, 50])
def test_every_processor_style_ends_as_it_should(zoo_harness: Harness, concurrency: int) -> None:
    h = zoo_harness
    per_kind = 1 if concurrency == 1 else 4
    marks = h.dir / "marks"
    marks.mkdir()
    with wizd.connect_sync(str(h.db)) as q:
        ids: dict[int, str] = {}
        for _ in range(per_kind):
            for kind in KINDS:
                job = q.enqueue(
                    kind,
                    {"dir": str(marks)},
                    queue=AGENT,
                    attempts=1,
                    timeout=TIMEOUT if kind.endswith("times_out") else 60,
                )
                ids[job.id] = kind
        daemon = h.start(
            agent=AGENT, app="zoo_agents:zoo", concurrency=concurrency, log_level="info"
        ).ready()

        to_cancel = {i for i, kind in ids.items() if kind in CANCELLED}
        to_signal = {i for i, kind in ids.items() if kind == "sync_waits_signal"}

        def all_final() -> bool:
            # A CANCELLED run is cancelled once it is inside its own scope (or its thread).
            for job_id in [i for i in to_cancel if (marks / f"{i}.in").exists()]:
                q.cancel(job_id)
                to_cancel.discard(job_id)
            # A waiting run is signalled once it has left: the wait must bring it back.
            for job_id in [i for i in to_signal if (marks / f"{i}.waits").exists()]:
                if q.get(job_id).status.value == "waiting_signal":
                    q.signal(job_id, "go", job_id)
                    to_signal.discard(job_id)
            counts = q.counts(AGENT)
            return sum(counts[s] for s in ("completed", "failed", "cancelled")) == len(ids) + sum(
                1 for kind in ids.values() if kind == "ctx_spawn"
            )

        try:
            wait_until(all_final, 60, "every zoo job final")
        except BaseException:
            print(q.counts(AGENT), "\n", daemon.tail(80))
            raise
        jobs = {i: q.get(i) for i in ids}
        problems = [
            problem for job in jobs.values() if (problem := check_job(q, job, jobs)) is not None
        ]
        problems += [
            f"{ids[i]} #{i} should have run twice (left, then came back), ran {n}"
            for i in ids
            if ids[i] in ("sync_sleeps", "sync_waits_signal")
            and (n := len((marks / f"{i}.runs").read_text().split())) != 2
        ]
        assert not problems, "\n".join(problems) + f"\ndaemon log:\n{daemon.tail(60)}"

        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(30) == 0, daemon.tail()
    not_json = [line for line in daemon.lines if not line.startswith("{")]
    assert not not_json, "the daemon printed non-log lines:\n" + "\n".join(not_json[:40])
    crashed = [e for e in daemon.events if e.get("level") in ("error", "critical")]
    assert not crashed, json.dumps(crashed[:5], indent=1)


def check_job(q: wizd.SyncQueue, job: wizd.Job, jobs: dict[int, wizd.Job]) -> str | None:
    """What is wrong with how `job` ended, or None."""
    seen = f"{job.name} #{job.id}: {job.status} attempt {job.attempt} result {job.result!r} "
    seen += f"error {job.error!r}"
    if job.attempt != 1:
        return f"{seen}: ran more than once"
    if job.name in COMPLETES:
        if job.status != "completed":
            return f"{seen}: should have completed"
        if job.name == "ctx_spawn":
            child = q.get(job.result)
            if child.parent_id != job.id or child.status != "completed":
                return f"{seen}: its child {child.id} is {child.status}"
            return None
        if job.result != expected(COMPLETES, job):
            return f"{seen}: result should be {expected(COMPLETES, job)!r}"
        return extra_checks.get(job.name, lambda *_: None)(q, job)
    if job.name in FAILS:
        if job.status != "failed" or not (job.error or "").startswith(expected(FAILS, job)):
            return f"{seen}: should have failed with {expected(FAILS, job)!r}"
        return None
    if job.status != "cancelled":
        return f"{seen}: should have been cancelled"
    return None


def _logged(q: wizd.SyncQueue, job: wizd.Job) -> str | None:
    lines = [e.message for e in q.events(job.id) if e.kind == "log"]
    return None if lines == [f"hello from {job.id}"] else f"{job.name} #{job.id}: log {lines}"


def _sync_ctx(q: wizd.SyncQueue, job: wizd.Job) -> str | None:
    steps = [(s.label, s.status) for s in q.steps(job.id)]
    seen = (_logged(q, job), _progressed(q, job), q.stream_text(job.id), steps)
    want = (None, None, "tokens", [("search#1", "completed"), ("shout#1", "completed")])
    return None if seen == want else f"sync_ctx #{job.id}: {seen}, not {want}"


def _progressed(q: wizd.SyncQueue, job: wizd.Job) -> str | None:
    lines = [e.message for e in q.events(job.id) if e.kind == "progress"]
    return None if lines == ["50% half way"] else f"{job.name} #{job.id}: progress {lines}"


extra_checks: dict[str, Callable[[wizd.SyncQueue, wizd.Job], str | None]] = {
    "ctx_log": _logged,
    "ctx_progress": _progressed,
    "sync_ctx": _sync_ctx,
    "sync_wrapper_ctx": _logged,
}
