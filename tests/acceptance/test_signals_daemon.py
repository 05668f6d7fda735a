"""Durable sleeps and signals with real daemons on SQLite and on PostgreSQL: a job waiting
for a signal and a sleeping job outlive their daemon (SIGTERM) and finish on the next one,
replaying the steps the first one ran; a wait times out into its default; and a daemon of
concurrency 1 runs other jobs while one sleeps or waits (neither holds the slot)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import wizd

from .conftest import AGENT, Harness, wait_until

pytestmark = pytest.mark.slow

APP = "accept_signals:researcher"
FAST = {"heartbeat_interval": 0.2, "hung_timeout": 5, "app": APP, "poll_interval": 0.1}
S = wizd.JobStatus


def pids(folder: Path, name: str) -> list[str]:
    path = folder / f"{name}.count"
    return path.read_text().split() if path.exists() else []


def status_is(q: wizd.SyncQueue, job_id: int, status: wizd.JobStatus) -> wizd.Job | None:
    job: wizd.Job = q.get(job_id)
    return job if job.status is status else None


def test_a_sleep_and_a_signal_wait_outlive_a_daemon_restart(store_harness: Harness) -> None:
    h = store_harness
    folder = h.dir / "bodies"
    folder.mkdir()
    first = h.start("A", concurrency=1, **FAST).ready()
    with wizd.connect_sync(str(h.db)) as q:
        waiter = q.enqueue("approval_flow", {"dir": str(folder)}, queue=AGENT).id
        sleeper = q.enqueue("sleeper", {"dir": str(folder), "seconds": 3}, queue=AGENT).id
        wait_until(lambda: status_is(q, waiter, S.WAITING_SIGNAL), 20, "the wait")
        wait_until(lambda: status_is(q, sleeper, S.DELAYED), 20, "the sleep")
        assert q.signal_waits() == [(waiter, "approval", None)]
        first.signal(signal.SIGTERM)
        assert first.wait_exit(20) == 0, first.tail()

        second = h.start("B", concurrency=1, **FAST).ready()
        sent = q.signal(waiter, "approval", {"ok": True, "by": "ana"})
        assert sent.status is S.PENDING
        done = wait_until(lambda: status_is(q, waiter, S.COMPLETED), 30, "the approved job")
        assert done.result == {
            "draft": "draft",
            "approval": {"ok": True, "by": "ana"},
            "published": "publish",
        }
        assert done.attempt == 1  # leaving its slot to wait was not charged
        slept = wait_until(lambda: status_is(q, sleeper, S.COMPLETED), 30, "the sleeper")
        assert slept.result == ["before", "after"], second.tail()
        a, b = str(first.pid), str(second.pid)
        assert pids(folder, "draft") == [a]  # replayed on B, not run again
        assert pids(folder, "publish") == [b]
        assert pids(folder, "before") == [a]
        assert pids(folder, "after") == [b]


def test_a_wait_past_its_timeout_returns_its_default(store_harness: Harness) -> None:
    h = store_harness
    h.start("A", concurrency=1, **FAST).ready()
    with wizd.connect_sync(str(h.db)) as q:
        job_id = q.enqueue("timed_wait", queue=AGENT).id
        job = wait_until(lambda: (j := q.get(job_id)).final and j, 30, "the timed wait")
        assert (job.status, job.result) == (S.COMPLETED, "nobody answered"), job.error


def test_concurrency_1_runs_other_jobs_while_one_waits_or_sleeps(store_harness: Harness) -> None:
    h = store_harness
    folder = h.dir / "bodies"
    folder.mkdir()
    daemon = h.start("A", concurrency=1, **FAST).ready()
    with wizd.connect_sync(str(h.db)) as q:
        waiter = q.enqueue("approval_flow", {"dir": str(folder)}, queue=AGENT).id
        wait_until(lambda: status_is(q, waiter, S.WAITING_SIGNAL), 20, "the wait")
        sleeper = q.enqueue("sleeper", {"dir": str(folder), "seconds": 3600}, queue=AGENT).id
        wait_until(lambda: status_is(q, sleeper, S.DELAYED), 20, "the sleep")
        quick = q.enqueue("quick", queue=AGENT).id
        wait_until(lambda: status_is(q, quick, S.COMPLETED), 20, "the quick job")
        assert q.get(waiter).status is S.WAITING_SIGNAL
        assert q.get(sleeper).status is S.DELAYED
        q.signal(waiter, "approval", "yes")
        done = wait_until(lambda: status_is(q, waiter, S.COMPLETED), 20, "the approved job")
        assert done.result["approval"] == "yes", daemon.tail()
        q.cancel(sleeper)
        assert q.get(sleeper).status is S.CANCELLED
