"""Daemons on PostgreSQL: real `wizd` processes sharing one PostgreSQL schema.

1. Three daemons process 10,000 jobs; one is killed with SIGKILL mid-run; its runs are
   reaped by the other two within the hung timeout; every job completes exactly once.
2. Every daemon connection is terminated (pg_terminate_backend) mid-run: the daemons log
   the failures, reconnect, keep their processes, and every job completes.
3. An idle daemon wakes on NOTIFY, not on its poll interval.
4. Jobs enqueued one at a time are handed over to idle daemons (claimed by their enqueue);
   a daemon killed with SIGKILL is handed nothing once its session has ended.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Harness, open_harness, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_harness(tmp_path: Path, postgres_url: str) -> Iterator[Harness]:
    # Daemons connect under their own application_name, so a test can cut their connections
    # and not its own.
    with open_harness(tmp_path, f"{postgres_url}&application_name=wizd-daemon") as h:
        yield h


@pytest.fixture
def pg_queue(postgres_url: str) -> Iterator[wizd.SyncQueue]:
    with wizd.connect_sync(postgres_url) as q:
        yield q


def enqueue(q: wizd.SyncQueue, name: str, n: int, **payload: Any) -> list[int]:
    ids: list[int] = []
    for start in range(0, n, 1000):
        batch = [{"name": name, "queue": AGENT, "payload": payload}] * min(1000, n - start)
        ids += [job.id for job in q.enqueue_many(batch)]
    return ids


def runs_per_job(runs: Path) -> Counter[int]:
    lines = [line.split() for path in runs.iterdir() for line in path.read_text().splitlines()]
    return Counter(int(job_id) for job_id, _attempt in lines)


def events_of(q: wizd.SyncQueue, ids: list[int], kinds: set[str]) -> dict[int, list[str]]:
    return {i: [e.kind for e in q.events(i) if e.kind in kinds] for i in ids}


@pytest.mark.timeout(240)
def test_three_daemons_run_10000_jobs_once_and_recover_a_killed_ones_runs(
    pg_harness: Harness, pg_queue: wizd.SyncQueue
) -> None:
    runs = pg_harness.dir / "runs"
    runs.mkdir()
    fast = {"heartbeat_interval": 0.2, "hung_timeout": 2, "concurrency": 10}
    env = {"WIZD_REAPER_INTERVAL": "0.2"}
    ids = enqueue(pg_queue, "tick", 10_000, dir=str(runs), seconds=0.02)
    a, b, c = (pg_harness.start(name, env=env, **fast) for name in "ABC")
    for daemon in (a, b, c):
        daemon.ready(timeout=30)

    a.wait_for("job_completed", timeout=60, count=500)
    a_worker = a.wait_for("daemon_ready")["worker_id"]

    def a_frozen_holding_runs() -> set[int]:
        """Freeze A; if the store shows it running jobs, keep it frozen and name them."""
        a.signal(signal.SIGSTOP)
        held = {j.id for j in pg_queue.list(status="running") if j.worker_id == a_worker}
        if not held:
            a.signal(signal.SIGCONT)
        return held

    held = wait_until(a_frozen_holding_runs, 30, "A to hold runs", interval=0.01)
    a.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    a.wait_exit(10)

    # B and C reap A's runs once their heartbeats are older than the hung timeout (2 s),
    # within a few reaper passes (0.2 s).
    wait_until(
        lambda: not any(j.worker_id == a_worker for j in pg_queue.list(status="running")),
        10,
        "the killed daemon's runs to be reaped",
        interval=0.05,
    )
    assert time.monotonic() - killed_at < 2 + 5.0
    wait_until(
        lambda: (n := pg_queue.counts(AGENT))["completed"] + n["failed"] == 10_000,
        120,
        "10,000 jobs to finish",
        interval=0.2,
    )
    assert pg_queue.counts(AGENT)["completed"] == 10_000, pg_queue.counts(AGENT)

    reaped = [e for d in (b, c) for e in d.logged("hung_job_reaped")]
    assert {e["previous_worker"] for e in reaped} == {a_worker}
    reaped_ids = {e["job_id"] for e in reaped}
    assert held <= reaped_ids

    ran = runs_per_job(runs)
    assert sorted(ran) == sorted(ids), "some job never ran"
    twice = {i for i, n in ran.items() if n > 1}
    assert twice <= reaped_ids, f"run twice but never recovered: {sorted(twice - reaped_ids)}"
    completed = Counter(e.kind for i in ids for e in pg_queue.events(i) if e.kind == "completed")
    assert completed == {"completed": 10_000}
    for job_id in reaped_ids:
        job = pg_queue.get(job_id)
        assert (job.status, job.attempt) == ("completed", 2), job
        assert f"-{a.pid}-" not in (job.worker_id or "")
    for daemon in (b, c):
        assert not daemon.logged("claim_failed")
        assert not daemon.logged("job_finish_failed")
        assert daemon.proc.poll() is None


def daemon_backends(database_url: str, terminate: bool = False) -> set[int]:
    """Server pids of the daemons' connections (terminated first, if asked)."""
    action = "pg_terminate_backend(pid), " if terminate else ""
    with psycopg.connect(database_url.split("?")[0], autocommit=True) as c:
        rows = c.execute(
            f"SELECT {action} pid FROM pg_stat_activity "
            "WHERE application_name = 'wizd-daemon' AND pid <> pg_backend_pid()"
        ).fetchall()
    return {row[-1] for row in rows}


