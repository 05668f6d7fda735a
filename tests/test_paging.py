"""Keyset paging of job lists (Queue.list_page, wizd.paging): every page starts right after
the last job of the page before, in every sort and order, whatever is added meanwhile."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest

import wizd
from tests.conftest import FakeClock
from wizd.errors import InvalidJob
from wizd.model import Job, JobFilter
from wizd.paging import cursor

SORTS = JobFilter.SORTS
N = 1_030  # jobs in the store: eleven pages of 97, the last one short
PAGE = 97


async def fill(q: wizd.Queue, clock: FakeClock, n: int, tag: str = "old") -> list[Job]:
    """`n` jobs in batches of 50 that share their creation time, each with one of a few
    queues, names, priorities and delays: every sort has ties."""
    made: list[Job] = []
    for start in range(0, n, 50):
        clock.advance(1)
        items = [
            {
                "name": f"n{i % 7}",
                "queue": f"q{i % 3}",
                "priority": i % 5 + 1,
                "delay": float(i % 4) * 60,
                "tags": [tag],
            }
            for i in range(start, min(start + 50, n))
        ]
        made += await q.enqueue_many(items)
    return made


def key(job: Job, sort: str) -> Any:
    value = getattr(job, sort)
    return value.timestamp() if isinstance(value, datetime) else value


def in_order(jobs: list[Job], sort: str, order: str) -> bool:
    keys = [(key(j, sort), j.id) for j in jobs]
    return keys == sorted(keys, reverse=order == "desc")


async def all_pages(
    q: wizd.Queue, clock: FakeClock | None = None, **options: Any
) -> tuple[list[Job], int]:
    """Every page of a list, in order, and how many pages; with a clock, 3 new jobs are
    enqueued after each page is read."""
    jobs: list[Job] = []
    after: str | None = None
    pages = 0
    while True:
        page = await q.list_page(limit=PAGE, after=after, **options)
        pages += 1
        jobs += page.jobs
        if page.next is None:
            return jobs, pages
        assert len(page.jobs) == PAGE
        after = page.next
        if clock is not None:
            await fill(q, clock, 3, tag="new")


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pages_hold_every_job_once_in_order_in_every_sort(
    q: wizd.Queue, clock: FakeClock, order: str
) -> None:
    await fill(q, clock, N)
    for job in (await q.list(sort="id", order="asc", limit=N))[::10]:
        await q.cancel(job)  # statuses and update times that differ from the rest
    for sort in SORTS:
        jobs, pages = await all_pages(q, sort=sort, order=order)
        assert pages == -(-N // PAGE), sort
        assert sorted(j.id for j in jobs) == sorted(j.id for j in await q.list(limit=N)), sort
        assert in_order(jobs, sort, order), sort


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_jobs_added_between_pages_neither_repeat_nor_hide_others(
    q: wizd.Queue, clock: FakeClock, order: str
) -> None:
    """An offset would show a job twice (desc: the new jobs push the old ones down) or
    skip one; a keyset page starts after the last job shown, so each appears once."""
    old = {j.id for j in await fill(q, clock, N)}
    for sort in SORTS:
        jobs, _ = await all_pages(q, clock, sort=sort, order=order)
        ids = [j.id for j in jobs]
        assert len(ids) == len(set(ids)), sort
        assert old <= set(ids), sort
        assert in_order(jobs, sort, order), sort


async def test_pages_of_a_filtered_list(q: wizd.Queue, clock: FakeClock) -> None:
    """The console's common lists: a queue's, a status's, and both, newest first."""
    await fill(q, clock, N)
    for job in (await q.list(queue="q1", sort="id", order="asc", limit=N))[::3]:
        await q.cancel(job)
    for where in ({"queue": "q1"}, {"status": "cancelled"}, {"queue": "q1", "status": "delayed"}):
        before = [j.id for j in await q.list(limit=10_000, **where)]
        jobs, _ = await all_pages(q, clock, **where)
        ids = [j.id for j in jobs]
        assert len(ids) == len(set(ids)), where
        assert [i for i in ids if i in set(before)] == before, where


async def test_the_last_page_has_no_next_and_list_takes_after(q: wizd.Queue) -> None:
    made = [await q.enqueue("a") for _ in range(4)]
    first = await q.list_page(sort="id", order="asc", limit=2)
    assert [j.id for j in first.jobs] == [made[0].id, made[1].id]
    assert first.next is not None
    rest = await q.list(sort="id", order="asc", limit=2, after=first.next)
    assert [j.id for j in rest] == [made[2].id, made[3].id]
    last = await q.list_page(sort="id", order="asc", limit=2, after=first.next)
    assert last.next is None  # exactly a page left: no empty page after it
    assert (await q.list_page()).next is None


def raw(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "after",
    [
        "",
        "bogus!",
        "x" * 3000,
        raw("text"),
        raw([2, "created_at", "desc", 1.0, 1]),  # another version
        raw([1, "created_at", "desc", 1.0]),
        raw([1, "created_at", "desc", "yesterday", 1]),
        raw([1, "created_at", "desc", True, 1]),
        raw([1, "created_at", "desc", 1.0, 0]),
        raw([1, "created_at", "desc", 1.0, 2**63]),
        raw([1, "created_at", "desc", 1.0, "1"]),
        raw([1, "created_at", "desc", None, 1]),
        base64.urlsafe_b64encode(b'[1,"created_at","desc",NaN,1]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_a_bad_cursor_is_refused(q: wizd.Queue, after: str) -> None:
    with pytest.raises(InvalidJob, match=r"^after: is not a page cursor wizd gave"):
        await q.list_page(after=after)


async def test_a_cursor_of_another_sort_or_order_is_refused(q: wizd.Queue) -> None:
    for job in [await q.enqueue("a") for _ in range(3)]:
        await q.cancel(job)
    page = await q.list_page(limit=1)
    assert page.next is not None
    with pytest.raises(InvalidJob, match="sorted by created_at desc, not by created_at asc"):
        await q.list_page(order="asc", after=page.next)
    with pytest.raises(InvalidJob, match="sorted by created_at desc, not by name desc"):
        await q.list_page(sort="name", after=page.next)
    with pytest.raises(InvalidJob, match=r"^after: give a page cursor or an offset, not both"):
        await q.list(after=page.next, offset=1)
    wrong = [
        ("priority", 1.5),
        ("name", 3),
        ("id", 2),  # an id sort's value is the job's own id
        ("run_at", "now"),
    ]
    for sort, value in wrong:
        with pytest.raises(InvalidJob, match="is not a page cursor"):
            await q.list_page(sort=sort, after=cursor(sort, "desc", value, 1))
    with pytest.raises(InvalidJob, match=r"^statuss: unknown option"):
        await q.list(statuss="failed")  # type: ignore[call-arg]


async def test_a_list_of_one_kind_of_job(q: wizd.Queue) -> None:
    """The console's Distributed page lists the distributed jobs alone, a page at a time."""
    made = [await q.create_distributed(f"p{n}", ["a", "b"], queue="q1") for n in range(3)]
    await q.enqueue("plain", queue="q1")
    first = await q.list_page(kind="distributed", limit=2)
    rest = await q.list_page(kind="distributed", limit=2, after=first.next)
    assert [j.id for j in first.jobs + rest.jobs] == [j.id for j in reversed(made)]
    assert rest.next is None
    assert {j.kind for j in await q.list(kind="job", limit=100)} == {"job"}
    with pytest.raises(InvalidJob, match="kind"):
        await q.list(kind="no such kind!")
