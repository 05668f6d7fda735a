"""Command processors: an agent that is a CLI program, run as a subprocess per job.

The payload JSON goes to stdin; stdout is the result (JSON if it parses, else text); each
stderr line becomes a job log line. Never a shell. The process gets its own process group,
so a cancel or timeout (SIGTERM, then SIGKILL after a grace period) reaches grandchildren.
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
from wizd.errors import WizdError

STDERR_TAIL_LINES = 20


class CommandFailed(WizdError):
    """The command exited non-zero, could not start, or wrote more than it may."""


class CommandProcessor:
    """Runs `command` for each job. Instances are async callables taking a JobContext."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        output_limit: int = 1024 * 1024,
        kill_grace: float = 5.0,
    ) -> None:
        if not command:
            raise WizdError("command: must name a program")
        self.command = list(command)
        self.env = dict(env or {})
        self.cwd = cwd
        self.output_limit = output_limit
        self.kill_grace = kill_grace

    async def __call__(self, ctx: JobContext) -> Any:
        job = ctx.job
        env = {
            **os.environ,
            **self.env,
            "WIZD_JOB_ID": str(job.id),
            "WIZD_QUEUE": job.queue,
            "WIZD_JOB_NAME": job.name,
            "WIZD_ATTEMPT": str(job.attempt),
        }
        try:
            process = await anyio.open_process(
                self.command,
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
        overflow = False
        try:
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
                    buffer = b""
                    async for chunk in process.stderr:
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for raw in lines:
                            line = raw.decode(errors="replace").rstrip("\r")
                            tail.append(line)
                            await ctx.log(line)
                    if buffer:
                        line = buffer.decode(errors="replace")
                        tail.append(line)
                        await ctx.log(line)

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
        except ValueError:
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
