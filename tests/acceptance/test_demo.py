"""`wizd demo`, as the README's first command runs it: every job completes, and the agent
that waits for a person's approval is approved by the demo itself, which says so."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
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
    assert done.stdout.rstrip().splitlines()[-1] == "See it all in a browser: wizd demo --console"


def test_demo_console_serves_the_overview_until_ctrl_c(tmp_path: Path) -> None:
    """`wizd demo --console` ends its output with the console's URL, serves the overview
    there, and Ctrl-C (SIGINT) ends it with status 0."""
    with subprocess.Popen(
        wizd_command(
            "demo", "--pace", "0.05", "--database", str(tmp_path / "demo.db"), "--console"
        ),
        env=daemon_env({"COLUMNS": "120", "WIZD_HTTP_PORT": "0"}),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:  # the URL is the line the process then waits after
                lines.append(line)
                if line.startswith("http://127.0.0.1:"):
                    break
            else:
                pytest.fail(f"no URL line: {''.join(lines)[-2000:]} {proc.stderr.read()[-2000:]}")
            url = lines[-1].strip()
            assert "The web console" in "".join(lines[-3:])
            page = httpx.get(url, timeout=30)
            assert page.status_code == 200
            assert "<title>Overview · wizd</title>" in page.text
            assert "researcher" in page.text  # the demo's queue, on the overview
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()[-3000:] if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
