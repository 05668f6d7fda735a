"""API tokens (wizd.tokens): made with a secret shown once, checked by the digest the store
keeps, revoked for every client of the database; and what a role and a queue list allow."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

import wizd
from tests.conftest import START, FakeClock, in_own_task, sqlite_file
from wizd import InvalidJob, Role, Token, TokenNotFound
from wizd.model import secret_id

R = Role


def stored_rows(q: wizd.Queue) -> list[tuple[Any, ...]]:
    """Every row of api_tokens as the database holds it, every column."""
    if q.store.backend == "postgres":
        import psycopg

        config = q.store.config  # type: ignore[attr-defined]
        with psycopg.connect(config.conninfo) as pg:
            return [tuple(r) for r in pg.execute(f"SELECT * FROM {config.schema}.api_tokens")]
    with sqlite_file(q.store.path) as db:  # type: ignore[attr-defined]
        return [tuple(r) for r in db.execute("SELECT * FROM api_tokens")]


def other_secret(secret: str) -> str:
    """The same token id with another random part (one character changed)."""
    last = "A" if secret[-1] != "A" else "B"
    return secret[:-1] + last


async def test_a_token_authenticates_with_its_secret_until_revoked(
    q: wizd.Queue, other: wizd.Queue, clock: FakeClock
) -> None:
    token, secret = await q.create_token("enqueue", ["researcher"], name="ci bot")
    assert secret.startswith(f"wizd_{token.id}_")
    assert len(secret) == len("wizd_") + 8 + 1 + 43
    assert (token.role, token.queues, token.name) == (R.ENQUEUE, ("researcher",), "ci bot")
    assert token.created_at == datetime.fromtimestamp(START, UTC)
    assert token.revoked_at is None
    assert await q.authenticate(secret) == token
    assert await other.authenticate(secret) == token  # another client of the database

    clock.advance(60)
    revoked = await q.revoke_token(token.id)
    assert revoked.revoked_at == datetime.fromtimestamp(START + 60, UTC)
    assert await q.authenticate(secret) is None
    assert await other.authenticate(secret) is None
    clock.advance(60)
    assert await q.revoke_token(token.id) == revoked  # again: changes nothing
    assert await q.tokens() == [revoked]  # still listed, flagged


async def test_a_wrong_secret_for_a_real_id_fails(q: wizd.Queue) -> None:
    token, secret = await q.create_token(R.READ)
    assert await q.authenticate(other_secret(secret)) is None
    _, second = await q.create_token(R.READ)
    mixed = f"wizd_{token.id}_{second.rsplit('_', 1)[-1]}"  # ids swapped, both real
    if mixed != secret:
        assert await q.authenticate(mixed) is None
    assert await q.authenticate(secret) == token


@pytest.mark.parametrize(
    "text",
    [
        "",
        "wizd_",
        "wizd__",
        "Bearer wizd_",
        "wizd_0000000_" + "a" * 43,  # 7-digit id
        "wizd_0000000G_" + "a" * 43,  # not hex
        "wizd_ABCDEF01_" + "a" * 43,  # uppercase id
        "wizd_00000000_" + "a" * 42,  # short
        "wizd_00000000_" + "a" * 44,  # long
        "wizd_00000000_" + "é" * 43,  # not ASCII
        "wizd_00000000_" + "a" * 42 + "=",
        "wizd_00000000_" + "a" * 42 + "\n",
        "wizd_٠٠٠٠٠٠٠٠_" + "a" * 43,  # Arabic-Indic digits
        "WIZD_00000000_" + "a" * 43,
        "wizd_00000000_" + "a" * 1_000_000,
        "\x00" * 57,
    ],
)
async def test_a_malformed_secret_is_refused_without_a_lookup(q: wizd.Queue, text: str) -> None:
    assert secret_id(text) is None
    assert await q.authenticate(text) is None


@pytest.mark.parametrize("value", [None, 12345, b"wizd_00000000_" + b"a" * 43, ["wizd_"]])
async def test_a_secret_that_is_not_text_is_refused(q: wizd.Queue, value: Any) -> None:
    assert await q.authenticate(value) is None


async def test_an_unknown_id_fails(q: wizd.Queue) -> None:
    token, secret = await q.create_token(R.ADMIN)
    unknown = "00000000" if token.id != "00000000" else "11111111"
    assert await q.authenticate(secret.replace(token.id, unknown)) is None


async def test_the_store_keeps_the_digest_never_the_secret(q: wizd.Queue) -> None:
    token, secret = await q.create_token(R.OPERATE, ["a", "b"], name="n")
    random_part = secret.rsplit("_", 1)[-1]
    (row,) = stored_rows(q)
    for column in row:
        assert secret not in str(column)
        assert random_part not in str(column)
    assert hashlib.sha256(secret.encode()).hexdigest() in row
    assert "hash" not in token.to_dict()
    assert secret not in str(token.to_dict())


async def test_a_read_only_client_authenticates(q: wizd.Queue, backend_url: str) -> None:
    token, secret = await q.create_token(R.READ)
    async with in_own_task(wizd.connect(backend_url, read_only=True)) as reader:
        assert await reader.authenticate(secret) == token
        assert await reader.tokens() == [token]
        with pytest.raises(wizd.StoreError):
            await reader.create_token(R.READ)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": "boss"}, "role"),
        ({"role": "Admin"}, "role"),
        ({"role": None}, "role"),
        ({"role": "read", "queues": ["bad queue"]}, "queues"),
        ({"role": "read", "queues": ["ok", ""]}, "queues"),
        ({"role": "read", "queues": []}, "queues"),
        ({"role": "read", "queues": "researcher"}, "queues"),  # a string, not a list
        ({"role": "read", "queues": ["x" * 201]}, "queues"),
        ({"role": "read", "name": ""}, "name"),
        ({"role": "read", "name": "a\nb"}, "name"),
        ({"role": "read", "name": "n" * 201}, "name"),
        ({"role": "read", "name": 7}, "name"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    q: wizd.Queue, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        await q.create_token(**kwargs)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert await q.tokens() == []
    assert stored_rows(q) == []


async def test_queues_are_kept_in_order_without_repeats(q: wizd.Queue) -> None:
    token, _ = await q.create_token("read", iter(["b", "a", "b"]))
    assert token.queues == ("b", "a")
    assert (await q.tokens())[0].queues == ("b", "a")


async def test_tokens_lists_every_token_oldest_first(q: wizd.Queue, clock: FakeClock) -> None:
    first, _ = await q.create_token(R.READ, name="first")
    clock.advance(1)
    second, _ = await q.create_token(R.ADMIN)
    assert await q.tokens() == [first, second]
    assert second.to_dict() == {
        "id": second.id,
        "name": None,
        "role": "admin",
        "queues": None,
        "created_at": datetime.fromtimestamp(START + 1, UTC).isoformat(),
        "revoked_at": None,
    }


async def test_revoking_an_unknown_or_malformed_id_is_refused(q: wizd.Queue) -> None:
    with pytest.raises(TokenNotFound, match="token '0badc0de' does not exist"):
        await q.revoke_token("0badc0de")
    with pytest.raises(InvalidJob, match=r"^id: a token id is 8 hex digits"):
        await q.revoke_token("wizd_0badc0de")
    assert stored_rows(q) == []


def test_the_sync_client_has_the_token_methods(store_url: str) -> None:
    with wizd.connect_sync(store_url) as q:
        token, secret = q.create_token("read")
        assert q.authenticate(secret) == token
        assert q.revoke_token(token.id).revoked


# -- what a role and a queue list allow -----------------------------------------------------

ALLOWS = {
    R.READ: {R.READ},
    R.ENQUEUE: {R.READ, R.ENQUEUE},
    R.OPERATE: {R.READ, R.ENQUEUE, R.OPERATE},
    R.ADMIN: {R.READ, R.ENQUEUE, R.OPERATE, R.ADMIN},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("needed", list(Role))
def test_each_role_allows_itself_and_the_roles_below(role: Role, needed: Role) -> None:
    assert role.allows(needed) is (needed in ALLOWS[role])


def token(role: Role, queues: tuple[str, ...] | None, revoked: bool = False) -> Token:
    at = datetime.fromtimestamp(START, UTC)
    return Token("0123abcd", None, role, queues, at, at if revoked else None)


@pytest.mark.parametrize(
    ("role", "queues", "needed", "queue", "allowed"),
    [
        (R.ENQUEUE, ("researcher",), R.ENQUEUE, "researcher", True),
        (R.ENQUEUE, ("researcher",), R.READ, "researcher", True),
        (R.ENQUEUE, ("researcher",), R.ENQUEUE, "writer", False),
        (R.ENQUEUE, ("researcher",), R.OPERATE, "researcher", False),
        (R.ENQUEUE, ("researcher",), R.READ, None, False),  # no single queue: unscoped only
        (R.ENQUEUE, None, R.READ, None, True),
        (R.ENQUEUE, None, R.ENQUEUE, "anything", True),
        (R.ADMIN, ("a", "b"), R.ADMIN, "b", True),
        (R.ADMIN, ("a", "b"), R.ADMIN, None, False),
        (R.ADMIN, None, R.ADMIN, None, True),
        (R.READ, None, R.ENQUEUE, "a", False),
    ],
)
def test_a_token_may_what_its_role_allows_on_its_queues(
    role: Role, queues: tuple[str, ...] | None, needed: Role, queue: str | None, allowed: bool
) -> None:
    assert token(role, queues).may(needed, queue) is allowed
    assert token(role, queues, revoked=True).may(needed, queue) is False
