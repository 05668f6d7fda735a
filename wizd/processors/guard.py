"""The guard: one small process per daemon that kills its commands' process groups when the
daemon dies, however it dies.

A parent-death signal (launch.py) reaches only the program wizd started, not the children it
starts in turn (a script's commands, npx's node). So the daemon starts, on its first command
run, a guard process (`python -I -S -c …`, in its own session so that terminal and stop
signals go past it) and tells it, through a pipe, each command's process group as it starts
("+PGID") and ends ("-PGID"). The guard's only job is to read that pipe. Nothing but the
daemon holds the pipe's write end (Python opens it close-on-exec), so when the daemon exits
(SIGKILL, a crash, the third signal that abandons running jobs) the guard reads end of file,
sends SIGKILL to every group still registered, and exits. After a clean stop no group is
registered and it exits without a signal.

A group is removed only after the daemon has killed what was left of it, so a pgid the
guard holds belongs to a live group or to one that ended in that instant.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

_GUARD = """\
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
groups, pending = set(), b""
while data := os.read(0, 65536):
    *lines, pending = (pending + data).split(b"\\n")
    for line in lines:
        (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""
MARKER = "wizd-guard"  # in the guard's argv, with the daemon's pid: ps shows whose it is


class ProcessGuard:
    """Registers command process groups with the daemon's guard process (started on first
    use, and again if it died). Call from one thread (the event loop's)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()

    def watch(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._groups.discard(pgid)
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Stop the guard (killing the groups still registered); for tests and API users."""
        if self._process is not None:
            assert self._process.stdin is not None
            with contextlib.suppress(OSError):
                self._process.stdin.close()
            self._process.wait()
            self._process = None

    def _send(self, line: str) -> None:
        if self._process is None or self._process.poll() is not None:
            self._start()
            line = "".join(f"+{pgid}\n" for pgid in self._groups)
        assert self._process is not None
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(line.encode())
            self._process.stdin.flush()
        except OSError:  # the guard died; the next call starts another
            self._process = None

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, MARKER, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
