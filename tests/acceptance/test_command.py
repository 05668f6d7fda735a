"""Acceptance tests of command processors through the real daemon: they die with it, get a
minimal environment, are checked at start-up, and what they write is bounded."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import wizd
from wizd.processors.env import BASE_NAMES
from wizd.processors.guard import MARKER

from .conftest import AGENT, APPS, Harness, daemon_env, process_gone, wait_until
from .test_daemon import enqueue, wait_final

pytestmark = pytest.mark.slow

SCRIPT = [sys.executable, str(APPS / "accept_command.py")]
MiB = 1024 * 1024


def write_config(harness: Harness, **processors: dict[str, Any]) -> Path:
    """A config with one command processor per keyword: NAME={key: value, ...} (TOML
    values as JSON, which TOML reads the same for strings, numbers and lists)."""
    text = []
    for name, keys in processors.items():
        text.append(f"[agents.{AGENT}.processors.{name}]")
        for key, value in {"command": SCRIPT, "kill_grace": 0.5, **keys}.items():
            if isinstance(value, dict):
                inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                text.append(f"{key} = {{ {inline} }}")
            else:
                text.append(f"{key} = {json.dumps(value)}")
    config = harness.dir / "wizd.toml"
    config.write_text("\n".join(text) + "\n", encoding="utf-8")
    return config


def log_lines(queue: wizd.SyncQueue, job_id: int) -> list[str]:
    return [e.message or "" for e in queue.events(job_id) if e.kind == "log"]


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


# -- item 8: the program dies with the daemon ----------------------------------------------
def test_a_sigkilled_daemon_takes_its_command_with_it_and_recovery_runs_the_job_once(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    config = write_config(harness, tool={})
    lock, record, release = (str(harness.dir / n) for n in ("lock", "pids", "release"))
    crashed = harness.start("crashed", app=None, config=config).ready()
    (job_id,) = enqueue(queue, "tool", mode="single", lock=lock, record=record, release=release)
    first = json.loads(wait_until(lambda: _read(record + ".1"), 15, "the first run's pids"))
    assert guards(crashed.pid), "the daemon should have started its guard"

    crashed.signal(signal.SIGKILL)
    crashed.wait_exit(10)

    wait_until(lambda: process_gone(first["pid"]), 5, f"the first run ({first}) to die")
    wait_until(lambda: process_gone(first["grandchild"]), 5, f"its child ({first}) to die")
    wait_until(lambda: not guards(crashed.pid), 5, "the crashed daemon's guard to exit")
    restarted = harness.start("restarted", app=None, config=config).ready()
    second = json.loads(wait_until(lambda: _read(record + ".2"), 15, "the re-run's pids"))
    assert second["pid"] != first["pid"]
    Path(release).touch()
    (job,) = wait_final(queue, [job_id], 15)
    assert (job.status, job.attempt, job.result) == ("completed", 2, {"pid": second["pid"]})
    assert not os.path.exists(lock + ".overlap"), "the re-run found the first run still running"
    restarted.signal(signal.SIGTERM)
    assert restarted.wait_exit(15) == 0
    wait_until(lambda: not guards(restarted.pid), 5, "the guard to exit after a clean stop")


def guards(daemon_pid: int) -> list[int]:
    """Live guard processes of the daemon `daemon_pid` (by their argv)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
        ours = argv[-3:-1] == [MARKER.encode(), str(daemon_pid).encode()]
        if ours and not process_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text() or None
    except FileNotFoundError:
        return None


# -- item 19: a minimal environment --------------------------------------------------------
def test_a_command_gets_a_minimal_environment_plus_what_its_config_names(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    config = write_config(
        harness,
        env={
            "command": ["env"],
            "env": {"EXTRA": "from config", "SHADOWED": "from config"},
            "inherit_env": ["PASSED_ON", "SHADOWED", "ABSENT"],
        },
        sigs={"command": ["sh", "-c", "grep ^SigIgn /proc/self/status"]},
    )
    secrets = {
        "WIZD_DATABASE": str(harness.db),
        "WIZD_SHUTDOWN_GRACE": "10",
        "SECRET": "x",
        "PASSED_ON": "yes",
        "SHADOWED": "from the daemon",
    }
    harness.start(app=None, config=config, env=secrets).ready()
    env_job = queue.enqueue("env", {}, queue=AGENT)
    sigs_job = queue.enqueue("sigs", {}, queue=AGENT)

    done, sigs = wait_final(queue, [env_job.id, sigs_job.id], 15)

    assert done.status == "completed", done.error
    got = dict(line.split("=", 1) for line in done.result.splitlines())
    daemons = daemon_env(secrets)
    expected = {k: v for k, v in daemons.items() if k in BASE_NAMES or k.startswith("LC_")}
    expected |= {
        "PASSED_ON": "yes",
        "EXTRA": "from config",
        "SHADOWED": "from config",
        "WIZD_JOB_ID": str(env_job.id),
        "WIZD_QUEUE": AGENT,
        "WIZD_JOB_NAME": "env",
        "WIZD_ATTEMPT": "1",
    }
    assert got == expected
    for leaked in ("SECRET", "WIZD_DATABASE", "WIZD_SHUTDOWN_GRACE", "PYTHONPATH"):
        assert leaked not in got
    # The parent-death wrapper is Python, which ignores SIGPIPE and SIGXFSZ: not the program.
    assert sigs.status == "completed", sigs.error
    ignored = int(sigs.result.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), sigs.result
    assert not ignored & (1 << (signal.SIGXFSZ - 1)), sigs.result


# -- item 11: checked at start-up ----------------------------------------------------------
@pytest.mark.parametrize("case", ["missing program", "not executable", "missing cwd", "cwd file"])
def test_a_command_that_cannot_run_stops_start_up_with_one_line(
    harness: Harness, queue: wizd.SyncQueue, case: str
) -> None:
    plain = harness.dir / "plain.sh"
    plain.write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    plain.chmod(0o644)
    keys, says = {
        "missing program": ({"command": ["no-such-wizd-agent"]}, "'no-such-wizd-agent' not found"),
        "not executable": ({"command": [str(plain)]}, "plain.sh' is not executable"),
        "missing cwd": (
            {"command": ["true"], "cwd": str(harness.dir / "nowhere")},
            "nowhere' does not exist",
        ),
        "cwd file": ({"command": ["true"], "cwd": str(plain)}, "plain.sh' is not a directory"),
    }[case]
    config = write_config(harness, tool=keys)
    (job_id,) = enqueue(queue, "tool", mode="echo")

    done = harness.run(*harness.base_args(app=None, config=config), timeout=15)

    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"wizd: agents.{AGENT}.processors.tool: "), lines[0]
    assert says in lines[0]
    if "cwd" in case:
        assert "program" not in lines[0]
    job = queue.get(job_id)
    assert (job.status, job.attempt) == ("pending", 0)


