"""The HTTP API (wizd.http) on a real server over both stores: enqueue, read, list, await,
signal, act, watch; every bad input a problem document naming the field, never a 5xx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

import wizd
from tests.http_server import api_server, client, is_problem
from wizd.store.base import Finish

Q = "researcher"


@pytest.fixture
def api(backend_url: str) -> Iterator[httpx.Client]:
    with api_server(backend_url) as base, client(base) as http:
        yield http


def settle(url: str, queue: str = Q, outcome: str = "completed", result: Any = None) -> int:
    """Claim the queue's next job and end it, as a daemon would (from another client)."""

    async def main() -> int:
        async with wizd.connect(url) as q:
            (job,) = await q.store.claim(queue, "w1", 1)
            error = "boom" if outcome == "failed" else None
            done = Finish(job.id, "w1", job.attempt, outcome, result, error, retry=False)
            assert await q.store.finish([done]) == [True]
            return job.id

    return anyio.run(main)


def enqueue(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/jobs", json={"name": "research", "queue": Q, **body})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def test_enqueue_get_and_list(api: httpx.Client) -> None:
    job = enqueue(api, payload={"topic": "tides"}, priority="high", tags=["a", "b"], attempts=5)
    assert (job["status"], job["queue"], job["payload"]) == ("pending", Q, {"topic": "tides"})
    assert (job["priority"], job["max_attempts"], job["tags"]) == (4, 5, ["a", "b"])
    assert api.get(f"/v1/jobs/{job['id']}").json() == job
    other = enqueue(api, name="write")
    page = api.get("/v1/jobs", params={"queue": Q, "limit": 1}).json()
    assert [j["id"] for j in page["jobs"]] == [other["id"]]
    rest = api.get("/v1/jobs", params={"queue": Q, "limit": 1, "after": page["next"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [job["id"]]
    assert rest["next"] is None  # the last page
    # A cursor holds its sort and order: another list is refused, not misread.
    sorted_by_name = {"queue": Q, "limit": 1, "sort": "name", "after": page["next"]}
    is_problem(api.get("/v1/jobs", params=sorted_by_name), 422, "after")
    assert api.get("/v1/jobs", params={"status": "running"}).json()["jobs"] == []
    assert [j["id"] for j in api.get("/v1/jobs", params={"tag": "a"}).json()["jobs"]] == [job["id"]]


def test_batch_and_linked_batch(api: httpx.Client) -> None:
    made = api.post("/v1/jobs/batch", json={"jobs": [{"name": "a", "queue": Q}, {"name": "b"}]})
    assert made.status_code == 201, made.text
    assert [(j["name"], j["queue"]) for j in made.json()["jobs"]] == [("a", Q), ("b", "default")]
    linked = api.post(
        "/v1/jobs/batch",
        json={
            "linked": True,
            "jobs": [{"name": "a", "queue": Q}, {"name": "b", "depends_on": [0]}],
        },
    )
    assert linked.status_code == 201, linked.text
    first, second = linked.json()["jobs"]
    assert second["depends_on"] == [first["id"]]
    assert first["batch_id"] == second["batch_id"]
    forward = api.post(
        "/v1/jobs/batch",
        json={"linked": True, "jobs": [{"name": "a", "depends_on": [1]}, {"name": "b"}]},
    )
    is_problem(forward, 422, "jobs[0].depends_on")
    assert api.get("/v1/jobs").json()["jobs"].__len__() == 4  # the refused batch made nothing


def test_an_idempotency_key_makes_one_job_however_often_it_is_sent(api: httpx.Client) -> None:
    body = {"name": "research", "queue": Q, "payload": {"n": 1}}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "req-1"})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "req-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "req-2"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    elsewhere = api.post(
        "/v1/jobs", json={**body, "queue": "writer"}, headers={"Idempotency-Key": "req-1"}
    )
    assert elsewhere.status_code == 201  # keys are per queue
    assert elsewhere.json()["queue"] == "writer"
    both = api.post("/v1/jobs", json={**body, "unique_key": "k"}, headers={"Idempotency-Key": "x"})
    is_problem(both, 422, "unique_key")


def test_wait_long_polls_until_the_job_is_final(api: httpx.Client, backend_url: str) -> None:
    job = enqueue(api)
    early = api.post(f"/v1/jobs/{job['id']}/wait", params={"timeout": 0.2})
    assert (early.status_code, early.json()["status"]) == (200, "pending")
    answers: list[httpx.Response] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            api.post(f"/v1/jobs/{job['id']}/wait", params={"timeout": 30})
        )
    )
    waiter.start()
    settle(backend_url, result={"answer": 42})
    waiter.join(30)
    (answer,) = answers
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["result"]) == ("completed", {"answer": 42})
    is_problem(api.post(f"/v1/jobs/{job['id']}/wait", params={"timeout": 301}), 422, "timeout")


def test_signal_cancel_retry_kill_pause_delete(api: httpx.Client, backend_url: str) -> None:
    job = enqueue(api)
    signalled = api.post(f"/v1/jobs/{job['id']}/signals/approval", json={"data": {"ok": True}})
    assert signalled.status_code == 200, signalled.text
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    is_problem(api.post(f"/v1/jobs/{job['id']}/cancel"), 409)
    retried = api.post(f"/v1/jobs/{job['id']}/retry")
    assert retried.json()["status"] == "pending"
    paused = api.post(f"/v1/jobs/{job['id']}/pause")
    assert paused.json()["status"] == "paused"
    assert api.post(f"/v1/jobs/{job['id']}/resume").json()["status"] == "pending"
    settle(backend_url, outcome="failed")
    events = api.get(f"/v1/jobs/{job['id']}/events").json()
    assert events[-1]["status"] == "failed"
    assert api.get(f"/v1/jobs/{job['id']}/steps").json() == []
    assert api.delete(f"/v1/jobs/{job['id']}").json() == {"ids": [job["id"]]}
    is_problem(api.get(f"/v1/jobs/{job['id']}"), 404)


