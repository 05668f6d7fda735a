"""Opening a store: read-only opens that create, migrate and change nothing (and work for a
user who may only read the file), a schema check that waits for no writer, and database
files created private (0600, or the `file_mode` setting) on every path."""

from __future__ import annotations

import ctypes
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import psycopg
import pytest
from conftest import PG_DB, PG_SERVER, in_own_task, sqlite_file

import wizd
import wizd.store.sqlite as sqlite_store
from tests.acceptance.conftest import open_harness
from wizd import StoreError
from wizd.store.postgres import LATEST_VERSION as LATEST_VERSION_PG
from wizd.store.sqlite import LATEST_VERSION, migrations

WIZD = Path(sys.executable).with_name("wizd")
PR_CAPBSET_DROP = 24  # prctl: drop a capability from the bounding set
CREATE = ("create", "-a", "researcher", "-t", "t")
# Every command that only reads, with the arguments it needs ({job} and {parent} are ids).
READ_COMMANDS = (
    "status",
    "jobs",
    "jobs -s failed",
    "info {job}",
    "logs {job}",
    "logs {done} -f",
    "tree {job}",
    "stats researcher",
    "peek researcher",
    "agents",
    "hung",
    "cleanup --dry-run",
    "monitor --iterations 1",
    "queue limits",
    "schedule list",
    "job subtasks {parent}",
    "job consolidate {parent}",
    "token list",
)


def env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
    return {**keep, **extra}


def without_privileges() -> None:
    """In the child, before exec: drop every capability (root then obeys file modes like
    any user: CAP_DAC_OVERRIDE would let it write a 0444 file in a 0555 folder)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)


def wizd_cli(
    *args: str, cwd: Path, database: str | None = None, unprivileged: bool = False, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`wizd ARGS` in `cwd`; `unprivileged`: without root's right to ignore file modes."""
    if database is not None:
        extra["WIZD_DATABASE"] = database
    return subprocess.run(
        [str(WIZD), *args],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=without_privileges if unprivileged else None,
    )


