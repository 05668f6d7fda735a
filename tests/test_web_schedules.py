"""The console's Schedules and Distributed jobs pages and the Job page's graph, over HTTP on
a real server over both stores: what each shows, roles and queue scopes for every POST,
CSRF, who did it in the job's history, and bad input."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import anyio
import pytest

import wizd
from tests.conftest import FakeClock
from tests.http_server import api_server
from tests.test_flows import complete
from tests.test_web_console import browser, csrf
from wizd.http import auth


def complete_now(url: str, job_id: int) -> None:
    """Run the job to completion as a worker would."""

    async def run() -> None:
        async with wizd.connect(url) as q:
            await complete(q, job_id, {"ok": True})

    anyio.run(run)


@pytest.fixture
def base(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(auth, "CACHE", 0.0)
    with api_server(backend_url) as url:
        yield url


def test_the_schedules_page_shows_next_and_last_runs_with_their_jobs(
    base: str, backend_url: str
) -> None:
    clock = FakeClock(time.time() - 7200)
    with wizd.connect_sync(backend_url, clock=clock) as q:
        s = q.schedule("poll", {"n": 1}, queue="researcher", every=3600, key="poll.inbox")
        paused = q.schedule("digest", queue="writer", cron="0 9 * * *", paused=True)
        clock.advance(3600)
        (first,) = [f.job for f in q.fire_schedules().jobs]
        clock.advance(3600)
        (second,) = [f.job for f in q.fire_schedules().jobs]
        q.cancel(second)
        fired = q.run_schedule(s)  # not an occurrence: the page lists occurrences only
    with browser(base) as c:
        page = c.get("/schedules")
        assert page.status_code == 200
        row = page.text.split(f'id="schedule-{s.id}"')[1].split("</tr>")[0]
        assert "poll.inbox" in row
        assert "every 1h 0m" in row
        assert "in 59m" in row or "in 1h 0m" in row  # the next run
        assert f'<a href="/jobs/{first.id}" class="status pending"' in row
        assert f'<a href="/jobs/{second.id}" class="status cancelled"' in row
        assert row.index(f"/jobs/{second.id}") < row.index(f"/jobs/{first.id}")  # newest first
        assert f'href="/jobs/{fired.id}"' not in row
        assert f'id="schedule-{s.id}-pause"' in row
        other = page.text.split(f'id="schedule-{paused.id}"')[1].split("</tr>")[0]
        assert "<code>0 9 * * *</code> UTC" in other
        assert f'id="schedule-{paused.id}-resume"' in other
        assert "none yet" in other


def test_run_now_enqueues_the_job_and_says_who_in_its_history(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        s = q.schedule("poll", {"n": 1}, queue="researcher", every=3600, tags=["cron"])
        token, secret = q.create_token("operate", name="night shift")
    with browser(base, secret) as c:
        done = c.post(f"/schedules/{s.id}/run", data={"csrf": csrf(c.get("/schedules"))})
        assert done.status_code == 303
        job_id = int(re.search(r"job=(\d+)", done.headers["location"]).group(1))  # type: ignore[union-attr]
        page = c.get(done.headers["location"])
        assert f'<a href="/jobs/{job_id}" id="enqueued">' in page.text
    with wizd.connect_sync(backend_url) as q:
        job = q.get(job_id)
        assert (job.queue, job.name, job.payload, job.tags) == (
            "researcher",
            "poll",
            {"n": 1},
            ("cron",),
        )
        lines = [e.message for e in q.events(job)]
        assert (
            f"run now from schedule {s.id} in the console by token {token.id} (night shift)"
            in lines
        )
        assert q.schedule_runs(s) == []


def test_pause_resume_and_remove_a_schedule(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        s = q.schedule("poll", queue="researcher", every=60)
    with browser(base) as c:  # no token in the store: open on loopback
        token = csrf(c.get("/schedules"))
        assert c.post(f"/schedules/{s.id}/pause", data={"csrf": token}).status_code == 303
        with wizd.connect_sync(backend_url) as q:
            assert q.get_schedule(s.id).paused
        assert c.post(f"/schedules/{s.id}/resume", data={"csrf": token}).status_code == 303
        with wizd.connect_sync(backend_url) as q:
            assert not q.get_schedule(s.id).paused
        assert c.post(f"/schedules/{s.id}/remove", data={"csrf": token}).status_code == 303
        with wizd.connect_sync(backend_url) as q:
            assert q.schedules() == []


def test_schedule_posts_need_operate_on_its_queue_and_the_csrf_token(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        mine = q.schedule("poll", queue="researcher", every=60)
        theirs = q.schedule("digest", queue="writer", every=60)
        _, reader = q.create_token("read")
        _, enqueuer = q.create_token("enqueue")
        _, scoped = q.create_token("operate", ["researcher"])
    for secret in (reader, enqueuer):
        with browser(base, secret) as c:
            page = c.get("/schedules")
            assert f'id="schedule-{mine.id}"' in page.text
            assert "button" not in page.text.split("<main>")[1]  # no action buttons
            for action in ("pause", "run", "remove"):
                refused = c.post(f"/schedules/{mine.id}/{action}", data={"csrf": csrf(page)})
                assert refused.status_code == 403, action
    with browser(base, scoped) as c:
        page = c.get("/schedules")
        assert f'id="schedule-{mine.id}"' in page.text
        assert f'id="schedule-{theirs.id}"' not in page.text
        token = csrf(page)
        for action in ("pause", "run", "remove"):
            assert (
                c.post(f"/schedules/{theirs.id}/{action}", data={"csrf": token}).status_code == 403
            )
        assert c.post(f"/schedules/{mine.id}/pause", data={}).status_code == 403  # no CSRF
        assert c.post(f"/schedules/{mine.id}/pause", data={"csrf": "x.y"}).status_code == 403
        assert c.post(f"/schedules/{mine.id}/explode", data={"csrf": token}).status_code == 404
        assert c.post("/schedules/999999/pause", data={"csrf": token}).status_code == 404
        assert c.post("/schedules/0/pause", data={"csrf": token}).status_code == 422
    with wizd.connect_sync(backend_url) as q:
        assert not q.get_schedule(mine.id).paused
        assert [s.id for s in q.schedules()] == [mine.id, theirs.id]
        assert q.list(limit=10) == []  # nothing was run


def test_the_distributed_page_marks_subtasks_dispatches_and_consolidates(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        held = q.create_distributed("compare", ["a", "b", "c"], queue="researcher")
        done = q.create_distributed("<sum>", ["x", "y"], queue="researcher", dispatch=True)
        q.cancel(q.subtask(done, "sub_1"))
        second = q.subtask(done, "sub_2")
        plain = q.enqueue("plain", queue="researcher")
        token, secret = q.create_token("operate", name="lead")
    complete_now(backend_url, second.id)
    with browser(base, secret) as c:
        page = c.get("/distributed")
        assert page.status_code == 200
        assert f'id="distributed-{held.id}"' in page.text
        assert f'id="distributed-{plain.id}"' not in page.text
        assert "&lt;sum&gt;" in page.text
        held_list = page.text.split(f'id="subtasks-{held.id}"')[1].split("</ul>")[0]
        assert held_list.count("○") == 3
        done_list = page.text.split(f'id="subtasks-{done.id}"')[1].split("</ul>")[0]
        assert done_list.count("✗") == 1
        assert done_list.count("✓") == 1
        assert f'id="consolidation-{done.id}"' in page.text
        assert f'id="consolidation-{held.id}"' not in page.text
        assert f'id="dispatch-{done.id}"' not in page.text  # nothing held
        sent = c.post(
            f"/distributed/{held.id}/dispatch", data={"csrf": csrf(page), "queue": "researcher"}
        )
        assert sent.status_code == 303
        assert c.get(sent.headers["location"]).text.count("Dispatch 3 held") == 0
    with wizd.connect_sync(backend_url) as q:
        assert {t["status"] for t in q.subtasks(held)} == {"pending"}
        lines = [e.message for e in q.events(held)]
        assert f"dispatched 3 sub-tasks from the console by token {token.id} (lead)" in lines


def test_dispatch_needs_operate_on_its_queue_and_a_distributed_job(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        mine = q.create_distributed("p", ["a"], queue="researcher")
        theirs = q.create_distributed("p", ["a"], queue="writer")
        plain = q.enqueue("plain", queue="researcher")
        _, reader = q.create_token("read")
        _, scoped = q.create_token("operate", ["researcher"])
    with browser(base, reader) as c:
        page = c.get("/distributed")
        assert f'id="distributed-{mine.id}"' in page.text
        assert "dispatch-" not in page.text  # no button
        assert (
            c.post(f"/distributed/{mine.id}/dispatch", data={"csrf": csrf(page)}).status_code == 403
        )
    with browser(base, scoped) as c:
        page = c.get("/distributed")
        assert f'id="dispatch-{mine.id}"' in page.text
        assert f'id="distributed-{theirs.id}"' not in page.text
        assert c.get("/distributed", params={"queue": "writer"}).status_code == 403
        token = csrf(page)
        assert c.post(f"/distributed/{theirs.id}/dispatch", data={"csrf": token}).status_code == 403
        assert c.post(f"/distributed/{mine.id}/dispatch", data={}).status_code == 403  # no CSRF
        assert c.post(f"/distributed/{plain.id}/dispatch", data={"csrf": token}).status_code == 409
        assert c.post("/distributed/0/dispatch", data={"csrf": token}).status_code == 422
        assert c.get("/distributed", params={"after": "garbage"}).status_code == 422
    with wizd.connect_sync(backend_url) as q:
        for job in (mine, theirs):
            assert {t["status"] for t in q.subtasks(job)} == {"paused"}


def test_the_job_page_draws_its_relations_as_links(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        first = q.enqueue("fetch", queue="researcher")
        job = q.enqueue("summarise", queue="researcher", depends_on=[first])
        after = q.enqueue("publish", queue="researcher", depends_on=[job])
        alone = q.enqueue("alone", queue="researcher")
    with browser(base) as c:
        page = c.get(f"/jobs/{job.id}").text
        graph = page.split('<svg class="graph"')[1].split("</svg>")[0]
        for other in (first, job, after):
            assert f'<a href="/jobs/{other.id}" class="node ' in graph
        assert 'id="dependencies"' in page  # the links list stays, for screen readers
        assert '<svg class="graph"' not in c.get(f"/jobs/{alone.id}").text
