"""What a read-only PostgreSQL store checks when it opens: wizd's tables at this wizd's
schema version, read in a read-only transaction, so that opening creates no schema and runs
no migration (the store then runs every transaction read-only: wizd.store.postgres)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from wizd.errors import StoreError
from wizd.store import postgres_queries as PQ


def check_readable(conn: psycopg.Connection[Any], schema: str, display: str, latest: int) -> None:
    """Refuse a schema without wizd's tables, or at another version than `latest`."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        tables = {r[0] for r in conn.execute(PQ.TABLE_NAMES, (schema,))}
        if "schema_version" not in tables:
            raise StoreError(
                f"{display} has no wizd tables (a daemon or `wizd create` makes them)"
                if not tables
                else f"{display} holds tables {sorted(tables)[:5]} but no schema_version: "
                "it is not a wizd schema (choose another with postgres_schema)"
            )
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        row = conn.execute(PQ.SCHEMA_VERSION_GET).fetchone()
    current = row[0] if row else 0
    if current > latest:
        raise StoreError(
            f"{display} has schema version {current}, newer than this wizd knows ({latest}); "
            "upgrade wizd"
        )
    if current < latest:
        raise StoreError(
            f"{display} has schema version {current}, older than this wizd's ({latest}); "
            "read commands never migrate: start the daemon (or run any writing command) on "
            "it once to migrate it"
        )