def files_of(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file in `directory`: its mode, its mtime (ns) and its bytes."""
    found = {}
    for path in sorted(directory.iterdir()):
        info = path.stat()
        found[path.name] = (info.st_mode, info.st_mtime_ns, path.read_bytes())
    return found


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def make_database(path: Path) -> dict[str, int]:
    """A wizd database with a pending job, a cancelled one and a distributed job; their ids.
    Closed, so SQLite has checkpointed the WAL and removed -wal and -shm."""
    with wizd.connect_sync(str(path), file_mode=0o644) as q:
        job = q.enqueue("research", {"q": "heat pumps"}, queue="researcher")
        (done,) = q.cancel(q.enqueue("research", queue="researcher"))
        parent = q.create_distributed("compare", ["a"], queue="researcher")
        q.create_token("read", ["researcher"])
    return {"job": job.id, "done": done.id, "parent": parent.id}


def read_only(directory: Path) -> None:
    """Make the folder and every file in it read-only (for a user without root's rights)."""
    for path in directory.iterdir():
        path.chmod(0o444)
    directory.chmod(0o555)


# -- item 4: read commands open the database read-only ---------------------------------------


def test_read_commands_work_for_a_user_who_may_only_read_and_change_nothing(
    tmp_path: Path,
) -> None:
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    db = shared_dir / "wizd.db"
    ids = make_database(db)
    assert sorted(p.name for p in shared_dir.iterdir()) == ["wizd.db"]
    read_only(shared_dir)
    before = files_of(shared_dir)
    for command in READ_COMMANDS:
        args = command.format(**ids).split()
        done = wizd_cli(*args, cwd=shared_dir, database=str(db), unprivileged=True)
        # `logs -f` of the cancelled job follows it to its end, then exits 1 (not completed).
        expected = 1 if command == "logs {done} -f" else 0
        assert done.returncode == expected, f"wizd {command}: {done.stderr}"
        assert "Traceback" not in done.stderr
        assert files_of(shared_dir) == before, f"wizd {command} changed the folder"
    shared_dir.chmod(0o755)


def test_read_commands_read_beside_a_running_writer(tmp_path: Path) -> None:
    """While another connection has the database open (-wal and -shm exist), a reader who
    may not write them still reads, and sees what that writer committed last."""
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    db = shared_dir / "wizd.db"
    make_database(db)
    with wizd.connect_sync(str(db)) as writer:
        job = writer.enqueue("late", queue="researcher")
        assert (shared_dir / "wizd.db-wal").exists()
        read_only(shared_dir)
        before = files_of(shared_dir)
        done = wizd_cli("info", str(job.id), cwd=shared_dir, database=str(db), unprivileged=True)
        assert done.returncode == 0, done.stderr
        assert "late" in done.stdout
        assert files_of(shared_dir) == before
        shared_dir.chmod(0o755)


async def test_a_read_only_client_sees_a_writer_that_starts_after_it(store_url: str) -> None:
    """Opened while no connection had the file open (immutable: no -wal, no -shm made), the
    reader still sees the commits of a writer that opens the file later."""
    with wizd.connect_sync(store_url) as q:
        q.enqueue("first")
    assert not await anyio.Path(store_url + "-wal").exists()
    async with wizd.connect(store_url, read_only=True) as reader:
        assert [j.name for j in await reader.list()] == ["first"]
        assert not await anyio.Path(store_url + "-wal").exists()
        async with wizd.connect(store_url) as writer:
            await writer.enqueue("second")
            assert [j.name for j in await reader.list()] == ["second", "first"]


async def test_a_read_only_client_sees_a_writer_that_came_and_went(store_url: str) -> None:
    """A writer that opens, commits and closes between two reads leaves no -wal behind but a
    changed file: the immutable reader opens it again rather than trust its cached pages."""
    with wizd.connect_sync(store_url) as q:
        q.enqueue("first")
    async with wizd.connect(store_url, read_only=True) as reader:
        assert [j.name for j in await reader.list()] == ["first"]
        async with wizd.connect(store_url) as writer:
            await writer.enqueue("second")
        assert not await anyio.Path(store_url + "-wal").exists()
        assert [j.name for j in await reader.list()] == ["second", "first"]


def test_status_on_an_empty_file_says_it_is_not_a_wizd_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    done = wizd_cli("-d", str(empty), "status", cwd=tmp_path)
    assert done.returncode == 1
    assert f"{empty} is not a wizd database" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0


def test_read_command_on_a_missing_file_says_there_is_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for command in ("status", "jobs", "info 1"):
        done = wizd_cli(*command.split(), cwd=tmp_path, database=str(missing))
        assert done.returncode == 1
        assert done.stderr.strip() == f"wizd: no database at {missing}"
    assert list(tmp_path.iterdir()) == []


def test_read_command_on_an_older_schema_asks_for_a_migration_and_migrates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "old.db"
    older = migrations()[:-1]
    monkeypatch.setattr(sqlite_store, "migrations", lambda: older)
    with wizd.connect_sync(str(db)):
        pass
    monkeypatch.undo()
    before = files_of(tmp_path)
    done = wizd_cli("status", cwd=tmp_path, database=str(db))
    assert done.returncode == 1
    assert f"schema version {LATEST_VERSION - 1}, older than" in done.stderr
    assert "start the daemon" in done.stderr
    assert files_of(tmp_path) == before
    with sqlite_file(str(db)) as c:
        assert c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == (
            LATEST_VERSION - 1
        )


def test_create_without_a_database_setting_says_where_it_made_one(tmp_path: Path) -> None:
    first = wizd_cli("create", "-a", "researcher", "-t", "research", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == f"wizd: created a new database at {tmp_path / 'wizd.db'}"
    again = wizd_cli("create", "-a", "researcher", "-t", "research", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ["create", "-a", "researcher", "-t", "research", "--priority", "urgent"],
        ["schedule", "add", "-a", "researcher", "-t", "x", "--cron", "0 0 30 2 *"],
        ["job", "create", "--distributed", "--prompt", "p", "--subtask", ""],
    ],
    ids=["create", "schedule add", "job create"],
)
def test_refused_input_leaves_no_new_database_behind(tmp_path: Path, args: list[str]) -> None:
    refused = wizd_cli(*args, cwd=tmp_path)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "created a new database" not in refused.stderr
    assert list(tmp_path.iterdir()) == []


async def test_a_read_only_client_refuses_every_write(backend_url: str) -> None:
    async with wizd.connect(backend_url) as q:
        job = await q.enqueue("t")
    async with wizd.connect(backend_url, read_only=True) as reader:
        assert (await reader.get(job.id)).status is wizd.JobStatus.PENDING
        with pytest.raises(StoreError, match="read-only"):
            await reader.enqueue("x")
        with pytest.raises(StoreError, match="read-only"):
            await reader.cancel(job.id)
    async with wizd.connect(backend_url) as q:
        assert [j.id for j in await q.list()] == [job.id]


async def test_a_read_only_client_of_an_empty_store_creates_nothing(
    backend_url: str, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match=r"no database at|no wizd tables"):
        async with wizd.connect(backend_url, read_only=True):
            pass
    if backend_url.startswith("postgresql://"):
        schema = backend_url.rpartition("schema=")[2]
        with psycopg.connect(f"{PG_SERVER}/{PG_DB}") as c:
            found = c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            assert found.fetchone() is None, "the read-only open created the schema"
    else:
        assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_a_read_only_client_of_an_older_postgres_schema_migrates_nothing(
    postgres_url: str,
) -> None:
    async with wizd.connect(postgres_url):
        pass
    schema = postgres_url.rpartition("schema=")[2]
    with psycopg.connect(f"{PG_SERVER}/{PG_DB}", autocommit=True) as c:
        c.execute(f"DELETE FROM {schema}.schema_version WHERE version = %s", (LATEST_VERSION_PG,))
    with pytest.raises(StoreError, match="read commands never migrate"):
        async with wizd.connect(postgres_url, read_only=True):
            pass
    with psycopg.connect(f"{PG_SERVER}/{PG_DB}") as c:
        row = c.execute(f"SELECT MAX(version) FROM {schema}.schema_version").fetchone()
    assert row == (LATEST_VERSION_PG - 1,)


# -- item 20: the schema check takes no write lock -------------------------------------------


async def test_connect_and_read_while_another_process_holds_the_write_lock(
    store_url: str, tmp_path: Path
) -> None:
    """busy_timeout is 5 s: a connect that waited for the lock would fail ("locked") or
    take that long; opening a current database takes no lock at all."""
    with wizd.connect_sync(store_url) as q:
        job = q.enqueue("t")
    holder = sqlite3.connect(store_url, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE jobs SET name = 'held' WHERE id = ?", (job.id,))
        with anyio.fail_after(2):
            async with wizd.connect(store_url) as client:
                assert (await client.get(job.id)).name == "t"
            async with wizd.connect(store_url, read_only=True) as reader:
                assert (await reader.get(job.id)).name == "t"
        started = time.monotonic()
        done = await anyio.to_thread.run_sync(
            lambda: wizd_cli("info", str(job.id), cwd=tmp_path, database=store_url)
        )
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 4
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- item 18: database files are created 0600 ------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files readable by everyone (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_the_api_creates_the_database_and_its_wal_and_shm_0600(store_url: str) -> None:
    async with in_own_task(wizd.connect(store_url)) as q:
        await q.enqueue("t")
        for suffix in ("", "-wal", "-shm"):
            assert mode(store_url + suffix) == 0o600, suffix


@pytest.mark.usefixtures("open_umask")
def test_the_daemon_creates_the_database_and_its_wal_and_shm_0600(tmp_path: Path) -> None:
    with open_harness(tmp_path) as harness:
        daemon = harness.start().ready()
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{harness.db}{suffix}") == 0o600, suffix
        daemon.signal(15)
        assert daemon.wait_exit(30) == 0


@pytest.mark.usefixtures("open_umask")
def test_the_cli_creates_the_database_0600_or_as_file_mode_says(tmp_path: Path) -> None:
    done = wizd_cli(*CREATE, cwd=tmp_path, database="a.db")
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "a.db") == 0o600
    shared = wizd_cli(
        "create",
        "-a",
        "researcher",
        "-t",
        "t",
        cwd=tmp_path,
        database="b.db",
        WIZD_FILE_MODE="0640",
    )
    assert shared.returncode == 0, shared.stderr
    assert mode(tmp_path / "b.db") == 0o640
    with wizd.connect_sync(str(tmp_path / "b.db")) as q:  # its -wal and -shm follow it
        q.enqueue("t")
        assert mode(tmp_path / "b.db-wal") == mode(tmp_path / "b.db-shm") == 0o640


def test_an_existing_file_keeps_its_mode(store_url: str) -> None:
    Path(store_url).touch(mode=0o640)
    os.chmod(store_url, 0o640)
    with wizd.connect_sync(store_url) as q:
        q.enqueue("t")
    assert mode(store_url) == 0o640


def test_a_file_mode_the_owner_cannot_use_is_refused(tmp_path: Path) -> None:
    done = wizd_cli(
        "create",
        "-a",
        "researcher",
        "-t",
        "t",
        cwd=tmp_path,
        database="a.db",
        WIZD_FILE_MODE="0400",
    )
    assert done.returncode != 0
    assert "file_mode" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
