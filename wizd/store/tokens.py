"""API tokens in the store (table api_tokens: SQLite migration 0015, PostgreSQL 0013).

A row holds a token's id, name, role, queues (JSON, NULL for every queue), the SHA-256 of
its secret and its times; never the secret. The statements are portable SQL: the
PostgreSQL connection translates their placeholders (wizd.store.pg_statements.translate).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from wizd.errors import TokenNotFound
from wizd.model import Role, Token, utc_at
from wizd.store.conn import Conn

T = TypeVar("T")

TOKEN_COLUMNS = "id, name, role, queues, created_at, revoked_at"
TOKEN_INSERT = """
INSERT INTO api_tokens (id, name, role, queues, hash, created_at, revoked_at)
VALUES (?, ?, ?, ?, ?, ?, NULL)
ON CONFLICT (id) DO NOTHING
"""
TOKEN_ALL = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
TOKEN_ONE = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"
TOKEN_WITH_HASH = f"SELECT {TOKEN_COLUMNS}, hash FROM api_tokens WHERE id = ?"
TOKEN_REVOKE = "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"


def token_of(row: Any) -> Token:
    token_id, name, role, queues, created_at, revoked_at = row[:6]
    return Token(
        id=token_id,
        name=name,
        role=Role(role),
        queues=None if queues is None else tuple(json.loads(queues)),
        created_at=utc_at(float(created_at)),
        revoked_at=None if revoked_at is None else utc_at(float(revoked_at)),
    )


def create(
    c: Conn,
    now: float,
    token_id: str,
    role: Role,
    queues: tuple[str, ...] | None,
    name: str | None,
    digest: str,
) -> Token | None:
    """Insert the token; None (nothing written) if a token has this id already."""
    encoded = None if queues is None else json.dumps(list(queues), separators=(",", ":"))
    cur = c.execute(TOKEN_INSERT, (token_id, name, role.value, encoded, digest, now))
    if cur.rowcount != 1:
        return None
    return Token(token_id, name, role, queues, utc_at(now), None)


def revoke(c: Conn, now: float, token_id: str) -> Token:
    """Mark the token revoked (kept at its first revocation time); TokenNotFound."""
    c.execute(TOKEN_REVOKE, (now, token_id))
    row = c.execute(TOKEN_ONE, (token_id,)).fetchone()
    if row is None:
        raise TokenNotFound(token_id)
    return token_of(row)


def with_digest(c: Conn, token_id: str) -> tuple[Token, str] | None:
    row = c.execute(TOKEN_WITH_HASH, (token_id,)).fetchone()
    return None if row is None else (token_of(row), str(row[6]))


class TokenMethods:
    """The Store's token methods over a SQLStore's `_read` / `_write`."""

    async def _read(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def _write(self, op: Callable[[Any, float], T]) -> T:
        raise NotImplementedError

    async def create_token(
        self,
        token_id: str,
        role: Role,
        queues: tuple[str, ...] | None,
        name: str | None,
        digest: str,
    ) -> Token | None:
        return await self._write(
            lambda c, now: create(c, now, token_id, role, queues, name, digest)
        )

    async def tokens(self) -> list[Token]:
        return await self._read(lambda c: [token_of(r) for r in c.execute(TOKEN_ALL).fetchall()])

    async def token_digest(self, token_id: str) -> tuple[Token, str] | None:
        return await self._read(lambda c: with_digest(c, token_id))

    async def revoke_token(self, token_id: str) -> Token:
        return await self._write(lambda c, now: revoke(c, now, token_id))
