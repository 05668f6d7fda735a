"""Who may do what over HTTP: bearer tokens, roles and queue scopes, on a real server over
both stores; the loopback rule; revoked tokens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import wizd
from tests.http_server import api_server, client, is_problem
from wizd.http import auth
from wizd.http.app import create_app
from wizd.http.server import is_loopback, run_api


@pytest.fixture
def base(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(auth, "CACHE", 0.0)  # a revocation applies at once here
    with api_server(backend_url) as url:
        yield url


def token(url: str, role: str, queues: list[str] | None = None) -> str:
    with wizd.connect_sync(url) as q:
        _, secret = q.create_token(role, queues)
        return str(secret)


def test_no_token_in_the_store_lets_loopback_callers_in_until_one_exists(
    base: str, backend_url: str
) -> None:
    with client(base) as anyone:
        assert anyone.get("/v1/jobs").status_code == 200
        admin = token(backend_url, "admin")
        refused = anyone.get("/v1/jobs")
        is_problem(refused, 401)
        assert refused.headers["www-authenticate"] == "Bearer"
        is_problem(anyone.get("/v1/jobs", headers={"Authorization": "Bearer nope"}), 401)
    with client(base, admin) as ok:
        assert ok.get("/v1/jobs").status_code == 200


def test_a_revoked_token_is_refused(base: str, backend_url: str) -> None:
    secret = token(backend_url, "admin")
    with client(base, secret) as http:
        assert http.get("/v1/jobs").status_code == 200
        with wizd.connect_sync(backend_url) as q:
            q.revoke_token(secret.split("_")[1])
        is_problem(http.get("/v1/jobs"), 401)


def test_roles(base: str, backend_url: str) -> None:
    admin, read = token(backend_url, "admin"), token(backend_url, "read")
    enqueue, operate = token(backend_url, "enqueue"), token(backend_url, "operate")
    with client(base, admin) as a:
        job = a.post("/v1/jobs", json={"name": "x", "queue": "researcher"}).json()
    with client(base, read) as r:
        assert r.get(f"/v1/jobs/{job['id']}").status_code == 200
        is_problem(r.post("/v1/jobs", json={"name": "x", "queue": "researcher"}), 403)
        is_problem(r.post(f"/v1/jobs/{job['id']}/cancel"), 403)
        is_problem(r.post(f"/v1/jobs/{job['id']}/signals/ok", json={}), 403)
    with client(base, enqueue) as e:
        assert e.post("/v1/jobs", json={"name": "x", "queue": "researcher"}).status_code == 201
        assert e.post(f"/v1/jobs/{job['id']}/signals/ok", json={}).status_code == 200
        is_problem(e.post("/v1/queues/researcher/pause"), 403)
        is_problem(e.delete(f"/v1/jobs/{job['id']}"), 403)
        assert e.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    with client(base, operate) as o:
        assert o.post(f"/v1/jobs/{job['id']}/retry").json()["status"] == "pending"
        assert o.post("/v1/queues/researcher/pause").status_code == 204


def job_routes(base: str) -> list[tuple[str, str]]:
    """Every (method, path) of the API that acts on one job ({job_id} in its path)."""
    spec = httpx.get(f"{base}/v1/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if "{job_id}" in path
        for method in item
    ]


def test_a_token_for_one_queue_touches_no_other_queues_job_on_any_route(
    base: str, backend_url: str
) -> None:
    admin = token(backend_url, "admin")
    scoped = token(backend_url, "admin", ["researcher"])
    with client(base, admin) as a:
        theirs = a.post("/v1/jobs", json={"name": "x", "queue": "writer"}).json()
        ours = a.post("/v1/jobs", json={"name": "x", "queue": "researcher"}).json()
    routes = job_routes(base)
    assert len(routes) >= 15, routes
    fill: dict[str, Any] = {"job_id": theirs["id"], "name": "approval"}
    with client(base, scoped) as s:
        for method, path in routes:
            url = re.sub(r"\{(\w+)\}", lambda m: str(fill.get(m[1], 1)), path)
            response = s.request(method, url, json={} if method != "GET" else None)
            is_problem(response, 403)
            assert "writer" in response.json()["detail"], (method, path)
        # The same token works on its own queue, for reading and for everything else.
        assert s.get(f"/v1/jobs/{ours['id']}").status_code == 200
        assert s.post(f"/v1/jobs/{ours['id']}/cancel").status_code == 200
        is_problem(s.post("/v1/jobs", json={"name": "x", "queue": "writer"}), 403)
        is_problem(s.post("/v1/jobs/batch", json={"jobs": [{"name": "x"}, {"name": "y"}]}), 403)
        is_problem(s.get("/v1/jobs"), 403)  # every queue's jobs: not this token's
        is_problem(s.get("/v1/jobs", params={"queue": "writer"}), 403)
        assert s.get("/v1/jobs", params={"queue": "researcher"}).status_code == 200
        is_problem(s.get("/v1/events", params={"queue": "writer"}), 403)
        is_problem(s.get("/v1/events", params={"job": theirs["id"]}), 403)
        is_problem(s.get("/v1/events"), 403)
        assert [row["queue"] for row in s.get("/v1/queues").json()] == ["researcher"]
    with client(base, admin) as a:  # nothing of writer's changed
        assert a.get(f"/v1/jobs/{theirs['id']}").json()["status"] == "pending"


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org"]))


async def test_beyond_loopback_without_a_token_is_refused(backend_url: str) -> None:
    import anyio

    async with wizd.connect(backend_url) as q:
        with pytest.raises(wizd.ConfigError, match="beyond loopback"):
            await run_api(q, "0.0.0.0", 0, anyio.Event())
        create_app(q)  # (an app alone opens nothing)
