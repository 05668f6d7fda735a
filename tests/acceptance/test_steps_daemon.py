"""Durable steps across a crash, with real daemons on SQLite and on PostgreSQL: a job of
five steps whose daemon is killed with SIGKILL during step 3 is recovered by a new daemon,
which replays steps 1-2 from the store (their bodies do not run again), runs step 3 again
(at least once: it had not finished), then 4-5, and completes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import wizd

from .conftest import AGENT, Harness, wait_until

pytestmark = pytest.mark.slow

APP = "accept_steps:researcher"
FAST = {"heartbeat_interval": 0.2, "hung_timeout": 2, "app": APP, "concurrency": 2}
ENV = {"WIZD_REAPER_INTERVAL": "0.2"}


def counts(folder: Path) -> dict[int, list[str]]:
    """The pids that ran each step's body, in order."""
    return {
        n: (folder / f"step{n}.count").read_text().split()
        if (folder / f"step{n}.count").exists()
        else []
        for n in range(1, 6)
    }


def test_a_job_killed_in_step_3_resumes_there_on_a_new_daemon(store_harness: Harness) -> None:
    h = store_harness
    folder = h.dir / "steps"
    folder.mkdir()
    first = h.start("A", env=ENV, **FAST).ready()
    with wizd.connect_sync(str(h.db)) as q:
        job_id = q.enqueue("five_steps", {"dir": str(folder)}, queue=AGENT, attempts=3).id
        wait_until(lambda: (folder / "in_step3").exists(), 20, "step 3 to begin in daemon A")
        first.signal(signal.SIGKILL)
        assert first.wait_exit(10) == -signal.SIGKILL
        (folder / "release").touch()

        second = h.start("B", env=ENV, **FAST).ready()
        job = wait_until(
            lambda: (j := q.get(job_id)).final and j, 30, f"job {job_id} final after recovery"
        )
        assert job.status is wizd.JobStatus.COMPLETED, (job.error, second.tail())
        assert job.result == [10, 20, 30, 40, 50]
        assert job.attempt == 2
        ran = counts(folder)
        a, b = str(first.pid), str(second.pid)
        assert ran == {1: [a], 2: [a], 3: [a, b], 4: [b], 5: [b]}
        steps = q.steps(job_id)
        assert [(s.label, s.status, s.result) for s in steps] == [
            (f"step{n}#1", "completed", n * 10) for n in range(1, 6)
        ]
        step_lines = [e for e in q.events(job_id) if e.kind == "step"]
        assert [e.attempt for e in step_lines] == [1, 1, 2, 2, 2]


def test_a_processor_that_changes_its_steps_fails_without_more_retries(
    store_harness: Harness,
) -> None:
    h = store_harness
    daemon = h.start("A", env=ENV, **FAST).ready()
    with wizd.connect_sync(str(h.db)) as q:
        job_id = q.enqueue("changes_its_steps", queue=AGENT, attempts=5, backoff={"delay": 0}).id
        job = wait_until(lambda: (j := q.get(job_id)).final and j, 30, f"job {job_id} final")
    assert job.status is wizd.JobStatus.FAILED, daemon.tail()
    assert job.attempt == 2, "NonDeterministic is not retried: it would fail the same way"
    assert (job.error or "").startswith("NonDeterministic: "), job.error
