"""PostgreSQL: the change feed's triggers are off while nobody watches (migration 0015).

A registration turns them on when no lease is held, after every writer in flight ended
and before any later one writes (the tables' SHARE ROW EXCLUSIVE lock); the daemons' sweep
turns them off once the last lease is dropped. A plain connection of the test plays a
writer in flight: it holds the jobs table's ROW EXCLUSIVE lock in an open transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest

import wizd
from tests.acceptance.conftest import wait_until
from tests.conftest import in_own_task
from wizd.errors import StoreError

Q = "agent"


@pytest.fixture
async def q(postgres_url: str) -> AsyncIterator[wizd.Queue]:
    async with in_own_task(wizd.connect(postgres_url)) as queue:
        yield queue


@pytest.fixture
async def impatient(postgres_url: str) -> AsyncIterator[wizd.Queue]:
    """A client of the same store whose statements wait 0.5 s at most for a lock."""
    async with in_own_task(wizd.connect(postgres_url, lock_timeout=0.5)) as queue:
        yield queue


@pytest.fixture
def writer(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session in the schema's search path: a writer the test keeps in flight."""
    schema = postgres_url.split("schema=")[1]
    with psycopg.connect(postgres_url.split("?")[0]) as c:
        c.execute(f"SET search_path TO {schema}")
        c.commit()
        yield c
        c.rollback()


def in_flight(c: psycopg.Connection[Any]) -> None:
    """Make `c`'s open transaction a writer of jobs (its lock held till it ends)."""
    c.execute("UPDATE jobs SET priority = priority WHERE id = -1")


def triggers(q: wizd.Queue) -> set[str]:
    """The states of the feed's four triggers: {"on"}, {"off"} or both."""
    store: Any = q.store
    with store._pool.connection() as c:
        rows = c.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgname LIKE 'job_feed_%' AND tgrelid IN "
            "('jobs'::regclass, 'job_events'::regclass, 'job_streams'::regclass)"
        ).fetchall()
    assert len(rows) == 4
    return {"off" if r[0] == "D" else "on" for r in rows}


async def feed_rows(q: wizd.Queue) -> int:
    store: Any = q.store
    return int(
        await store._read(lambda c: c.execute("SELECT count(*) FROM job_feed").fetchone()[0])
    )


async def expire_leases(q: wizd.Queue) -> None:
    store: Any = q.store
    await store._write(
        lambda c, now: c.execute("UPDATE feed_watchers SET expires_at = ?", (now - 1,))
    )


async def test_the_triggers_are_on_only_while_a_lease_is_held(q: wizd.Queue) -> None:
    assert triggers(q) == {"off"}  # a new store: nobody watches
    await q.enqueue("t", queue=Q)
    assert await feed_rows(q) == 0
    head = await q.store.watch_register("w1")
    assert triggers(q) == {"on"}
    job = await q.enqueue("t", queue=Q)
    (event,) = await q.store.feed_after(head)
    assert (event.job_id, event.kind) == (job.id, "enqueued")
    await q.store.watch_register("w2")  # a second lease: no change
    assert await q.store.sweep_feed() == 0  # live leases: the triggers stay on
    assert triggers(q) == {"on"}
    await expire_leases(q)
    assert await q.store.sweep_feed() == 2
    assert triggers(q) == {"off"}
    await q.enqueue("t", queue=Q)
    assert [e.job_id for e in await q.store.feed_after(0)] == [job.id]  # nothing new


async def test_a_lease_starts_after_the_writers_in_flight_and_sees_every_later_commit(
    q: wizd.Queue, writer: psycopg.Connection[Any], postgres_url: str
) -> None:
    """The registration waits for the writer in flight; a writer that comes meanwhile
    waits for the registration, and its commit is in the feed after the watch's head."""
    in_flight(writer)
    heads: list[int] = []
    later: list[wizd.Job] = []
    async with anyio.create_task_group() as tg:

        async def register() -> None:
            heads.append(await q.store.watch_register("w1", resume=None))

        async def enqueue() -> None:
            later.append(await q.enqueue("t", queue=Q))

        tg.start_soon(register)
        await until_waiting(postgres_url, 1, "the registration to wait for the writer")
        tg.start_soon(enqueue)
        await until_waiting(postgres_url, 2, "the enqueue to wait for the registration")
        assert not heads
        assert not later
        writer.commit()
    (head,) = heads
    events = await q.store.feed_after(head)
    assert [(e.job_id, e.kind) for e in events] == [(later[0].id, "enqueued")]


async def test_a_lease_that_cannot_start_within_lock_timeout_fails_clearly_and_leaves_none(
    impatient: wizd.Queue, writer: psycopg.Connection[Any]
) -> None:
    in_flight(writer)
    with pytest.raises(StoreError, match="change feed could not start within"):
        await impatient.store.watch_register("w1")
    writer.rollback()
    assert triggers(impatient) == {"off"}
    store: Any = impatient.store
    leases = await store._read(
        lambda c: c.execute("SELECT count(*) FROM feed_watchers").fetchone()[0]
    )
    assert leases == 0
    await impatient.store.watch_register("w1")  # the writer gone, it starts
    assert triggers(impatient) == {"on"}


async def test_a_sweep_that_finds_the_tables_busy_leaves_the_triggers_on_till_the_next(
    q: wizd.Queue, writer: psycopg.Connection[Any]
) -> None:
    """Turning off waits 100 ms at most, not lock_timeout (3 s): every writer queues
    behind it meanwhile."""
    await q.store.watch_register("w1")
    await expire_leases(q)
    in_flight(writer)
    started = time.monotonic()
    assert await q.store.sweep_feed() == 1  # the lease goes all the same
    assert time.monotonic() - started < 1.5
    assert triggers(q) == {"on"}
    writer.rollback()
    assert await q.store.sweep_feed() == 0
    assert triggers(q) == {"off"}


async def test_a_role_that_does_not_own_the_tables_turns_the_feed_on_if_it_may_watch(
    q: wizd.Queue, postgres_url: str
) -> None:
    """wizd_feed_switch runs as its owner: a client of another role may start a watch,
    if it may take a lease; one that may only read is refused before any lock."""
    database, schema = postgres_url.split("?")[0], postgres_url.split("schema=")[1]
    role = f"watcher_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
            with psycopg.connect(database, user=role, autocommit=True) as c:
                c.execute(f"SET search_path TO {schema}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="take a lease"):
                    c.execute("SELECT wizd_feed_switch(true)")
                assert triggers(q) == {"off"}
                admin.execute(f"GRANT INSERT, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owner"):
                    c.execute("ALTER TABLE jobs ENABLE TRIGGER job_feed_enqueued")
                assert c.execute("SELECT wizd_feed_switch(true)").fetchone() == (True,)
            assert triggers(q) == {"on"}
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


async def until_waiting(postgres_url: str, n: int, what: str) -> None:
    await anyio.to_thread.run_sync(lambda: wait_until(lambda: waiting(postgres_url, n), 5, what))


def waiting(postgres_url: str, n: int) -> bool:
    """Whether n sessions of the test's database wait for a lock right now."""
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0] >= n)
