"""Acceptance tests of the worker daemon: the real `wizd` process, real signals, a real
SQLite file, jobs enqueued and inspected from this (another) process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import wizd
from tests.acceptance.apps import accept_agents

from .conftest import (
    AGENT,
    APPS,
    Harness,
    daemon_env,
    live_group_members,
    process_gone,
    wait_until,
    wizd_command,
)

pytestmark = pytest.mark.slow

FINAL = {"completed", "failed", "cancelled"}
# What the daemon's error lists: every processor the acceptance app's agent has.
KNOWN_PROCESSORS = ", ".join(sorted(accept_agents.researcher.processors))


def enqueue(q: wizd.SyncQueue, name: str, n: int = 1, **payload: Any) -> list[int]:
    jobs = q.enqueue_many([{"name": name, "queue": AGENT, "payload": payload}] * n)
    return [job.id for job in jobs]


def wait_final(q: wizd.SyncQueue, ids: list[int], timeout: float) -> list[wizd.Job]:
    """Wait until every job is final; the jobs in the order of `ids`."""

    def jobs_if_final() -> list[wizd.Job] | None:
        jobs = [q.get(i) for i in ids]
        return jobs if all(j.status in FINAL for j in jobs) else None

    def summary() -> str:
        return str(Counter(q.get(i).status.value for i in ids))

    deadline = time.monotonic() + timeout
    while (jobs := jobs_if_final()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not final within {timeout}s: {summary()}")
        time.sleep(0.05)
    return jobs


def running_ids(q: wizd.SyncQueue) -> list[int]:
    return sorted(j.id for j in q.list(queue=AGENT, status="running", limit=10_000))


def wait_running(q: wizd.SyncQueue, n: int, timeout: float = 15.0) -> list[int]:
    def exactly_n() -> list[int] | None:
        ids = running_ids(q)
        return ids if len(ids) == n else None

    return wait_until(exactly_n, timeout, f"exactly {n} jobs running")


def kinds(q: wizd.SyncQueue, job_id: int) -> list[str]:
    return [event.kind for event in q.events(job_id)]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


# -- 1. jobs from another process, bounded pool ------------------------------------------
def test_jobs_enqueued_elsewhere_run_and_concurrency_is_never_exceeded(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start(concurrency=3).ready()
    ids = enqueue(queue, "interval", 12, seconds=0.3)

    jobs = wait_final(queue, ids, 30)

    assert [j.status for j in jobs] == ["completed"] * 12
    assert {(j.attempt, j.result["pid"]) for j in jobs} == {(1, daemon.pid)}
    overlap = max_overlap([(j.result["start"], j.result["end"]) for j in jobs])
    assert overlap == 3, f"at most 3 jobs at once and the pool fully used; saw {overlap}"
    assert len(daemon.logged("job_claimed")) == 12


# -- 2. graceful stop ----------------------------------------------------------------------
def test_sigterm_lets_running_jobs_finish_within_the_grace_and_claims_nothing_more(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    release = harness.dir / "release"
    daemon = harness.start(concurrency=3, shutdown_grace=30).ready()
    ids = enqueue(queue, "hold", 5, release=str(release))
    in_flight = wait_running(queue, 3)

    daemon.signal(signal.SIGTERM)
    daemon.wait_for("daemon_stopping", running=3)
    release.touch()

    assert daemon.wait_exit(20) == 0, daemon.tail()
    jobs = {j.id: j for j in (queue.get(i) for i in ids)}
    for job_id in in_flight:
        assert (jobs[job_id].status, jobs[job_id].attempt) == ("completed", 1)
    for job_id in set(ids) - set(in_flight):
        assert (jobs[job_id].status, jobs[job_id].attempt) == ("pending", 0)
        assert "claimed" not in kinds(queue, job_id), "claimed after the stop signal"
    assert queue.counts(AGENT)["running"] == 0
    daemon.wait_for("daemon_stopped", timeout=1)


def test_sigterm_requeues_jobs_still_running_after_a_short_grace_without_charging_them(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start(concurrency=3, shutdown_grace=0.5).ready()
    ids = enqueue(queue, "hold", 4, release=str(harness.dir / "never"))
    in_flight = wait_running(queue, 3)

    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait_exit(15)
    took = time.monotonic() - signalled

    assert code == 0, daemon.tail()
    assert took >= 0.5, f"exited {took:.2f}s after SIGTERM, before the 0.5s grace was over"
    assert queue.counts(AGENT)["running"] == 0
    for job in (queue.get(i) for i in ids):
        assert (job.status, job.attempt, job.worker_id) == ("pending", 0, None), job
    for job_id in in_flight:
        assert kinds(queue, job_id)[-1] == "requeued"
    assert daemon.wait_for("jobs_requeued_on_shutdown", timeout=1)["count"] == 3
    assert sorted(e["job_id"] for e in daemon.logged("job_requeued")) == in_flight


def test_a_second_signal_stops_at_once_even_with_a_long_grace(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    release = harness.dir / "release"
    daemon = harness.start(concurrency=2, shutdown_grace=60).ready()
    ids = enqueue(queue, "hold", 2, release=str(release))
    wait_running(queue, 2)

    daemon.signal(signal.SIGTERM)
    daemon.wait_for("daemon_stopping", running=2)
    daemon.signal(signal.SIGINT)
    daemon.wait_exit(5)  # fails, showing the daemon's log, if it still runs

    daemon.wait_for("signal_received", timeout=1, signal="SIGINT", action="requeue and stop now")
    # The second signal skips the rest of the grace: both runs go back to pending, not charged.
    after = [queue.get(i) for i in ids]
    assert [(j.status, j.attempt) for j in after] == [("pending", 0)] * 2
    release.touch()
    harness.start("B").ready()
    jobs = wait_final(queue, ids, 20)
    assert [(j.status, j.attempt) for j in jobs] == [("completed", 1)] * 2


# -- 3. crash and recovery ---------------------------------------------------------------
def test_jobs_interrupted_by_kill_9_are_recovered_on_restart_and_charged_an_attempt(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    release = harness.dir / "release"
    first = harness.start("A", concurrency=3).ready()
    ids = enqueue(queue, "hold", 5, release=str(release))
    interrupted = wait_running(queue, 3)

    first.proc.send_signal(signal.SIGKILL)
    assert first.wait_exit(10) == -signal.SIGKILL
    release.touch()
    second = harness.start("B", concurrency=3).ready()
    jobs = {j.id: j for j in wait_final(queue, ids, 30)}

    assert {j.status for j in jobs.values()} == {"completed"}
    assert {j.result["pid"] for j in jobs.values()} == {second.pid}
    for job_id in interrupted:
        assert jobs[job_id].attempt == 2
        recovered = [e for e in queue.events(job_id) if e.kind == "recovered"]
        assert [e.status for e in recovered] == ["pending"], recovered
        second.wait_for("job_recovered", timeout=1, job_id=job_id)
    for job_id in set(ids) - set(interrupted):
        assert jobs[job_id].attempt == 1
        assert "recovered" not in kinds(queue, job_id)


# -- 4. two daemons, one file ------------------------------------------------------------
def test_two_daemons_on_one_file_run_each_of_2000_jobs_exactly_once(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    runs = harness.dir / "runs"
    runs.mkdir()
    daemons = [harness.start(name, concurrency=8).ready() for name in ("A", "B")]
    ids: list[int] = []
    for _ in range(8):
        ids += enqueue(queue, "quick", 250, dir=str(runs))

    wait_until(
        lambda: (c := queue.counts(AGENT))["completed"] + c["failed"] == 2000,
        60,
        "2000 jobs to finish",
        interval=0.2,
    )

    assert queue.counts(AGENT)["completed"] == 2000, queue.counts(AGENT)
    lines = [line.split() for path in runs.iterdir() for line in path.read_text().splitlines()]
    ran = Counter(int(job_id) for job_id, _attempt in lines)
    assert sorted(ran) == sorted(ids)
    assert set(ran.values()) == {1}, f"run more than once: {[i for i, n in ran.items() if n > 1]}"
    per_daemon = {d.name: len(d.logged("job_completed")) for d in daemons}
    assert sum(per_daemon.values()) == 2000, per_daemon
    assert min(per_daemon.values()) > 0, f"one daemon did all the work: {per_daemon}"
    assert {f.name for f in runs.iterdir()} == {f"{d.pid}.log" for d in daemons}
    events = Counter()
    for job_id in ids:
        events.update(e.kind for e in queue.events(job_id) if e.kind in ("claimed", "completed"))
    assert events == {"claimed": 2000, "completed": 2000}
    for daemon in daemons:
        assert "database is locked" not in daemon.log_text
        assert not daemon.logged("claim_failed")
        assert not daemon.logged("job_finish_failed")


# -- 5. hung jobs and the fence ----------------------------------------------------------
def test_a_job_blocking_its_daemon_is_reaped_by_another_and_the_late_write_is_fenced(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    go = harness.dir / "go"
    fast = {"heartbeat_interval": 0.2, "hung_timeout": 1}
    env = {"WIZD_REAPER_INTERVAL": "0.2"}
    a = harness.start("A", env={**env, "ACCEPT_BLOCK_LOOP": "1"}, **fast).ready()
    (job_id,) = enqueue(queue, "blocker", go=str(go), block=4)
    a.wait_for("job_claimed", job_id=job_id)
    b = harness.start("B", env=env, **fast).ready()  # A is still heartbeating: no recovery

    go.touch()  # A's processor now blocks A's event loop for 4 s
    b.wait_for("hung_job_reaped", job_id=job_id, attempt=1)
    b.wait_for("job_completed", job_id=job_id, attempt=2)
    # A wakes up 4 s after `go` and tries to finish attempt 1: the fence refuses it.
    a.wait_for("job_finish_rejected", timeout=15, job_id=job_id, attempt=1)

    job = queue.get(job_id)
    assert (job.status, job.attempt) == ("completed", 2)
    assert job.result == {"pid": b.pid, "attempt": 2}
    history = kinds(queue, job_id)
    assert Counter(history)["recovered"] == 1, history
    assert Counter(history)["completed"] == 1, history
    assert not a.logged("job_completed", job_id=job_id)
    assert not b.logged("job_recovered"), "B recovered at start-up instead of reaping"


# -- 6. command processors ---------------------------------------------------------------
def command_config(harness: Harness) -> Path:
    config = harness.dir / "wizd.toml"
    command = json.dumps([sys.executable, str(APPS / "accept_command.py")])
    config.write_text(
        f"[agents.{AGENT}.processors.tool]\ncommand = {command}\nkill_grace = 0.5\n",
        encoding="utf-8",
    )
    return config


def test_cancelling_a_running_command_job_kills_its_whole_process_group(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    record = harness.dir / "pids.json"
    daemon = harness.start(app=None, config=command_config(harness)).ready()
    (job_id,) = enqueue(queue, "tool", mode="spawn", record=str(record), ignore_term=True)
    wait_until(record.exists, 15, "the command to record its pids")
    pids = json.loads(record.read_text())
    assert pids["pgid"] == pids["pid"], "the command should lead its own process group"
    assert live_group_members(pids["pgid"]), "the command's group should be running"
    assert queue.get(job_id).status == "running"

    queue.cancel(job_id)

    wait_until(lambda: not live_group_members(pids["pgid"]), 5, "the process group to be gone")
    assert process_gone(pids["pid"])
    assert process_gone(pids["grandchild"])
    wait_until(lambda: not os.path.exists(f"/proc/{pids['pid']}"), 5, "the daemon to reap it")
    with pytest.raises(ProcessLookupError):
        os.kill(pids["pid"], 0)
    daemon.wait_for("job_lost", job_id=job_id)
    job = queue.get(job_id)
    assert job.status == "cancelled"
    # Nothing but the daemon's note of how it stopped the run (a log line) came after.
    assert kinds(queue, job_id)[-2:] == ["cancelled", "log"]
    note = queue.events(job_id)[-1].message
    assert note is not None
    assert note.startswith("wizd: run stopped: its command's process group got SIGTERM")
    # The slot is free again: the daemon goes on serving.
    (echo,) = enqueue(queue, "tool", mode="echo")
    assert wait_final(queue, [echo], 15)[0].status == "completed"


def test_command_results_logs_and_failures(harness: Harness, queue: wizd.SyncQueue) -> None:
    harness.start(app=None, config=command_config(harness)).ready()
    ok = queue.enqueue("tool", {"mode": "echo", "n": 7}, queue=AGENT)
    bad = queue.enqueue("tool", {"mode": "fail"}, queue=AGENT, attempts=1)

    done, failed = wait_final(queue, [ok.id, bad.id], 20)

    assert done.status == "completed"
    assert done.result == {
        "echo": {"mode": "echo", "n": 7},
        "env": {"WIZD_JOB_ID": str(ok.id), "WIZD_QUEUE": AGENT, "WIZD_JOB_NAME": "tool"},
        "attempt": "1",
    }
    logs = [e.message for e in queue.events(ok.id) if e.kind == "log"]
    assert logs == ["reading the payload", "writing the result"]
    assert (failed.status, failed.attempt) == ("failed", 1)
    assert failed.error is not None
    assert "exit code 3" in failed.error
    assert "step one went fine\nboom: the input is bad" in failed.error
    logs = [e.message for e in queue.events(bad.id) if e.kind == "log"]
    assert logs == ["step one went fine", "boom: the input is bad"]


# -- 7. systemd --------------------------------------------------------------------------
def test_systemd_notify_ready_after_recovery_then_watchdog_then_stopping(
    harness: Harness, queue: wizd.SyncQueue, short_dir: Path
) -> None:
    release = harness.dir / "release"
    crashed = harness.start("crashed").ready()
    (job_id,) = enqueue(queue, "hold", release=str(release))
    crashed.wait_for("job_claimed", job_id=job_id)
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.wait_exit(10)
    release.touch()

    address = str(short_dir / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
        daemon = harness.start("notified", env=env)

        def receive(what: str, timeout: float) -> list[dict[str, str]]:
            """Datagrams (as KEY=value dicts) up to and including the first with `what`."""
            got: list[dict[str, str]] = []
            deadline = time.monotonic() + timeout
            while not got or what not in got[-1]:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {what} within {timeout}s; got {got}\n{daemon.tail()}")
                sock.settimeout(left)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                got.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
            return got

        first = receive("READY", 20)
        # Recovery is committed before READY=1 is sent.
        assert "recovered" in kinds(queue, job_id)
        assert len(first) == 1, f"READY=1 should come first; got {first}"
        assert first[0]["READY"] == "1"
        assert first[0]["MAINPID"] == str(daemon.pid)
        watchdog = [m for m in receive("WATCHDOG", 5) + receive("WATCHDOG", 5) if "WATCHDOG" in m]
        assert [m["WATCHDOG"] for m in watchdog] == ["1", "1"]
        assert wait_final(queue, [job_id], 15)[0].status == "completed"

        daemon.signal(signal.SIGTERM)
        stopping = receive("STOPPING", 10)[-1]
        assert stopping["STOPPING"] == "1"
        assert daemon.wait_exit(15) == 0


# -- 8. daemonize ------------------------------------------------------------------------
def test_daemonize_writes_a_pidfile_refuses_a_second_start_and_stops_on_sigterm(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    pidfile = harness.dir / "wizd.pid"
    argv = wizd_command(*harness.base_args(), "--daemonize", "--pidfile", str(pidfile))

    def start(log: Path) -> int:
        # Output to files, not pipes: a detached daemon keeps its stderr open for its life.
        with log.open("w") as err:
            return subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=daemon_env(),
                cwd=harness.dir,
                timeout=30,
                check=False,
            ).returncode

    assert start(harness.dir / "first.log") == 0
    text = wait_until(
        lambda: pidfile.exists() and pidfile.read_text().strip(), 15, "the pidfile to be written"
    )
    pid = int(text)
    harness.foreign_pids.append(pid)
    assert not process_gone(pid)
    (job_id,) = enqueue(queue, "interval", seconds=0.01)
    assert wait_final(queue, [job_id], 15)[0].result["pid"] == pid

    second_log = harness.dir / "second.log"
    assert start(second_log) == 2
    assert str(pidfile) in second_log.read_text()
    assert not process_gone(pid), "the second start must leave the first daemon alone"

    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: process_gone(pid), 15, f"daemon pid {pid} to exit after SIGTERM")
    log = [json.loads(line) for line in (harness.dir / "first.log").read_text().splitlines()]
    assert [e["event"] for e in log if e["event"].startswith("daemon_")] == [
        "daemon_ready",
        "daemon_stopping",
        "daemon_stopped",
    ]
    assert not pidfile.exists(), "the pidfile should be removed when the daemon stops"


# -- 9. bad configuration ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        pytest.param("concurency = 3\n", {}, "concurency", id="unknown-key"),
        pytest.param(
            f'[agents.{AGENT}.processors.tool]\ncommand = ["true"]\ncomand = ["x"]\n',
            {},
            f"agents.{AGENT}.processors.tool.comand",
            id="unknown-nested-key",
        ),
        pytest.param("", {"WIZD_CONCURRENCY": "0"}, "concurrency", id="bad-env-value"),
    ],
)
def test_bad_settings_stop_start_up_with_exit_2_and_one_line_naming_the_key(
    harness: Harness, toml: str, env: dict[str, str], key: str
) -> None:
    config = harness.dir / "wizd.toml"
    config.write_text(toml, encoding="utf-8")
    done = harness.run(*harness.base_args(concurrency=None), "--config", str(config), env=env)

    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"wizd: {key}: "), lines[0]
    assert not harness.db.exists(), "a bad start-up must not touch the database"


def test_an_agent_without_processors_stops_start_up_with_exit_2(harness: Harness) -> None:
    done = harness.run(*harness.base_args(agent="ghost"))

    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'ghost' has no processors" in lines[0], lines[0]
    assert not harness.db.exists(), "a bad start-up must not touch the database"


# -- 10. unknown job names ---------------------------------------------------------------
def test_a_job_without_a_processor_fails_at_once_without_retries(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    harness.start().ready()
    job = queue.enqueue("translate", {"text": "hi"}, queue=AGENT, attempts=3)

    (failed,) = wait_final(queue, [job.id], 15)

    assert (failed.status, failed.attempt, failed.max_attempts) == ("failed", 1, 3)
    assert failed.error is not None
    assert f"agent {AGENT!r}" in failed.error
    assert "'translate'" in failed.error
    assert KNOWN_PROCESSORS in failed.error
    history = kinds(queue, job.id)
    assert history.count("claimed") == 1, history
    assert "retry_scheduled" not in history, history


# -- 11. job timeouts --------------------------------------------------------------------
def test_a_job_over_its_timeout_is_cancelled_and_retried_then_failed(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start(concurrency=2).ready()
    never = str(harness.dir / "never")  # the hold would last 300 s
    over = queue.enqueue(
        "hold", {"release": never}, queue=AGENT, timeout=0.3, attempts=2, backoff={"delay": 0.05}
    )
    within = queue.enqueue("interval", {"seconds": 0.05}, queue=AGENT, timeout=5)

    failed, completed = wait_final(queue, [over.id, within.id], 30)

    assert (failed.status, failed.attempt, failed.error) == ("failed", 2, "timed out after 0.3s")
    assert kinds(queue, over.id).count("claimed") == 2
    assert completed.status == "completed"
    assert daemon.proc.poll() is None, "the daemon goes on after a timeout"


def test_a_processors_own_timeout_error_is_its_failure_not_the_jobs_timeout(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    """A TimeoutError raised by the processor (an HTTP client's, say) fails the run like
    any other exception, with its own message, whether or not the job has a timeout."""
    daemon = harness.start().ready()
    untimed = queue.enqueue("flaky", {"message": "upstream took too long"}, queue=AGENT, attempts=1)
    timed = queue.enqueue("flaky", {"message": "read timeout"}, queue=AGENT, attempts=1, timeout=60)
    after = queue.enqueue("interval", {"seconds": 0}, queue=AGENT)

    jobs = wait_final(queue, [untimed.id, timed.id, after.id], 15)

    assert [(j.status, j.error) for j in jobs] == [
        ("failed", "TimeoutError: upstream took too long"),
        ("failed", "TimeoutError: read timeout"),
        ("completed", None),
    ]
    assert daemon.proc.poll() is None, daemon.tail()
