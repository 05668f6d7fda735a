"""The API's application: FastAPI over one Queue client, versioned under /v1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import wizd
from wizd import web
from wizd.http import (
    events,
    fast_enqueue,
    flows,
    jobs,
    problems,
    queue_settings,
    queues,
    schedules,
    tokens,
)
from wizd.http.auth import Access
from wizd.queue import Queue

FRAMING = 64 * 1024  # bytes a request body may have beyond the payload limit (JSON around it)
BATCH_BODY = 32 * 1024 * 1024  # bytes of a batch's body at most


def create_app(queue: Queue, *, open_on_no_token: bool = True, owns_queue: bool = True) -> FastAPI:
    """The API over `queue`. `owns_queue`: the app opens the client at start-up and closes it
    at shutdown (`wizd serve`); a daemon serving in-process passes its own, open already.
    `open_on_no_token`: while the store has no live token, callers need none (the server
    listens on loopback only; wizd.http.server decides)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_queue:
            async with queue:
                yield
        else:
            yield

    app = fast_enqueue.Api(
        title="wizd",
        version=wizd.__version__,
        summary="A durable job queue for AI agents: enqueue, read, await, signal, watch.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.queue = queue
    app.state.access = Access(queue, open_on_no_token=open_on_no_token)
    problems.install(app)
    for module in (jobs, flows, queues, queue_settings, schedules, tokens, events):
        app.include_router(module.router, prefix="/v1", responses=problems.responses())
    web.install(app, app.state.access)  # the console, at / (after /v1: its paths win)
    limit = (queue.limits.payload or 0) + queue.limits.context + FRAMING
    app.add_middleware(BodyLimit, limit=limit)
    fast_enqueue.install(app, limit)  # in front of FastAPI itself: see why there
    return app


class BodyLimit:
    """Refuse a request body over the limit with 413 (a batch of jobs may be BATCH_BODY
    bytes), before it is read whole: by its Content-Length, or as its chunks come."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = BATCH_BODY if scope["path"].endswith("/jobs/batch") else self.limit
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                refusal = problems.problem(413, problems.TITLES[413], over(limit))
                await refusal(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, over(limit))
            return message

        await self.app(scope, counted, send)


def over(limit: int) -> str:
    return f"the request body is over {limit} bytes"
