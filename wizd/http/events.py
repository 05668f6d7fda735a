"""GET /v1/events: jobs' events live, as Server-Sent Events, from Queue.watch.

Each event's SSE id is its watch cursor, so a client that reconnects (EventSource does
it by itself, sending Last-Event-ID) misses nothing and sees nothing twice, as long as the
feed still covers its cursor (wizd.watching); if not, the answer is a 410 problem document.
The watch's lease is taken before the answer begins: whatever commits after the response
headers arrive is in the stream. A comment line every KEEPALIVE seconds keeps
proxies from closing a quiet stream.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wizd.errors import CursorExpired, InvalidJob, WizdError
from wizd.http.auth import Caller, Client, allow
from wizd.http.problems import TITLES, status_of
from wizd.http.schemas import NAME
from wizd.model import check_identifier
from wizd.token_model import Role

router = APIRouter(tags=["events"])
KEEPALIVE = 15.0  # seconds between two keep-alive comments on a quiet stream
EVENT_KEYS = ("cursor", "job_id", "queue", "kind", "status", "attempt", "worker_id", "message")


def sse(event: Any) -> bytes:
    body = {key: getattr(event, key) for key in EVENT_KEYS}
    body["at"] = event.at.isoformat()
    data = json.dumps(body, separators=(",", ":"))
    return f"id: {event.cursor}\ndata: {data}\n\n".encode()


def sse_error(exc: WizdError) -> bytes:
    status = 410 if isinstance(exc, CursorExpired) else status_of(exc)
    problem = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    problem["detail"] = str(exc)
    return f"event: error\ndata: {json.dumps(problem)}\n\n".encode()


class EventStream(Response):
    """Sends the events of a watch as they come, keep-alives between, until the client
    goes away. Every task of it lives in one task group of this response's own call."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[Any]) -> None:
        super().__init__(
            status_code=200,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        self.events = events
        # No body given: Response said its length is 0, which a stream's is not.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        lock = anyio.Lock()
        gone = False

        async def emit(chunk: bytes) -> None:
            nonlocal gone
            async with lock:
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except OSError:
                    gone = True
                    tg.cancel_scope.cancel()

        async def pump() -> None:
            try:
                async for event in self.events:
                    await emit(sse(event))
            except WizdError as exc:
                await emit(sse_error(exc))
            finally:
                with anyio.CancelScope(shield=True):
                    await self.events.aclose()  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()

        async def keepalive() -> None:
            while True:
                await anyio.sleep(KEEPALIVE)
                await emit(b": keep-alive\n\n")

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            tg.start_soon(keepalive)
            tg.start_soon(until_disconnect)
        if not gone:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def cursor(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if not (text.isascii() and text.isdecimal() and len(text) <= 19):
        raise InvalidJob(field, f"must be an event's cursor (its id), got {value[:40]!r}")
    return int(text)


@router.get(
    "/events",
    summary="Jobs' events as they happen (Server-Sent Events)",
    description="Every event of the queue's jobs (or of one job, or of every job) after the "
    "cursor `after` (or the Last-Event-ID header), as `text/event-stream`: each event's `id` "
    "is its cursor, its `data` a JSON object (cursor, job_id, queue, at, kind, status, "
    "attempt, worker_id, message). Without a cursor: from now on (one job: its history so "
    "far first).",
    response_class=EventStream,
    status_code=200,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def events(
    q: Client,
    token: Caller,
    queue: Annotated[str | None, Query(pattern=NAME)] = None,
    job: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    after: Annotated[str | None, Query(description="resume after this cursor")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    if queue is not None:
        check_identifier("queue", queue)
    if job is not None:
        allow(token, Role.READ, (await q.get(job)).queue)
    else:
        allow(token, Role.READ, queue)
    start = cursor(after, "after") if after is not None else cursor(last_event_id, "Last-Event-ID")
    return EventStream(await q.watch_started(queue=queue, job=job, after=start))
