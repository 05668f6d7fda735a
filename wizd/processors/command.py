"""Command processors: an agent that is a CLI program, run as a subprocess per job.

The payload JSON goes to stdin; stdout is the result (JSON if it parses, else text), at
most `output_limit` bytes; each stderr line becomes a job log line, cut to
`stderr_line_limit` bytes, at most `stderr_lines_limit` lines and `stderr_bytes_limit` bytes
per run (output.py). Never a shell. The program gets a minimal environment (env.py). It gets
its own process group, so a cancel or timeout (SIGTERM, then SIGKILL after a grace period)
reaches grandchildren; if the daemon dies, the program dies by its parent-death signal
(launch.py) and its group by the daemon's guard process (guard.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from wizd.agent import JobContext
from wizd.errors import ConfigError, WizdError
from wizd.processors.env import base_environment, job_environment
from wizd.processors.guard import ProcessGuard
from wizd.processors.launch import ProgramError, check_cwd, find_program, launch_argv
from wizd.processors.output import LineSplitter, LogBudget

STDERR_TAIL_LINES = 20


class CommandFailed(WizdError):
    """The command exited non-zero, could not start, or wrote more than it may."""


class CommandProcessor:
    """Runs `command` for each job. Instances are async callables taking a JobContext.

    `environ` is the daemon's environment (default os.environ, read once, here): only its
    basic variables and those named in `inherit_env` reach the program, plus `env`. The
    `guard` (shared by a daemon's processors) kills the program's process group if the
    daemon dies (guard.py)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        inherit_env: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        cwd: str | None = None,
        output_limit: int = 1024 * 1024,
        stderr_line_limit: int = 8192,
        stderr_lines_limit: int = 1000,
        stderr_bytes_limit: int = 1024 * 1024,
        kill_grace: float = 5.0,
        guard: ProcessGuard | None = None,
    ) -> None:
        if not command:
            raise WizdError("command: must name a program")
        self.command = list(command)
        # Absolute now: a daemonizing daemon changes directory to / after loading.
        self.cwd = os.path.abspath(cwd) if cwd is not None else None
        self.env = base_environment(
            os.environ if environ is None else environ, inherit_env, env or {}
        )
        self.output_limit = output_limit
        self.stderr_line_limit = stderr_line_limit
        self.stderr_lines_limit = stderr_lines_limit
        self.stderr_bytes_limit = stderr_bytes_limit
        self.kill_grace = kill_grace
        self.guard = guard or ProcessGuard()

    def program(self) -> str:
        """The absolute path of the program to run, or ProgramError naming what is wrong
        (a bad `cwd` first: the program may be relative to it)."""
        problem = check_cwd(self.cwd)
        if problem:
            raise ProgramError(problem)
        return find_program(self.command[0], self.cwd, self.env.get("PATH"))

    def check(self, where: str) -> None:
        """Raise ConfigError naming `where` unless the program and cwd are usable now."""
        try:
            self.program()
        except ProgramError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    async def __call__(self, ctx: JobContext) -> Any:
        job = ctx.job
        env = job_environment(self.env, job)
        try:
            path = self.program()
        except ProgramError as exc:
            raise CommandFailed(f"cannot start: {exc}") from None
        try:
            process = await anyio.open_process(
                launch_argv(path, self.command, env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandFailed(f"cannot start {self.command[0]!r}: {exc}") from None
        stdout = bytearray()
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        budget = LogBudget(self.stderr_lines_limit, self.stderr_bytes_limit)
        overflow = False
        try:
            self.guard.watch(process.pid)
            async with anyio.create_task_group() as tg:

                async def feed() -> None:
                    assert process.stdin is not None
                    data = json.dumps(job.payload).encode()
                    try:
                        await process.stdin.send(data)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # the program does not read stdin; that is its choice
                    finally:
                        await process.stdin.aclose()

                async def read_stdout() -> None:
                    nonlocal overflow
                    assert process.stdout is not None
                    async for chunk in process.stdout:
                        if len(stdout) + len(chunk) > self.output_limit:
                            overflow = True
                            await _terminate(process, self.kill_grace)
                            return
                        stdout.extend(chunk)

                async def read_stderr() -> None:
                    assert process.stderr is not None
                    lines = LineSplitter(self.stderr_line_limit)

                    async def take(line: str) -> None:
                        tail.append(line)
                        if budget.admit(line):
                            await ctx.log(line)

                    async for chunk in process.stderr:
                        for line in lines.feed(chunk):
                            await take(line)
                    last = lines.close()
                    if last is not None:
                        await take(last)

                tg.start_soon(feed)
                tg.start_soon(read_stdout)
                tg.start_soon(read_stderr)
                await process.wait()
                # A grandchild still holding the pipes open would keep the readers waiting.
                _killpg(process.pid, signal.SIGKILL)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _terminate(process, 0.0 if ctx.force_kill else self.kill_grace)
            raise
        finally:
            # The group may outlive its leader (a grandchild holding on); it goes too.
            _killpg(process.pid, signal.SIGKILL)
            self.guard.forget(process.pid)
        dropped = budget.summary()
        if dropped:
            await ctx.log(dropped)
        if overflow:
            raise CommandFailed(
                f"output exceeded the limit of {self.output_limit} bytes; the command was stopped"
            )
        if process.returncode != 0:
            detail = "\n".join(tail) or "(no stderr)"
            raise CommandFailed(f"exit code {process.returncode}: {detail}")
        text = stdout.decode(errors="replace")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
            return text.rstrip("\n")


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _terminate(process: anyio.abc.Process, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it if the leader has not exited in `grace`."""
    if process.returncode is not None or grace <= 0:
        _killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return
    _killpg(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        return
    _killpg(process.pid, signal.SIGKILL)
    await process.wait()
