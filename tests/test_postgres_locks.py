"""PostgreSQL: no statement of wizd waits without a bound for another transaction's locks.

A daemon frozen inside a transaction (SIGSTOP, a VM pause, a partition) holds its row
locks until the server ends that transaction. These tests play the frozen daemon with a
plain connection of their own that holds rows FOR UPDATE, and check each way the store
copes: every session is bounded (lock_timeout, idle_in_transaction_session_timeout, TCP
keepalives at both ends); the reaper skips held rows and takes them on a later pass; a
write that waited lock_timeout fails alone with a StoreError (which its caller retries)
and spoils no other write of its group; and a reap that must wait holds up no heartbeat.
(tests/acceptance/test_postgres_frozen.py freezes a real daemon.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest

import wizd
from tests.conftest import FakeClock, in_own_task
from wizd.errors import StoreError
from wizd.settings import Settings
from wizd.store import Finish, pg_session

Q = "agent"
W = "worker-1"
LOCK_TIMEOUT = 0.5


@pytest.fixture
async def q(postgres_url: str, clock: FakeClock) -> AsyncIterator[wizd.Queue]:
    options: dict[str, Any] = {"lock_timeout": LOCK_TIMEOUT, "idle_in_transaction_timeout": 20}
    async with in_own_task(wizd.connect(postgres_url, clock=clock, **options)) as queue:
        yield queue


@pytest.fixture
def frozen(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session, in the schema's search path, that a test makes hold rows."""
    schema = postgres_url.split("schema=")[1]
    with psycopg.connect(postgres_url.split("?")[0]) as c:
        c.execute(f"SET search_path TO {schema}")
        c.commit()
        yield c
        c.rollback()


def hold(c: psycopg.Connection[Any], *job_ids: int) -> None:
    """Lock these jobs' rows in `c`'s open transaction, as a frozen daemon's would be."""
    c.execute("SELECT id FROM jobs WHERE id = ANY(%s) FOR UPDATE", (list(job_ids),)).fetchall()


def waiting_for_a_lock(postgres_url: str) -> bool:
    """Whether a session of the store waits for a lock right now."""
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0])


async def running(q: wizd.Queue, n: int, **options: Any) -> list[wizd.Job]:
    """n jobs claimed by W."""
    await q.enqueue_many([{"name": "t", "queue": Q, **options}] * n)
    claimed = list(await q.store.claim(Q, W, n))
    assert len(claimed) == n
    return claimed


async def test_every_session_is_bounded(q: wizd.Queue) -> None:
    store: Any = q.store
    expected = {
        "lock_timeout": "500ms",
        "idle_in_transaction_session_timeout": "20s",
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "15000",
    }
    query = "SELECT " + ", ".join(f"current_setting('{name}')" for name in expected)

    def pooled(c: Any) -> tuple[Any, dict[str, str]]:
        return c.conn.execute(query).fetchone(), c.conn.info.get_parameters()

    row, client = await store._read(pooled)
    assert dict(zip(expected, row, strict=True)) == expected
    assert client["keepalives_idle"] == "10"
    assert client["tcp_user_timeout"] == "15000"
    for conn in (await store._loop_connection(), await store._listener()):
        row = await (await conn.execute(query)).fetchone()
        assert dict(zip(expected, row, strict=True)) == expected
        assert conn.info.get_parameters()["keepalives_count"] == "3"


def test_the_timeouts_are_settings_passed_to_the_store() -> None:
    settings = Settings(postgres_lock_timeout=2, postgres_idle_in_transaction_timeout=45)
    options = settings.store_options()
    assert (options["lock_timeout"], options["idle_in_transaction_timeout"]) == (2, 45)
    defaults = Settings()  # those of a store opened without settings (the API's)
    assert defaults.postgres_lock_timeout == pg_session.LOCK_TIMEOUT == 3.0
    assert defaults.postgres_idle_in_transaction_timeout == pg_session.IDLE_IN_TRANSACTION_TIMEOUT


async def test_the_reaper_skips_rows_another_transaction_holds_and_takes_them_later(
    q: wizd.Queue, clock: FakeClock, frozen: psycopg.Connection[Any]
) -> None:
    a, b = await running(q, 2)
    clock.advance(60)
    hold(frozen, a.id)
    with anyio.fail_after(LOCK_TIMEOUT / 2):  # skipped, not waited for
        reaped = await q.store.reap_hung(30)
    assert [item.job.id for item in reaped] == [b.id]
    assert (await q.get(a.id)).status == "running"
    frozen.rollback()  # the server ended the frozen transaction
    assert [item.job.id for item in await q.store.reap_hung(30)] == [a.id]
    assert (await q.get(a.id)).status == "pending"


