"""Watching jobs that a real daemon runs in another process, on SQLite and PostgreSQL:
Queue.watch sees a job's whole life (progress, log, streamed text), and a client that
disconnects and resumes from its cursor misses nothing and sees nothing twice; `wizd logs
-f` follows a job to its end.

The watch's safety-net re-read is pushed out to an hour in this process, so what a watch
sees came because the store woke it (the change watcher, NOTIFY), not by polling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Harness
from tests.test_watching import registered, take
from wizd import watching

pytestmark = pytest.mark.slow


@pytest.fixture
def h(store_harness: Harness) -> Harness:
    """Once per store (SQLite, PostgreSQL)."""
    return store_harness


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "SAFETY_NET", 3600.0)


async def until_final(events: AsyncIterator[wizd.WatchEvent]) -> list[wizd.WatchEvent]:
    got: list[wizd.WatchEvent] = []
    with anyio.fail_after(60):
        while not got or not got[-1].final:
            got.append(await events.__anext__())
    return got


async def test_watch_a_daemons_job_and_resume_after_a_disconnect(h: Harness) -> None:
    h.start().ready()
    pieces = ["Hel", "lo ", "wor", "ld"]
    async with wizd.connect(str(h.db)) as q:
        first = q.watch(queue=AGENT)
        seen: list[wizd.WatchEvent] = []
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                seen.extend(await take(first, 1))

            tg.start_soon(follow)
            await registered(q)
            job = await q.enqueue("narrate", {"pieces": pieces}, queue=AGENT)
        await first.aclose()  # type: ignore[attr-defined]  # disconnected after one event
        again = q.watch(queue=AGENT, after=seen[-1].cursor)
        rest = await until_final(again)
        await again.aclose()  # type: ignore[attr-defined]
        everything = seen + rest
        kinds = [e.kind for e in everything]
        assert kinds[:4] == ["enqueued", "claimed", "progress", "log"]
        assert kinds[-1] == "completed"
        assert set(kinds[4:-1]) == {"stream"}
        assert "".join(e.message or "" for e in everything if e.kind == "stream") == "Hello world"
        cursors = [e.cursor for e in everything]
        assert cursors == sorted(set(cursors))  # in order, none twice
        # A watch from the first event sees the rest again, no more, no fewer.
        replay = q.watch(queue=AGENT, after=cursors[0])
        assert [e.cursor for e in await until_final(replay)] == cursors[1:]
        await replay.aclose()  # type: ignore[attr-defined]
        assert {e.job_id for e in everything} == {job.id}
        assert await q.stream_text(job) == "Hello world"

    done = await anyio.to_thread.run_sync(
        lambda: h.run("logs", "-f", str(job.id), "--database", str(h.db))
    )
    assert done.returncode == 0, done.stderr
    assert "progress" in done.stdout
    assert "50% half" in done.stdout
    assert "completed" in done.stdout


async def test_the_daemon_drops_a_lapsed_lease_so_nobody_watching_costs_nothing_again(
    h: Harness,
) -> None:
    daemon = h.start(env={"WIZD_REAPER_INTERVAL": "0.2"}).ready()
    async with wizd.connect(str(h.db)) as q:

        async def leases() -> int:
            found: int = await q.store._read(  # type: ignore[attr-defined]
                lambda c: c.execute("SELECT count(*) FROM feed_watchers").fetchone()[0]
            )
            return found

        await q.store.watch_register("went-away", lease=1.0)  # a watcher that never renews
        assert await leases() == 1
        await anyio.to_thread.run_sync(daemon.wait_for, "watch_leases_expired")
        assert await leases() == 0
        job = await q.enqueue("narrate", {"pieces": ["a"]}, queue=AGENT)
        assert (await q.wait(job, timeout=30)).status == "completed"
        rows: int = await q.store._read(  # type: ignore[attr-defined]
            lambda c: c.execute("SELECT count(*) FROM job_feed").fetchone()[0]
        )
        assert rows <= 1  # nothing recorded for the job (one row may be kept for its id)
