"""The SQLite schema: created on first connect, versioned, migrated in order, and refused
when the file is not a wizd database this version understands."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import sqlite_file

import wizd
import wizd.store.sqlite as sqlite_store
from wizd import StoreError
from wizd.model import JobFilter, JobStatus
from wizd.store import listing
from wizd.store import sqlite_queries as Q
from wizd.store.sqlite import LATEST_VERSION, migrations

TABLES = {"jobs", "job_deps", "job_events", "queues", "workers", "job_counts", "schema_version"}


def schema(path: str) -> list[tuple[str, str, str, str | None]]:
    """Every table, index and trigger of the database as SQLite keeps it."""
    with sqlite_file(path) as db:
        rows = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
    return [tuple(r) for r in rows]


def versions(path: str) -> list[tuple[int, float]]:
    with sqlite_file(path) as db:
        return db.execute("SELECT version, applied_at FROM schema_version ORDER BY 1").fetchall()


def journal_mode(path: str) -> str:
    with sqlite_file(path) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    numbers = [version for version, _, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert numbers[-1] == LATEST_VERSION


def test_first_connect_creates_the_schema(store_url: str) -> None:
    assert not Path(store_url).exists()
    with wizd.connect_sync(store_url, clock=lambda: 1000.0) as q:
        job = q.enqueue("t")
    assert {name for kind, name, _, _ in schema(store_url) if kind == "table"} >= TABLES
    assert versions(store_url) == [(v, 1000.0) for v in range(1, LATEST_VERSION + 1)]
    assert journal_mode(store_url) == "wal"
    with wizd.connect_sync(store_url) as q:
        assert q.get(job.id).status is wizd.JobStatus.PENDING


def test_reconnect_changes_no_schema(store_url: str) -> None:
    with wizd.connect_sync(store_url, clock=lambda: 1000.0):
        pass
    before = schema(store_url), versions(store_url)
    with wizd.connect_sync(store_url, clock=lambda: 2000.0):
        pass
    assert (schema(store_url), versions(store_url)) == before


def test_newer_schema_version_is_refused(store_url: str) -> None:
    with wizd.connect_sync(store_url):
        pass
    with sqlite_file(store_url) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (LATEST_VERSION + 1,))
    before = schema(store_url), versions(store_url)

    with pytest.raises(StoreError) as caught, wizd.connect_sync(store_url):
        pass
    message = str(caught.value)
    assert f"schema version {LATEST_VERSION + 1}" in message
    assert f"({LATEST_VERSION})" in message
    assert "upgrade wizd" in message
    assert (schema(store_url), versions(store_url)) == before


def test_file_that_is_not_sqlite_is_refused_and_left_alone(store_url: str) -> None:
    garbage = b"garbage bytes, not a database\n" * 200
    Path(store_url).write_bytes(garbage)
    with pytest.raises(StoreError, match="corrupt or not SQLite"), wizd.connect_sync(store_url):
        pass
    assert Path(store_url).read_bytes() == garbage


def test_sqlite_database_that_is_not_wizd_is_refused_and_left_alone(store_url: str) -> None:
    with sqlite_file(store_url) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    before = schema(store_url)

    with pytest.raises(StoreError, match="not a wizd one") as caught, wizd.connect_sync(store_url):
        pass
    assert "notes" in str(caught.value)
    assert schema(store_url) == before
    assert journal_mode(store_url) == "delete"
    with sqlite_file(store_url) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("mine",)]


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere" / "wizd.db")
    with pytest.raises(StoreError, match="does not exist"), wizd.connect_sync(path):
        pass


def test_migrations_applied_one_by_one_end_as_a_fresh_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading through every release (one connect per schema version) must give the same
    schema as a database created by the newest wizd, and keep the jobs written on the way."""
    fresh = str(tmp_path / "fresh.db")
    with wizd.connect_sync(fresh):
        pass

    stepped = str(tmp_path / "stepped.db")
    bundled = migrations()
    ids = []
    for upto in range(1, len(bundled) + 1):
        monkeypatch.setattr(sqlite_store, "migrations", lambda upto=upto: bundled[:upto])
        with wizd.connect_sync(stepped) as q:
            assert [v for v, _ in versions(stepped)] == list(range(1, upto + 1))
            if upto == len(bundled):
                ids.append(q.enqueue("t").id)
        if upto < len(bundled):
            # A wizd of this version wrote a job: insert it with this version's columns.
            with sqlite_file(stepped) as db:
                cur = db.execute(
                    "INSERT INTO jobs (queue, name, payload, status, backoff, run_at, "
                    "created_at, updated_at) VALUES ('default', 'old', '{}', 'pending', "
                    '\'{"kind": "fixed", "delay": 1.0, "cap": null, "jitter": 0.0}\', '
                    "1, 1, 1)"
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
                if upto >= 7:  # from schema 7 the writer counts its inserts itself
                    db.execute(Q.COUNT_ADD, ("default", "pending", 1))
    monkeypatch.undo()

    assert schema(stepped) == schema(fresh)
    assert [v for v, _ in versions(stepped)] == [v for v, _ in versions(fresh)]
    with wizd.connect_sync(stepped) as q:
        jobs = [q.get(i) for i in ids]
        assert all(j.status is wizd.JobStatus.PENDING for j in jobs)
        assert q.counts()["pending"] == len(ids)


async def test_histories_stored_before_schema_6_are_read_without_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to schema 5 every job stored its enqueued, claimed and completed events; from 6
    they are read from the row. A job written the old way shows each line once, and the
    end of a run that began before the upgrade does not store its claim a second time."""
    path = str(tmp_path / "old.db")
    monkeypatch.setattr(sqlite_store, "migrations", lambda: migrations()[:5])
    async with wizd.connect(path):
        pass
    monkeypatch.undo()
    with sqlite_file(path) as db:  # what a schema-5 wizd wrote: a completed and a running job
        for job_id, status, finished_at in ((1, "completed", 3.0), (2, "running", None)):
            db.execute(
                "INSERT INTO jobs (id, queue, name, payload, status, attempt, backoff, run_at, "
                "created_at, updated_at, started_at, heartbeat_at, worker_id, finished_at) "
                "VALUES (?, 'default', 'old', '{}', ?, 1, "
                '\'{"kind": "fixed", "delay": 1.0, "cap": null, "jitter": 0.0}\', '
                "1, 1, 2, 2, 2, 'w-old', ?)",
                (job_id, status, finished_at),
            )
            stored = [
                (1.0, "enqueued", "pending", 0, None),
                (2.0, "claimed", "running", 1, "w-old"),
            ]
            if status == "completed":
                stored.append((3.0, "completed", "completed", 1, "w-old"))
            db.executemany(
                "INSERT INTO job_events (job_id, at, kind, status, attempt, worker_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(job_id, *event) for event in stored],
            )

    async with wizd.connect(path) as q:
        assert [e.kind for e in await q.events(1)] == ["enqueued", "claimed", "completed"]
        assert [e.kind for e in await q.events(2)] == ["enqueued", "claimed"]
        [recovered] = await q.store.recover_worker("w-old", "crash")
        assert recovered.job.id == 2
        assert [(e.id, e.kind) for e in await q.events(2)] == [
            (1, "enqueued"),
            (2, "claimed"),
            (3, "recovered"),
        ]
    with sqlite_file(path) as db:
        assert db.execute("SELECT COUNT(*) FROM job_events WHERE job_id = 2").fetchone() == (3,)


def plan(path: str, sql: str, args: Sequence[object] | Mapping[str, object]) -> str:
    with sqlite_file(path) as db:
        return " / ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))


def test_retention_expiry_and_stats_read_their_indexes(store_url: str) -> None:
    """Schema 8: retention and the TTL sweep seek their partial indexes instead of scanning
    every job (retention's bound statuses never matched the old index's constant list)."""
    with wizd.connect_sync(store_url):
        pass
    finals = ("completed", "failed", "cancelled")
    cleanup = Q.CLEANUP_CANDIDATES.format(statuses="?,?,?")
    assert "USING INDEX jobs_finished" in plan(store_url, cleanup, (*finals, 1.0))
    assert "USING INDEX jobs_finished" in plan(store_url, Q.STATS_FINISHED, (1.0, "default"))
    assert "USING INDEX jobs_expiring" in plan(store_url, Q.EXPIRED, (1.0,))


class Recording:
    """A sqlite3 connection that keeps the statements run through it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.statements.append((sql, args))
        return self.db.execute(sql, args)


def list_plan(path: str, **where: Any) -> str:
    with sqlite_file(path) as db:
        recording = Recording(db)
        listing.list_page(recording, JobFilter(**where))  # type: ignore[arg-type]
        [(sql, args)] = recording.statements
    return plan(path, sql, args)


def test_lists_and_limited_claims_read_the_indexes_of_schema_9(store_url: str) -> None:
    """Schema 9 keeps pending, running and completed jobs out of jobs_queue_status (a claim
    and a completion no longer write it). What read it reads another index, never a walk of
    every job of a queue: a queue's jobs by creation (no sort any more), one status other
    than those three, running jobs (their own small index), a limited claim's count of the
    queue's pending jobs (the claim index) and of its running ones (job_counts)."""
    with wizd.connect_sync(store_url):
        pass
    by_queue = list_plan(store_url, queue="a")
    assert "USING INDEX jobs_queue_created (queue=?)" in by_queue
    assert "TEMP B-TREE" not in by_queue
    failed = list_plan(store_url, queue="a", statuses=(JobStatus.FAILED,))
    assert "USING INDEX jobs_queue_status (queue=? AND status=?)" in failed
    assert "TEMP B-TREE" not in failed
    two = list_plan(store_url, queue="a", statuses=(JobStatus.FAILED, JobStatus.CANCELLED))
    assert "USING INDEX jobs_queue_status (queue=? AND status=?)" in two
    assert "USING INDEX jobs_running" in list_plan(store_url, statuses=(JobStatus.RUNNING,))
    running = list_plan(store_url, queue="a", statuses=(JobStatus.RUNNING,))
    assert "USING INDEX jobs_running" in running
    load = plan(store_url, Q.QUEUE_LOAD, {"queue": "a", "n": 10})
    assert "SEARCH jobs USING INDEX jobs_claim (queue=?)" in load
    assert "SEARCH job_counts USING PRIMARY KEY" in load
    claim = plan(store_url, Q.CLAIM, {"worker": "w", "now": 1.0, "queue": "a", "n": 10})
    assert "SEARCH jobs USING INDEX jobs_claim (queue=?)" in claim


def test_a_bulk_insert_builds_no_temporary_table_per_row(store_url: str) -> None:
    """An index condition with a list of three constants (`status IN (...)`) made SQLite
    build a temporary b-tree of the list on every run of every INSERT; schema 8 has none."""
    with wizd.connect_sync(store_url):
        pass
    with sqlite_file(store_url) as db:
        params = (None,) * Q.INSERT_JOB_WITH_ID.count("?")
        ops = [r[1] for r in db.execute(f"EXPLAIN {Q.INSERT_JOB_WITH_ID}", params)]
    assert "Insert" in ops
    assert "OpenEphemeral" not in ops