def test_daemons_survive_their_connections_being_terminated_and_finish_every_job(
    pg_harness: Harness, pg_queue: wizd.SyncQueue
) -> None:
    runs = pg_harness.dir / "runs"
    runs.mkdir()
    env = {"WIZD_REAPER_INTERVAL": "0.2"}
    fast = {"heartbeat_interval": 0.2, "hung_timeout": 3, "concurrency": 10}
    daemons = [pg_harness.start(name, env=env, **fast).ready(timeout=30) for name in "AB"]
    ids = enqueue(pg_queue, "tick", 3000, dir=str(runs), seconds=0.005)
    daemons[0].wait_for("job_completed", timeout=60, count=200)

    cut = daemon_backends(str(pg_harness.db), terminate=True)
    assert len(cut) >= 4  # each daemon's pooled connections and its LISTEN connection

    wait_until(
        lambda: (n := pg_queue.counts(AGENT))["completed"] + n["failed"] == 3000,
        120,
        "3,000 jobs to finish after the connections were cut",
        interval=0.2,
    )
    assert pg_queue.counts(AGENT)["completed"] == 3000
    completed = Counter(e.kind for i in ids for e in pg_queue.events(i) if e.kind == "completed")
    assert completed == {"completed": 3000}
    assert sorted(runs_per_job(runs)) == sorted(ids)
    for daemon in daemons:
        assert daemon.proc.poll() is None, f"daemon {daemon.name} exited:\n{daemon.tail()}"
    # They reconnected (an idle pooled connection is replaced when next checked out, without
    # an error; a busy one fails its transaction, which is logged and retried).
    now = daemon_backends(str(pg_harness.db))
    assert now
    assert not now & cut
    for event in (e for d in daemons for e in d.events if e.get("level") == "error"):
        assert event["event"] in ("claim_failed", "job_finish_failed", "store_unavailable"), event

    # Still serving after the cut: a new job runs at once.
    (late,) = enqueue(pg_queue, "tick", 1, dir=str(runs), seconds=0)
    wait_until(lambda: pg_queue.get(late).status == "completed", 30, "a job enqueued afterwards")


def test_an_idle_daemon_wakes_on_notify_not_on_its_poll_interval(
    pg_harness: Harness, pg_queue: wizd.SyncQueue
) -> None:
    runs = pg_harness.dir / "runs"
    runs.mkdir()
    daemon = pg_harness.start("A", poll_interval=30).ready(timeout=30)
    latencies = []
    for _ in range(5):
        sent = time.time()
        (job_id,) = enqueue(pg_queue, "tick", 1, dir=str(runs), seconds=0)
        daemon.wait_for("job_completed", timeout=10, job_id=job_id)
        started = pg_queue.get(job_id).started_at
        assert started is not None
        latencies.append(started.timestamp() - sent)
    # With a 30 s poll interval only the notification can explain a pickup within 10 s.
    assert max(latencies) < 10, latencies


def handed_over(job: wizd.Job) -> bool:
    """Claimed by its enqueue (INSERT_JOB_HANDED): its run started as it was created."""
    return job.attempt == 1 and job.started_at == job.created_at


def test_single_enqueues_are_handed_to_idle_daemons_and_never_to_a_killed_one(
    pg_harness: Harness, pg_queue: wizd.SyncQueue, postgres_url: str
) -> None:
    runs = pg_harness.dir / "runs"
    runs.mkdir()
    a = pg_harness.start("A", poll_interval=30, concurrency=2).ready(timeout=30)
    b = pg_harness.start("B", poll_interval=30, concurrency=2).ready(timeout=30)
    workers = {d.wait_for("daemon_ready")["worker_id"]: d for d in (a, b)}

    def run_one() -> wizd.Job:
        job = pg_queue.enqueue("tick", {"dir": str(runs), "seconds": 0}, queue=AGENT)
        # The daemon writes job_completed once the outcome (and its next offer) committed.
        wait_until(
            lambda: any(d.logged("job_completed", job_id=job.id) for d in workers.values()),
            10,
            f"job {job.id} to complete",
        )
        return job

    first = [run_one() for _ in range(10)]
    assert all(job.status == "running" and job.worker_id in workers for job in first)
    assert all(handed_over(pg_queue.get(job.id)) for job in first)

    a_worker = next(w for w, d in workers.items() if d is a)
    a.signal(signal.SIGKILL)
    a.wait_exit(10)
    schema = postgres_url.split("schema=")[1].split("&")[0]

    def a_offers_alive() -> int:
        """A's offered slots whose listening session still holds its lock (the hand-over's
        own test): none once the server has seen A's connections close."""
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as c:
            row = c.execute(
                f"SELECT count(*) FROM {schema}.free_slots WHERE worker_id = %s AND NOT "
                "pg_try_advisory_xact_lock_shared(hashtext('wizd.listener.' || %s), listener)",
                (a_worker, schema),
            ).fetchone()
        assert row is not None
        return int(row[0])

    wait_until(lambda: a_offers_alive() == 0, 10, "A's session to end")
    del workers[a_worker]
    after = [run_one() for _ in range(10)]
    for job in after:
        stored = pg_queue.get(job.id)
        assert (stored.status, stored.worker_id) == ("completed", job.worker_id)
        assert job.worker_id in workers
        assert handed_over(stored)
    ran = runs_per_job(runs)
    assert sorted(ran) == sorted(j.id for j in first + after)
    assert set(ran.values()) == {1}
