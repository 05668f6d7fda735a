"""The console's live updates: Server-Sent Events built from Queue.watch.

A page subscribes (htmx's sse extension) and the stream tells it what changed: `refresh`
(re-fetch a fragment: the overview's counts, a job's summary), `line` (a job's new log
lines, as HTML to append), `stream` (a job's streamed tail, to replace). Watched events
are coalesced: whatever arrives within PACE seconds of the last message is one message.
"""

from __future__ import annotations

import contextlib
import html as markup
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.pages import Page, html
from wizd.web.session import Viewer, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
PACE = 1.0  # seconds between two messages of a stream at least
KEEPALIVE = 15.0  # seconds between keep-alive comments on a quiet stream
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Changes = Callable[[Sequence[Any]], Awaitable[list[bytes]]]


def sse(event: str, data: str = "", id: int | None = None) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\n{lines}\n".encode()


class Stream(Response):
    """Sends `first`, then what `changes` makes of the watched events, batched at most
    every PACE seconds, and keep-alives, until the client goes away. The watch is closed
    when the stream ends."""

    def __init__(
        self, watch: AsyncIterator[Any], changes: Changes, first: Sequence[bytes] = ()
    ) -> None:
        super().__init__(
            status_code=200,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type="text/event-stream",
        )
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.watch, self.changes, self.first = watch, changes, list(first)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pending: list[Any] = []
        arrived = anyio.Event()
        gone = False

        async def emit(chunk: bytes) -> None:
            nonlocal gone
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:
                gone = True
                tg.cancel_scope.cancel()

        async def pump() -> None:
            nonlocal arrived
            try:
                async for event in self.watch:
                    pending.append(event)
                    arrived.set()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.watch.aclose()  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()

        async def tell() -> None:
            nonlocal arrived
            await emit(b"retry: 2000\n\n" + b"".join(self.first))
            while True:
                with anyio.move_on_after(KEEPALIVE):
                    await arrived.wait()
                if not pending:
                    await emit(b": keep-alive\n\n")
                    continue
                batch = pending[:]
                pending.clear()
                arrived = anyio.Event()
                for chunk in await self.changes(batch):
                    await emit(chunk)
                await anyio.sleep(PACE)  # a rate limit: what comes meanwhile goes as one

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def until_closing(closing: anyio.Event) -> None:
            await closing.wait()
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            tg.start_soon(tell)
            tg.start_soon(until_disconnect)
            closing = getattr(scope["app"].state, "closing", None)
            if closing is not None:  # the server is stopping: end the stream, let it go
                tg.start_soon(until_closing, closing)
        if not gone:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def queue_of(request: Request) -> Queue:
    found: Queue = request.app.state.queue
    return found


@router.get("/live/overview")
async def overview(request: Request, seen: Annotated[Viewer, Depends(viewer)]) -> Response:
    """`refresh` whenever a job of a queue the viewer may see changes."""
    q = queue_of(request)
    every = seen.token.queues is None

    async def changes(events: Sequence[Any]) -> list[bytes]:
        mine = every or any(seen.may(Role.READ, e.queue) for e in events)
        return [sse("refresh")] if mine else []

    return Stream(await q.watch_started(), changes)


@router.get("/live/jobs/{job_id}")
async def job(
    request: Request,
    job_id: JobId,
    seen: Annotated[Viewer, Depends(viewer)],
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The job's new history lines (`line`, each with its line number as SSE id, so a
    reconnecting browser resumes after the last it got), its streamed tail (`stream`),
    and `refresh` for its summary."""
    q = queue_of(request)
    seen.require(Role.READ, (await q.get(job_id)).queue)
    if last_event_id and last_event_id.isdecimal() and len(last_event_id) < 19:
        after = int(last_event_id)
    watch = await q.watch_started(job=job_id)
    seen_lines = after

    async def lines() -> list[bytes]:
        nonlocal seen_lines
        events = await q.events(job_id, seen_lines)
        out = []
        for event in events:
            row = html(request, "_event.html", event=event)
            out.append(sse("line", row, id=event.id))
            seen_lines = max(seen_lines, event.id)
        return out

    async def changes(events: Sequence[Any]) -> list[bytes]:
        out = []
        if any(e.kind == "stream" for e in events):
            out.append(sse("stream", markup.escape(await q.stream_text(job_id))))
        if any(e.kind != "stream" for e in events):
            out += await lines()
            out.append(sse("refresh"))
        return out

    return Stream(watch, changes, await lines())
