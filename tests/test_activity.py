"""Queue.finished_per_minute (the console's sparklines) and Queue.oldest_pending, on both
stores: counted per queue and status into the minute each job finished in."""

from __future__ import annotations

import pytest

import wizd
from tests.test_flows import complete, fail
from wizd.errors import InvalidJob


async def test_finishes_are_counted_per_queue_status_and_minute(q: wizd.Queue) -> None:
    a = await q.enqueue_many([{"name": "n", "queue": "a", "payload": {}} for _ in range(3)])
    (b,) = await q.enqueue_many([{"name": "n", "queue": "b", "payload": {}}])
    await q.enqueue("idle", {}, queue="c")  # pending: no minute of its own
    for job in a[:2]:
        await complete(q, job)
    await fail(q, a[2])
    await complete(q, b)
    found = await q.finished_per_minute(60)
    assert set(found) == {"a", "b"}
    # Just finished: the last minute of the window holds them all.
    assert found["a"] == {"completed": [0] * 59 + [2], "failed": [0] * 59 + [1]}
    assert found["b"] == {"completed": [0] * 59 + [1], "failed": [0] * 60}
    assert await q.oldest_pending("c") is not None
    assert await q.oldest_pending("a") is None


@pytest.mark.parametrize("minutes", [0, 1441, True, 1.5])
async def test_the_window_is_checked(q: wizd.Queue, minutes: object) -> None:
    with pytest.raises(InvalidJob, match="minutes"):
        await q.finished_per_minute(minutes)  # type: ignore[arg-type]
