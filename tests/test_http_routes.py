"""The HTTP API's routes beyond jobs (wizd.http.queue_settings, schedules, flows, tokens) on
a real server over both stores: each one's happy path, bad input as a problem naming the
field that changes nothing, and tokens scoped to queues kept to them on every route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from pydantic import TypeAdapter

import wizd
from tests.http_server import api_server, client, is_problem
from tests.test_http_api import Q, enqueue, settle
from wizd.http import flows, queue_settings, schedules, tokens

W = "writer"


@pytest.fixture
def api(backend_url: str) -> Iterator[httpx.Client]:
    with api_server(backend_url) as base, client(base) as http:
        yield http


def claim(url: str, queue: str = Q) -> int:
    """Claim the queue's next job as daemon w1 would, and leave it running."""

    async def main() -> int:
        async with wizd.connect(url) as q:
            (job,) = await q.store.claim(queue, "w1", 1)
            return job.id

    return anyio.run(main)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


# -- a queue's settings --------------------------------------------------------------------


def test_queue_defaults(api: httpx.Client) -> None:
    before = ok(api.get(f"/v1/queues/{Q}/defaults"))
    assert (before["priority"], before["attempts"]) == (3, 3)
    put = ok(api.put(f"/v1/queues/{Q}/defaults", json={"priority": "high", "attempts": 5}))
    TypeAdapter(queue_settings.DefaultsOut).validate_python(put)
    assert (put["priority"], put["attempts"], put["backoff"]["kind"]) == (4, 5, "exponential")
    kept = ok(api.put(f"/v1/queues/{Q}/defaults", json={"backoff": {"kind": "fixed"}}))
    assert (kept["attempts"], kept["backoff"]["kind"]) == (5, "fixed")
    assert enqueue(api)["max_attempts"] == 5
    now = ok(api.get(f"/v1/queues/{Q}/defaults"))
    for body, field in [
        ({}, "defaults"),
        ({"attempts": 0}, "attempts"),
        ({"priority": "urgent"}, "priority"),
        ({"timeout": -1}, "timeout"),
        ({"colour": "red"}, "colour"),
    ]:
        is_problem(api.put(f"/v1/queues/{Q}/defaults", json=body), 422, field)
    is_problem(api.put("/v1/queues/no spaces/defaults", json={"attempts": 2}), 422, "queue")
    assert ok(api.get(f"/v1/queues/{Q}/defaults")) == now


def test_queue_limits(api: httpx.Client) -> None:
    assert ok(api.get(f"/v1/queues/{Q}/limits"))["max_running"] is None
    put = ok(api.put(f"/v1/queues/{Q}/limits", json={"max_running": 2, "rate": "10/s"}))
    assert (put["max_running"], put["rate"], put["rate_per_second"]) == (2, "10/s", 10.0)
    kept = ok(api.put(f"/v1/queues/{Q}/limits", json={"burst": 3}))
    queue_settings.LimitsOut.model_validate(kept)
    assert (kept["max_running"], kept["rate"], kept["burst"]) == (2, "10/s", 3)
    removed = ok(api.put(f"/v1/queues/{Q}/limits", json={"rate": None}))
    assert (removed["max_running"], removed["rate"]) == (2, None)
    for body, field in [
        ({}, "limits"),
        ({"rate": "fast"}, "rate"),
        ({"max_running": 0}, "max_running"),
        ({"max_running": 1, "burst": "many"}, "burst"),
    ]:
        is_problem(api.put(f"/v1/queues/{Q}/limits", json=body), 422, field)
    assert ok(api.get(f"/v1/queues/{Q}/limits")) == removed


