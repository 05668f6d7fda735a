"""How a command processor's program is found, checked and started so that it dies with
the daemon.

On Linux every program gets a parent-death signal (SIGKILL): if the daemon dies, even by
SIGKILL, the kernel kills the program, so a job that recovery starts again never runs twice
at once. `prctl(PR_SET_PDEATHSIG)` must run in the child between fork and exec; Python's
`preexec_fn` would do that but is documented as unsafe in a process with threads (the daemon
has some), so the daemon starts a tiny exec wrapper instead: `python -I -S -c …` sets the
signal, checks that the daemon is still its parent (it may have died before), restores the
signal dispositions Python changed, and replaces itself by the program (same pid, so the
program leads the process group the daemon signals). That costs about 10 ms per run.

The signal goes to the program itself; its own children (a shell script's commands) do not
inherit it. The daemon's guard process (guard.py) kills them, the whole process group; the
signal still matters when the guard dies with the daemon (a kill of both, the OOM killer)
or the daemon dies before it has told the guard of a new group.

The kernel sends the signal when the *thread* that forked the program ends: anyio's
open_process forks in the event loop's thread, which lives as long as the daemon.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

PDEATHSIG = sys.platform == "linux"

# argv after -c: daemon pid, "-" to drop a coerced LC_CTYPE (PEP 538), path, argv0, args...
_WRAPPER = """\
import ctypes, os, signal, sys
ppid, ctype, path, *argv = sys.argv[1:]
try:
    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
except (OSError, AttributeError) as exc:
    sys.stderr.write(f"wizd: cannot set the parent-death signal: {exc}\\n")
    os._exit(127)
if os.getppid() != int(ppid):
    os.kill(os.getpid(), signal.SIGKILL)
for sig in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(sig, signal.SIG_DFL)
if ctype == "-":
    os.environ.pop("LC_CTYPE", None)
try:
    os.execv(path, argv)
except OSError as exc:
    sys.stderr.write(f"wizd: cannot start {path!r}: {exc.strerror}\\n")
    os._exit(127)
"""


def launch_argv(path: str, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The argv that runs `command` (its program found at `path`) with a parent-death
    signal where the platform has one."""
    if not PDEATHSIG:
        return [path, *command[1:]]
    ctype = "keep" if "LC_CTYPE" in env else "-"
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), ctype, path, *command]


def check_cwd(cwd: str | None) -> str | None:
    """What is wrong with `cwd` as a working directory, or None."""
    if cwd is None:
        return None
    if not os.path.exists(cwd):
        return f"cwd {cwd!r} does not exist"
    if not os.path.isdir(cwd):
        return f"cwd {cwd!r} is not a directory"
    if not os.access(cwd, os.X_OK):
        return f"cwd {cwd!r} cannot be entered (no search permission)"
    return None


def find_program(program: str, cwd: str | None, path_var: str | None) -> str:
    """The absolute path of `program` (a path, relative to `cwd`, if it has a slash, else
    looked up in `path_var` as exec does), or raises ProgramError saying what is wrong."""
    base = cwd or os.getcwd()
    if "/" in program:
        candidate = os.path.join(base, program)
        problem = _not_runnable(candidate)
        if problem:
            raise ProgramError(f"program {program!r} {problem}")
        return os.path.abspath(candidate)
    found_unusable = None
    for folder in (path_var if path_var is not None else os.defpath).split(os.pathsep):
        candidate = os.path.join(base, folder or ".", program)
        problem = _not_runnable(candidate)
        if problem is None:
            return os.path.abspath(candidate)
        if found_unusable is None and os.path.lexists(candidate):
            found_unusable = f"program {program!r} in {os.path.dirname(candidate)} {problem}"
    raise ProgramError(found_unusable or f"program {program!r} not found on PATH {path_var!r}")


def _not_runnable(path: str) -> str | None:
    if not os.path.exists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory"
    if not os.access(path, os.X_OK):
        return "is not executable"
    return None


class ProgramError(Exception):
    """A command's program or working directory cannot be used (the message says why)."""
