"""A fast path for the API's most frequent request, `POST /v1/jobs` one job at a time.

FastAPI's routing and dependency solving cost a request about as much CPU as the enqueue
itself. In front of the app, this layer answers exactly the plain case itself: a JSON body
within the limit, a bearer token (or none) that Access lets in, a body JobIn validates the
way FastAPI does (json.loads, then the model), a queue the token may enqueue to, no
Idempotency-Key. It then calls the route's own code (jobs.enqueue_one) and answers what the
route would. Anything else, before anything is written, goes to the app with the body
replayed, so every refusal (401, 403, 413, 422...) keeps its one implementation; a wizd
error of the enqueue itself is answered by the app's own handler (problems.of_wizd_error),
any other by the app's handler of unexpected errors, as its ServerErrorMiddleware would.

It sits in front of FastAPI itself (Api.__call__), not in its middleware stack: FastAPI's
and Starlette's own layers (its telemetry check, the error and body-limit middlewares) cost
a request ~12 µs of CPU before the stack's first middleware. FastAPI's native OpenTelemetry
(off unless a provider is configured; wizd configures none) does not see these requests.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wizd.errors import WizdError
from wizd.http import jobs, problems
from wizd.http import schemas as S
from wizd.http.auth import Access

PATH = "/v1/jobs"
JSON = b"application/json"
job_in: TypeAdapter[S.JobIn] = TypeAdapter(S.JobIn)


class FastEnqueue:
    """The fast path in front of `app` (the rest of `api`'s stack), for bodies of at most
    `limit` bytes."""

    def __init__(self, app: ASGIApp, api: FastAPI, limit: int) -> None:
        self.app = app
        self.api = api
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
            or self.api.root_path
        ):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        if not await self.answered(scope, receive, send, read):
            await self.app(scope, replay(read, receive), send)

    async def answered(
        self, scope: Scope, receive: Receive, send: Send, read: list[Message]
    ) -> bool:
        """Whether this answered the request; False: nothing was sent or written, and
        `read` holds the messages taken from `receive`."""
        plain = plain_headers(scope["headers"], self.limit)
        if plain is None:
            return False
        length, secret = plain
        body = b""
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                return False
            body += message.get("body", b"")
            if len(body) > length:
                return False
            if not message.get("more_body", False):
                break
        if len(body) != length:
            return False
        access: Access = self.api.state.access
        try:
            token = await access.caller(secret)
            job = job_in.validate_python(json.loads(body), from_attributes=True)
        except Exception:  # the app says what is wrong, as it always does
            return False
        try:
            response = await jobs.enqueue_one(self.api.state.queue, token, job, None)
        except WizdError as exc:
            response = problems.of_wizd_error(exc)
        except HTTPException:  # 403, jobs.enqueue_one's first check: nothing written yet
            return False
        except Exception as exc:  # the app's 500, then raised on to be logged, as Starlette does
            response = await problems.unexpected(Request(scope), exc)
            await response(scope, receive, send)
            raise
        await response(scope, receive, send)
        return True


def plain_headers(headers: list[tuple[bytes, bytes]], limit: int) -> tuple[int, str | None] | None:
    """The body's length and the bearer secret (None: no Authorization) of a request the
    fast path may take, or None: a JSON body of a given length within `limit`, each of
    these headers at most once, and no Idempotency-Key."""
    length = secret = kind = None
    for key, value in headers:
        if key == b"content-length":
            if length is not None or not value.isdigit() or int(value) > limit:
                return None
            length = int(value)
        elif key == b"content-type":
            if kind is not None or value.lower() != JSON:
                return None
            kind = value
        elif key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            credentials = credentials.strip()
            if secret is not None or scheme.lower() != "bearer" or not credentials:
                return None
            secret = credentials
        elif key in (b"idempotency-key", b"transfer-encoding"):
            return None
    if length is None or kind is None:
        return None
    return length, secret


def replay(read: list[Message], receive: Receive) -> Receive:
    """`receive` with the messages already taken from it given back first."""
    pending = list(read)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again


class Api(FastAPI):
    """FastAPI with the fast path (install) in front of all it does for a request."""

    fast: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast(scope, receive, send)


def install(app: Api, limit: int) -> None:
    """Put the fast path in front of `app`, which gets what it does not take."""

    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    app.fast = FastEnqueue(rest, app, limit)
