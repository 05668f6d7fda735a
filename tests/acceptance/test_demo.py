"""`wizd demo`, as the README's first command runs it: every job completes, and the agent
that waits for a person's approval is approved by the demo itself, which says so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import wizd

from .conftest import daemon_env, wizd_command

pytestmark = pytest.mark.slow


def test_demo_completes_every_job_and_approves_its_waiting_agent(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = subprocess.run(
        wizd_command("demo", "--pace", "0.05", "--database", str(db)),
        env=daemon_env({"COLUMNS": "120"}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    with wizd.connect_sync(str(db)) as q:
        jobs = q.list(limit=1000)
        assert jobs
        assert all(j.status is wizd.JobStatus.COMPLETED for j in jobs), [
            (j.id, j.name, j.status) for j in jobs
        ]
        (post,) = [j for j in jobs if j.name == "post"]
        assert post.result["published"] is True
        assert post.result["approved_by"] == "the demo"
        assert [(s.name, s.kind, s.attempts) for s in q.steps(post.id)] == [
            ("draft", "step", 1),
            ("approval", "signal", 1),
            ("publish", "step", 1),
        ]
    assert f"{len(jobs)} of {len(jobs)} jobs completed" in done.stdout
    assert f"wizd signal {post.id} approval" in done.stdout
