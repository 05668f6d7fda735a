"""The console's operator pages over HTTP, on a real server over both stores: Waiting on
people (signals), Failures (groups, retry a group), Queues (pause, defaults and limits in
place) and Daemons (hung jobs, reap); each POST's roles and queue scopes, and bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import httpx
import pytest

import wizd
from tests.http_server import api_server
from tests.test_web_console import browser, csrf
from wizd.errors import WaitingForSignal
from wizd.http import auth
from wizd.model import WorkerInfo
from wizd.store import Finish
from wizd.web import daemons, failures

Q = "researcher"
HX = {"HX-Request": "true"}


@pytest.fixture
def base(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(auth, "CACHE", 0.0)
    with api_server(backend_url) as url:
        yield url


def waiting_job(url: str, queue: str = Q) -> int:
    """A job whose run waits for signal `approval` (timing out in an hour)."""

    async def prepare() -> int:
        async with wizd.connect(url) as q:
            job = await q.enqueue(
                "review", {"draft": "<b>v1</b>"}, queue=queue, context={"who": "ann"}
            )
            (claimed,) = await q.store.claim(queue, "w1", 1)
            ctx = wizd.JobContext(claimed, q, "w1")
            with pytest.raises(WaitingForSignal):
                await ctx.wait_for_signal("approval", timeout=3600)
            await q.store.finish([Finish(job.id, "w1", 1, "wait_signal", error="approval")])
            return job.id

    return anyio.run(prepare)


def signal_data(url: str, job_id: int) -> object:
    """What the job's next run gets from its wait for `approval`."""

    async def run() -> object:
        async with wizd.connect(url) as q:
            (claimed,) = await q.store.claim(Q, "w2", 1)
            assert claimed.id == job_id
            return await wizd.JobContext(claimed, q, "w2").wait_for_signal("approval")

    return anyio.run(run)


def failed_jobs(url: str, spec: list[tuple[str, str, str]]) -> list[int]:
    """Jobs (queue, name, error) failed for good, in that order."""

    async def run() -> list[int]:
        async with wizd.connect(url) as q:
            ids = []
            for queue, name, error in spec:
                job = await q.enqueue(name, {}, queue=queue, attempts=1)
                (claimed,) = await q.store.claim(queue, "w1", 1)
                assert claimed.id == job.id
                done = Finish(job.id, "w1", 1, "failed", error=error, retry=False)
                assert await q.store.finish([done])
                ids.append(job.id)
            return ids

    return anyio.run(run)


def lines(url: str, job_id: int) -> list[str]:
    with wizd.connect_sync(url) as q:
        return [e.message or "" for e in q.events(job_id)]


# -- Waiting on people ---------------------------------------------------------------------


def test_waiting_lists_the_wait_and_approve_sends_the_signal(base: str, backend_url: str) -> None:
    job_id = waiting_job(backend_url)
    with wizd.connect_sync(backend_url) as q:
        token, secret = q.create_token("enqueue", name="reviewer")
    with browser(base, secret) as c:
        page = c.get("/waiting")
        assert page.status_code == 200
        assert f'id="wait-{job_id}"' in page.text
        assert '<b class="signal">approval</b>' in page.text
        assert "&lt;b&gt;v1&lt;/b&gt;" in page.text  # the payload, escaped
        assert "&#34;who&#34;: &#34;ann&#34;" in page.text or '"who": "ann"' in page.text
        assert f'id="approve-{job_id}"' in page.text
        assert c.get("/parts/waiting").text.count(f'id="wait-{job_id}"') == 1
        sent = c.post(f"/waiting/{job_id}/signal", data={"csrf": csrf(page), "choice": "approve"})
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/waiting?sent={job_id}"
        after = c.get(sent.headers["location"])
        assert f'id="wait-{job_id}"' not in after.text
        assert 'id="sent"' in after.text
    said = f"signal 'approval' sent (approve) from the console by token {token.id} (reviewer)"
    assert said in lines(backend_url, job_id)
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job_id).status == "pending"
    assert signal_data(backend_url, job_id) == {"approved": True}


