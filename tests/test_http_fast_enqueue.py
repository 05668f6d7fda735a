"""The fast path for POST /v1/jobs (wizd.http.fast_enqueue), over both stores: it answers
a plain enqueue without the FastAPI route, and every other request gets exactly the route's
answer (status, headers, body), the app answering it as with the fast path off."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

import wizd
from wizd.http.app import create_app
from wizd.http.fast_enqueue import FastEnqueue

Q = "researcher"
Answer = tuple[int, dict[str, str], bytes]


class Harness:
    """The app over `q` (a client with the real clock: the route's 201 compares it to the
    time of the request), with the requests that reached the app behind the fast path."""

    def __init__(self, q: wizd.Queue) -> None:
        self.q = q
        self.app: FastAPI = create_app(q, owns_queue=False)
        layer: Any = self.app
        assert isinstance(layer.fast, FastEnqueue)  # in front of FastAPI itself
        self.layer = layer = layer.fast
        behind = layer.app
        self.reached: list[str] = []

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            self.reached.append(scope["path"])
            await behind(scope, receive, send)

        layer.app = counted

    async def post(self, content: bytes, headers: dict[str, str]) -> Answer:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/v1/jobs", content=content, headers=headers)
        return response.status_code, dict(response.headers), response.content


@pytest.fixture
def h(other: wizd.Queue) -> Harness:
    return Harness(other)


def body(**fields: Any) -> bytes:
    return json.dumps({"name": "research", "queue": Q, **fields}).encode()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


async def off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path never answers: every request goes to the app."""

    async def never(*args: Any) -> bool:
        return False

    monkeypatch.setattr(FastEnqueue, "answered", never)


