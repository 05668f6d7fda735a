"""Runs the `wizd` command in this process, as the console script would: through
wizd.cli.main, so every refusal goes through the same one-line error handling."""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import wizd
from wizd.cli import main


@dataclass
class Ran:
    args: list[str]
    code: int
    out: str
    err: str
    error: BaseException | None  # an exception that escaped main(): always a bug

    def __str__(self) -> str:
        tb = "".join(traceback.format_exception(self.error)) if self.error else ""
        return f"wizd {self.args!r} exited {self.code}\nstdout: {self.out}\nstderr: {self.err}{tb}"


def invoke(args: list[str], env: dict[str, str | None] | None = None) -> Ran:
    """`wizd ARGS` with `env` set (None unsets a variable); stdin empty. WIZD_DEBUG is set,
    so that an unexpected exception (a bug) escapes main() with its traceback."""
    runner = CliRunner()
    env = {"WIZD_DEBUG": "1", **(env or {})}
    error: BaseException | None = None
    code = 0
    with runner.isolation(env=env) as (out, err, _):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            error, code = exc, 1
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return Ran(args, code, stdout, stderr, error)


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new SQLite database in the test's folder, which is the working directory, with no
    WIZD_* variable set (import it as `db = cli_db` to use it as the fixture `db`)."""
    for key in list(os.environ):
        if key.startswith("WIZD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "wizd.db")
    with wizd.connect_sync(path):
        pass
    return path


def wizd_cmd(db: str, *args: str) -> Ran:
    """`wizd --database DB ARGS`."""
    return invoke(["--database", db, *args])
