"""`wizd pause/resume` of unknown queues, `wizd queue rm`, and the heartbeat margin of
`wizd hung --kill`: the commands run in this process (tests.cli_runner) on a SQLite file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import anyio

import wizd
from tests.cli_runner import Ran, cli_db, invoke, wizd_cmd

db = cli_db
AGENT = "researcher"


def refused(ran: Ran) -> str:
    """The one line of a clean refusal."""
    assert ran.code != 0, str(ran)
    assert ran.error is None, str(ran)
    assert len(ran.err.strip().splitlines()) == 1, str(ran)
    return ran.err.strip()


def queue_names(db: str) -> list[str]:
    with wizd.connect_sync(db) as q:
        return [name for name, _, _ in q.queues()]


def test_pause_refuses_an_unknown_queue_unless_created(db: str) -> None:
    for command in ("pause", "resume"):
        line = refused(wizd_cmd(db, command, "nosuchqueue"))
        assert line.startswith("wizd: queue 'nosuchqueue' does not exist")
        assert "--create" in line
    assert queue_names(db) == []
    assert wizd_cmd(db, "pause", "nosuchqueue", "--create").code == 0
    assert queue_names(db) == ["nosuchqueue"]


def test_pause_knows_queues_of_jobs_daemons_and_schedules(db: str) -> None:
    async def setup() -> None:
        async with wizd.connect(db) as q:
            await q.enqueue("search", {}, queue=AGENT)
            await q.schedule("digest", {}, queue="daily", every=3600)
            now = datetime.now(UTC)
            await q.store.register_worker(
                wizd.WorkerInfo("w1", "host", 1, ("served",), 1, "x", now, now)
            )

    anyio.run(setup)
    for name in (AGENT, "daily", "served"):
        ran = wizd_cmd(db, "pause", name)
        assert ran.code == 0, str(ran)
        assert ran.out.startswith(f"queue {name} paused")


def test_queue_rm(db: str) -> None:
    with wizd.connect_sync(db) as q:
        job = q.enqueue("search", {}, queue=AGENT)
    line = refused(wizd_cmd(db, "queue", "rm", AGENT))
    assert line == f"wizd: queue '{AGENT}' is not empty: 1 job(s) (1 pending); delete them first"
    assert queue_names(db) == [AGENT]
    assert wizd_cmd(db, "delete", str(job.id)).code == 0
    ran = wizd_cmd(db, "queue", "rm", AGENT)
    assert ran.out == f"queue {AGENT} removed\n", str(ran)
    assert queue_names(db) == []
    assert refused(wizd_cmd(db, "queue", "rm", AGENT)) == f"wizd: queue '{AGENT}' does not exist"


def running_job(db: str, heartbeat_age: float) -> int:
    """A running job whose last heartbeat is `heartbeat_age` seconds old."""

    async def claimed() -> int:
        async with wizd.connect(db, clock=lambda: time.time() - heartbeat_age) as q:
            job = await q.enqueue("search", {}, queue=AGENT, attempts=3)
            (claimed,) = await q.store.claim(AGENT, "w1", 1)
            assert claimed.id == job.id
            return job.id

    return anyio.run(claimed)


def status(db: str, job_id: int) -> wizd.JobStatus:
    with wizd.connect_sync(db) as q:
        return q.get(job_id).status


def test_hung_kill_refuses_a_threshold_under_the_heartbeat_margin(db: str) -> None:
    job_id = running_job(db, heartbeat_age=5.0)
    line = refused(wizd_cmd(db, "hung", "--older-than", "1s", "--kill"))
    assert line.startswith("wizd: older_than: 1.0s is under 2 x the heartbeat interval (30s, ")
    assert "runs it twice at once" in line
    assert "--older-than 60s or more, or --force" in line
    assert status(db, job_id) is wizd.JobStatus.RUNNING
    # listing is harmless at any age
    ran = wizd_cmd(db, "hung", "--older-than", "1s", "--json")
    assert [j["id"] for j in ran_json(ran)] == [job_id]
    # with the daemon's real (shorter) interval given, 1s is beyond the margin
    ran = invoke(["--heartbeat-interval", "0.4", "--database", db, "hung", "--older-than", "1s"])
    assert ran.code == 0, str(ran)
    ran = invoke(
        ["--heartbeat-interval", "0.4", "--database", db, "hung", "--older-than", "1s", "--kill"]
    )
    assert ran.code == 0, str(ran)
    assert status(db, job_id) is wizd.JobStatus.PENDING


def test_hung_kill_force_reaps_under_the_margin(db: str) -> None:
    job_id = running_job(db, heartbeat_age=5.0)
    ran = wizd_cmd(db, "hung", "--older-than", "1s", "--kill", "--force")
    assert ran.code == 0, str(ran)
    assert f"job {job_id} {AGENT}/search was hung: retried" in ran.out
    assert status(db, job_id) is wizd.JobStatus.PENDING


def ran_json(ran: Ran) -> list[dict[str, object]]:
    assert ran.code == 0, str(ran)
    value: list[dict[str, object]] = json.loads(ran.out)
    return value
