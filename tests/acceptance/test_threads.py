"""Synchronous processors through real daemons (wizd.threads), on SQLite and PostgreSQL: a
thread that cannot be interrupted keeps its slot and its job until it returns, so no job
ever runs twice at once, and a daemon shutting down waits for it. Runs are detected by the
files the processors of apps/accept_threads.py write (start time, then end time)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

import wizd

from .conftest import AGENT, Daemon, Harness, wait_until

pytestmark = pytest.mark.slow

APP = "accept_threads:researcher"
FINAL = {"completed", "failed", "cancelled"}


@dataclass(frozen=True)
class RunRecord:
    job: int
    attempt: int
    pid: int
    start: float
    end: float | None  # None: still running


def runs(folder: Path) -> list[RunRecord]:
    records = []
    for path in folder.glob("*.run"):
        job, attempt, pid, _ = (int(x) for x in path.stem.split("-"))
        times = [float(x) for x in path.read_text().split()]
        records.append(RunRecord(job, attempt, pid, times[0], times[1] if len(times) > 1 else None))
    return sorted(records, key=lambda r: r.start)


def overlaps(records: list[RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """Pairs of runs that were in flight at the same time."""
    found = []
    for i, first in enumerate(records):
        for second in records[i + 1 :]:
            if first.end is None or second.start < first.end:
                found.append((first, second))
    return found


def assert_never_twice_at_once(records: list[RunRecord], concurrency_one: bool) -> None:
    by_job: dict[int, list[RunRecord]] = {}
    by_pid: dict[int, list[RunRecord]] = {}
    for r in records:
        by_job.setdefault(r.job, []).append(r)
        by_pid.setdefault(r.pid, []).append(r)
    for job, its_runs in by_job.items():
        assert not overlaps(its_runs), f"job {job} ran twice at once: {its_runs}"
    if concurrency_one:
        for pid, its_runs in by_pid.items():
            assert not overlaps(its_runs), f"daemon {pid} (concurrency 1) ran two at once"


def heartbeats_go_on(q: wizd.SyncQueue, job_id: int, beats: int = 2) -> None:
    """Wait until the job's heartbeat has moved `beats` times: its daemon still holds it."""
    seen: datetime | None = q.get(job_id).heartbeat_at
    for n in range(beats):

        def moved(after: datetime | None = seen) -> datetime | None:
            now = q.get(job_id).heartbeat_at
            return now if now is not None and (after is None or now > after) else None

        seen = wait_until(moved, 10, f"heartbeat {n + 1} of job {job_id}")


def logged_anywhere(daemons: list[Daemon], event: str, **fields: object) -> bool:
    return any(d.logged(event, **fields) for d in daemons)


def final(q: wizd.SyncQueue, ids: list[int], timeout: float = 30) -> list[wizd.Job]:
    def all_final() -> list[wizd.Job] | None:
        jobs = [q.get(i) for i in ids]
        return jobs if all(j.status.value in FINAL for j in jobs) else None

    return wait_until(all_final, timeout, f"jobs {ids} final")


