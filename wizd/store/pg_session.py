"""How the PostgreSQL store connects: its URL, its settings, and the bounds on every session.

A daemon frozen inside a transaction (SIGSTOP, a VM pause, a network partition) holds its
row locks until the server ends that transaction, and a statement of another daemon that
needs one of those rows waits as long. So every connection wizd makes (pooled, the event
loop's, the listening one, a migration's) starts with the same session settings:

- `idle_in_transaction_session_timeout`: the server ends a session that leaves its
  transaction open that long (wizd's own transactions never pause between statements),
  and with it the locks of a frozen daemon;
- `lock_timeout`: no statement waits longer than that for a lock; the store turns the
  timeout into a StoreError that its callers retry (the reaper skips locked rows instead);
- TCP keepalives and a TCP user timeout, on both ends: the server notices within about
  25 s that a daemon's host has vanished (no FIN: a power loss, a partition) and ends its
  session, and the daemon notices a vanished server as soon (a URL's own keepalive
  parameters win over these).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from wizd.errors import StoreError
from wizd.model import MAX_CHILDREN, MAX_DEPTH

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - checked when a postgresql:// URL is opened
    psycopg = None  # type: ignore[assignment]

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,39}")
LOCK_TIMEOUT = 3.0  # seconds a statement may wait for a lock
IDLE_IN_TRANSACTION_TIMEOUT = 30.0  # seconds a session may leave its transaction open
# The client's end (libpq's parameters).
CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # milliseconds
}
# The server's end.
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 15000"
)


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    conninfo: str  # a libpq URL, without wizd's own parameters
    schema: str = "wizd"
    pool_size: int = 10
    connect_timeout: float = 10.0
    lock_timeout: float = LOCK_TIMEOUT  # 0: wait for locks without a limit
    idle_in_transaction_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT  # 0: no limit
    max_depth: int = MAX_DEPTH
    max_children: int = MAX_CHILDREN
    create: bool = True  # False: refuse a database where wizd has not made its tables
    # True: create and migrate nothing, and run every transaction read-only.
    read_only: bool = False

    def __post_init__(self) -> None:
        if not SCHEMA_RE.fullmatch(self.schema):
            raise StoreError(
                f"postgres schema {self.schema!r}: use 1-40 of [a-z0-9_], not starting with a digit"
            )
        if not 1 <= self.pool_size <= 1000:
            raise StoreError(f"postgres pool size must be 1-1000, got {self.pool_size}")
        for name in ("lock_timeout", "idle_in_transaction_timeout"):
            value = getattr(self, name)
            if not 0 <= value <= 86_400:
                raise StoreError(f"postgres {name} must be 0-86400 seconds, got {value}")

    @property
    def display(self) -> str:
        """The URL without a password, for messages."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or ""
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{user}{host}{port}{parts.path} (schema {self.schema})"

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg's connect arguments besides the URL: autocommit, the connect timeout,
        and the client's TCP keepalives unless the URL sets its own."""
        given = conninfo_to_dict(self.conninfo)
        keepalives = {k: v for k, v in CLIENT_KEEPALIVES.items() if k not in given}
        return {"autocommit": True, "connect_timeout": int(self.connect_timeout), **keepalives}

    def session_setup(self, *, lock_timeout: bool = True) -> sql.Composed:
        """The statements every session of the store starts with: its search path, its
        time bounds and the server's TCP keepalives (one round trip); read-only
        transactions for a read-only store."""
        lock = _milliseconds(self.lock_timeout if lock_timeout else 0.0)
        idle = _milliseconds(self.idle_in_transaction_timeout)
        return sql.SQL(
            f"SET search_path TO {{}}; SET lock_timeout = {lock}; "
            f"SET idle_in_transaction_session_timeout = {idle}; {SERVER_KEEPALIVES}"
            + ("; SET default_transaction_read_only = on" if self.read_only else "")
        ).format(sql.Identifier(self.schema))


def _milliseconds(seconds: float) -> int:
    """A time setting in PostgreSQL's unit; 0 stays 0 (no limit), anything else >= 1 ms."""
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split wizd's own query parameters (schema, pool_size) off a postgresql:// URL."""
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            ours["schema"] = value
        elif key == "pool_size":
            if not value.isdigit():
                raise StoreError(f"pool_size in the database URL must be a number, got {value!r}")
            ours["pool_size"] = int(value)
        else:
            theirs.append((key, value))
    # Percent-encoded as libpq decodes them: it reads a "+" as a plus, not as a space.
    return urlunsplit(parts._replace(query=urlencode(theirs, quote_via=quote))), ours


async def connect_async(config: PostgresConfig) -> psycopg.AsyncConnection[Any]:
    """A connection of its own in autocommit (for the event loop), set up as every
    session of the store is."""
    conn = await psycopg.AsyncConnection.connect(config.conninfo, **config.connect_kwargs())
    try:
        await conn.execute(config.session_setup())
    except BaseException:
        await conn.close()
        raise
    return conn
