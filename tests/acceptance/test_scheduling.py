"""Acceptance tests of the scheduling controls across processes: real `wizd` daemons on
one store (a SQLite file, a PostgreSQL schema: each test runs on both) racing on a
schedule, client processes racing on a unique key, a rate limit and a max_running limit
held across two daemons. Nothing synchronises on a sleep: each test waits (with a
deadline) for what the daemons log or write."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import sqlite_file
from prometheus_client.parser import text_string_to_metric_families

import wizd

from .conftest import AGENT, Daemon, Harness, daemon_env, wait_until

pytestmark = pytest.mark.slow

APP = "accept_scheduling:researcher"
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def harness(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


def jobs_named(q: wizd.SyncQueue, name: str) -> list[wizd.Job]:
    found: list[wizd.Job] = q.list(queue=AGENT, name=name, sort="id", order="asc", limit=10_000)
    return found


def all_final(q: wizd.SyncQueue, n: int) -> list[wizd.Job] | None:
    jobs: list[wizd.Job] = q.list(queue=AGENT, sort="id", order="asc", limit=10_000)
    return jobs if len(jobs) == n and all(j.status in FINAL for j in jobs) else None


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def two_daemons(harness: Harness, **overrides: Any) -> list[Daemon]:
    started = [harness.start(name, app=APP, **overrides) for name in ("A", "B")]
    return [d.ready() for d in started]


# -- 1. one enqueue per fire time --------------------------------------------------------
def test_two_daemons_racing_on_one_schedule_enqueue_each_fire_time_once(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    schedule = queue.schedule("tick", queue=AGENT, every=0.1, catch_up="all", key="tick")
    daemons = two_daemons(harness, poll_interval=0.02)
    wait_until(lambda: len(queue.schedule_runs("tick", 1000)) >= 40, 30, "40 occurrences")
    queue.pause_schedule("tick")
    for daemon in daemons:
        daemon.signal(signal.SIGINT)
    for daemon in daemons:
        assert daemon.wait_exit(20) == 0, daemon.tail()

    runs = queue.schedule_runs("tick", 10_000)
    jobs = jobs_named(queue, "tick")
    fire_times = sorted(r.fire_at.timestamp() for r in runs)
    assert sorted(j.run_at.timestamp() for j in jobs) == fire_times
    assert len(set(fire_times)) == len(fire_times) == len(jobs)
    # No occurrence skipped either: the fire times are the schedule's, one after another.
    first = schedule.next_at.timestamp()
    assert fire_times[0] == pytest.approx(first)
    steps = [b - a for a, b in itertools.pairwise(fire_times)]
    assert steps == pytest.approx([0.1] * len(steps), abs=1e-4)  # epoch floats: ~0.2 µs
    assert {r.job_id for r in runs} == {j.id for j in jobs}
    # Each job was enqueued by exactly one daemon, as each daemon tells it.
    fired = Counter(e["job_id"] for d in daemons for e in d.logged("schedule_fired"))
    assert sorted(fired) == [j.id for j in jobs]
    assert set(fired.values()) == {1}
    for daemon in daemons:
        assert not daemon.logged("schedule_failed")
        assert "IntegrityError" not in daemon.log_text


# -- 2. one job per unique key -----------------------------------------------------------
ENQUEUER = textwrap.dedent(
    """
    import json, os, sys, time
    import wizd
    db, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with wizd.connect_sync(db) as q:
        while not os.path.exists(go):
            time.sleep(0.005)
        ids = [q.enqueue("tick", {"pid": os.getpid()}, queue="researcher",
                         unique_key="research:quantum").id for _ in range(n)]
    print(json.dumps(ids))
    """
)


class KeyAudit:
    """A test's own triggers on the jobs table: a sequence number for every job inserted
    and every job completed, drawn as the statement writes (on PostgreSQL, after any wait
    for another transaction's row), so their order is the order of the writes."""

    SQLITE = (
        "CREATE TABLE key_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER, what TEXT)",
        "CREATE TRIGGER key_audit_inserted AFTER INSERT ON jobs BEGIN "
        "INSERT INTO key_audit (job_id, what) VALUES (NEW.id, 'inserted'); END",
        "CREATE TRIGGER key_audit_completed AFTER UPDATE OF status ON jobs "
        "WHEN NEW.status = 'completed' BEGIN "
        "INSERT INTO key_audit (job_id, what) VALUES (NEW.id, 'completed'); END",
    )
    POSTGRES = (
        "CREATE TABLE key_audit (seq bigserial PRIMARY KEY, job_id bigint, what text)",
        "CREATE FUNCTION key_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO key_audit (job_id, what) VALUES "
        "(NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'inserted' ELSE 'completed' END); "
        "RETURN NULL; END $$",
        "CREATE TRIGGER key_audit_inserted AFTER INSERT ON jobs FOR EACH ROW "
        "EXECUTE FUNCTION key_audit()",
        "CREATE TRIGGER key_audit_completed AFTER UPDATE OF status ON jobs FOR EACH ROW "
        "WHEN (NEW.status = 'completed') EXECUTE FUNCTION key_audit()",
    )

    def __init__(self, database: Path | str) -> None:
        self.database = str(database)
        for statement in self.POSTGRES if self.postgres else self.SQLITE:
            self.run(statement)

    @property
    def postgres(self) -> bool:
        return self.database.startswith("postgresql://")

    def run(self, statement: str) -> list[tuple[Any, ...]]:
        if self.postgres:
            import psycopg

            conninfo, _, schema = self.database.partition("?schema=")
            with psycopg.connect(conninfo, autocommit=True) as pg:
                pg.execute(f"SET search_path TO {schema}")
                cur = pg.execute(statement)
                return cur.fetchall() if cur.description else []
        with sqlite_file(self.database) as db:
            return db.execute(statement).fetchall()

    def order(self) -> dict[tuple[int, str], int]:
        rows = self.run("SELECT job_id, what, seq FROM key_audit")
        return {(job_id, what): seq for job_id, what, seq in rows}


def test_two_processes_racing_on_one_unique_key_never_hold_two_unfinished_jobs(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    go = harness.dir / "go"
    audit = KeyAudit(harness.db)
    daemon = harness.start(app=APP, concurrency=1).ready()
    enqueuers = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUER, str(harness.db), str(go), "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=daemon_env(),
        )
        for _ in range(2)
    ]
    go.touch()
    returned: list[int] = []
    for proc in enqueuers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        returned += json.loads(out)
    jobs = wait_until(lambda: all_final(queue, len(set(returned))), 30, "every job final")

    assert {j.id for j in jobs} == set(returned)
    assert len(returned) == 300
    assert len(jobs) < len(returned), "the processes never met on the key"
    order = audit.order()
    for before, after in itertools.pairwise(jobs):
        # The key was free again only once the job holding it was final: in the order
        # the database wrote them, the holder completed before the next was made.
        assert order[before.id, "completed"] < order[after.id, "inserted"], (before.id, after.id)
    assert {j.status for j in jobs} == {"completed"}
    assert len(daemon.logged("job_completed")) == len(jobs)