async def test_recovery_of_a_worker_skips_held_rows_too(
    q: wizd.Queue, frozen: psycopg.Connection[Any]
) -> None:
    a, b = await running(q, 2)
    hold(frozen, b.id)
    with anyio.fail_after(LOCK_TIMEOUT / 2):
        recovered = await q.store.recover_worker(W, "startup")
    assert [item.job.id for item in recovered] == [a.id]


async def test_a_write_waits_for_a_held_row_no_longer_than_lock_timeout_and_fails_alone(
    q: wizd.Queue, frozen: psycopg.Connection[Any]
) -> None:
    (job,) = await running(q, 1)
    hold(frozen, job.id)
    done = Finish(job.id, W, job.attempt, "completed", result=1)
    outcomes: dict[str, Any] = {}

    async def finish() -> None:
        try:
            outcomes["finish"] = await q.store.finish([done])
        except StoreError as exc:
            outcomes["finish"] = exc

    async def enqueue() -> None:
        outcomes["enqueue"] = await q.enqueue_many([{"name": "other", "queue": "b"}] * 2)

    began = time.monotonic()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:  # both in one group commit
            tg.start_soon(finish)
            tg.start_soon(enqueue)
    # The group waited lock_timeout, then again with each op in a savepoint of its own.
    assert time.monotonic() - began < 2 * LOCK_TIMEOUT + 2.0
    assert isinstance(outcomes["finish"], StoreError), outcomes
    assert "lock_timeout" in str(outcomes["finish"])
    assert [j.status for j in outcomes["enqueue"]] == ["pending", "pending"]
    assert (await q.get(job.id)).status == "running"
    # The worker writes the outcome again (a StoreError is what its retry loop retries).
    frozen.rollback()
    assert await q.store.finish([done]) == [True]
    assert (await q.get(job.id)).status == "completed"


async def test_a_clients_cancel_of_a_held_row_is_told_within_lock_timeout(
    q: wizd.Queue, frozen: psycopg.Connection[Any]
) -> None:
    (job,) = await running(q, 1)
    hold(frozen, job.id)
    with anyio.fail_after(LOCK_TIMEOUT + 2.0), pytest.raises(StoreError, match="lock_timeout") as e:
        await q.cancel(job.id)
    assert "\n" not in str(e.value)  # one line for the CLI
    frozen.rollback()
    assert (await q.cancel(job.id))[0].status == "cancelled"


async def test_a_reap_that_must_wait_holds_up_no_heartbeat(
    q: wizd.Queue, clock: FakeClock, frozen: psycopg.Connection[Any], postgres_url: str
) -> None:
    """A reaped job's last attempt fails it, and its dependent must then be locked: a
    wait the reaper cannot skip. The daemon's heartbeats go on meanwhile."""
    (last,) = await running(q, 1, attempts=1)
    dependent = await q.enqueue("after", queue="other", depends_on=[last.id])
    clock.advance(60)
    hold(frozen, dependent.id)
    beats: list[float] = []

    async def reap() -> None:
        with pytest.raises(StoreError, match="lock_timeout"):
            await q.store.reap_hung(30)

    async def heartbeats() -> None:
        for _ in range(1000):  # until the reap waits
            if waiting_for_a_lock(postgres_url):
                break
            await anyio.sleep(0.005)
        began = time.monotonic()
        await q.store.heartbeat("worker-2", 0, [])
        beats.append(time.monotonic() - began)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reap)
            tg.start_soon(heartbeats)
    assert beats[0] < LOCK_TIMEOUT / 2, beats
    frozen.rollback()
    assert [item.job.id for item in await q.store.reap_hung(30)] == [last.id]
    assert (await q.get(dependent.id)).status in ("failed", "cancelled")


def test_a_urls_own_keepalives_win_and_bad_timeouts_are_refused() -> None:
    config = pg_session.PostgresConfig("postgresql://h/db?keepalives_idle=60&keepalives=0")
    kwargs = config.connect_kwargs()
    assert "keepalives_idle" not in kwargs
    assert "keepalives" not in kwargs
    assert kwargs["keepalives_count"] == 3
    with pytest.raises(StoreError, match="lock_timeout must be 0-86400 seconds, got -1"):
        pg_session.PostgresConfig("postgresql://h/db", lock_timeout=-1)
    assert "lock_timeout = 0;" in config.session_setup(lock_timeout=False).as_string(None)


async def test_a_schedule_another_transaction_holds_is_skipped_and_fired_later(
    q: wizd.Queue, clock: FakeClock, frozen: psycopg.Connection[Any]
) -> None:
    schedule = await q.schedule("poll", every=60)
    clock.advance(61)
    frozen.execute("SELECT id FROM schedules WHERE id = %s FOR UPDATE", (schedule.id,))
    with anyio.fail_after(LOCK_TIMEOUT / 2):  # skipped, not waited for
        assert (await q.fire_schedules()).jobs == []
    frozen.rollback()
    (fired,) = (await q.fire_schedules()).jobs
    assert fired.schedule_id == schedule.id
