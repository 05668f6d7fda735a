"""Who may call: bearer tokens (wizd.tokens), checked on every request.

A request carries `Authorization: Bearer <secret>`; the token's role must allow the
operation and its queues (if it has a list) must hold the queue the operation touches.
While the store holds no live token, a server bound to loopback only lets every local
caller in as admin (the one-box case); wizd.http.server refuses to bind anywhere else
without a token. Answers are cached for CACHE seconds: a revoked token stops working
within that time, and a request costs no database read in the common case.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wizd.queue import Queue
from wizd.token_model import Role, Token

CACHE = 2.0  # seconds an answer about a token (or about there being none) is kept
CACHE_SIZE = 10_000  # secrets remembered at most
ANONYMOUS = Token(
    id="anonymous",
    name="anyone on loopback (the store has no token)",
    role=Role.ADMIN,
    queues=None,
    created_at=datetime(1970, 1, 1, tzinfo=UTC),
    revoked_at=None,
)
bearer = HTTPBearer(auto_error=False, description="a token from `wizd token create`")


class Access:
    """The server's view of the tokens in the store, cached briefly."""

    def __init__(self, queue: Queue, *, open_on_no_token: bool) -> None:
        self.queue = queue
        self.open_on_no_token = open_on_no_token
        self._known: dict[str, tuple[Token | None, float]] = {}
        self._any_live: tuple[bool, float] = (False, float("-inf"))

    async def any_live_token(self) -> bool:
        live, until = self._any_live
        if time.monotonic() >= until:
            live = any(t.revoked_at is None for t in await self.queue.tokens())
            self._any_live = (live, time.monotonic() + CACHE)
        return live

    def forget(self) -> None:
        """Drop every cached answer: tokens were made or revoked through this server."""
        self._known.clear()
        self._any_live = (False, float("-inf"))

    async def caller(self, secret: str | None) -> Token:
        if secret is None:
            if self.open_on_no_token and not await self.any_live_token():
                return ANONYMOUS
            raise unauthorized("this request needs a bearer token (Authorization: Bearer ...)")
        key = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
        token, until = self._known.get(key, (None, float("-inf")))
        if time.monotonic() >= until:
            token = await self.queue.authenticate(secret)
            if len(self._known) >= CACHE_SIZE:
                self._known.clear()
            self._known[key] = (token, time.monotonic() + CACHE)
        if token is None:
            raise unauthorized("the bearer token is unknown, revoked or malformed")
        return token


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Token:
    access: Access = request.app.state.access
    return await access.caller(None if credentials is None else credentials.credentials)


Caller = Annotated[Token, Depends(caller)]


def allow(token: Token, needed: Role, queue: str | None) -> None:
    """403 unless the token's role allows `needed` on `queue` (None: no one queue, which
    only a token for every queue may do)."""
    if not token.role.allows(needed):
        raise HTTPException(403, f"a {token.role} token may not do this (it takes {needed})")
    if not token.may(needed, queue):
        where = "every queue" if queue is None else f"queue {queue!r}"
        raise HTTPException(403, f"this token may not touch {where}")


async def queue_of(request: Request) -> Queue:
    """The app's client. `async`: FastAPI runs a plain `def` dependency in a worker thread,
    a thread hop on every request."""
    found: Queue = request.app.state.queue
    return found


Client = Annotated[Queue, Depends(queue_of)]
