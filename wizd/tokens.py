"""API tokens: the client's methods to create, list, revoke and check the bearer tokens the
HTTP API authenticates with (wizd.token_model has Role and Token)."""

from __future__ import annotations

import builtins
import hmac
import secrets
from collections.abc import Iterable

from wizd.errors import StoreError
from wizd.model import (
    Role,
    Token,
    check_token_id,
    check_token_name,
    check_token_queues,
    parse_role,
    secret_digest,
    secret_id,
)
from wizd.store import Store

ID_TRIES = 8  # new ids drawn when one is taken (1 in 4 billion for each, until 10^5 tokens)


class Tokens:
    """The client's methods for API tokens (a base of wizd.Queue)."""

    store: Store

    async def create_token(
        self, role: Role | str, queues: Iterable[str] | None = None, name: str | None = None
    ) -> tuple[Token, str]:
        """A new token with `role`, for `queues` (None: every queue), and its secret, which
        is returned this once and never stored: `wizd_<id>_<43 random characters>`.

        The store keeps the SHA-256 of the secret. The secret is 256 random bits, so no
        guess can find it from its digest and a slow key-derivation function (bcrypt,
        scrypt), which protects passwords people choose, would only slow every request.
        A bad role, queue name or name raises InvalidJob naming it; nothing is written."""
        wanted = parse_role(role)
        scope = check_token_queues(queues)
        label = check_token_name(name)
        for _ in range(ID_TRIES):
            token_id = secrets.token_hex(4)
            secret = f"wizd_{token_id}_{secrets.token_urlsafe(32)}"
            digest = secret_digest(secret)
            token = await self.store.create_token(token_id, wanted, scope, label, digest)
            if token is not None:
                return token, secret
        raise StoreError(f"{ID_TRIES} random token ids in a row were taken")  # pragma: no cover

    async def tokens(self) -> builtins.list[Token]:
        """Every token, oldest first, revoked ones included (their revoked_at set)."""
        return await self.store.tokens()

    async def revoke_token(self, id: str) -> Token:
        """Revoke a token by its id: it authenticates no more. Revoking it again changes
        nothing and returns it. TokenNotFound for an unknown id."""
        return await self.store.revoke_token(check_token_id(id))

    async def authenticate(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None: for a string not shaped like a
        secret, an unknown id, a revoked token or a wrong secret alike. Writes nothing (it
        runs for every request), so it works on a read-only client. The digests are
        compared in constant time."""
        token_id = secret_id(secret)
        if token_id is None:
            return None
        found = await self.store.token_digest(token_id)
        if found is None:
            return None
        token, digest = found
        if not hmac.compare_digest(digest, secret_digest(secret)) or token.revoked:
            return None
        return token