async def test_a_plain_enqueue_is_answered_without_the_route(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = await h.q.create_token("enqueue", [Q])
    status, headers, content = await h.post(body(payload={"n": 1}, tags=["a"]), bearer(secret))
    assert (status, h.reached) == (201, [])
    job = json.loads(content)
    assert job == (await h.q.get(job["id"])).to_dict()
    assert (job["payload"], job["tags"], job["queue"]) == ({"n": 1}, ["a"], Q)
    # As the route answers it (with the fast path off): same status, headers, fields.
    await off(monkeypatch)
    status2, headers2, content2 = await h.post(body(payload={"n": 1}, tags=["a"]), bearer(secret))
    assert (status2, h.reached) == (201, ["/v1/jobs"])
    assert headers2["content-type"] == headers["content-type"] == "application/json"
    assert headers.keys() == headers2.keys()
    assert json.loads(content2).keys() == job.keys()


async def test_a_body_in_chunks(h: Harness) -> None:
    """Read whole across messages; replayed whole to the app when it falls back."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def call(content: bytes) -> dict[str, Any]:
        chunks = [content[:7], content[7:]]
        messages: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i == 0} for i, c in enumerate(chunks)
        ]

        async def receive() -> Message:
            return messages.pop(0)

        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(content)).encode()))
        scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "root_path": "",
                 "raw_path": b"/v1/jobs", "query_string": b"", "headers": headers,
                 "http_version": "1.1", "scheme": "http", "server": ("test", 80),
                 "client": ("127.0.0.1", 1), "asgi": {"version": "3.0"}}  # fmt: skip
        sent.clear()
        await h.app(scope, receive, send)
        return {"status": sent[0]["status"], "body": json.loads(sent[1]["body"])}

    made = await call(body(payload={"text": "x" * 100}))
    assert (made["status"], made["body"]["payload"], h.reached) == (201, {"text": "x" * 100}, [])
    refused = await call(json.dumps({"name": "no spaces", "queue": Q}).encode())
    assert (refused["status"], refused["body"]["field"], h.reached) == (422, "name", ["/v1/jobs"])


# Requests the fast path hands to the app: (their headers but the token, their body).
JSON = {"Content-Type": "application/json"}
FALLBACKS: dict[str, tuple[str | None, dict[str, str], bytes]] = {
    "no token": (None, JSON, body()),
    "an unknown token": ("wizd_nope_nope", JSON, body()),
    "another scheme": ("basic", JSON, body()),
    "a read token": ("read", JSON, body()),
    "a token of another queue": ("other", JSON, body()),
    "an invalid name": ("admin", JSON, body(name="no spaces")),
    "an unknown field": ("admin", JSON, body(colour="red")),
    "a wrong type": ("admin", JSON, body(payload=[1, 2])),
    "malformed JSON": ("admin", JSON, b'{"name": "research",'),
    "no body": ("admin", JSON, b""),
    "text/plain": ("admin", {"Content-Type": "text/plain"}, body()),
    "no content type": ("admin", {}, body()),
    "a body over the limit": ("admin", JSON, b"over"),  # (made to measure below)
    "an Idempotency-Key with a unique_key": (
        "admin",
        {**JSON, "Idempotency-Key": "k1"},
        body(unique_key="u"),
    ),
}


@pytest.mark.parametrize("case", FALLBACKS)
async def test_anything_else_gets_the_routes_answer(
    h: Harness, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    who, headers, content = FALLBACKS[case]
    secrets = {
        "admin": (await h.q.create_token("admin"))[1],
        "read": (await h.q.create_token("read"))[1],
        "other": (await h.q.create_token("enqueue", ["elsewhere"]))[1],
    }
    if content == b"over":
        content = body(payload={"x": "y" * h.layer.limit})
    sent = dict(headers)
    if who == "basic":
        sent["Authorization"] = "Basic dXNlcjpwYXNz"
    elif who is not None:
        sent["Authorization"] = f"Bearer {secrets.get(who, who)}"
    fast = await h.post(content, sent)
    assert h.reached == ["/v1/jobs"]
    assert fast[0] >= 400, fast
    assert fast[1]["content-type"] == "application/problem+json"
    await off(monkeypatch)
    assert await h.post(content, sent) == fast
    assert await h.q.list(queue=Q) == []  # nothing was enqueued


async def test_an_idempotency_key_goes_to_the_route(h: Harness) -> None:
    headers = {**JSON, "Idempotency-Key": "once"}
    first = await h.post(body(), headers)
    again = await h.post(body(), headers)
    assert (first[0], again[0], h.reached) == (201, 200, ["/v1/jobs", "/v1/jobs"])
    assert json.loads(first[2]) == json.loads(again[2])


async def test_an_error_of_the_enqueue_is_the_apps_problem_document(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid for the model, refused by Queue.enqueue: the fast path answers it with the
    app's own handler (the enqueue is not run twice)."""
    nan = b'{"name": "research", "queue": "researcher", "delay": NaN}'
    for bad in (body(priority="urgent"), body(depends_on=[10**9]), nan):
        h.reached.clear()
        fast = await h.post(bad, JSON)
        assert (fast[0], h.reached) == (422, [])
        await off(monkeypatch)
        assert await h.post(bad, JSON) == fast
        monkeypatch.undo()
    assert await h.q.list(queue=Q) == []


async def test_an_unexpected_error_is_the_apps_500(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no handler knows, raised by the enqueue: the app's own 500 problem
    document, as with the fast path off, and the error raised on for the server's log."""

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(h.q, "enqueue", broken)
    transport = httpx.ASGITransport(app=h.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        fast = await http.post("/v1/jobs", content=body(), headers=JSON)
        with pytest.raises(RuntimeError, match="a bug"):
            await Harness.post(h, body(), JSON)
        assert h.reached == []
        await off(monkeypatch)
        slow = await http.post("/v1/jobs", content=body(), headers=JSON)
    assert h.reached == ["/v1/jobs"]
    assert (fast.status_code, fast.headers, fast.content) == (
        slow.status_code,
        slow.headers,
        slow.content,
    )
    assert fast.status_code == 500
    assert fast.headers["content-type"] == "application/problem+json"
