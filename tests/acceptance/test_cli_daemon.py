"""Acceptance tests of how the real `wizd` daemon is started: --app modules found in the
working directory, flags beating the config file, processors written against the top-level
`wizd.Agent` / `wizd.JobContext` names."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

import wizd

from .conftest import AGENT, Harness, wait_until

pytestmark = pytest.mark.slow

MYAGENTS = textwrap.dedent(
    """
    import wizd

    researcher = wizd.Agent("researcher")

    @researcher.processor("research")
    async def research(ctx: wizd.JobContext):
        return {"from": __file__, "query": ctx.payload["query"]}
    """
)


def test_app_module_in_the_working_directory_is_imported(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    (harness.dir / "myagents.py").write_text(MYAGENTS)
    pythonpath = os.environ.get("PYTHONPATH", "")
    assert str(harness.dir) not in pythonpath.split(os.pathsep)
    daemon = harness.start(app="myagents:researcher").ready()
    job = queue.enqueue("research", {"query": "q1"}, queue=AGENT)
    done = wait_until(
        lambda: (j := queue.get(job.id)).final and j, 15, f"job {job.id} final\n{daemon.tail()}"
    )
    assert done.status is wizd.JobStatus.COMPLETED, done.error
    assert done.result == {"from": str(harness.dir / "myagents.py"), "query": "q1"}


def test_concurrency_flag_beats_the_agents_value_in_the_config_file(
    harness: Harness, queue: wizd.SyncQueue, tmp_path: Path
) -> None:
    config = tmp_path / "wizd.toml"
    config.write_text(f"[agents.{AGENT}]\nconcurrency = 3\n")
    harness.start(concurrency=7, extra_args=["--config", str(config)]).ready()
    workers = wait_until(queue.workers, 10, "the daemon's registration")
    assert [w.concurrency for w in workers] == [7]


def test_hung_kill_under_the_heartbeat_margin_leaves_a_healthy_job_running(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    """The issue's case: a daemon with the default 30 s heartbeat runs a job; `wizd hung
    --older-than 1s --kill` used to reap it, and the job then ran twice at once."""
    release = harness.dir / "release"
    daemon = harness.start(heartbeat_interval=None).ready()  # the default interval, 30 s
    job = queue.enqueue("hold", {"release": str(release)}, queue=AGENT)
    running = wait_until(
        lambda: (j := queue.get(job.id)).status is wizd.JobStatus.RUNNING and j, 15, "running"
    )
    assert running.heartbeat_at is not None
    beat = running.heartbeat_at.timestamp()
    wait_until(lambda: time.time() - beat > 1.5, 5, "the heartbeat to be 1.5 s old")

    done = harness.run("--database", str(harness.db), "hung", "--older-than", "1s", "--kill")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("wizd: older_than: 1.0s is under 2 x the heartbeat interval")
    still = queue.get(job.id)
    assert (still.status, still.attempt) == (wizd.JobStatus.RUNNING, 1)

    release.touch()
    finished = wait_until(lambda: (j := queue.get(job.id)).final and j, 15, "the job to end")
    assert finished.status is wizd.JobStatus.COMPLETED
    assert finished.result == {"pid": daemon.pid, "attempt": 1}
    assert not daemon.logged("job_claimed", attempt=2)
