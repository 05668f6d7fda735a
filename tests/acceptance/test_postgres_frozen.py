"""A daemon frozen inside a transaction (SIGSTOP, a VM pause, a partition) on PostgreSQL.

Three real daemons share one schema. Daemon A is stopped with SIGSTOP at a moment when its
open transaction holds row locks on jobs the store still shows it running (found by asking
the server, not guessed). The other two must go on as if nothing happened: their
heartbeats stay fresh, a client's cancel of one of their runs returns at once, and A's runs
are reaped within the hung timeout plus a reaper interval or two: the reapers skip the
rows A's transaction holds until the server ends that transaction
(idle_in_transaction_session_timeout), then take them.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Daemon, Harness, wait_until

pytestmark = pytest.mark.slow

HEARTBEAT = 0.2
HUNG = 3.0
REAPER = 0.2
IDLE_IN_TRANSACTION = 1.0  # < HUNG: A's locks are gone before its runs are due for reaping
# What a loaded test machine may add to a heartbeat's interval; a stalled daemon's
# heartbeat ages without bound (it went 19 s without one).
MARGIN = 1.5


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A plain autocommit connection of the test (not a daemon's), and the schema."""
    schema = postgres_url.split("schema=")[1].split("&")[0]
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as c:
        yield c, schema


def locked_runs(pg: tuple[psycopg.Connection[Any], str], worker: str, name: str) -> set[int]:
    """Jobs the store shows `worker` running whose rows a transaction holds that daemon
    `name` has left open: the server waits for its next statement (a COMMIT already sent
    would let the rows go)."""
    c, schema = pg
    states = [
        r[0]
        for r in c.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = %s",
            (f"wizd-{name}",),
        )
    ]
    if "idle in transaction" not in states or "active" in states:
        return set()  # not inside a transaction, or a statement (a COMMIT?) still runs
    with c.transaction(force_rollback=True):
        running = {
            r[0]
            for r in c.execute(
                f"SELECT id FROM {schema}.jobs WHERE status = 'running' AND worker_id = %s",
                (worker,),
            )
        }
        free = {
            r[0]
            for r in c.execute(
                f"SELECT id FROM {schema}.jobs WHERE status = 'running' AND worker_id = %s "
                "FOR UPDATE SKIP LOCKED",
                (worker,),
            )
        }
    return running - free


def heartbeat_ages(pg: tuple[psycopg.Connection[Any], str], workers: list[str]) -> list[float]:
    """Seconds since each worker's last heartbeat: its registry row and its running jobs."""
    c, schema = pg
    now = time.time()
    rows = c.execute(
        f"SELECT heartbeat_at FROM {schema}.workers WHERE id = ANY(%s) UNION ALL "
        f"SELECT heartbeat_at FROM {schema}.jobs WHERE status = 'running' AND worker_id = ANY(%s)",
        (workers, workers),
    ).fetchall()
    return [now - r[0] for r in rows]


def start(h: Harness, postgres_url: str, name: str, **overrides: Any) -> Daemon:
    env = {
        "WIZD_REAPER_INTERVAL": str(REAPER),
        "WIZD_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT": str(IDLE_IN_TRANSACTION),
    }
    settings = {"heartbeat_interval": HEARTBEAT, "hung_timeout": HUNG, **overrides}
    database = f"{postgres_url}&application_name=wizd-{name}"
    return h.start(name, env=env, database=database, **settings).ready(timeout=30)