def test_remove_a_queue_peek_and_counts(api: httpx.Client) -> None:
    job = enqueue(api)
    later = enqueue(api, priority="low")
    assert [j["id"] for j in ok(api.get(f"/v1/queues/{Q}/peek"))] == [job["id"], later["id"]]
    assert [j["id"] for j in ok(api.get(f"/v1/queues/{Q}/peek", params={"n": 1}))] == [job["id"]]
    is_problem(api.get(f"/v1/queues/{Q}/peek", params={"n": 0}), 422, "n")
    enqueue(api, queue=W)
    assert ok(api.get("/v1/counts", params={"queue": Q}))["pending"] == 2
    assert ok(api.get("/v1/counts"))["pending"] == 3
    is_problem(api.get("/v1/counts", params={"queue": "no spaces"}), 422, "queue")
    is_problem(api.delete(f"/v1/queues/{Q}"), 409)
    assert ok(api.get("/v1/counts", params={"queue": Q}))["pending"] == 2
    for j in (job, later):
        ok(api.delete(f"/v1/jobs/{j['id']}"))
    assert api.delete(f"/v1/queues/{Q}").status_code == 204
    assert [row["queue"] for row in ok(api.get("/v1/queues"))] == [W]
    is_problem(api.delete(f"/v1/queues/{Q}"), 404)


def test_concurrency_limits(api: httpx.Client) -> None:
    assert ok(api.get("/v1/concurrency-limits")) == {}
    assert ok(api.put("/v1/concurrency-limits/openai", json={"limit": 3})) == {
        "key": "openai",
        "limit": 3,
    }
    assert ok(api.get("/v1/concurrency-limits")) == {"openai": 3}
    is_problem(api.put("/v1/concurrency-limits/openai", json={"limit": 0}), 422, "limit")
    is_problem(api.put("/v1/concurrency-limits/openai", json={}), 422, "limit")
    is_problem(api.put("/v1/concurrency-limits/no spaces", json={"limit": 2}), 422, "key")
    assert ok(api.get("/v1/concurrency-limits")) == {"openai": 3}
    ok(api.put("/v1/concurrency-limits/openai", json={"limit": None}))
    assert ok(api.get("/v1/concurrency-limits")) == {}


def test_hung_jobs_and_reaping(api: httpx.Client, backend_url: str) -> None:
    job = enqueue(api)
    assert claim(backend_url) == job["id"]
    assert ok(api.get("/v1/hung")) == []  # its heartbeat is fresh
    (hung,) = ok(api.get("/v1/hung", params={"older_than": 0.001}))
    assert (hung["id"], hung["status"]) == (job["id"], "running")
    for bad in (0, -1, "soon"):
        is_problem(api.get("/v1/hung", params={"older_than": bad}), 422, "older_than")
        is_problem(api.post("/v1/hung/reap", params={"older_than": bad}), 422, "older_than")
    assert ok(api.get(f"/v1/jobs/{job['id']}"))["status"] == "running"
    (reaped,) = ok(api.post("/v1/hung/reap", params={"older_than": 0.001}))
    assert (reaped["id"], reaped["status"]) == (job["id"], "pending")


def test_cleanup(api: httpx.Client, backend_url: str) -> None:
    job = enqueue(api)
    waiting = enqueue(api)
    settle(backend_url)
    dry = ok(api.post("/v1/cleanup", json={"older_than": 0, "dry_run": True}))
    assert dry == {"ids": [job["id"]], "dry_run": True}
    assert ok(api.get(f"/v1/jobs/{job['id']}"))["status"] == "completed"
    assert ok(api.post("/v1/cleanup"))["ids"] == []  # 30 days by default
    bad: list[tuple[dict[str, Any], str]] = [
        ({"statuses": ["pending"]}, "statuses"),
        ({"statuses": []}, "statuses"),
        ({"older_than": -1}, "older_than"),
        ({"dry_run": "maybe"}, "dry_run"),
    ]
    for body, field in bad:
        is_problem(api.post("/v1/cleanup", json={"older_than": 0, **body}), 422, field)
    assert ok(api.get(f"/v1/jobs/{job['id']}"))["status"] == "completed"
    assert ok(api.post("/v1/cleanup", json={"older_than": 0})) == {
        "ids": [job["id"]],
        "dry_run": False,
    }
    is_problem(api.get(f"/v1/jobs/{job['id']}"), 404)
    assert ok(api.get(f"/v1/jobs/{waiting['id']}"))["status"] == "pending"


# -- schedules -----------------------------------------------------------------------------


