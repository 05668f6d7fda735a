"""`wizd monitor` in a pseudo-terminal: the real command draws its full-screen view, and
what it drew (ANSI codes stripped) shows every queue with its counts."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wizd
from tests.acceptance.conftest import wait_until
from tests.test_watching import leases_at
from wizd.cli.monitor import RECENT_JOBS

WIZD = Path(sys.executable).with_name("wizd")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>78]")
DEADLINE = 20.0


class Terminal:
    """`wizd ARGS` with a 50x160 pseudo-terminal as stdin, stdout and stderr."""

    def __init__(self, db: Path | str, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
        env.update(TERM="xterm-256color", WIZD_DATABASE=str(db))
        for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [str(WIZD), *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def read_until(self, done: str | None = None) -> str:
        """Read what was drawn until `done` appears, or (done=None) until the command ends."""
        deadline = time.monotonic() + DEADLINE
        while done is None or done not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"monitor drew no {done or 'end'} in {DEADLINE}s:\n{self.text[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the command closed the terminal
                chunk = b""
            if not chunk:
                if done is None:
                    break
                pytest.fail(f"monitor ended before drawing {done}:\n{self.text[-2000:]}")
            self.raw += chunk
        return self.text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def cli_monitor_db(tmp_path: Path) -> Path:
    """Two queues: researcher with 3 pending and 1 cancelled, writer with 2 pending (paused)."""
    db = tmp_path / "wizd.db"
    with wizd.connect_sync(str(db)) as q:
        jobs = q.enqueue_many([{"name": "search", "queue": "researcher"}] * 4)
        q.cancel(jobs[0])
        q.enqueue_many([{"name": "draft", "queue": "writer"}] * 2)
        q.pause("writer")
    return db


@pytest.fixture
def cli_terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def row(text: str, queue: str) -> list[str]:
    """The cells of the last drawn row of the counts table for `queue`."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith(queue + " ")]
    counts = [line for line in rows if "pending" in line]
    assert counts, f"no counts row for {queue} in:\n{text[-2000:]}"
    return re.split(r"\s{2,}", counts[-1])


def test_monitor_draws_queues_with_counts_and_stops_after_iterations(
    cli_monitor_db: Path, cli_terminals: list[Terminal]
) -> None:
    term = Terminal(cli_monitor_db, "monitor", "--iterations", "3", "--interval", "0.2")
    cli_terminals.append(term)
    text = term.read_until()
    assert term.proc.wait(DEADLINE) == 0
    assert "\x1b[?1049h" in term.raw.decode()  # the alternate (full) screen
    assert text.count("wizd monitor") == 3  # one frame per iteration
    header = next(line.split() for line in text.splitlines() if "oldest pending" in line)
    assert header == ["queue", "state", "live", "workers", "oldest", "pending", "total", "jobs"]
    # queue, state, live workers, oldest pending, total, jobs
    researcher = row(text, "researcher")
    assert researcher[:3] == ["researcher", "active", "0"]
    assert researcher[4:] == ["4", "○ pending 3, ⊘ cancelled 1"]
    writer = row(text, "writer")
    assert writer[:3] == ["writer", "paused", "0"]
    assert writer[4:] == ["2", "○ pending 2"]
    assert "completed in the last minute" in text
    assert "recent events" in text
    assert "researcher/search" in text


def test_monitor_ends_with_exit_0_on_ctrl_c(
    cli_monitor_db: Path, cli_terminals: list[Terminal]
) -> None:
    term = Terminal(cli_monitor_db, "monitor", "--interval", "0.2")
    cli_terminals.append(term)
    term.read_until("recent events")
    term.proc.send_signal(signal.SIGINT)
    term.read_until()
    assert term.proc.wait(DEADLINE) == 0
    assert "Traceback" not in term.text
    assert "aborted" not in term.text


@pytest.mark.parametrize("poll", [False, True], ids=["watching", "polling"])
def test_monitor_shows_an_event_another_process_commits(
    backend_url: str, cli_terminals: list[Terminal], poll: bool
) -> None:
    """Watching, the recent events come from the watch: a log line of a job older than the
    RECENT_JOBS most recently changed, which reading their histories would not find. With
    --poll it says so once and reads those histories again at every refresh (a line of the
    newest job shows), taking no lease."""
    with wizd.connect_sync(backend_url) as q:
        old = q.enqueue("search", queue="researcher")
        newer = q.enqueue_many([{"name": "draft", "queue": "writer"}] * RECENT_JOBS)
    job = newer[-1] if poll else old
    args = ["monitor", "--iterations", "200", "--interval", "0.1", *(["--poll"] * poll)]
    term = Terminal(backend_url, *args)
    cli_terminals.append(term)
    term.read_until("polling" if poll else "watching")
    if not poll:
        wait_until(lambda: leases_at(backend_url) == 1, DEADLINE, "the monitor's lease")
    with wizd.connect_sync(backend_url) as q:
        q.log(job, "a line from another process")
    term.read_until("a line from another process")
    term.proc.send_signal(signal.SIGINT)
    text = term.read_until()
    assert term.proc.wait(DEADLINE) == 0
    assert text.count("instead of watching it") == poll
    if poll:
        assert leases_at(backend_url) == 0  # it never took a lease
