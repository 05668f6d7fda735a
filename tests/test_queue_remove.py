"""Queue.remove_queue on every backend: an empty queue is forgotten with its pause, defaults
and limits; a queue with jobs or schedules is refused, naming what it has; an unknown one is
QueueNotFound. Nothing is written by a refusal."""

from __future__ import annotations

import pytest

import wizd
from wizd.store import Finish


async def names(q: wizd.Queue) -> list[str]:
    return [name for name, _, _ in await q.queues()]


async def test_an_empty_queue_is_forgotten_with_its_settings(q: wizd.Queue) -> None:
    await q.pause("research")
    await q.set_defaults("research", priority="high")
    await q.set_queue_limits("research", max_running=2)
    assert await names(q) == ["research"]
    await q.remove_queue("research")
    assert await names(q) == []
    assert (await q.queue_limits("research")).max_running is None
    # made again from scratch: unpaused, wizd's defaults
    job = await q.enqueue("search", {}, queue="research")
    assert job.priority == 3
    assert await q.queues() == [("research", False, wizd.JobOptions())]


async def test_a_queue_whose_jobs_were_all_deleted_is_removed(q: wizd.Queue) -> None:
    jobs = [await q.enqueue("search", {}, queue="research") for _ in range(3)]
    (claimed,) = await q.store.claim("research", "w1", 1)
    await q.store.finish([Finish(claimed.id, "w1", claimed.attempt, "completed")])
    with pytest.raises(wizd.QueueNotEmpty) as refused:
        await q.remove_queue("research")
    assert str(refused.value) == (
        "queue 'research' is not empty: 3 job(s) (1 completed, 2 pending); delete them first"
    )
    assert await names(q) == ["research"]
    await q.cancel(*jobs[1:])
    await q.delete(*jobs)
    await q.remove_queue("research")
    assert await names(q) == []
    assert await q.counts_by_queue() == {}


async def test_a_scheduled_queue_is_refused(q: wizd.Queue) -> None:
    schedule = await q.schedule("digest", {}, queue="daily", every=3600)
    with pytest.raises(wizd.QueueNotEmpty, match=rf"schedule\(s\) {schedule.id} enqueue into"):
        await q.remove_queue("daily")
    await q.unschedule(schedule.id)
    with pytest.raises(wizd.QueueNotFound, match="queue 'daily' does not exist"):
        await q.remove_queue("daily")  # a schedule alone makes no queue row


async def test_unknown_and_bad_names(q: wizd.Queue) -> None:
    with pytest.raises(wizd.QueueNotFound):
        await q.remove_queue("nosuchqueue")
    with pytest.raises(wizd.InvalidJob, match="queue"):
        await q.remove_queue("bad name")
    await q.pause("other")
    with pytest.raises(wizd.QueueNotFound):
        await q.remove_queue("nosuchqueue")
    assert await names(q) == ["other"]
