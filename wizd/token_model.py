"""API tokens as data: a token's role, the queues it may touch, and the shape of its secret.

A token is a row of the store's api_tokens table, so every host and daemon sharing the
database shares it. Its secret (`wizd_<id>_<43 random characters>`) is shown once when it is
made; the store keeps only its SHA-256 (wizd.tokens).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.job_fields import check_identifier

TOKEN_ID_RE = re.compile(r"[0-9a-f]{8}")
# 43 characters of secrets.token_urlsafe(32): 256 random bits in unpadded base64url.
SECRET_RE = re.compile(r"wizd_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
SECRET_LENGTH = len("wizd_") + 8 + 1 + 43
MAX_TOKEN_NAME = 200  # characters
MAX_TOKEN_QUEUES = 1000


class Role(StrEnum):
    """What a token may do; each role may do everything the ones below it may.

    read: every read (jobs, events, steps, counts, stats, schedules, limits, workers).
    enqueue: read, and enqueue, wait, signal and cancel.
    operate: enqueue, and retry, kill, delete, pause/resume (jobs and queues), queue
    defaults, limits, schedules, distributed jobs, reaping hung jobs.
    admin: operate, and tokens, removing queues, cleanup."""

    READ = "read"
    ENQUEUE = "enqueue"
    OPERATE = "operate"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may (admin ⊇ operate ⊇ enqueue ⊇ read)."""
        return _RANK[self] >= _RANK[Role(needed)]


_RANK = {role: rank for rank, role in enumerate(Role)}
ROLES = tuple(role.value for role in Role)


def parse_role(value: object) -> Role:
    """A role from its name (read, enqueue, operate, admin); InvalidJob('role') else."""
    if isinstance(value, Role):
        return value
    if isinstance(value, str) and value in ROLES:
        return Role(value)
    raise InvalidJob("role", f"must be one of {', '.join(ROLES)}, got {shorten(value)}")


def check_token_id(value: object) -> str:
    """A token's public id: 8 lowercase hex digits (as `wizd token list` shows it)."""
    if isinstance(value, str) and TOKEN_ID_RE.fullmatch(value):
        return value
    raise InvalidJob("id", f"a token id is 8 hex digits (0-9, a-f), got {shorten(value)}")


def check_token_name(value: object) -> str | None:
    """A token's optional name: printable text of at most MAX_TOKEN_NAME characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidJob("name", f"must be non-empty text, got {shorten(value)}")
    if len(value) > MAX_TOKEN_NAME or not value.isprintable():
        raise InvalidJob(
            "name",
            f"{shorten(value)}: must be printable text of at most {MAX_TOKEN_NAME} characters",
        )
    return value


def check_token_queues(value: object) -> tuple[str, ...] | None:
    """The queues a token may touch: None (every queue), or a non-empty list of queue
    names, each checked as a queue name; repeats are dropped, the order kept."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise InvalidJob("queues", f"must be a list of queue names or None, got {shorten(value)}")
    names = tuple(dict.fromkeys(check_identifier("queues", name) for name in value))
    if not names:
        raise InvalidJob("queues", "name at least one queue, or give None for every queue")
    if len(names) > MAX_TOKEN_QUEUES:
        raise InvalidJob("queues", f"{len(names)} queues; the limit is {MAX_TOKEN_QUEUES}")
    return names


def secret_id(secret: object) -> str | None:
    """The token id a secret names, if it has a secret's shape (`wizd_<id>_<43 characters
    of [A-Za-z0-9_-]>`, ASCII only); None for anything else, without raising."""
    if not isinstance(secret, str) or len(secret) != SECRET_LENGTH:
        return None
    found = SECRET_RE.fullmatch(secret)
    return found.group(1) if found else None


def secret_digest(secret: str) -> str:
    """What the store keeps of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Token:
    """An API token as the store keeps it, without its secret or digest.

    `queues` None: every queue; else only those named. `revoked_at` set: it authenticates
    no more."""

    id: str
    name: str | None
    role: Role
    queues: tuple[str, ...] | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def may(self, needed: Role, queue: str | None) -> bool:
        """Whether this token may do what needs role `needed` on `queue`. `queue` None is
        an operation on no single queue (listing every job, the counts of all queues,
        removing tokens): only a token for every queue (queues None) may do it. A revoked
        token may do nothing."""
        if self.revoked_at is not None or not self.role.allows(needed):
            return False
        return self.queues is None or (queue is not None and queue in self.queues)

    def to_dict(self) -> dict[str, Any]:
        """Every field but the secret, which the store does not have, and its digest."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "queues": None if self.queues is None else list(self.queues),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }
