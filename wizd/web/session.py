"""Who looks at the console: a cookie session over the API's tokens, and CSRF tokens.

The session cookie holds the token's secret itself (HttpOnly, so no script reads it;
SameSite=Strict, so no other site's page sends it; Secure over https), rather than a
server-side session signed with a key of the server's. Why: the secret is already a
256-bit bearer credential kept hashed in the store, so the cookie adds no new secret to
guard; every `wizd serve` and daemon sharing the database accepts it (no signing key to
share, sessions survive restarts); and revoking the token (`wizd token revoke`) ends
every console session using it within the API's cache time (wizd.http.auth.CACHE), with
no session table to purge. A signed session would have needed a key kept somewhere and
would outlive a revocation until it expired.

CSRF: each browser gets a random nonce cookie (wizd_csrf); every form carries
`<nonce>.<HMAC-SHA256(secret, nonce)>` and every htmx request the same in X-CSRF-Token
(hx-headers). A POST is refused (403) unless the value matches the nonce cookie and the
HMAC under the session's secret: another site can neither read the value nor, by planting
a cookie, forge one for somebody else's session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qs

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from wizd.token_model import Role, Token

SESSION = "wizd_session"  # cookie: the token's secret
NONCE = "wizd_csrf"  # cookie: this browser's CSRF nonce
CSRF_FIELD = "csrf"  # form field
CSRF_HEADER = "X-CSRF-Token"  # header htmx sends (hx-headers)
MAX_AGE = 12 * 3600  # seconds a session cookie lasts
# Who fills in the login form: may touch no queue (its CSRF value is bound to no secret).
NOBODY = Token(
    id="nobody",
    name="not logged in",
    role=Role.READ,
    queues=(),
    created_at=datetime(1970, 1, 1, tzinfo=UTC),
    revoked_at=None,
)


class Authenticator(Protocol):
    """The API's token checks (wizd.http.auth.Access): the token a secret is, or for no
    secret the anonymous admin while the store holds no token on loopback; an
    HTTPException 401 otherwise."""

    async def caller(self, secret: str | None) -> Token: ...


class LoginNeeded(Exception):
    """No valid session: pages send the browser to the login form."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The token behind a request, with this browser's CSRF nonce."""

    token: Token
    secret: str | None  # None: the anonymous admin (no token in the store, loopback)
    nonce: str

    @property
    def csrf(self) -> str:
        return f"{self.nonce}.{mac(self.secret, self.nonce)}"

    @property
    def anonymous(self) -> bool:
        return self.secret is None

    @property
    def who(self) -> str:
        """How an action's log line names who did it."""
        return f"token {self.token.id} ({self.token.name or 'unnamed'})"

    def may(self, needed: Role | str, queue: str | None) -> bool:
        return self.token.may(Role(needed), queue)

    def require(self, needed: Role, queue: str | None) -> None:
        """403 unless the token may do `needed` on `queue`."""
        if not self.token.role.allows(needed):
            raise HTTPException(403, f"a {self.token.role} token may not do this")
        if not self.token.may(needed, queue):
            raise HTTPException(403, f"this token may not touch queue {queue!r}")

    def visible(self, queues: list[str]) -> list[str]:
        return [name for name in queues if self.may(Role.READ, name)]


def mac(secret: str | None, nonce: str) -> str:
    key = (secret or "").encode("utf-8", "surrogatepass")
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def new_nonce(request: Request) -> str:
    """A fresh nonce, set as a cookie on the response by the console's route class."""
    nonce = secrets.token_urlsafe(18)
    request.state.new_nonce = nonce
    return nonce


async def viewer(request: Request) -> Viewer:
    """The request's viewer; LoginNeeded when it has no valid session (and the console is
    not open to anyone on loopback)."""
    access: Authenticator = request.app.state.access
    secret = request.cookies.get(SESSION) or None
    try:
        token = await access.caller(secret)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginNeeded from None
        raise
    nonce = request.cookies.get(NONCE) or new_nonce(request)
    return Viewer(token, secret, nonce)


async def form(request: Request, seen: Viewer) -> dict[str, list[str]]:
    """The POSTed form, after its CSRF token was checked (403 if it does not match)."""
    body = (await request.body()).decode("utf-8", "replace")
    fields = parse_qs(body, keep_blank_values=True, max_num_fields=2000)
    given = (fields.get(CSRF_FIELD) or [request.headers.get(CSRF_HEADER, "")])[0]
    if not secure_equal(given, seen.csrf) or NONCE not in request.cookies:
        raise HTTPException(403, "this form's CSRF token is missing or stale: reload the page")
    return fields


def secure_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    """An HttpOnly, SameSite=Strict cookie for the whole console; Secure over https."""
    response.set_cookie(
        name,
        value,
        max_age=MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