def test_queues_and_workers(api: httpx.Client) -> None:
    enqueue(api)
    (row,) = api.get("/v1/queues").json()
    assert (row["queue"], row["paused"], row["counts"]["pending"]) == (Q, False, 1)
    assert api.post(f"/v1/queues/{Q}/pause").status_code == 204
    assert api.get("/v1/queues").json()[0]["paused"] is True
    assert api.get(f"/v1/queues/{Q}/stats").json()["paused"] is True
    assert api.post(f"/v1/queues/{Q}/resume").status_code == 204
    assert api.get("/v1/workers").json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue": Q}, "name"),
        ({"name": "x", "priority": "urgent"}, "priority"),
        ({"name": "x", "payload": [1, 2]}, "payload"),
        ({"name": "x", "attempts": 0}, "attempts"),
        ({"name": "x", "queue": "no spaces"}, "queue"),
        ({"name": "x", "depends_on": [999999]}, "depends_on"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "delay": -1}, "delay"),
        ({"name": "x", "backoff": {"kind": "sometimes"}}, "backoff.kind"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    is_problem(api.post("/v1/jobs", json=body), 422, field)
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_malformed_requests_are_4xx_problems(api: httpx.Client) -> None:
    is_problem(
        api.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        422,
    )
    is_problem(
        api.post("/v1/jobs", content=b'"a string"', headers={"content-type": "application/json"}),
        422,
    )
    is_problem(api.get("/v1/jobs/0"), 422, "job_id")
    is_problem(api.get("/v1/jobs/abc"), 422, "job_id")
    is_problem(api.get("/v1/jobs/99999999"), 404)
    is_problem(api.get("/v1/jobs", params={"after": "bogus"}), 422, "after")
    is_problem(api.get("/v1/jobs", params={"status": "sleeping"}), 422, "status[0]")
    is_problem(api.get("/v1/nowhere"), 404)
    is_problem(api.put("/v1/jobs"), 405)
    huge = json.dumps({"name": "x", "payload": {"text": "x" * (3 * 1024 * 1024)}})
    is_problem(
        api.post("/v1/jobs", content=huge, headers={"content-type": "application/json"}), 413
    )

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "payload": {"t": "'
        for _ in range(40):
            yield b"y" * 100_000
        yield b'"}}'

    chunked = api.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    is_problem(chunked, 413)
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_openapi_describes_v1(api: httpx.Client) -> None:
    spec = api.get("/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}/wait",
        "/v1/events",
        "/v1/jobs/{job_id}/signals/{name}",
    } <= set(spec["paths"])


def sse_events(lines: Iterator[str], n: int) -> list[dict[str, Any]]:
    """The next n events of a text/event-stream (keep-alive comments skipped)."""
    got: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if event:
                got.append(event)
                event = {}
                if len(got) == n:
                    return got
            continue
        key, _, value = line.partition(": ")
        event[key] = json.loads(value) if key == "data" else value
    raise AssertionError(f"the stream ended after {got}")


def test_events_stream_live_and_resume_with_last_event_id(
    api: httpx.Client, backend_url: str
) -> None:
    with api.stream("GET", "/v1/events", params={"queue": Q}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        job = enqueue(api)  # the lease is held once the response has begun
        (first,) = sse_events(stream.iter_lines(), 1)
    assert (first["data"]["job_id"], first["data"]["kind"]) == (job["id"], "enqueued")
    assert first["id"] == str(first["data"]["cursor"])
    settle(backend_url)  # while nobody is connected
    headers = {"Last-Event-ID": first["id"]}
    with api.stream("GET", "/v1/events", params={"queue": Q}, headers=headers) as stream:
        rest = sse_events(stream.iter_lines(), 2)
    assert [e["data"]["kind"] for e in rest] == ["claimed", "completed"]
    assert int(rest[0]["id"]) > int(first["id"])
    with api.stream("GET", "/v1/events", params={"job": job["id"]}) as stream:
        history = sse_events(stream.iter_lines(), 3)
    assert [e["data"]["kind"] for e in history] == ["enqueued", "claimed", "completed"]
    is_problem(api.get("/v1/events", params={"after": "x1"}), 422, "after")
    is_problem(api.get("/v1/events", params={"queue": "no spaces"}), 422, "queue")
    is_problem(api.get("/v1/events", params={"job": 99999}), 404)


def test_a_cursor_the_feed_no_longer_covers_is_gone_410(
    api: httpx.Client, backend_url: str
) -> None:
    with api.stream("GET", "/v1/events", params={"queue": Q}) as stream:
        enqueue(api)
        (first,) = sse_events(stream.iter_lines(), 1)
    enqueue(api)
    enqueue(api)

    async def prune() -> None:  # another watcher with a lease too short to resume anything
        async with wizd.connect(backend_url) as q:
            await q.store.watch_register("impatient", lease=0.0)

    anyio.run(prune)
    gone = api.get("/v1/events", headers={"Last-Event-ID": first["id"]})
    assert f"cursor {first['id']} is older" in is_problem(gone, 410)["detail"]