def test_schedules(api: httpx.Client) -> None:
    made = ok(
        api.post(
            "/v1/schedules",
            json={"name": "digest", "queue": Q, "every": 3600, "key": "hourly", "priority": "high"},
        ),
        201,
    )
    assert (made["key"], made["every"], made["paused"], made["options"]) == (
        "hourly",
        3600.0,
        False,
        {"priority": 4},
    )
    assert [s["id"] for s in ok(api.get("/v1/schedules"))] == [made["id"]]
    TypeAdapter(schedules.ScheduleOut).validate_python(made)
    assert ok(api.get("/v1/schedules/hourly")) == ok(api.get(f"/v1/schedules/{made['id']}"))
    assert ok(api.post("/v1/schedules/hourly/pause"))["paused"] is True
    assert ok(api.post("/v1/schedules/hourly/resume"))["paused"] is False
    job = ok(api.post("/v1/schedules/hourly/run"), 201)
    assert (job["name"], job["queue"], job["priority"], job["status"]) == (
        "digest",
        Q,
        4,
        "pending",
    )
    assert ok(api.get("/v1/schedules/hourly/runs")) == []
    moved = ok(
        api.post("/v1/schedules", json={"name": "digest", "cron": "0 9 * * *", "key": "hourly"}),
        201,
    )
    assert (moved["id"], moved["cron"], moved["every"]) == (made["id"], "0 9 * * *", None)
    assert ok(api.delete("/v1/schedules/hourly"))["id"] == made["id"]
    is_problem(api.get("/v1/schedules/hourly"), 404)
    is_problem(api.post("/v1/schedules/hourly/run"), 404)
    assert ok(api.get("/v1/jobs"))["jobs"].__len__() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "cron"),
        ({"name": "x", "cron": "nope"}, "cron"),
        ({"name": "x", "every": 60, "cron": "* * * * *"}, "cron"),
        ({"name": "x", "every": 60, "catch_up": "some"}, "catch_up"),
        ({"name": "x", "every": 60, "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x", "every": 60, "key": "123"}, "key"),
        ({"name": "x", "every": 60, "key": "no spaces"}, "key"),
        ({"name": "x", "every": 60, "attempts": 0}, "attempts"),
        ({"name": "x", "every": 60, "colour": "red"}, "colour"),
    ],
)
def test_a_bad_schedule_is_a_problem_and_makes_nothing(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    is_problem(api.post("/v1/schedules", json=body), 422, field)
    assert ok(api.get("/v1/schedules")) == []
    is_problem(api.get("/v1/schedules/no spaces"), 422, "schedule")
    is_problem(api.get("/v1/schedules/0"), 422, "schedule")
    is_problem(api.get("/v1/schedules/99"), 404)
    is_problem(api.get("/v1/schedules/99/runs", params={"limit": 0}), 422, "limit")


# -- distributed jobs, batches, dependencies -----------------------------------------------


def test_distributed_jobs(api: httpx.Client) -> None:
    parent = ok(
        api.post("/v1/distributed", json={"prompt": "p", "subtasks": ["a", "b"], "queue": Q}), 201
    )
    assert (parent["kind"], parent["queue"], parent["status"]) == (
        "distributed",
        Q,
        "waiting_children",
    )
    subtasks = ok(api.get(f"/v1/distributed/{parent['id']}/subtasks"))
    assert [(s["sub_task_id"], s["query"], s["status"]) for s in subtasks] == [
        ("sub_1", "a", "paused"),
        ("sub_2", "b", "paused"),
    ]
    for row in subtasks:
        flows.SubTaskOut.model_validate(row)
    second = ok(api.get(f"/v1/distributed/{parent['id']}/subtasks/sub_2"))
    assert second["id"] == subtasks[1]["job_id"]
    assert ok(api.post(f"/v1/distributed/{parent['id']}/dispatch")) == {"released": 2}
    assert ok(api.post(f"/v1/distributed/{parent['id']}/dispatch")) == {"released": 0}
    report = ok(api.get(f"/v1/distributed/{parent['id']}/consolidation"))
    assert (report["total_tasks"], report["pending"], report["consolidated_at"]) == (2, 2, None)
    flows.ConsolidationOut.model_validate(report)
    is_problem(api.get(f"/v1/distributed/{parent['id']}/subtasks/sub_x"), 422, "sub_task_id")
    is_problem(api.get(f"/v1/distributed/{parent['id']}/subtasks/sub_9"), 422, "sub_task_id")
    plain = enqueue(api)
    is_problem(api.get(f"/v1/distributed/{plain['id']}/consolidation"), 422, "id")
    is_problem(api.post("/v1/distributed/99999/dispatch"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subtasks": ["a"]}, "prompt"),
        ({"prompt": "p", "subtasks": []}, "subtasks"),
        ({"prompt": "p", "subtasks": ["a", " "]}, "subtasks[sub_2]"),
        ({"prompt": "p", "subtasks": ["a"], "ttl": -5}, "ttl"),
        ({"prompt": "p", "subtasks": ["a"], "queue": "no spaces"}, "queue"),
        ({"prompt": "p", "subtasks": ["a"], "fan_out": 3}, "fan_out"),
    ],
)
def test_a_bad_distributed_job_is_a_problem_and_makes_nothing(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    is_problem(api.post("/v1/distributed", json=body), 422, field)
    assert ok(api.get("/v1/jobs"))["jobs"] == []


def test_batches_and_dependencies(api: httpx.Client) -> None:
    linked = ok(
        api.post(
            "/v1/jobs/batch",
            json={"linked": True, "jobs": [{"name": "a", "queue": Q}, {"name": "b", "queue": W}]},
        ),
        201,
    )["jobs"]
    batch = ok(api.get(f"/v1/batches/{linked[0]['batch_id']}"))
    assert [j["id"] for j in batch] == [j["id"] for j in linked]
    is_problem(api.get("/v1/batches/nothing-here"), 404)
    first, second = enqueue(api), enqueue(api)
    waits = ok(api.post(f"/v1/jobs/{second['id']}/dependencies/{first['id']}"))
    assert waits["depends_on"] == [first["id"]]
    cycle = is_problem(
        api.post(f"/v1/jobs/{first['id']}/dependencies/{second['id']}"), 422, "depends_on"
    )
    assert str(second["id"]) in cycle["detail"]
    is_problem(api.post(f"/v1/jobs/{first['id']}/dependencies/99999"), 404)
    is_problem(api.post(f"/v1/jobs/{first['id']}/dependencies/0"), 422, "depends_on")
    assert ok(api.get(f"/v1/jobs/{first['id']}"))["depends_on"] == []
    freed = ok(api.delete(f"/v1/jobs/{second['id']}/dependencies/{first['id']}"))
    assert freed["depends_on"] == []


# -- tokens --------------------------------------------------------------------------------


def test_tokens(api: httpx.Client) -> None:
    made = ok(api.post("/v1/tokens", json={"role": "admin", "name": "ops"}), 201)
    admin, secret = made["token"], made["secret"]
    assert (admin["role"], admin["queues"], admin["name"]) == ("admin", None, "ops")
    assert secret.startswith(f"wizd_{admin['id']}_")
    tokens.NewTokenOut.model_validate(made)
    is_problem(api.get("/v1/tokens"), 401)  # the first token closed the open server at once
    with client(str(api.base_url), secret) as ops:
        reader = ok(ops.post("/v1/tokens", json={"role": "read", "queues": [Q]}), 201)
        assert [t["id"] for t in ok(ops.get("/v1/tokens"))] == [admin["id"], reader["token"]["id"]]
        for body, field in [
            ({"role": "god"}, "role"),
            ({"role": "read", "queues": ["no spaces"]}, "queues"),
            ({"role": "read", "queues": []}, "queues"),
            ({"role": "read", "name": "  "}, "name"),
            ({"role": "read", "secret": "mine"}, "secret"),
        ]:
            is_problem(ops.post("/v1/tokens", json=body), 422, field)
        assert len(ok(ops.get("/v1/tokens"))) == 2
        with client(str(api.base_url), reader["secret"]) as read:
            assert ok(read.get("/v1/jobs", params={"queue": Q}))["jobs"] == []
            is_problem(read.get("/v1/tokens"), 403)
            is_problem(read.post("/v1/tokens", json={"role": "admin"}), 403)
            revoked = ok(ops.delete(f"/v1/tokens/{reader['token']['id']}"))
            assert revoked["revoked_at"] is not None
            is_problem(read.get("/v1/jobs", params={"queue": Q}), 401)  # at once, not in 2 s
        is_problem(ops.delete("/v1/tokens/zzzz"), 422, "id")
        is_problem(ops.delete("/v1/tokens/deadbeef"), 404)


# -- tokens scoped to queues ---------------------------------------------------------------

# A body each route with a {queue} that takes one is sent (a new such route needs one here).
BODIES: dict[tuple[str, str], Any] = {
    ("put", "/v1/queues/{queue}/defaults"): {"attempts": 4},
    ("put", "/v1/queues/{queue}/limits"): {"max_running": 2},
}


def test_a_token_scoped_to_a_queue_may_touch_it_and_no_other(backend_url: str) -> None:
    with wizd.connect_sync(backend_url) as q:
        _, root = q.create_token("admin")
        _, scoped = q.create_token("admin", [Q])
        _, reader = q.create_token("read", [Q])
    with api_server(backend_url) as base, client(base, root) as admin:
        ok(admin.put(f"/v1/queues/{W}/defaults", json={"attempts": 7}))
        spec = ok(admin.get("/v1/openapi.json"))
        routes = sorted(
            (
                (method, path)
                for path, ops in spec["paths"].items()
                for method in ops
                if "{queue}" in path
            ),
            key=lambda route: (route[0] == "delete", route),
        )
        assert len(routes) >= 9
        with client(base, scoped) as mine, client(base, reader) as read:
            for method, path in routes:
                body = BODIES.get((method, path))
                refused = mine.request(method, path.format(queue=W), json=body)
                is_problem(refused, 403)
                done = mine.request(method, path.format(queue=Q), json=body)
                assert done.status_code < 300, (method, path, done.text)
            assert ok(admin.get(f"/v1/queues/{W}/defaults"))["attempts"] == 7
            assert ok(admin.get("/v1/queues")) == [
                {
                    "queue": W,
                    "paused": False,
                    "counts": {},
                    "defaults": ok(admin.get(f"/v1/queues/{W}/defaults")),
                }
            ]
            # Over every queue: a scoped token is refused, or sees its queues only.
            for method, path in [
                ("get", "/v1/concurrency-limits"),
                ("put", "/v1/concurrency-limits/k"),
                ("post", "/v1/hung/reap"),
                ("post", "/v1/cleanup"),
                ("get", "/v1/tokens"),
            ]:
                body = {"limit": 1} if method == "put" else None
                is_problem(mine.request(method, path, json=body), 403)
            enqueue(admin, queue=W)
            enqueue(admin)
            assert ok(mine.get("/v1/counts"))["pending"] == 1
            assert ok(admin.get("/v1/counts"))["pending"] == 2
            is_problem(mine.get("/v1/counts", params={"queue": W}), 403)
            # Schedules, distributed jobs and batches: the queue they are on.
            hourly = {"name": "digest", "every": 3600}
            ok(admin.post("/v1/schedules", json={**hourly, "queue": W, "key": "w"}), 201)
            is_problem(mine.post("/v1/schedules", json={**hourly, "queue": W}), 403)
            is_problem(mine.post("/v1/schedules", json={**hourly, "queue": Q, "key": "w"}), 403)
            own = ok(mine.post("/v1/schedules", json={**hourly, "queue": Q}), 201)
            assert [s["id"] for s in ok(mine.get("/v1/schedules"))] == [own["id"]]
            is_problem(mine.get("/v1/schedules/w"), 403)
            is_problem(mine.delete("/v1/schedules/w"), 403)
            assert ok(admin.get("/v1/schedules/w"))["queue"] == W
            fan = {"prompt": "p", "subtasks": ["a"]}
            is_problem(mine.post("/v1/distributed", json={**fan, "queue": W}), 403)
            ok(mine.post("/v1/distributed", json={**fan, "queue": Q}), 201)
            both = [{"name": "a", "queue": Q}, {"name": "b", "queue": W}]
            made = ok(admin.post("/v1/jobs/batch", json={"linked": True, "jobs": both}), 201)
            is_problem(mine.get(f"/v1/batches/{made['jobs'][0]['batch_id']}"), 403)
            # A role below the route's is refused on the token's own queue too.
            is_problem(read.put(f"/v1/queues/{Q}/defaults", json={"attempts": 2}), 403)
            is_problem(read.delete(f"/v1/queues/{Q}"), 403)