@pytest.mark.parametrize(
    ("choice", "data", "expected"),
    [
        ("reject", "", {"approved": False}),
        ("custom", '{"approved": true, "note": "ship it"}', {"approved": True, "note": "ship it"}),
    ],
)
def test_reject_and_custom_json_send_their_data(
    base: str, backend_url: str, choice: str, data: str, expected: object
) -> None:
    job_id = waiting_job(backend_url)
    with browser(base) as c:
        token = csrf(c.get("/waiting"))
        body = {"csrf": token, "choice": choice, "data": data}
        assert c.post(f"/waiting/{job_id}/signal", data=body).status_code == 303
    assert signal_data(backend_url, job_id) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [("{nope", "data: is not JSON"), ("   ", "data: give the signal&#39;s data as JSON")],
)
def test_bad_custom_json_is_one_error_on_the_page_and_nothing_is_sent(
    base: str, backend_url: str, data: str, message: str
) -> None:
    job_id = waiting_job(backend_url)
    with browser(base) as c:
        token = csrf(c.get("/waiting"))
        bad = c.post(
            f"/waiting/{job_id}/signal", data={"csrf": token, "choice": "custom", "data": data}
        )
        assert bad.status_code == 422
        assert bad.text.count('id="signal-error"') == 1
        assert message in bad.text
        assert f'id="wait-{job_id}"' in bad.text  # still listed, the text kept to fix it
        weird = c.post(f"/waiting/{job_id}/signal", data={"csrf": token, "choice": "maybe"})
        assert weird.status_code == 422
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job_id).status == "waiting_signal"
        assert q.signal_waits()[0][:2] == (job_id, "approval")
    assert not any("signal" in line and "console" in line for line in lines(backend_url, job_id))


def test_waiting_roles_and_scopes(base: str, backend_url: str) -> None:
    job_id = waiting_job(backend_url)
    other = waiting_job(backend_url, "writer")
    with wizd.connect_sync(backend_url) as q:
        _, reader = q.create_token("read")
        _, scoped = q.create_token("enqueue", ["writer"])
        q.cancel(other)
    with browser(base, reader) as c:
        page = c.get("/waiting")
        assert f'id="wait-{job_id}"' in page.text
        assert "approve-" not in page.text
        refused = c.post(
            f"/waiting/{job_id}/signal", data={"csrf": csrf(page), "choice": "approve"}
        )
        assert refused.status_code == 403
    with browser(base, scoped) as c:
        page = c.get("/waiting")
        assert f'id="wait-{job_id}"' not in page.text
        assert 'id="none-waiting"' in page.text
        token = csrf(page)
        refused = c.post(f"/waiting/{job_id}/signal", data={"csrf": token, "choice": "approve"})
        assert refused.status_code == 403
        gone = c.post(f"/waiting/{other}/signal", data={"csrf": token, "choice": "approve"})
        assert gone.status_code == 409  # cancelled: it waits for nothing now
        assert c.post(f"/waiting/{job_id}/signal", data={"choice": "approve"}).status_code == 403
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job_id).status == "waiting_signal"


# -- Failures ------------------------------------------------------------------------------


def groups(page: str) -> list[tuple[int, str, str]]:
    """(count, name, error) of each group row, in order."""
    found = re.findall(
        r'<tr class="group"[^>]*>\s*<td class="count"><b>(\d+)</b></td>\s*<td>([^<]*)</td>\s*'
        r'<td class="msg">([^<]*)</td>',
        page,
    )
    return [(int(n), name, error) for n, name, error in found]


def test_failures_are_grouped_and_a_group_is_retried_after_a_confirmation(
    base: str, backend_url: str
) -> None:
    slow = "TimeoutError: the model took too long\n  at call()"
    ids = failed_jobs(
        backend_url,
        [
            (Q, "fetch", slow),
            (Q, "fetch", "ValueError: bad url"),
            ("writer", "fetch", "  " + slow),
            (Q, "write", slow),
            (Q, "fetch", slow + " again"),
        ],
    )
    with wizd.connect_sync(backend_url) as q:
        token, secret = q.create_token("operate", name="on call")
    with browser(base, secret) as c:
        page = c.get("/failures")
        assert page.status_code == 200
        assert groups(page.text) == [
            (3, "fetch", "TimeoutError: the model took too long"),
            (1, "write", "TimeoutError: the model took too long"),  # ties: the latest first
            (1, "fetch", "ValueError: bad url"),
        ]
        first = page.text.split('id="group-2"')[0]
        assert "researcher, writer" in first
        assert f'href="/jobs/{ids[4]}" class="sample"' in first  # the latest
        group = sorted(int(i) for i in re.findall(r'name="id" value="(\d+)"', first))
        assert group == sorted([ids[0], ids[2], ids[4]])
        token_value = csrf(page)
        body = {"csrf": token_value, "action": "retry", "back": "/failures", "id": group}
        ask = c.post("/jobs/bulk", data=body)
        assert ask.status_code == 200
        assert "Retry 3 jobs?" in ask.text
        with wizd.connect_sync(backend_url) as q:
            assert {q.get(i).status for i in group} == {"failed"}
        done = c.post("/jobs/bulk", data={**body, "confirm": "yes"})
        assert done.status_code == 303
        assert done.headers["location"] == "/failures"
        assert groups(c.get("/failures").text) == [
            (1, "write", "TimeoutError: the model took too long"),
            (1, "fetch", "ValueError: bad url"),
        ]
    with wizd.connect_sync(backend_url) as q:
        for i in group:
            assert q.get(i).status == "pending"
            said = f"retried from the console by token {token.id} (on call)"
            assert said in [e.message for e in q.events(i)]
        assert q.get(ids[1]).status == "failed"


