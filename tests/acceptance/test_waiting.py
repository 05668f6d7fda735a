"""Awaiting jobs that a real daemon runs in another process, on SQLite and PostgreSQL:
Queue.wait / result across processes (completed, failed, cancelled by another process),
`wizd wait` and its exit codes, `wizd create --wait`.

The client's safety-net re-read is pushed out to an hour in this process, so a wait that
returns was woken by the store (the change watcher, NOTIFY), not by polling.
"""

from __future__ import annotations

import json

import anyio
import anyio.to_thread
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Harness
from tests.test_waiting import sleeping
from wizd import waiting
from wizd.model import JobStatus

pytestmark = pytest.mark.slow


@pytest.fixture
def h(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "SAFETY_NET", 3600.0)


def cli(h: Harness, *args: str) -> tuple[int, str, str]:
    done = h.run(*args, "--database", str(h.db))
    return done.returncode, done.stdout, done.stderr


async def test_wait_for_jobs_a_daemon_completes_fails_and_another_process_cancels(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = h.start().ready()
    release = h.dir / "release"
    async with wizd.connect(str(h.db)) as q:
        asleep = sleeping(q, monkeypatch)
        held = await q.enqueue("hold", {"release": str(release)}, queue=AGENT)
        stuck = await q.enqueue("hold", {"release": str(h.dir / "never")}, queue=AGENT)
        flaky = await q.enqueue("flaky", {"message": "no answer"}, queue=AGENT, attempts=1)
        got: list[wizd.Job] = []
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    got.append(await q.wait(held))

                tg.start_soon(wait)
                await asleep()  # it read the job running or pending, and sleeps
                release.touch()
            assert got[0].status is JobStatus.COMPLETED
            assert got[0].result["pid"] == daemon.proc.pid

            with pytest.raises(wizd.JobFailed) as info:
                await q.result(flaky)
            assert info.value.job.status is JobStatus.FAILED
            assert "no answer" in str(info.value)

            async with anyio.create_task_group() as tg:

                async def result() -> None:
                    with pytest.raises(wizd.JobFailed, match=f"job {stuck.id} cancelled"):
                        await q.result(stuck)

                tg.start_soon(result)
                await asleep()
                code, _, err = await anyio.to_thread.run_sync(cli, h, "cancel", str(stuck.id))
                assert code == 0, err


def test_cli_wait_exit_codes_and_output(h: Harness) -> None:
    h.start().ready()
    with wizd.connect_sync(str(h.db)) as q:
        ok = q.enqueue("quick", {"dir": str(h.dir)}, queue=AGENT)
        bad = q.enqueue("flaky", {"message": "no answer"}, queue=AGENT, attempts=1)
        idle = q.enqueue("quick", {"dir": str(h.dir)}, queue="nobody")

    code, out, err = cli(h, "wait", str(ok.id), "--timeout", "1m")
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"job {ok.id} ✓ completed"]

    code, out, err = cli(h, "wait", str(ok.id), str(bad.id), "--timeout", "1m")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"job {ok.id} ✓ completed"
    assert lines[1].startswith(f"job {bad.id} ")
    assert "failed" in lines[1]
    assert "no answer" in lines[1]

    code, out, err = cli(h, "wait", str(ok.id), str(idle.id), "--timeout", "0.2s", "--json")
    assert code == 1
    assert [(j["id"], j["status"]) for j in json.loads(out)] == [
        (ok.id, "completed"),
        (idle.id, "pending"),
    ]
    assert err == f"wizd: timed out: job {idle.id} is still pending after waiting 0.2s\n"


def test_cli_create_wait_prints_the_result(h: Harness) -> None:
    daemon = h.start().ready()
    payload = json.dumps({"dir": str(h.dir)})
    code, out, err = cli(h, "create", "-a", AGENT, "-t", "quick", "--payload", payload, "--wait")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"pid": daemon.proc.pid}

    failing = json.dumps({"message": "no answer"})
    args = ["create", "-a", AGENT, "-t", "flaky", "--payload", failing, "--attempts", "1"]
    code, out, err = cli(h, *args, "--wait", "--wait-timeout", "1m")
    assert (code, out) == (1, "")
    assert err.startswith("wizd: job ")
    assert "failed: " in err
    assert "no answer" in err


def test_cli_wait_refuses_bad_arguments(h: Harness) -> None:
    with wizd.connect_sync(str(h.db)) as q:
        job = q.enqueue("quick", queue="nobody")
    for args, message in [
        (["abc"], "wizd: id: must be a job id (a positive integer), got 'abc'\n"),
        ([str(job.id), "--timeout", "soon"], "wizd: timeout: 'soon' is not a duration"),
        ([str(job.id + 100)], f"wizd: job {job.id + 100} does not exist\n"),
    ]:
        code, out, err = cli(h, "wait", *args)
        assert (code, out) == (1, "")
        assert err.startswith(message), err
        assert len(err.splitlines()) == 1
    code, _, err = cli(h, "create", "-a", AGENT, "-t", "quick", "--wait-timeout", "1m")
    assert code == 2
    assert "--wait-timeout needs --wait" in err
