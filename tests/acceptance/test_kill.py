"""`wizd kill` says what really happened: a pending job was cancelled before it ran; a
running job's daemon says how it stopped the run (cancelled, or, for a synchronous
processor whose thread cannot be killed, asked to stop with its slot held until the thread
returns)."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import pytest

import wizd

from .conftest import AGENT, Harness, wait_until
from .test_threads import APP as THREADS
from .test_threads import assert_never_twice_at_once, final, runs

pytestmark = pytest.mark.slow


def kill(harness: Harness, job_id: int, *flags: str) -> str:
    answer = harness.run("kill", str(job_id), *flags, "--database", str(harness.db))
    assert answer.returncode == 0, answer.stderr
    return " ".join(answer.stdout.split())  # rich may wrap long lines


def daemon_heartbeat(harness: Harness) -> datetime:
    answer = harness.run("agents", "--json", "--database", str(harness.db))
    (live,) = [w for w in json.loads(answer.stdout) if w["state"] == "live"]
    return datetime.fromisoformat(live["heartbeat_at"])


def test_kill_of_a_pending_job_says_it_never_ran(harness: Harness, queue: wizd.SyncQueue) -> None:
    job_id = queue.enqueue("hold", {"release": "unused"}, queue=AGENT).id
    said = kill(harness, job_id)
    assert said == f"job {job_id} ⊘ cancelled before it ran (it was pending)"
    assert queue.get(job_id).status.value == "cancelled"


def test_kill_of_a_running_async_job_says_it_was_cancelled(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    harness.start().ready()
    job_id = queue.enqueue("hold", {"release": str(harness.dir / "never")}, queue=AGENT).id
    wait_until(lambda: queue.get(job_id).status.value == "running", 10, "the job running")
    said = kill(harness, job_id)
    assert said == f"job {job_id} ⊘ cancelled; its daemon: run stopped: its processor was cancelled"


def test_kill_of_a_job_whose_daemon_is_gone_says_nothing_stopped_it_yet(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start().ready()
    job_id = queue.enqueue("hold", {"release": str(harness.dir / "never")}, queue=AGENT).id
    wait_until(lambda: queue.get(job_id).status.value == "running", 10, "the job running")
    daemon.kill()  # SIGKILL: nobody will stop the run
    worker_id = queue.get(job_id).worker_id
    said = kill(harness, job_id)
    assert said == (
        f"job {job_id} ⊘ cancelled; its daemon ({worker_id}) has not stopped the run yet "
        f"(within 5s): it does when it notices; `wizd logs {job_id}` will say how"
    )


def test_kill_force_of_a_sync_job_says_its_thread_runs_on_holding_its_slot(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    runs_dir, release = harness.dir / "runs", harness.dir / "release"
    runs_dir.mkdir()
    payload = {"dir": str(runs_dir), "release": str(release)}
    harness.start(app=THREADS, concurrency=1).ready()
    killed = queue.enqueue("stubborn", payload, queue=AGENT).id
    wait_until(lambda: queue.get(killed).status.value == "running", 10, "the job running")

    said = kill(harness, killed, "--force")
    assert "SIGKILL" not in said
    assert said == (
        f"job {killed} ⊘ cancelled; its daemon: run asked to stop: a synchronous processor's "
        "thread cannot be killed (not even with --force); it sees ctx.should_stop(), and its "
        "slot stays held until the thread returns"
    )
    # The slot is held: the next job waits while the daemon heartbeats on.
    waiting = queue.enqueue("stubborn", payload, queue=AGENT).id
    for _ in range(2):
        seen = daemon_heartbeat(harness)
        wait_until(
            lambda seen=seen: daemon_heartbeat(harness) > seen, 10, "the daemon's next heartbeat"
        )
    assert queue.get(waiting).status.value == "pending"

    release.touch()
    (job,) = final(queue, [waiting])
    assert job.status.value == "completed"
    records = runs(Path(runs_dir))
    assert [r.job for r in records] == [killed, waiting]
    assert_never_twice_at_once(records, concurrency_one=True)


def test_a_killed_sync_job_retried_while_its_thread_runs_leaves_the_daemon_serving(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    """Kill, then retry, gives the job a new run beside the old thread (an operator's
    choice); the daemon keeps track of both and goes on serving."""
    runs_dir, release = harness.dir / "runs", harness.dir / "release"
    runs_dir.mkdir()
    payload = {"dir": str(runs_dir), "release": str(release)}
    daemon = harness.start(app=THREADS, concurrency=2).ready()
    job_id = queue.enqueue("stubborn", payload, queue=AGENT).id
    wait_until(lambda: queue.get(job_id).status.value == "running", 10, "the job running")
    kill(harness, job_id)
    daemon.wait_for("thread_asked_to_stop", job_id=job_id)
    queue.retry(job_id)
    wait_until(lambda: len(runs(runs_dir)) == 2, 10, "the retried job running again")

    release.touch()
    (job,) = final(queue, [job_id])
    assert job.status.value == "completed"
    daemon.wait_for("thread_returned", job_id=job_id)
    assert daemon.proc.poll() is None
    after = queue.enqueue("stubborn", payload, queue=AGENT).id
    assert final(queue, [after])[0].status.value == "completed"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