# -- 3. a rate limit across two daemons ---------------------------------------------------
def test_a_rate_of_10_per_second_holds_within_10_percent_over_5_seconds_across_two_daemons(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    queue.set_queue_limits(AGENT, rate="10/s")
    ports = [free_port(), free_port()]
    daemons = [
        harness.start(name, app=APP, concurrency=4, metrics_port=port).ready()
        for name, port in zip(("A", "B"), ports, strict=True)
    ]
    ids = [j.id for j in queue.enqueue_many([{"name": "tick", "queue": AGENT}] * 80)]

    def started_past_the_window() -> list[float] | None:
        jobs = [queue.get(i) for i in ids]
        starts = sorted(j.started_at.timestamp() for j in jobs if j.started_at is not None)
        return starts if starts and starts[-1] >= starts[0] + 5.5 else None

    starts = wait_until(started_past_the_window, 30, "5.5 s of rate-limited starts")
    in_window = [t for t in starts if t < starts[0] + 5.0]
    assert 45 <= len(in_window) <= 55, f"{len(in_window)} jobs started in 5 s at 10/s"

    jobs = [queue.get(i) for i in ids]
    started = [j for j in jobs if j.started_at is not None]
    assert {(j.status, j.attempt) for j in started} <= {("completed", 1), ("running", 1)}
    assert {j.status for j in jobs} - {"completed", "running"} <= {"pending"}
    by_daemon = Counter(j.worker_id for j in started)
    assert len(by_daemon) == 2, f"both daemons draw from the one bucket: {by_daemon}"

    throttled = [
        scrape(port).get(
            ("wizd_throttled_seconds_total", (("limit", "rate"), ("queue", AGENT))), 0.0
        )
        for port in ports
    ]
    assert sum(throttled) > 2.0, throttled
    for port in ports:
        failed = scrape(port).get(
            (
                "wizd_jobs_processed_total",
                (("name", "tick"), ("outcome", "failed"), ("queue", AGENT)),
            ),
            0.0,
        )
        assert failed == 0.0
    for daemon in daemons:
        assert not daemon.logged("claim_failed")


# -- 4. max_running across two daemons ----------------------------------------------------
def test_max_running_is_never_exceeded_across_two_daemons(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    queue.set_queue_limits(AGENT, max_running=3)
    # Two slots each: three at once can only be reached by both daemons together, so the
    # limit is shown to hold across them (with more slots one daemon could take every job).
    daemons = two_daemons(harness, concurrency=2)
    queue.enqueue_many([{"name": "span", "queue": AGENT, "payload": {"seconds": 0.15}}] * 30)

    jobs = wait_until(lambda: all_final(queue, 30), 60, "30 jobs final")

    assert {(j.status, j.attempt) for j in jobs} == {("completed", 1)}
    overlap = max_overlap([(j.result["start"], j.result["end"]) for j in jobs])
    assert overlap == 3, f"at most 3 at once across both daemons, and 3 reached; saw {overlap}"
    by_daemon = Counter(j.result["pid"] for j in jobs)
    assert set(by_daemon) == {d.pid for d in daemons}, by_daemon
    # A slot was free (2 + 2) while jobs waited: the daemons saw the limit hold them.
    assert any(d.logged("queue_throttled", limit="max_running") for d in daemons)