def test_failures_roles_scopes_and_the_bound_on_what_is_read(
    base: str, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = failed_jobs(backend_url, [(Q, "fetch", "boom"), ("writer", "fetch", "boom")])
    with wizd.connect_sync(backend_url) as q:
        _, reader = q.create_token("read")
        _, enqueuer = q.create_token("enqueue")
        _, scoped = q.create_token("operate", ["writer"])
    for secret in (reader, enqueuer):
        with browser(base, secret) as c:
            page = c.get("/failures")
            assert groups(page.text) == [(2, "fetch", "boom")]
            assert "retry-group" not in page.text
            body = {"csrf": csrf(page), "action": "retry", "id": ids, "confirm": "yes"}
            assert c.post("/jobs/bulk", data=body).status_code == 403
    with browser(base, scoped) as c:
        page = c.get("/failures")
        assert groups(page.text) == [(1, "fetch", "boom")]
        assert f'value="{ids[0]}"' not in page.text
        assert 'id="retry-group-1"' in page.text
        body = {"csrf": csrf(page), "action": "retry", "id": ids, "confirm": "yes"}
        assert c.post("/jobs/bulk", data=body).status_code == 403
    with wizd.connect_sync(backend_url) as q:
        assert [q.get(i).status for i in ids] == ["failed", "failed"]
    monkeypatch.setattr(failures, "READ", 1)
    with browser(base, reader) as c:
        page = c.get("/failures").text
        assert groups(page) == [(1, "fetch", "boom")]
        assert "read at most 1" in page


# -- Queues --------------------------------------------------------------------------------


def test_a_queue_is_paused_resumed_and_its_settings_edited_in_place(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        q.enqueue("look", {}, queue=Q)
    with browser(base) as c:
        page = c.get("/queues")
        assert f'id="queue-{Q}"' in page.text
        token = csrf(page)
        paused = c.post(f"/queues/{Q}/pause", data={"csrf": token}, headers=HX)
        assert paused.status_code == 200
        assert paused.text.lstrip().startswith('<section class="qrow card"')  # the row only
        assert f'id="resume-{Q}"' in paused.text
        with wizd.connect_sync(backend_url) as q:
            assert q.stats(Q).paused
        resumed = c.post(f"/queues/{Q}/resume", data={"csrf": token})  # no htmx: back to page
        assert resumed.status_code == 303
        with wizd.connect_sync(backend_url) as q:
            assert not q.stats(Q).paused
        settings = {
            "csrf": token,
            "priority": "high",
            "attempts": "7",
            "timeout": "90",
            "ttl": "",
            "max_running": "2",
            "rate": "10/s",
            "burst": "",
        }
        row = c.post(f"/queues/{Q}/settings", data=settings, headers=HX)
        assert row.status_code == 200, row.text
        assert 'name="attempts" value="7"' in row.text
        assert 'name="rate" value="10/s"' in row.text
        with wizd.connect_sync(backend_url) as q:
            d, limits = q.defaults(Q), q.queue_limits(Q)
        assert (d.priority, d.attempts, d.timeout, d.ttl) == (4, 7, 90.0, None)
        assert (limits.max_running, str(limits.rate), limits.burst) == (2, "10/s", 1)
        for field, value, error in [
            ("attempts", "many", "attempts: must be a whole number, got &#39;many&#39;"),
            ("attempts", "0", "attempts: must be an integer &gt;= 1"),
            ("rate", "fast", "rate: &#39;fast&#39; is not a rate"),
            ("max_running", "-1", "max_running: must be an integer &gt;= 1"),
            ("timeout", "soon", "timeout: must be a number of seconds"),
            ("priority", "urgent", "priority"),
        ]:
            bad = {**settings, "attempts": "9", field: value}
            refused = c.post(f"/queues/{Q}/settings", data=bad, headers=HX)
            assert refused.status_code == 422, (field, refused.text)
            assert 'id="settings-error"' in refused.text
            assert error in refused.text, (field, refused.text)
            assert 'name="attempts" value="7"' in refused.text  # as it is: nothing changed
        whole = c.post(f"/queues/{Q}/settings", data={**settings, "rate": "fast"})
        assert whole.status_code == 422
        assert whole.text.count('id="settings-error"') == 1
        cleared = c.post(f"/queues/{Q}/settings", data={**settings, "max_running": "", "rate": ""})
        assert cleared.status_code == 303
    with wizd.connect_sync(backend_url) as q:
        assert q.defaults(Q).attempts == 7
        limits = q.queue_limits(Q)
        assert (limits.max_running, limits.rate) == (None, None)


def test_queue_actions_take_the_operate_role_on_the_queue(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        q.enqueue("look", {}, queue=Q)
        q.enqueue("write", {}, queue="writer")
        _, reader = q.create_token("read")
        _, enqueuer = q.create_token("enqueue")
        _, scoped = q.create_token("operate", ["writer"])
    for secret in (reader, enqueuer):
        with browser(base, secret) as c:
            page = c.get("/queues")
            assert f'id="queue-{Q}"' in page.text
            assert "pause-" not in page.text
            assert 'id="save-' not in page.text
            assert "<fieldset disabled>" in page.text
            token = csrf(page)
            assert c.post(f"/queues/{Q}/pause", data={"csrf": token}).status_code == 403
            body = {"csrf": token, "attempts": "9"}
            assert c.post(f"/queues/{Q}/settings", data=body, headers=HX).status_code == 403
    with browser(base, scoped) as c:
        page = c.get("/queues")
        assert f'id="queue-{Q}"' not in page.text
        assert 'id="pause-writer"' in page.text
        token = csrf(page)
        assert c.post(f"/queues/{Q}/pause", data={"csrf": token}).status_code == 403
        assert c.post("/queues/writer/pause", data={}).status_code == 403  # no CSRF token
        assert c.post("/queues/writer/stop", data={"csrf": token}).status_code == 404
        assert c.post("/queues/writer/pause", data={"csrf": token}).status_code == 303
    with wizd.connect_sync(backend_url) as q:
        assert not q.stats(Q).paused
        assert q.defaults(Q).attempts == 3
        assert q.stats("writer").paused


# -- Daemons -------------------------------------------------------------------------------


def test_daemons_and_hung_jobs_and_reaping_takes_operate_on_every_queue(
    base: str, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)

    async def prepare() -> int:
        async with wizd.connect(backend_url) as q:
            info = WorkerInfo("w1", "box-1", 4242, (Q,), 4, "9.9.9", now, now)
            await q.store.register_worker(info)
            await q.enqueue("look", {}, queue=Q)
            (claimed,) = await q.store.claim(Q, "w1", 1)
            await q.store.heartbeat("w1", 1)
            return claimed.id

    job_id = anyio.run(prepare)
    with wizd.connect_sync(backend_url) as q:
        _, enqueuer = q.create_token("operate", [Q])
        token, admin = q.create_token("operate", name="ops")
    with browser(base, admin) as c:
        page = c.get("/daemons").text
        assert 'id="daemon-w1"' in page
        for shown in ("box-1", "4242", "9.9.9", "1 / 3", "live"):
            assert shown in page
        assert 'id="no-hung"' in page  # its heartbeat is fresh
        monkeypatch.setattr(daemons, "DEFAULT_HUNG_TIMEOUT", 0.001)
        page = c.get("/daemons").text
        assert f'id="hung-{job_id}"' in page
        assert ">dead<" in page
        assert 'id="reap"' in page
    with browser(base, enqueuer) as c:  # operate, but on one queue: reaping spans them all
        page = c.get("/daemons")
        assert f'id="hung-{job_id}"' in page.text
        assert 'id="reap"' not in page.text
        assert c.post("/daemons/reap", data={"csrf": csrf(page)}).status_code == 403
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job_id).status == "running"
    with browser(base, admin) as c:
        done = c.post("/daemons/reap", data={"csrf": csrf(c.get("/daemons"))})
        assert done.status_code == 303
        assert done.headers["location"] == "/daemons?reaped=1"
        assert 'id="reaped"' in c.get(done.headers["location"]).text
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job_id).status in ("pending", "delayed")
        said = f"from the console by token {token.id} (ops)"
        assert any(said in (e.message or "") for e in q.events(job_id))


def test_every_page_is_in_the_nav_and_needs_a_session(base: str, backend_url: str) -> None:
    pages = ("/waiting", "/failures", "/queues", "/daemons")
    with wizd.connect_sync(backend_url) as q:
        _, reader = q.create_token("read")
    with httpx.Client(base_url=base, timeout=30) as c:
        for path in pages:
            assert c.get(path).headers["location"] == f"/login?next={path}"
        assert c.get("/live/waiting", headers=HX).status_code == 401
        assert c.post("/daemons/reap").status_code == 401
    with browser(base, reader) as c:
        for path in pages:
            page = c.get(path)
            assert page.status_code == 200, (path, page.text)
            for link in pages:
                assert f'<a href="{link}"' in page.text
            assert f'<a href="{path}" aria-current="page">' in page.text
