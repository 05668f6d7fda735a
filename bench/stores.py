"""The servers the benchmark uses (PostgreSQL and Redis on this machine): fresh databases
for one system each, and their versions for the report.

Each system gets its own PostgreSQL database (bench_<system>, dropped afterwards) or its own
Redis DB number (FLUSHDB of that number only, never FLUSHALL), so runs cannot interfere.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
import redis
from psycopg import sql

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")


def pg_url(database: str) -> str:
    return f"{POSTGRES}/{database}"


def redis_url(db: int) -> str:
    return f"{REDIS}/{db}"


def recreate_database(name: str) -> str:
    """An empty PostgreSQL database `name` (dropped first if it exists); its URL."""
    with psycopg.connect(pg_url("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg_url(name)


def drop_database(name: str) -> None:
    with psycopg.connect(pg_url("postgres"), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def empty_tables(connection: psycopg.Connection[Any]) -> None:
    """Empty every table of the public schema (faster than a new database and a new schema
    for every run; for systems whose schema has no version table)."""
    tables = [
        sql.Identifier(row[0])
        for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    ]
    if tables:
        connection.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(tables))
        )


def flush_redis(db: int, timeout: float = 10.0) -> None:
    """Empty one Redis DB number (only that one), once no client blocks on it.

    A worker killed in a blocking pop stays blocked in Redis until the server has read its
    closed connection; a job pushed before then is handed to the dead client and lost. So
    this waits until Redis lists no blocked client of the DB: the last run's workers are
    gone from the server, not only from this machine. (One CI run found 98 of RQ's 100
    prefilled jobs in the queue: this, or a worker left running, is how that can happen.)
    """
    with redis.Redis.from_url(redis_url(db)) as r:
        deadline = time.monotonic() + timeout
        while blocked := [c for c in r.client_list() if c["db"] == str(db) and "b" in c["flags"]]:
            if time.monotonic() > deadline:
                names = ", ".join(f"{c['addr']} ({c['cmd']})" for c in blocked)
                raise RuntimeError(f"Redis DB {db}: still blocked after {timeout} s: {names}")
            time.sleep(0.01)
        r.flushdb()


PG_SETTINGS = ("server_version", "synchronous_commit", "fsync", "shared_buffers")


def postgres_settings() -> dict[str, str]:
    """The server's version and the settings that decide a commit's cost."""
    try:
        with psycopg.connect(pg_url("postgres"), connect_timeout=5) as c:
            rows = {name: c.execute(f"SHOW {name}").fetchone() for name in PG_SETTINGS}
        return {name: str(row[0]) if row else "?" for name, row in rows.items()}
    except psycopg.Error as exc:
        return {"server_version": f"unavailable ({exc})"}


def redis_settings() -> dict[str, str]:
    """The server's version and its persistence settings."""
    try:
        with redis.Redis.from_url(redis_url(0), socket_timeout=5) as r:
            out = {"redis_version": str(r.info("server")["redis_version"])}
            for name in ("appendonly", "appendfsync", "save"):
                out[name] = str(r.config_get(name).get(name, "?"))
            return out
    except redis.RedisError as exc:
        return {"redis_version": f"unavailable ({exc})"}