def test_only_the_served_agents_commands_are_checked(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    config = write_config(harness, tool={})
    with config.open("a", encoding="utf-8") as f:
        f.write('[agents.elsewhere.processors.tool]\ncommand = ["no-such-wizd-agent"]\n')

    everything = harness.run(*harness.base_args(app=None, agent=None, config=config))
    harness.start(app=None, config=config).ready()  # --agent researcher
    (job_id,) = enqueue(queue, "tool", mode="echo")

    assert everything.returncode != 0
    assert everything.stderr.startswith("wizd: agents.elsewhere.processors.tool: program")
    assert wait_final(queue, [job_id], 15)[0].status == "completed"


# -- item 17: what a command writes is bounded ---------------------------------------------
def test_a_huge_stderr_line_is_cut_and_never_held_whole(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start(app=None, config=write_config(harness, tool={})).ready()
    (echo,) = enqueue(queue, "tool", mode="echo")  # warm up: a run's own costs
    wait_final(queue, [echo], 15)
    before = peak_rss(daemon.pid)
    (job_id,) = enqueue(queue, "tool", mode="stderr", long=40 * MiB, lines=0, width=1)

    (job,) = wait_final(queue, [job_id], 60)

    assert job.status == "completed", job.error
    (line,) = log_lines(queue, job_id)
    assert line == "x" * 8192 + f"… [truncated {40 * MiB - 8192} bytes]"
    grown = peak_rss(daemon.pid) - before
    assert grown < 16 * MiB, f"the daemon's peak RSS grew by {grown / MiB:.1f} MiB"


def test_a_runs_stderr_log_holds_1000_lines_by_default_then_says_how_many_were_dropped(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    harness.start(app=None, config=write_config(harness, tool={})).ready()
    (job_id,) = enqueue(queue, "tool", mode="stderr", long=10, lines=20_000, width=50)

    (job,) = wait_final(queue, [job_id], 60)

    assert job.status == "completed", job.error
    lines = log_lines(queue, job_id)
    assert len(lines) == 1001
    assert lines[:2] == ["x" * 10, "y" * 49]
    assert lines[1000] == (
        f"[wizd] {20_001 - 1000} more stderr lines ({(20_001 - 1000) * 49} bytes) not logged: "
        "a run logs at most 1000 lines and 1048576 bytes of stderr"
    )


def test_a_runs_stderr_log_is_capped_in_lines_and_in_bytes_as_configured(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    config = write_config(
        harness,
        by_lines={"stderr_lines_limit": 100},
        by_bytes={"stderr_bytes_limit": 1000},
        cut={"stderr_line_limit": 20},
    )
    harness.start(app=None, config=config).ready()
    spec = {"mode": "stderr", "long": 10, "lines": 20_000, "width": 50}
    jobs = [queue.enqueue(name, spec, queue=AGENT).id for name in ("by_lines", "by_bytes", "cut")]

    by_lines, by_bytes, cut = wait_final(queue, jobs, 60)

    for job in (by_lines, by_bytes, cut):
        assert job.status == "completed", job.error
    lines = log_lines(queue, by_lines.id)
    assert lines[:2] == ["x" * 10, "y" * 49]
    assert len(lines) == 101
    assert lines[100].startswith(f"[wizd] {20_001 - 100} more stderr lines")
    lines = log_lines(queue, by_bytes.id)
    assert len(lines) == 1 + 20 + 1  # 10 + 20 x 49 = 990 bytes; one more is past 1000
    assert lines[-1].startswith(f"[wizd] {20_001 - 21} more stderr lines")
    lines = log_lines(queue, cut.id)
    assert lines[1] == "y" * 20 + "… [truncated 29 bytes]"


def test_stdout_is_bounded_and_a_result_too_deep_to_parse_is_text(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    config = write_config(harness, tool={"output_limit": 20_000})
    harness.start(app=None, config=config).ready()
    big = queue.enqueue("tool", {"mode": "stdout", "size": 10 * MiB}, queue=AGENT, attempts=1)
    deep = queue.enqueue("tool", {"mode": "nested", "depth": 5000}, queue=AGENT, attempts=1)

    big_job, deep_job = wait_final(queue, [big.id, deep.id], 30)

    assert (big_job.status, big_job.result) == ("failed", None)
    assert "output exceeded the limit of 20000 bytes" in (big_job.error or "")
    assert deep_job.status == "completed", deep_job.error
    assert deep_job.result == "[" * 5000 + "]" * 5000