@pytest.mark.timeout(180)
def test_a_daemon_frozen_in_a_transaction_stalls_no_other_daemon(
    postgres_url: str, pg: tuple[psycopg.Connection[Any], str], harness: Harness
) -> None:
    runs = harness.dir / "runs"
    runs.mkdir()
    release = harness.dir / "release"
    with wizd.connect_sync(postgres_url) as q:
        # B and C hold two long runs each, and tick through quick jobs with a third slot.
        b, c = (start(harness, postgres_url, name, concurrency=3) for name in "BC")
        holds = [q.enqueue("hold", {"release": str(release)}, queue=AGENT).id for _ in range(4)]
        wait_until(
            lambda: all(q.get(i).status == "running" for i in holds), 20, "the long runs to start"
        )
        others = [d.wait_for("daemon_ready")["worker_id"] for d in (b, c)]
        # A is busy with short jobs, so that it is inside a transaction most of the time.
        a = start(harness, postgres_url, "A", concurrency=8)
        a_worker = a.wait_for("daemon_ready")["worker_id"]
        payload = {"dir": str(runs), "seconds": 0.01}
        for _ in range(4):
            q.enqueue_many([{"name": "tick", "queue": AGENT, "payload": payload}] * 1000)
        a.wait_for("job_completed", timeout=30, count=50)

        def a_frozen_holding_locks() -> tuple[set[int], set[int]] | None:
            """Freeze A; if its open transaction holds rows of runs it has, keep it frozen:
            (those rows, all its runs). Asked twice: a COMMIT that A sent just before it
            stopped may still be on its way to the server the first time."""
            time.sleep(random.uniform(0, 0.05))  # a random moment of A's work, not a sync
            a.signal(signal.SIGSTOP)
            held = locked_runs(pg, a_worker, "A")
            runs = {j.id for j in q.list(status="running", limit=10_000) if j.worker_id == a_worker}
            if held and held <= runs and locked_runs(pg, a_worker, "A") == held:
                return held, runs
            a.signal(signal.SIGCONT)
            return None

        held, a_runs = wait_until(a_frozen_holding_locks, 60, "A frozen holding row locks", 0.0)
        frozen_at = time.monotonic()

        # B and C keep beating while A's runs age past the hung timeout and are reaped.
        cancel_took: list[float] = []
        cancel_done = threading.Event()

        def cancel_one() -> None:
            """A client of its own cancels one of B's or C's long runs."""
            with wizd.connect_sync(postgres_url) as client:
                began = time.monotonic()
                client.cancel(holds[0])
                cancel_took.append(time.monotonic() - began)
            cancel_done.set()

        try:
            worst = 0.0
            canceller: threading.Thread | None = None
            while time.monotonic() - frozen_at < HUNG + 3.0:
                worst = max(worst, *heartbeat_ages(pg, others))
                if worst >= HEARTBEAT + MARGIN:
                    notable = [
                        line
                        for d in (b, c)
                        for line in d.lines
                        if '"debug"' not in line and "job_completed" not in line
                    ]
                    pytest.fail(
                        f"a heartbeat of B or C is {worst:.1f}s old while A is frozen; "
                        f"{time.monotonic() - frozen_at:.1f}s after the freeze; what B and C "
                        "logged:\n" + "\n".join(notable[-20:])
                    )
                if canceller is None and time.monotonic() - frozen_at > HUNG + REAPER:
                    # Once the reapers are at A's runs.
                    canceller = threading.Thread(target=cancel_one, daemon=True)
                    canceller.start()
                time.sleep(0.05)
            assert cancel_done.wait(5.0), "a client's cancel of B's or C's run blocked"
            assert cancel_took[0] < 3.0, cancel_took
        finally:
            if not cancel_done.is_set():  # stalled behind A: end A's session to unwind
                a.kill()

        # A's runs, those its frozen transaction held included, were reaped in time.
        def a_still_running() -> set[int]:
            return {
                i
                for i in a_runs
                if (job := q.get(i)).status == "running" and job.worker_id == a_worker
            }

        assert not a_still_running(), (
            f"A's runs {sorted(a_still_running())} not reaped within {HUNG + 3.0}s of the freeze"
        )
        reaped = {e["job_id"] for d in (b, c) for e in d.logged("hung_job_reaped")}
        assert held <= reaped, "the rows A's frozen transaction held were never reaped"
        assert a_runs <= reaped, [
            (q.get(i).status, [(e.kind, e.message) for e in q.events(i)]) for i in a_runs - reaped
        ]

        # The rest completes on B and C; A, woken, finds its session gone and carries on.
        a.signal(signal.SIGCONT)
        release.touch()
        wait_until(
            lambda: (n := q.counts(AGENT))["completed"] + n["cancelled"] == 4004,
            120,
            "every job to end",
            interval=0.2,
        )
        for daemon in (a, b, c):
            assert daemon.proc.poll() is None, f"daemon {daemon.name} exited:\n{daemon.tail()}"
