"""The acceptance harness: the real `wizd` console script as a subprocess on a real SQLite file.

Every wait has a deadline and fails with a message that shows what the daemon logged.
Nothing synchronises on a bare sleep: tests wait for a log line on the daemon's stderr
(read by a background thread) or poll the database until a condition holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

import wizd

APPS = Path(__file__).parent / "apps"
WIZD = Path(sys.executable).with_name("wizd")
AGENT = "researcher"
APP = "accept_agents:researcher"
T = TypeVar("T")


def wizd_command(*args: str) -> list[str]:
    """argv of the installed `wizd` console script (the one next to this interpreter)."""
    assert WIZD.is_file(), f"the wizd console script is not installed next to {sys.executable}"
    return [str(WIZD), *args]


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a daemon: ours without WIZD_*/systemd variables, apps importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WIZD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs: no such process, or a zombie nobody has reaped yet
    (orphans are reparented to pid 1, which in a container may never reap them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def live_group_members(pgid: int) -> list[int]:
    """Pids of processes of group `pgid` that are still running (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


class Daemon:
    """A running `wizd` daemon whose JSON log lines (stderr) are collected as they come."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name=f"wizd-{name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if isinstance(parsed, dict):
                    self.events.append(parsed)
                self._changed.notify_all()

    @property
    def log_text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def tail(self, n: int = 40) -> str:
        with self._changed:
            return "\n".join(self.lines[-n:]) or "(nothing logged)"

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Log records so far with this event name and these field values."""
        with self._changed:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_for(self, event: str, timeout: float = 15.0, count: int = 1, **fields: Any) -> Any:
        """Wait until `count` log records match; return the `count`-th one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.logged(event, **fields)
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._changed.wait(min(left, 0.1))
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        pytest.fail(
            f"daemon {self.name} ({state}) did not log {count} x {event} {fields or ''} "
            f"within {timeout}s; its last log lines:\n{self.tail()}"
        )

    def ready(self, timeout: float = 20.0) -> Daemon:
        self.wait_for("daemon_ready", timeout)
        return self

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end; its exit code. Fails at the deadline."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"daemon {self.name} still runs {timeout}s later; its last log lines:\n"
                f"{self.tail()}"
            )
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Harness:
    """Starts daemons on one database in `tmp_path`; kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path, database: str | None = None) -> None:
        self.dir = tmp_path
        self.db: Path | str = database or tmp_path / "wizd.db"
        self.daemons: list[Daemon] = []
        self.foreign_pids: list[int] = []  # daemonized: not our children

    def base_args(self, **overrides: Any) -> list[str]:
        """Flags for a fast daemon on this harness's database; overrides by flag name."""
        settings: dict[str, Any] = {
            "database": str(self.db),
            "agent": AGENT,
            "concurrency": 3,
            "poll-interval": 0.05,
            "heartbeat-interval": 0.2,
            "hung-timeout": 30,
            "shutdown-grace": 10,
            "metrics-port": 0,
            "log-format": "json",
            "log-level": "debug",
            "app": APP,
        }
        settings.update({key.replace("_", "-"): value for key, value in overrides.items()})
        args: list[str] = []
        for key, value in settings.items():
            if value is not None:
                args += [f"--{key}", str(value)]
        return args

    def start(
        self,
        name: str = "A",
        *,
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        **overrides: Any,
    ) -> Daemon:
        argv = wizd_command(*self.base_args(**overrides), *extra_args)
        daemon = Daemon(name, argv, daemon_env(env), self.dir)
        self.daemons.append(daemon)
        return daemon

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `wizd ARGS` to completion (start-up failures, --daemonize)."""
        return subprocess.run(
            wizd_command(*args),
            env=daemon_env(env),
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        for pid in self.foreign_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def open_harness(tmp_path: Path, database: str | None = None) -> Iterator[Harness]:
    """A harness on a SQLite file in `tmp_path`, or on `database`; daemons killed after."""
    h = Harness(tmp_path, database)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A harness on a SQLite file, or on a PostgreSQL schema of the test's own: the test
    runs once per store."""
    database = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with open_harness(tmp_path, database) as h:
        yield h


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with open_harness(tmp_path) as h:
        yield h


@pytest.fixture
def queue(harness: Harness) -> Iterator[wizd.SyncQueue]:
    """A blocking client on the harness's database (this test process is 'another process')."""
    with wizd.connect_sync(str(harness.db)) as q:
        yield q


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (unix socket paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wz", dir="/tmp") as name:
        yield Path(name)
