"""`wizd token create|list|revoke`: the secret printed once authenticates; listings show no
secret; refusals are one line and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import wizd
from tests.cli_runner import cli_db, wizd_cmd
from tests.test_cli_inputs import refused

db = cli_db


def authenticate(db: str, secret: str) -> wizd.Token | None:
    with wizd.connect_sync(db) as q:
        token: wizd.Token | None = q.authenticate(secret)
        return token


def tokens(db: str) -> list[wizd.Token]:
    with wizd.connect_sync(db) as q:
        found: list[wizd.Token] = q.tokens()
        return found


def test_create_prints_a_secret_that_authenticates_once(db: str) -> None:
    args = ["--role", "enqueue", "--queue", "researcher", "--queue", "writer", "--name", "ci bot"]
    ran = wizd_cmd(db, "token", "create", *args)
    assert ran.code == 0, str(ran)
    secret = ran.out.strip()
    assert len(ran.out.splitlines()) == 1  # stdout is the secret alone: $(wizd token create)
    token = authenticate(db, secret)
    assert token is not None
    assert (token.role, token.queues, token.name) == ("enqueue", ("researcher", "writer"), "ci bot")
    assert f"token {token.id} (enqueue, researcher, writer) created" in ran.err
    assert "will not be shown again" in ran.err


def test_create_json_holds_the_token_and_its_secret(db: str) -> None:
    ran = wizd_cmd(db, "token", "create", "--role", "admin", "--json")
    assert ran.code == 0, str(ran)
    document = json.loads(ran.out)
    token = authenticate(db, document["secret"])
    assert token is not None
    assert document["token"] == token.to_dict()
    assert document["token"]["queues"] is None


def test_list_shows_every_token_and_no_secret(db: str) -> None:
    secrets = [
        wizd_cmd(db, "token", "create", "--role", role, "--name", f"for {role}").out.strip()
        for role in ("read", "operate")
    ]
    (first, second) = tokens(db)
    ran = wizd_cmd(db, "token", "revoke", first.id)
    assert ran.code == 0, str(ran)
    assert ran.out.strip() == f"token {first.id} revoked"

    listed = wizd_cmd(db, "token", "list")
    assert listed.code == 0, str(listed)
    lines = listed.out.splitlines()
    assert lines[0].split() == ["id", "name", "role", "queues", "created", "revoked"]
    assert first.id in lines[1]
    assert "for read" in lines[1]
    assert lines[1].rstrip().endswith("ago")  # revoked: when
    assert second.id in lines[2]
    assert "every queue" in lines[2]
    assert lines[2].rstrip().endswith("-")
    as_json = json.loads(wizd_cmd(db, "token", "list", "--json").out)
    assert [t["id"] for t in as_json] == [first.id, second.id]
    assert as_json[0]["revoked_at"] is not None
    assert as_json[1]["revoked_at"] is None
    digests = [wizd.model.secret_digest(s) for s in secrets]
    for output in (listed.out, json.dumps(as_json)):
        for secret, digest in zip(secrets, digests, strict=True):
            assert secret not in output
            assert secret.rsplit("_", 1)[-1] not in output
            assert digest not in output
    assert authenticate(db, secrets[0]) is None
    assert authenticate(db, secrets[1]) == second


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["create", "--role", "boss"], "wizd: role: must be one of read, enqueue, operate, admin"),
        (["create"], "wizd: role: give --role: one of read, enqueue, operate, admin"),
        (["create", "--role", "read", "--queue", "a b"], "wizd: queues: 'a b' may only contain"),
        (["create", "--role", "read", "--name", ""], "wizd: name: must be non-empty text"),
        (["revoke", "0badc0de"], "wizd: token '0badc0de' does not exist"),
        (["revoke", "nope"], "wizd: id: a token id is 8 hex digits"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(db: str, args: list[str], line: str) -> None:
    assert refused(wizd_cmd(db, "token", *args)).startswith(line)
    assert tokens(db) == []


def test_create_makes_no_database(tmp_path: Path) -> None:
    """A mistyped --database must not give a token for a database no daemon reads."""
    path = str(tmp_path / "typo.db")
    line = refused(wizd_cmd(path, "token", "create", "--role", "read"))
    assert line.startswith(f"wizd: no database at {path}")
    assert not Path(path).exists()
