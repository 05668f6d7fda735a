"""Awaiting jobs (wizd.waiting, wizd.store.waits) on both stores, two connections in this
process standing for two processes: the waiter's store and another that makes jobs final.

The safety-net re-read is pushed out to an hour, so a wait that returns did so because the
store woke it (SQLite's change watcher, PostgreSQL's NOTIFY), not because it polled. Each
test makes the job final only once the waiter sleeps in wait_for_final (an event, not a nap).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import wizd
from tests.conftest import in_own_task
from wizd import waiting
from wizd.model import JobStatus
from wizd.store.base import Finish

Q = "agent"


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "SAFETY_NET", 3600.0)


@pytest.fixture
async def waiter(backend_url: str) -> AsyncIterator[wizd.Queue]:
    async with in_own_task(wizd.connect(backend_url)) as q:
        yield q


def sleeping(q: wizd.Queue, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Awaitable[None]]:
    """Return a function that returns once q's waits sleep (each call: the next sleep)."""
    asleep = [anyio.Event()]
    original = q.store.wait_for_final

    async def wait_for_final(mark: int, timeout: float) -> None:
        asleep[-1].set()
        await original(mark, timeout)

    monkeypatch.setattr(q.store, "wait_for_final", wait_for_final)

    async def next_sleep() -> None:
        await asleep[-1].wait()
        asleep.append(anyio.Event())

    return next_sleep


async def complete(q: wizd.Queue, job_id: int, result: Any = None, error: str = "") -> None:
    """Run the job as a daemon would: claim it, then write its outcome."""
    (claimed,) = await q.store.claim(Q, "w1", 1)
    assert claimed.id == job_id
    outcome = "failed" if error else "completed"
    finish = Finish(job_id, "w1", claimed.attempt, outcome, result, error or None, retry=False)
    assert await q.store.finish([finish]) == [True]


