"""The web console over HTTP, on a real server over both stores: sessions and their cookies,
CSRF, roles and queue scopes, confirmed bulk actions and who did them, paging."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

import wizd
from tests.http_server import api_server
from wizd.http import auth


@pytest.fixture
def base(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(auth, "CACHE", 0.0)
    with api_server(backend_url) as url:
        yield url


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


@contextmanager
def browser(base: str, secret: str | None = None) -> Iterator[httpx.Client]:
    """A cookie-keeping client, logged in with `secret` if given."""
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as c:
        if secret is not None:
            form = c.get("/login")
            done = c.post("/login", data={"csrf": csrf(form), "token": secret, "next": "/"})
            assert done.status_code == 303, done.text
        yield c


def test_login_sets_a_strict_http_only_cookie_and_a_bad_token_is_refused(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        _, secret = q.create_token("read", name="viewer")
    with browser(base) as c:
        assert c.get("/jobs").headers["location"] == "/login?next=/jobs"
        form = c.get("/login")
        bad = c.post("/login", data={"csrf": csrf(form), "token": "wizd_nope"})
        assert bad.status_code == 401
        assert "wizd_session" not in c.cookies
        no_csrf = c.post("/login", data={"token": secret})
        assert no_csrf.status_code == 403
        done = c.post("/login", data={"csrf": csrf(form), "token": secret, "next": "//evil"})
        assert done.status_code == 303
        assert done.headers["location"] == "/"  # no open redirect
        cookie = next(h for h in done.headers.get_list("set-cookie") if "wizd_session" in h)
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain http here
        assert c.get("/").status_code == 200
        out = c.post("/logout", data={"csrf": csrf(c.get("/"))})
        assert out.status_code == 303
        assert c.get("/").status_code == 303


def test_a_queue_scoped_token_sees_only_its_queues(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        mine = q.enqueue("look", {}, queue="researcher")
        theirs = q.enqueue("write", {}, queue="writer")
        _, secret = q.create_token("operate", ["researcher"])
    with browser(base, secret) as c:
        overview = c.get("/").text
        assert 'id="queue-researcher"' in overview
        assert "writer" not in overview
        jobs = c.get("/jobs").text
        assert f"job-row-{mine.id}" in jobs
        assert f"job-row-{theirs.id}" not in jobs
        assert c.get("/jobs", params={"queue": "writer"}).status_code == 403
        assert c.get(f"/jobs/{theirs.id}").status_code == 403
        assert c.get(f"/parts/jobs/{theirs.id}").status_code == 403
        token = csrf(c.get(f"/jobs/{mine.id}"))
        refused = c.post(f"/jobs/{theirs.id}/cancel", data={"csrf": token})
        assert refused.status_code == 403
        bulk = c.post("/jobs/bulk", data={"csrf": token, "action": "cancel", "id": [theirs.id]})
        assert bulk.status_code == 403
    with wizd.connect_sync(backend_url) as q:
        assert q.get(theirs.id).status == "pending"


def test_roles_decide_the_buttons_and_the_posts(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        job = q.enqueue("look", {}, queue="researcher")
        _, reader = q.create_token("read")
        _, enqueuer = q.create_token("enqueue")
    with browser(base, reader) as c:
        page = c.get(f"/jobs/{job.id}")
        assert 'id="actions"' not in page.text
        assert c.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf(page)}).status_code == 403
    with browser(base, enqueuer) as c:
        page = c.get(f"/jobs/{job.id}")
        assert 'id="action-cancel"' in page.text
        assert 'id="action-pause"' not in page.text  # pausing takes operate
        assert c.post(f"/jobs/{job.id}/pause", data={"csrf": csrf(page)}).status_code == 403
    with wizd.connect_sync(backend_url) as q:
        assert q.get(job.id).status == "pending"


def test_bulk_actions_ask_first_and_log_who_did_them(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        jobs = [q.enqueue("look", {"n": n}, queue="researcher") for n in range(2)]
        token, secret = q.create_token("admin", name="lead")
    ids = [j.id for j in jobs]
    with browser(base, secret) as c:
        token_value = csrf(c.get("/jobs"))
        ask = c.post("/jobs/bulk", data={"csrf": token_value, "action": "cancel", "id": ids})
        assert ask.status_code == 200
        assert 'id="confirm"' in ask.text
        with wizd.connect_sync(backend_url) as q:
            assert [q.get(i).status for i in ids] == ["pending", "pending"]
        done = c.post(
            "/jobs/bulk",
            data={"csrf": token_value, "action": "cancel", "id": ids, "confirm": "yes"},
        )
        assert done.status_code == 303
    with wizd.connect_sync(backend_url) as q:
        for i in ids:
            assert q.get(i).status == "cancelled"
            lines = [e.message for e in q.events(i)]
            assert f"cancelled from the console by token {token.id} (lead)" in lines


def test_the_jobs_page_pages_with_the_next_cursor(base: str, backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        made = q.enqueue_many([{"name": "look", "queue": "researcher"} for _ in range(55)])
    with browser(base) as c:  # no token in the store: open on loopback
        first = c.get("/jobs")
        shown = set(re.findall(r'id="job-row-(\d+)"', first.text))
        assert len(shown) == 50
        link = re.search(r'id="next-page" href="([^"]+)"', first.text)
        assert link
        second = c.get(link.group(1).replace("&amp;", "&"))
        rest = set(re.findall(r'id="job-row-(\d+)"', second.text))
        assert len(rest) == 5
        assert shown | rest == {str(j.id) for j in made}
        assert 'id="next-page"' not in second.text


def test_the_job_page_shows_every_field_and_missing_jobs_are_404(
    base: str, backend_url: str
) -> None:
    with wizd.connect_sync(backend_url) as q:
        job = q.enqueue("look", {"question": "why <b>?"}, queue="researcher", tags=["t1"])
        q.log(job, "a line")
    with browser(base) as c:
        page = c.get(f"/jobs/{job.id}").text
        for field in job.to_dict():
            if field not in ("payload", "context", "result", "error"):
                assert f"<dt>{field}</dt>" in page
        assert "why &lt;b&gt;?" in page  # escaped
        assert "a line" in page
        missing = c.get("/jobs/999999")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
