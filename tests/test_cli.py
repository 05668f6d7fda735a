"""Acceptance tests of the operator's commands: the real `wizd` console script as a
subprocess on a real SQLite file in tmp_path, the database set up and checked through the
client API from this (another) process. Every wait has a deadline; nothing sleeps to sync."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import pytest

import wizd
from wizd.model import WorkerInfo
from wizd.store import Finish
from wizd.store.base import Outcome

WIZD = Path(sys.executable).with_name("wizd")
AGENT = "researcher"
PAST = 40 * 86400.0  # a clock this far back makes old completions and stale heartbeats
DEADLINE = 15.0


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without WIZD_* settings or colour overrides: the CLI sees a pipe."""
    drop = ("FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "COLUMNS", "TTY_COMPATIBLE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_") and k not in drop}
    env.update(extra)
    return env


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"wizd {' '.join(self.args)} exited {self.code}: {self.err}"
        return json.loads(self.out)


@dataclass
class Cli:
    """Runs `wizd` against one database; WIZD_DATABASE names it unless told otherwise."""

    dir: Path
    db: Path

    def env(self, use_env_db: bool = True) -> dict[str, str]:
        return clean_env(WIZD_DATABASE=str(self.db)) if use_env_db else clean_env()

    async def run(self, command: str, use_env_db: bool = True) -> Result:
        """`wizd COMMAND`, the command split as a shell would."""
        args = tuple(shlex.split(command))
        done = await anyio.run_process(
            [str(WIZD), *args], check=False, env=self.env(use_env_db), cwd=self.dir
        )
        return Result(args, done.returncode, done.stdout.decode(), done.stderr.decode())

    async def ok(self, command: str) -> str:
        result = await self.run(command)
        assert result.code == 0, f"wizd {command} exited {result.code}: {result.err}"
        assert "\x1b[" not in result.out, "ANSI codes in piped output"
        return result.out

    async def json(self, command: str) -> Any:
        return (await self.run(command + " --json")).json()

    async def all(self, *commands: str) -> list[Result]:
        """Run several commands at once (they only read, or each must fail alone)."""
        results: list[Result | None] = [None] * len(commands)

        async def one(i: int, command: str) -> None:
            results[i] = await self.run(command)

        async with anyio.create_task_group() as tg:
            for i, args in enumerate(commands):
                tg.start_soon(one, i, args)
        return [r for r in results if r is not None]

    @asynccontextmanager
    async def connect(self, clock: Callable[[], float] = time.time) -> AsyncIterator[wizd.Queue]:
        async with wizd.connect(str(self.db), clock=clock) as q:
            yield q


def past() -> float:
    return time.time() - PAST


async def run_once(
    q: wizd.Queue, job: wizd.Job, outcome: Outcome | None = "completed", **finish: Any
) -> wizd.Job:
    """Claim `job` (the queue's next) as a fake worker; end the run with `outcome` unless None."""
    (claimed,) = await q.store.claim(job.queue, "test-worker", 1)
    assert claimed.id == job.id
    if outcome is not None:
        await q.store.finish([Finish(job.id, "test-worker", claimed.attempt, outcome, **finish)])
    return await q.get(job.id)


@pytest.fixture
def cli_wizd(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "wizd.db")


@pytest.fixture
def cli_processor(tmp_path: Path) -> Path:
    """A TOML config whose agent runs a command that records its pid, then sleeps. On
    SIGTERM it leaves a `.term` file beside the pid file and exits, or with payload
    ignore_term it ignores SIGTERM: then only SIGKILL, after a 20 s grace, stops it."""
    script = (
        "import json, os, signal, sys, time\n"
        "p = json.load(sys.stdin)\n"
        "def term(*_):\n"
        "    open(p['pidfile'] + '.term', 'w').close()\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN if p.get('ignore_term') else term)\n"
        "open(p['pidfile'] + '.tmp', 'w').write(str(os.getpid()))\n"
        "os.replace(p['pidfile'] + '.tmp', p['pidfile'])\n"
        "time.sleep(300)\n"
    )
    config = tmp_path / "wizd.toml"
    config.write_text(
        f"[agents.{AGENT}.processors.tool]\n"
        f"command = {json.dumps([sys.executable, '-c', script])}\n"
        "kill_grace = 20\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def cli_daemon_log(tmp_path: Path) -> Iterator[BinaryIO]:
    with (tmp_path / "daemon.log").open("wb") as log:
        yield log


async def wait_for(
    condition: Callable[[], Any], what: str, log: Path | None = None, timeout: float = DEADLINE
) -> Any:
    """Poll an async or sync condition until it is truthy; at the deadline fail naming
    `what`, with the end of the daemon's `log`."""
    with anyio.move_on_after(timeout):
        while True:
            value = condition()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(0.05)
    tail = await anyio.Path(log).read_text() if log else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail[-3000:]}")


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# -- create, list, inspect ---------------------------------------------------------------


async def test_create_then_list_inspect_and_peek(cli_wizd: Cli, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"url": "https://example.org", "depth": 2}', encoding="utf-8")
    first = await cli_wizd.ok(
        f"create -a {AGENT} -t search -q 'heat pumps' --priority high --tag demo --tag x"
    )
    first_id = int(first.strip())
    second = await cli_wizd.json(
        f"create -a {AGENT} -t fetch --payload @{shlex.quote(str(payload))} "
        f"--depends-on {first_id} --delay 30s --ttl 10m --attempts 5"
    )
    third = await cli_wizd.json(
        f"""create -a writer -t draft --payload '{{"n": 1}}' --at 2030-12-01T09:00Z """
        f"--parent {first_id}"
    )

    assert second["payload"] == {"url": "https://example.org", "depth": 2}
    assert second["status"] == "waiting"
    assert second["depends_on"] == [first_id]
    assert second["max_attempts"] == 5
    assert second["expires_at"] is not None
    assert third["run_at"].startswith("2030-12-01T09:00:00")
    assert third["status"] == "delayed"
    assert third["parent_id"] == first_id
    assert third["queue"] == "writer"
    assert second["run_at"] > second["created_at"]

    listed, pending, info, peek, human, details = await cli_wizd.all(
        "jobs --json",
        f"jobs -s queued -s delayed -a {AGENT} -n search --tag demo --since 1h --sort id "
        "--order asc --limit 5 --json",
        f"info {second['id']} --json",
        f"peek {AGENT} -n 5 --json",
        "jobs --sort id --order asc",
        f"info {first_id}",
    )
    assert [j["id"] for j in listed.json()] == [third["id"], second["id"], first_id]
    (search,) = pending.json()
    assert search["id"] == first_id
    assert search["payload"] == {"query": "heat pumps"}
    assert search["priority"] == 4
    assert search["tags"] == ["demo", "x"]
    doc = info.json()
    keys = ["job", "timings", "dependencies", "dependents", "parent", "children", "steps"]
    assert list(doc) == keys
    assert doc["steps"] == []
    assert doc["job"]["id"] == second["id"]
    assert doc["parent"] is None
    assert [d["id"] for d in doc["dependencies"]] == [first_id]
    assert doc["dependencies"][0]["status"] == "pending"
    assert doc["timings"]["wait_seconds"] >= 0
    assert doc["timings"]["run_seconds"] is None
    assert [j["id"] for j in peek.json()] == [first_id]

    assert human.code == 0
    assert "\x1b[" not in human.out
    rows = human.out.splitlines()
    assert rows[0].split()[:4] == ["id", "queue", "name", "status"]
    assert rows[1].split()[:5] == [str(first_id), AGENT, "search", "○", "pending"]
    assert "⧗ waiting" in rows[2]
    assert "◷ delayed" in rows[3]
    assert "writer" in rows[3]
    assert details.code == 0
    assert "\x1b[" not in details.out
    linked = [f"#{second['id']} fetch ⧗ waiting", f"#{third['id']} draft ◷ delayed"]
    for expected in ["max_attempts", "0 of 3", "run time", "dependents", "last error", *linked]:
        assert expected in details.out, expected


async def test_bad_input_is_refused_with_one_line_and_changes_nothing(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q:
        job = await q.enqueue("search", {"query": "x"}, queue=AGENT)
        before = (await q.counts_by_queue(), await q.events(job), await q.queues())
    j, create = job.id, f"create -a {AGENT} -t search"
    refused = {  # command: (exit code, what its error says)
        f"{create} --payload '[1, 2]'": (1, "payload: must be a JSON object, got list"),
        f"{create} --delay 10x": (1, "delay: '10x' is not a duration"),
        f"{create} --at 2026-12-01T09:00": (1, "at: '2026-12-01T09:00' needs a time zone"),
        "create -t s": (2, "Missing option '-a' / '--agent'"),
        "jobs -s bogus": (1, "status: unknown status 'bogus'"),
        "info 999": (1, "job 999 does not exist"),
        f"cancel {j} 999": (1, "job 999 does not exist"),
        f"retry {j}": (1, f"job {j} is pending: cannot retry it"),
        "retry": (2, "give job ids, or --failed -a AGENT"),
        "job create --prompt p --subtask a": (2, "add --distributed"),
    }
    results = await cli_wizd.all(*refused)
    for result, (code, words) in zip(results, refused.values(), strict=True):
        assert result.code == code, (result.args, result.err)
        assert result.out == "", (result.args, result.out)
        if code == 1:  # ours: one line naming the problem (click's usage errors take three)
            assert result.err.startswith("wizd: "), (result.args, result.err)
            assert result.err.count("\n") == 1, (result.args, result.err)
        assert words in result.err, (result.args, result.err)
    async with cli_wizd.connect() as q:
        after = (await q.counts_by_queue(), await q.events(job), await q.queues())
    assert after == before


# -- queues, daemons, group-level options --------------------------------------------------


async def test_status_pause_resume_stats_and_agents(cli_wizd: Cli, tmp_path: Path) -> None:
    now = time.time()

    def an_hour_ago() -> float:  # silent past the hung timeout, within worker_retention
        return time.time() - 3600

    async with cli_wizd.connect() as q, cli_wizd.connect(an_hour_ago) as old:
        for _ in range(3):
            await q.enqueue("search", {}, queue=AGENT)
        await run_once(q, await q.enqueue("quick", {}, queue="writer", priority=5))
        await q.enqueue("draft", {}, queue="writer")

        def worker(wid: str, queues: tuple[str, ...], at: float) -> WorkerInfo:
            stamp = wizd.model.utc(at)
            assert stamp is not None
            return WorkerInfo(wid, "host-a", 4242, queues, 3, "0.1.0", stamp, stamp, busy=1)

        await q.store.register_worker(worker("live-1", (AGENT, "writer"), now))
        await q.store.register_worker(worker("stopped-1", (AGENT,), now))
        await q.store.worker_stopped("stopped-1")
        await old.store.register_worker(worker("dead-1", ("writer",), an_hour_ago()))

    assert (await cli_wizd.ok(f"pause {AGENT}")).startswith(f"queue {AGENT} paused")
    status, human = await cli_wizd.all("status --json", "status")
    # without WIZD_DATABASE: the database from a subcommand's --config, from the group's
    # --database, and the subcommand's own --database winning over the group's
    config = tmp_path / "ops.toml"
    config.write_text(f"database = {json.dumps(str(cli_wizd.db))}\n", encoding="utf-8")
    stats = await cli_wizd.run(
        f"stats writer --window 1h --config {shlex.quote(str(config))} --json", use_env_db=False
    )
    db, other = shlex.quote(str(cli_wizd.db)), shlex.quote(str(tmp_path / "other.db"))
    agents = await cli_wizd.run(f"--database {db} agents --json", use_env_db=False)
    rows = {row["queue"]: row for row in status.json()}
    assert set(rows) == {AGENT, "writer"}
    assert rows[AGENT]["counts"]["pending"] == 3
    assert rows[AGENT]["paused"] is True
    assert rows["writer"]["counts"]["completed"] == 1
    assert rows["writer"]["paused"] is False
    assert rows[AGENT]["live_workers"] == 1
    assert rows["writer"]["live_workers"] == 1
    assert rows[AGENT]["oldest_pending_age_seconds"] >= 0
    keys = "queue counts total paused oldest_pending_age_seconds live_workers completed_per_minute"
    assert list(rows[AGENT]) == keys.split()
    states = {w["id"]: w["state"] for w in agents.json()}
    assert states == {"live-1": "live", "stopped-1": "stopped", "dead-1": "dead"}
    doc = stats.json()
    assert doc["queue"] == "writer"
    assert doc["counts"]["completed"] == 1
    assert doc["window_seconds"] == 3600
    assert doc["throughput_per_minute"] > 0
    assert "\x1b[" not in human.out
    line = next(row for row in human.out.splitlines() if row.startswith(AGENT))
    cells = re.split(r"\s{2,}", line)
    assert cells[:3] == [AGENT, "paused", "1"]
    assert cells[4:] == ["3", "○ pending 3"]

    assert (await cli_wizd.ok(f"resume {AGENT}")) == f"queue {AGENT} resumed\n"
    both = await cli_wizd.run(f"--database {other} status --database {db} --json", use_env_db=False)
    assert {row["queue"]: row["paused"] for row in both.json()} == {AGENT: False, "writer": False}


async def test_cancel_retry_and_delete(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q:
        a, b, c = [await q.enqueue("search", {"n": i}, queue=AGENT) for i in range(3)]
        failed = [
            await run_once(
                q,
                await q.enqueue("flaky", {}, queue="writer", priority=5),
                "failed",
                error="boom",
                retry=False,
            )
            for _ in range(2)
        ]
    cancelled = await cli_wizd.json(f"cancel {a.id} {b.id}")
    assert [(j["id"], j["status"]) for j in cancelled] == [(a.id, "cancelled"), (b.id, "cancelled")]
    assert await cli_wizd.ok(f"retry {a.id}") == f"job {a.id} retried: ○ pending\n"
    again = await cli_wizd.json("retry --failed -a writer")
    assert sorted(j["id"] for j in again) == sorted(j.id for j in failed)
    assert all(j["status"] == "pending" and j["attempt"] == 0 for j in again)
    assert await cli_wizd.json(f"delete {b.id} {c.id}") == {"deleted": [b.id, c.id]}
    async with cli_wizd.connect() as q:
        assert (await q.get(a.id)).status == "pending"
        with pytest.raises(wizd.JobNotFound):
            await q.get(b.id)
        counts = await q.counts(AGENT)
        assert counts["pending"] == 1
        assert counts["cancelled"] == 0


async def test_logs_and_follow_until_final(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q:
        job = await q.enqueue("search", {}, queue=AGENT)
        await q.log(job, "a [bracketed] line from the processor")
        human, as_json = await cli_wizd.all(f"logs {job.id}", f"logs {job.id} --json")
        assert human.code == 0
        assert "enqueued ○ pending" in human.out
        assert "log a [bracketed] line from the processor" in human.out
        assert [e["kind"] for e in as_json.json()] == ["enqueued", "log"]
        keys = "id job_id at kind status attempt worker_id message"
        assert list(as_json.json()[0]) == keys.split()

        async with await anyio.open_process(
            [str(WIZD), "logs", str(job.id), "-f"], env=cli_wizd.env(), stderr=subprocess.STDOUT
        ) as follow:
            assert follow.stdout is not None
            seen = b""
            with anyio.fail_after(DEADLINE):
                while b"enqueued" not in seen:  # it has started following
                    seen += await follow.stdout.receive()
            (claimed,) = await q.store.claim(AGENT, "test-worker", 1)
            await q.log(job, "working on it")
            await q.store.finish([Finish(job.id, "test-worker", claimed.attempt, "completed")])
            with anyio.fail_after(DEADLINE):
                async for chunk in follow.stdout:
                    seen += chunk
                code = await follow.wait()
    text = seen.decode()
    assert code == 0, text
    assert "log working on it" in text
    assert "completed ✓ completed" in text
    assert text.rstrip().endswith(f"job {job.id} is final: ✓ completed")


async def test_tree_shows_children_and_dependencies(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q:
        root = await q.enqueue(
            "research", {}, queue=AGENT, children=[{"name": "search"}, {"name": "fetch"}]
        )
        first, second = await q.children(root)
        await run_once(q, first)
        waiter = await q.enqueue(
            "summarize", {}, queue=AGENT, parent=root.id, depends_on=[second.id]
        )
    human, doc = await cli_wizd.all(f"tree {root.id}", f"tree {root.id} --json")
    assert human.code == 0
    assert "\x1b[" not in human.out
    lines = human.out.splitlines()
    assert lines[0].startswith(f"#{root.id} research ⧖ waiting for children")
    assert f"#{first.id} search ✓ completed" in human.out
    assert f"#{waiter.id} summarize ⧗ waiting" in human.out
    assert f"after #{second.id} ○ pending" in human.out
    tree = doc.json()
    assert tree["id"] == root.id
    assert tree["status"] == "waiting_children"
    children = {c["id"]: c for c in tree["children"]}
    assert set(children) == {first.id, second.id, waiter.id}
    assert children[waiter.id]["depends_on"] == [second.id]


async def test_hung_lists_and_reaps_stale_running_jobs(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q, cli_wizd.connect(past) as old:
        stale = await run_once(old, await old.enqueue("search", {}, queue=AGENT), None)
        fresh = await run_once(q, await q.enqueue("fetch", {}, queue="writer"), None)
    listed, by_status = await cli_wizd.all("hung --older-than 1h --json", "jobs -s hung --json")
    assert [j["id"] for j in listed.json()] == [stale.id]
    assert [j["id"] for j in by_status.json()] == [stale.id]
    running = await cli_wizd.json("jobs -s active")
    assert sorted(j["id"] for j in running) == sorted([stale.id, fresh.id])

    reaped = await cli_wizd.ok("hung --kill")
    assert reaped.startswith(f"job {stale.id} {AGENT}/search was hung: retried ○ pending")
    async with cli_wizd.connect() as q:
        assert (await q.get(stale.id)).status == "pending"
        assert (await q.get(fresh.id)).status == "running"
        assert "recovered" in [e.kind for e in await q.events(stale.id)]
        assert await q.hung() == []


async def test_cleanup_dry_run_then_delete(cli_wizd: Cli) -> None:
    async with cli_wizd.connect() as q, cli_wizd.connect(past) as old:
        old_done = await run_once(old, await old.enqueue("search", {}, queue=AGENT))
        old_failed = await run_once(
            old, await old.enqueue("search", {}, queue=AGENT), "failed", error="boom", retry=False
        )
        recent = await run_once(q, await q.enqueue("search", {}, queue=AGENT))
    dry = await cli_wizd.json("cleanup -d 30 --dry-run")
    assert dry == {
        "dry_run": True,
        "older_than_seconds": 30 * 86400.0,
        "statuses": ["completed"],
        "ids": [old_done.id],
    }
    async with cli_wizd.connect() as q:
        assert (await q.counts(AGENT))["completed"] == 2  # the dry run deleted nothing
    out = await cli_wizd.ok("cleanup -d 7 -s completed -s failed")
    assert out == f"deleted 2 job(s): {old_done.id}, {old_failed.id}\n"
    async with cli_wizd.connect() as q:
        assert [j.id for j in await q.list()] == [recent.id]


async def test_distributed_create_dispatch_subtasks_consolidate(cli_wizd: Cli) -> None:
    parent_id = int(
        await cli_wizd.ok(
            f"job create --distributed --ttl 60 -a {AGENT} --prompt 'heat pumps?' "
            "--subtask efficiency --subtask costs"
        )
    )
    held = await cli_wizd.json(f"job subtasks {parent_id}")
    held_subtasks = [(s["sub_task_id"], s["query"], s["status"]) for s in held]
    assert held_subtasks == [("sub_1", "efficiency", "paused"), ("sub_2", "costs", "paused")]
    dispatched = await cli_wizd.json(f"job dispatch {parent_id}")
    assert dispatched == {"job_id": parent_id, "dispatched": 2}
    async with cli_wizd.connect() as q:
        first = await q.subtask(parent_id, "sub_1")
        await run_once(q, first, result="COP above 2 at -15 C")
    human, consolidated = await cli_wizd.all(
        f"job subtasks {parent_id}", f"job consolidate {parent_id} --json"
    )
    assert human.code == 0
    assert "\x1b[" not in human.out
    assert "✓ completed sub_1" in human.out
    assert "worker test-worker" in human.out
    assert "result: COP above 2 at -15 C" in human.out
    assert "○ pending sub_2" in human.out
    doc = consolidated.json()
    summary = (doc["job_id"], doc["total_tasks"], doc["completed"], doc["failed"], doc["pending"])
    assert summary == (parent_id, 2, 1, 0, 1)
    assert doc["results"][0]["result"] == "COP above 2 at -15 C"
    direct = await cli_wizd.json("job create --distributed --prompt p --subtask a --dispatch")
    assert direct["kind"] == "distributed"
    async with cli_wizd.connect() as q:
        assert [s["status"] for s in await q.subtasks(direct["id"])] == ["pending"]


# -- kill: a real daemon running a real command processor -----------------------------------


async def test_kill_stops_the_running_command_with_sigterm_or_at_once_with_force(
    cli_wizd: Cli, cli_processor: Path, cli_daemon_log: BinaryIO, tmp_path: Path
) -> None:
    config = shlex.quote(str(cli_processor))
    argv = [
        str(WIZD),
        *shlex.split(
            f"--agent {AGENT} --config {config} --concurrency 2 --poll-interval 0.05 "
            "--heartbeat-interval 0.2 --metrics-port 0 --log-format json"
        ),
    ]
    async with cli_wizd.connect() as q:
        jobs = [
            await q.enqueue("tool", {"pidfile": str(tmp_path / "polite.pid")}, queue=AGENT),
            await q.enqueue(
                "tool",
                {"pidfile": str(tmp_path / "stubborn.pid"), "ignore_term": True},
                queue=AGENT,
            ),
        ]
        daemon = await anyio.open_process(
            argv, env=cli_wizd.env(), stdout=cli_daemon_log, stderr=cli_daemon_log
        )
        log = Path(cli_daemon_log.name)
        try:
            pids = []
            for job in jobs:
                pidfile = anyio.Path(job.payload["pidfile"])
                await wait_for(pidfile.exists, f"job {job.id}'s command to start", log)
                pids.append(int(await pidfile.read_text()))
            assert [(await q.get(j.id)).status for j in jobs] == ["running", "running"]

            out = await cli_wizd.ok(f"kill {jobs[0].id}")
            assert out.startswith(f"job {jobs[0].id} ⊘ cancelled")
            assert "SIGTERM" in out
            forced = await cli_wizd.json(f"kill {jobs[1].id} --force")
            assert forced["status"] == "cancelled"
            assert forced["id"] == jobs[1].id
            # both end within a few seconds, well inside the 20 s grace: the stubborn one
            # (deaf to SIGTERM) only by a SIGKILL at once
            for pid in pids:
                await wait_for(lambda pid=pid: process_gone(pid), f"process {pid} to end", log, 5)
            assert await anyio.Path(jobs[0].payload["pidfile"] + ".term").exists()  # SIGTERM
            assert [(await q.get(j.id)).status for j in jobs] == ["cancelled", "cancelled"]
        finally:
            daemon.send_signal(signal.SIGTERM)
            with anyio.move_on_after(DEADLINE):
                await daemon.wait()
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
            await daemon.aclose()