async def test_wait_wakes_when_another_connection_completes_the_job(
    waiter: wizd.Queue, other: wizd.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    asleep = sleeping(waiter, monkeypatch)
    job = await waiter.enqueue("search", {"q": "x"}, queue=Q)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            done: list[wizd.Job] = []

            async def wait() -> None:
                done.append(await waiter.wait(job))

            tg.start_soon(wait)
            await asleep()
            await complete(other, job.id, {"answer": 42})
    assert done[0].status is JobStatus.COMPLETED
    assert done[0].result == {"answer": 42}


async def test_result_of_a_job_failed_elsewhere_raises_with_its_error(
    waiter: wizd.Queue, other: wizd.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    asleep = sleeping(waiter, monkeypatch)
    job = await waiter.enqueue("search", queue=Q, attempts=1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            raised: list[BaseException] = []

            async def result() -> None:
                with pytest.raises(wizd.JobFailed) as info:
                    await waiter.result(job)
                raised.append(info.value)

            tg.start_soon(result)
            await asleep()
            await complete(other, job.id, error="ValueError: no sources")
    error = raised[0]
    assert isinstance(error, wizd.JobFailed)
    assert isinstance(error, wizd.WizdError)
    assert error.job.status is JobStatus.FAILED
    assert str(error) == f"job {job.id} failed: ValueError: no sources"


async def test_result_of_a_job_cancelled_elsewhere_raises(
    waiter: wizd.Queue, other: wizd.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    asleep = sleeping(waiter, monkeypatch)
    job = await waiter.enqueue("search", queue=Q)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def result() -> None:
                with pytest.raises(wizd.JobFailed, match=f"job {job.id} cancelled"):
                    await waiter.result(job)

            tg.start_soon(result)
            await asleep()
            await other.cancel(job)


async def test_result_of_a_completed_job(waiter: wizd.Queue) -> None:
    job = await waiter.enqueue("search", queue=Q)
    await complete(waiter, job.id, [1, "two"])
    assert await waiter.result(job.id, timeout=0) == [1, "two"]
    assert (await waiter.wait(str(job.id))).status is JobStatus.COMPLETED


async def test_wait_times_out_naming_the_job_and_its_status(waiter: wizd.Queue) -> None:
    job = await waiter.enqueue("search", queue=Q)
    with anyio.fail_after(20), pytest.raises(wizd.WaitTimeout) as info:
        await waiter.wait(job, timeout=0.05)
    assert isinstance(info.value, wizd.WizdError)
    assert (info.value.job_id, info.value.status) == (job.id, JobStatus.PENDING)
    assert str(info.value) == f"job {job.id} is still pending after waiting 0.05s"
    with pytest.raises(wizd.WaitTimeout, match=f"job {job.id} is still pending"):
        await waiter.result(job, timeout=0)


async def test_as_completed_yields_in_the_order_jobs_became_final(
    waiter: wizd.Queue, other: wizd.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    asleep = sleeping(waiter, monkeypatch)
    a, b, c = [await waiter.enqueue("search", {"i": i}, queue="nobody") for i in range(3)]
    seen: list[int] = []
    with anyio.fail_after(20):
        completions = waiter.as_completed([a, b.id, str(c.id)])
        for ending in (b, c, a):
            async with anyio.create_task_group() as tg:

                async def take_next() -> None:
                    seen.append((await anext(completions)).id)

                tg.start_soon(take_next)
                await asleep()  # it read the rows and sleeps: make the next job final
                await other.cancel(ending)
        with pytest.raises(StopAsyncIteration):
            await anext(completions)
    assert seen == [b.id, c.id, a.id]
    # wait_many gives them back in the order asked, whatever order they ended in.
    assert [j.id for j in await waiter.wait_many([c, a, b])] == [c.id, a.id, b.id]


async def test_concurrent_waits_and_the_daemons_watch_all_wake(
    waiter: wizd.Queue, other: wizd.Queue
) -> None:
    """Tasks of one process waiting at once share one watch: a commit wakes them all (the
    first to notice it must not swallow it)."""
    jobs = [await waiter.enqueue("search", queue="nobody") for _ in range(3)]
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            ended: list[int] = []

            async def wait(job: wizd.Job) -> None:
                ended.append((await waiter.wait(job)).id)

            for job in jobs:
                tg.start_soon(wait, job)
            tg.start_soon(waiter.store.wait_for_change, 3600.0)  # as a daemon's watcher
            await wizd_all_asleep(waiter, 3)
            await other.cancel(*jobs)
    assert sorted(ended) == [j.id for j in jobs]


async def wizd_all_asleep(q: wizd.Queue, n: int) -> None:
    """Return once `n` waits sleep on q's store (their shared watch has a leader)."""
    wakeups = getattr(q.store, "wakeups", None) or q.store._final.wakeups  # type: ignore[attr-defined]
    while not wakeups._watching:  # a checkpoint per turn: every task gets to run
        await anyio.lowlevel.checkpoint()
    for _ in range(n * 4):  # and let the others join it
        await anyio.lowlevel.checkpoint()


async def test_bad_arguments_are_refused_naming_them(waiter: wizd.Queue) -> None:
    job = await waiter.enqueue("search", queue=Q)
    with pytest.raises(wizd.InvalidJob, match=r"^id: must be a job id"):
        await waiter.wait("abc")
    with pytest.raises(wizd.InvalidJob, match=r"^timeout: "):
        await waiter.wait(job, timeout=-1)
    with pytest.raises(wizd.InvalidJob, match=r"^timeout: "):
        await waiter.result(job, timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(wizd.InvalidJob, match=r"^jobs: give at least one job id"):
        await waiter.wait_many([])
    with pytest.raises(wizd.InvalidJob, match=r"^jobs: must be an integer >= 1"):
        waiter.as_completed([job, 0])  # refused when called, not when first stepped
    with pytest.raises(wizd.JobNotFound):
        await waiter.wait(job.id + 1000)


def test_sync_client_waits_and_iterates(backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        a, b = q.enqueue("search", queue="nobody"), q.enqueue("search", queue="nobody")
        q.cancel(b)
        with pytest.raises(wizd.WaitTimeout):
            q.wait(a, timeout=0)
        completions = q.as_completed([a, b])
        assert next(completions).id == b.id
        q.cancel(a)
        assert [j.id for j in completions] == [a.id]
        assert q.wait(a).status is JobStatus.CANCELLED
        with pytest.raises(wizd.JobFailed):
            q.result(b)
        with pytest.raises(wizd.InvalidJob, match=r"^jobs: "):
            q.as_completed([])


async def test_postgres_client_listens_only_while_it_waits(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session left listening by a client that no longer reads it would hold back the
    server's notification queue: the client UNLISTENs when its last wait ends."""
    async with in_own_task(wizd.connect(postgres_url)) as q:
        listener = q.store._final  # type: ignore[attr-defined]

        async def channels() -> list[str]:
            cur = await listener._conn.execute("SELECT pg_listening_channels()")
            return [row[0] for row in await cur.fetchall()]

        asleep = sleeping(q, monkeypatch)
        job = await q.enqueue("search", queue="nobody")
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(q.wait, job)
                await asleep()
                assert listener._waiting == 1
                await q.cancel(job)
        assert listener._waiting == 0
        assert await channels() == []
        with pytest.raises(wizd.WaitTimeout):
            await q.wait(await q.enqueue("search", queue="nobody"), timeout=0)
        assert await channels() == []
