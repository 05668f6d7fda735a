"""What the operator types that the command line used to mishandle: each refusal is one line
on stderr with a non-zero exit and writes nothing; and the output fixes of issue 20 (jobs at
80 columns, monitor into a pipe, logs -f's exit code, the registry's retention)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from rich.console import Console

import wizd
import wizd.cli.render as render
from tests.cli_runner import Ran, cli_db, invoke, wizd_cmd
from tests.conftest import FakeClock
from wizd.store import Finish

db = cli_db
AGENT = "researcher"
WIZD = Path(sys.executable).with_name("wizd")
LONG_ERROR = "ValueError: the upstream API answered 503 Service Unavailable after 3 retries"


def refused(ran: Ran, code: int | None = None) -> str:
    assert ran.code != 0, str(ran)
    assert ran.error is None, str(ran)
    if code is not None:
        assert ran.code == code, str(ran)
    assert "Traceback" not in ran.err
    assert len(ran.err.strip().splitlines()) == 1, str(ran)
    return ran.err.strip()


def job_count(db: str) -> int:
    with wizd.connect_sync(db) as q:
        return sum(q.counts().values())


def finished(db: str, outcome: str, error: str | None = None, queue: str = AGENT) -> int:
    async def run() -> int:
        async with wizd.connect(db) as q:
            job = await q.enqueue("research", {}, queue=queue, attempts=1)
            (claimed,) = await q.store.claim(queue, "worker-abcdef-123456", 1)
            await q.store.finish(
                [Finish(job.id, "worker-abcdef-123456", claimed.attempt, outcome, error=error)]
            )
            return job.id

    return anyio.run(run)


def test_cleanup_negative_days_names_the_unit(db: str) -> None:
    line = refused(wizd_cmd(db, "cleanup", "-d", "-5"))
    assert line == (
        "wizd: days: '-5' is negative; a duration is 0 or more: "
        "use 30s, 10m, 2h, 7d or a plain number of days"
    )
    assert refused(wizd_cmd(db, "cleanup", "-d", "x")).endswith("a plain number of days")
    assert refused(wizd_cmd(db, "jobs", "--since", "x")).endswith("a plain number of seconds")


def test_a_duration_past_a_century_is_refused(db: str) -> None:
    line = refused(wizd_cmd(db, "jobs", "--since", "99999999999999999999999w"))
    assert line == "wizd: since: '99999999999999999999999w' is longer than 100 years"


@pytest.mark.parametrize(
    "args", [["info", "-1"], ["logs", "-7"], ["schedule", "rm", "-5"], ["cancel", "3", "-2"]]
)
def test_a_negative_id_is_not_called_an_unknown_option(db: str, args: list[str]) -> None:
    line = refused(wizd_cmd(db, *args), code=2)
    assert "No such option" not in line
    assert "is not an id: job and schedule ids are positive integers" in line


def test_a_real_unknown_option_is_still_named(db: str) -> None:
    ran = wizd_cmd(db, "info", "--bogus")
    assert ran.code == 2
    assert "No such option '--bogus'" in ran.err


def test_payload_file_not_utf8(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": "\xff"}')
    line = refused(wizd_cmd(db, "create", "-a", AGENT, "-t", "x", "--payload", f"@{bad}"))
    assert line == f"wizd: payload: {bad} is not UTF-8 text (byte 0xff at offset 7)"
    assert job_count(db) == 0


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["create", "-a", AGENT, "-t", "x", "-q", "a\udcffb"], "the value of -q"),
        (["create", "-a", AGENT, "-t", "x", "--tag", "\udcff"], "the value of --tag"),
        (["info", "\udce9"], "argument 4"),
    ],
)
def test_arguments_that_are_not_utf8(db: str, args: list[str], where: str) -> None:
    line = refused(wizd_cmd(db, *args), code=2)
    assert line.startswith(f"wizd: {where}: ")
    assert line.endswith(" is not UTF-8 text")
    assert job_count(db) == 0


def test_non_utf8_argv_through_the_console_script(db: str) -> None:
    argv = [os.fsencode(WIZD), b"--database", db.encode(), b"create", b"-a", b"r", b"-t", b"x"]
    done = subprocess.run(
        [*argv, b"-q", b"caf\xe9"],
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WIZD_")},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == b"wizd: the value of -q: 'caf\\udce9' is not UTF-8 text\n"
    assert job_count(db) == 0


def test_a_cron_expression_that_never_occurs(db: str) -> None:
    args = ["schedule", "add", "-a", AGENT, "-t", "x", "--cron", "0 0 30 2 *"]
    line = refused(wizd_cmd(db, *args))
    assert line == "wizd: cron: '0 0 30 2 *' never occurs: no date matches it"
    with wizd.connect_sync(db) as q:
        assert q.schedules() == []


@pytest.mark.parametrize("daemonize", [False, True])
def test_pidfile_in_a_missing_folder(db: str, tmp_path: Path, daemonize: bool) -> None:
    pidfile = tmp_path / "missing" / "wizd.pid"
    args = [str(WIZD), "--database", db, "--metrics-port", "0", "--pidfile", str(pidfile)]
    done = subprocess.run(
        args + (["--daemonize"] if daemonize else []),
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WIZD_")},
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"wizd: pidfile: folder {pidfile.parent} of {pidfile} does not exist\n")
    assert not pidfile.parent.exists()


def test_sqlite_urls_follow_sqlalchemy(db: str, tmp_path: Path) -> None:
    finished(db, "completed", queue="absolute")
    (tmp_path / "sub").mkdir()
    with wizd.connect_sync(str(tmp_path / "sub" / "rel.db")) as q:
        q.enqueue("x", {}, queue="relative")
    absolute = invoke(["--database", f"sqlite:///{db}", "status", "--json"])  # sqlite:////tmp/…
    assert [row["queue"] for row in json.loads(absolute.out)] == ["absolute"], str(absolute)
    relative = invoke(["--database", "sqlite:///sub/rel.db", "status", "--json"])
    assert [row["queue"] for row in json.loads(relative.out)] == ["relative"], str(relative)
    assert "sqlite:////absolute.db" in invoke(["--help"]).out
    assert "sqlite:////absolute.db" in invoke(["status", "--help"]).out


def test_jobs_at_80_columns_show_the_error_cut_short(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished(db, "failed", LONG_ERROR, queue="researcher-with-a-long-name")
    for width in (80, 100, 120):
        console = Console(width=width, force_terminal=True, color_system=None, highlight=False)
        monkeypatch.setattr(render, "make_console", lambda c=console: c)
        with wizd.connect_sync(db) as q:
            grid = render.jobs_table(q.list())
        with console.capture() as captured:
            console.print(grid)
        lines = captured.get().splitlines()
        assert all(len(line) <= width for line in lines)
        header, _, row = lines[:3]
        assert header.split()[0] == "id"
        assert header.split()[-1] == "error"
        assert row.split()[0] == "1"
        assert "ValueError: the" in row
        assert row.rstrip().endswith("…")


def test_monitor_into_a_pipe_prints_one_snapshot(db: str) -> None:
    finished(db, "completed")
    ran = wizd_cmd(db, "monitor")
    assert ran.code == 0, str(ran)
    assert ran.out.startswith(f"wizd monitor  {db}  ")
    assert "Ctrl-C" not in ran.out
    assert AGENT in ran.out
    assert "completed" in ran.out


@pytest.mark.parametrize(("outcome", "code"), [("completed", 0), ("failed", 1)])
def test_logs_follow_exit_code_says_how_the_job_ended(db: str, outcome: str, code: int) -> None:
    job_id = finished(db, outcome, "boom" if outcome == "failed" else None)
    ran = wizd_cmd(db, "logs", "-f", str(job_id))
    assert ran.code == code, str(ran)
    assert ran.error is None
    assert f"job {job_id} is final" in ran.out
    assert wizd_cmd(db, "logs", str(job_id)).code == 0  # without -f: a listing


async def test_the_registry_forgets_stopped_and_dead_daemons(
    backend_url: str, clock: FakeClock
) -> None:
    async with wizd.connect(backend_url, clock=clock) as q:

        def info(wid: str) -> wizd.WorkerInfo:
            at = wizd.model.utc(clock())
            assert at is not None
            return wizd.WorkerInfo(wid, "h", 1, (AGENT,), 1, "x", at, at)

        for wid in ("old-stopped", "old-dead"):
            await q.store.register_worker(info(wid))
        await q.store.worker_stopped("old-stopped")
        clock.advance(7200)
        for wid in ("stopped", "dead", "live"):
            await q.store.register_worker(info(wid))
        await q.store.worker_stopped("stopped")
        clock.advance(600)
        await q.store.heartbeat("live", 0, [])
        await q.store.prune_workers(3600)
        assert sorted(w.id for w in await q.workers()) == ["dead", "live", "stopped"]


def test_wizd_agents_hides_daemons_past_worker_retention(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def register() -> None:
        for wid, age in (("recent", 60.0), ("old", 7200.0)):
            async with wizd.connect(db, clock=lambda a=age: time.time() - a) as q:
                at = wizd.model.utc(time.time() - age)
                assert at is not None
                await q.store.register_worker(
                    wizd.WorkerInfo(wid, "h", 1, (AGENT,), 1, "x", at, at)
                )

    anyio.run(register)
    shown = json.loads(wizd_cmd(db, "agents", "--json").out)
    assert sorted(w["id"] for w in shown) == ["old", "recent"]  # default: a day
    monkeypatch.setenv("WIZD_WORKER_RETENTION", "3600")
    shown = json.loads(wizd_cmd(db, "agents", "--json").out)
    assert [(w["id"], w["state"]) for w in shown] == [("recent", "live")]


@pytest.mark.parametrize(
    "ref", ["²", "١٢", "-3", "1.5", "9223372036854775808", "99999999999999999999"]
)
def test_job_id_options_take_ascii_digits_only(db: str, ref: str) -> None:
    line = refused(wizd_cmd(db, "create", "-a", AGENT, "-t", "x", "--depends-on", ref))
    assert line == f"wizd: depends_on: must be a job id (a positive integer), got {ref!r}"
    assert job_count(db) == 0


def test_payload_nested_too_deeply_to_read(db: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    line = refused(wizd_cmd(db, "create", "-a", AGENT, "-t", "x", "--payload", f'{{"a": {deep}}}'))
    assert line == "wizd: payload: is nested too deeply to read"
    assert job_count(db) == 0


def test_an_unexpected_error_is_one_line_with_exit_70(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wizd.cli.ops

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something wizd did not expect")

    monkeypatch.setattr(wizd.cli.ops, "parse_statuses", broken)
    ran = invoke(["--database", db, "jobs"], env={"WIZD_DEBUG": None})
    assert refused(ran, code=70) == (
        "wizd: unexpected RuntimeError: something wizd did not expect (a bug in wizd; run "
        "again with WIZD_DEBUG=1 to see where)"
    )
    ran = invoke(["--database", db, "jobs"])  # WIZD_DEBUG=1: the traceback, for a bug report
    assert isinstance(ran.error, RuntimeError)