@pytest.fixture
def harness(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


@pytest.fixture
def folders(harness: Harness) -> tuple[Path, Path]:
    runs_dir = harness.dir / "runs"
    runs_dir.mkdir()
    return runs_dir, harness.dir / "release"


def test_a_timed_out_thread_keeps_its_job_and_slot_until_it_returns(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    runs_dir, release = folders
    payload = {"dir": str(runs_dir), "release": str(release)}
    daemons = [harness.start(name, app=APP, concurrency=1).ready() for name in "AB"]
    timed = queue.enqueue("stubborn", payload, queue=AGENT, timeout=0.5, attempts=2).id
    wait_until(lambda: queue.get(timed).status.value == "running", 10, "the first job running")
    others = [queue.enqueue("stubborn", payload, queue=AGENT).id for _ in range(3)]
    wait_until(
        lambda: sum(queue.get(i).status.value == "running" for i in others) == 1,
        10,
        "the other daemon running one more job",
    )

    wait_until(
        lambda: logged_anywhere(daemons, "thread_asked_to_stop", job_id=timed, why="timed out"),
        10,
        "the timed-out run asked to stop",
    )
    heartbeats_go_on(queue, timed)
    # Still held by its thread: not failed, not retried, and its daemon claimed no other job.
    job = queue.get(timed)
    assert (job.status.value, job.attempt) == ("running", 1)
    assert sorted(queue.get(i).status.value for i in others) == ["pending", "pending", "running"]

    release.touch()
    jobs = final(queue, [timed, *others])
    assert [j.status.value for j in jobs] == ["completed"] * 4
    assert jobs[0].attempt == 2  # the first attempt failed: timed out
    failed = [e for d in daemons for e in d.logged("job_failed", job_id=timed)]
    assert len(failed) == 1
    assert failed[0]["error"].startswith("timed out after 0.5s (its thread returned after ")
    records = runs(runs_dir)
    assert len(records) == 5
    assert_never_twice_at_once(records, concurrency_one=True)


def test_a_sync_processor_sees_should_stop_at_its_timeout(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    runs_dir, release = folders
    payload = {"dir": str(runs_dir), "release": str(release), "cooperative": True}
    harness.start(app=APP, concurrency=1).ready()
    job_id = queue.enqueue("stubborn", payload, queue=AGENT, timeout=0.3, attempts=1).id
    (job,) = final(queue, [job_id])
    assert job.status.value == "failed"
    assert job.error is not None
    assert job.error.startswith("timed out after 0.3s")
    assert not release.exists()  # it gave up by itself


def test_shutdown_waits_for_a_running_thread_and_exits_0(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    runs_dir, release = folders
    payload = {"dir": str(runs_dir), "release": str(release)}
    a = harness.start("A", app=APP, concurrency=1, shutdown_grace=0.2).ready()
    job_id = queue.enqueue("stubborn", payload, queue=AGENT).id
    wait_until(lambda: queue.get(job_id).status.value == "running", 10, "the job running")
    harness.start("B", app=APP, concurrency=1).ready()  # would take the job if it were requeued

    a.signal(signal.SIGTERM)
    a.wait_for("waiting_for_threads", job_ids=[job_id])
    heartbeats_go_on(queue, job_id)
    assert a.proc.poll() is None
    job = queue.get(job_id)
    assert (job.status.value, job.attempt) == ("running", 1)

    release.touch()
    assert a.wait_exit(20) == 0
    (job,) = final(queue, [job_id])
    # Its thread finished the work: the result stands (nothing to run again).
    assert (job.status.value, job.attempt) == ("completed", 1)
    assert job.result == {"pid": a.pid, "attempt": 1}
    stopped = [
        e["event"] for e in a.events if e.get("event") in ("thread_returned", "daemon_stopped")
    ]
    assert stopped == ["thread_returned", "daemon_stopped"]
    records = runs(runs_dir)
    assert len(records) == 1
    assert_never_twice_at_once(records, concurrency_one=True)


def test_a_thread_calling_its_context_during_shutdown_is_served_and_the_daemon_exits_0(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    """The loop serves a sync processor's blocking ctx calls until its thread returns: no
    deadlock while the daemon shuts down (it waits for the thread, so the loop lives on)."""
    runs_dir, _ = folders
    a = harness.start("A", app=APP, concurrency=1, shutdown_grace=0.2).ready()
    job_id = queue.enqueue("reports_on_stop", {"dir": str(runs_dir)}, queue=AGENT).id
    wait_until(lambda: (runs_dir / f"{job_id}.in").exists(), 10, "the run in its thread")

    a.signal(signal.SIGTERM)
    assert a.wait_exit(20) == 0, a.tail()
    (job,) = final(queue, [job_id])
    # Its thread finished its work after the stop request: the result stands.
    assert (job.status.value, job.attempt, job.result) == ("completed", 1, "saved")
    events = queue.events(job_id)
    assert [e.message for e in events if e.kind == "log"] == ["stopping: True"]
    assert [e.message for e in events if e.kind == "progress"] == ["100% stopped"]
    assert [(s.label, s.status) for s in queue.steps(job_id)] == [("last#1", "completed")]
    assert a.logged("thread_asked_to_stop")


def test_a_daemon_runs_as_many_threads_as_its_concurrency(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    """anyio's default thread limiter allows 40 threads: concurrency 45 must run 45."""
    runs_dir, release = folders
    n = 45
    harness.start(app=APP, concurrency=n).ready()
    payload = {"dir": str(runs_dir), "release": str(release), "n": n}
    ids = [
        j.id
        for j in queue.enqueue_many([{"name": "gather", "queue": AGENT, "payload": payload}] * n)
    ]
    try:
        wait_until(lambda: len(list(runs_dir.glob("*.started"))) == n, 30, f"{n} threads at once")
    finally:
        release.touch()
    assert [j.status.value for j in final(queue, ids)] == ["completed"] * n


def test_a_third_signal_ends_the_daemon_and_its_threads_as_sigkill_would(
    harness: Harness, queue: wizd.SyncQueue, folders: tuple[Path, Path]
) -> None:
    """The thread cannot be abandoned while the process lives on (its job would run on
    unheartbeated): the process ends, and the job is recovered as after a SIGKILL."""
    runs_dir, release = folders
    payload = {"dir": str(runs_dir), "release": str(release)}
    a = harness.start("A", app=APP, concurrency=1, shutdown_grace=30).ready()
    job_id = queue.enqueue("stubborn", payload, queue=AGENT).id
    wait_until(lambda: queue.get(job_id).status.value == "running", 10, "the job running")
    for count in (1, 2):
        a.signal(signal.SIGTERM)
        a.wait_for("signal_received", count=count)
    a.wait_for("waiting_for_threads", job_ids=[job_id])
    a.signal(signal.SIGTERM)
    assert a.wait_exit(10) == 3
    a.wait_for("signal_received", job_ids=[job_id])

    release.touch()
    harness.start("B", app=APP, concurrency=1).ready()
    (job,) = final(queue, [job_id])
    assert (job.status.value, job.attempt) == ("completed", 2)  # the first run was recovered
    records = runs(runs_dir)
    assert [(r.attempt, r.end is None) for r in records] == [(1, True), (2, False)]
