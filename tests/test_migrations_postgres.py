"""The PostgreSQL schema: made on first connect in its own schema, under a lock so that
processes starting together migrate once; refused when it is not wizd's or is newer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

import wizd
from wizd import StoreError
from wizd.store.postgres import LATEST_VERSION, migrations

OPEN = """
import sys, wizd
with wizd.connect_sync(sys.argv[1]) as q:
    q.enqueue("t", queue=sys.argv[2])
"""


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[psycopg.Connection[tuple[object, ...]], str]]:
    """A plain connection to the test database, and the test's schema name."""
    database, _, query = postgres_url.partition("?")
    schema = query.removeprefix("schema=")
    with psycopg.connect(database, autocommit=True) as c:
        yield c, schema


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    numbers = [version for version, _, _ in migrations()]
    assert numbers == list(range(1, LATEST_VERSION + 1))


def test_ten_processes_starting_together_migrate_once(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    c, schema = pg
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, postgres_url, f"q{i}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(10)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, errors

    rows = c.execute(f"SELECT version FROM {schema}.schema_version ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))
    with wizd.connect_sync(postgres_url) as q:
        assert {name for name, _, _ in q.queues()} == {f"q{i}" for i in range(10)}


def test_wizd_tables_live_in_their_own_schema(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    c, schema = pg
    with wizd.connect_sync(postgres_url) as q:
        q.enqueue("t")
    tables = {
        r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    }
    assert {"jobs", "job_events", "job_deps", "queues", "workers", "schema_version"} <= tables
    public = c.execute(
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'jobs'"
    ).fetchone()
    assert public == (0,)


def test_libpq_parameters_of_the_url_reach_the_server_beside_wizds_own(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    """wizd takes schema and pool_size off the URL and passes the rest to libpq, encoded
    as libpq decodes it: a value with a space (options=-c name=value) arrives whole."""
    c, schema = pg
    url = f"{postgres_url}&pool_size=2&options=-c%20application_name%3Dwizd-url-probe"
    with wizd.connect_sync(url) as q:
        q.enqueue("t")
        names = c.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        ).fetchall()
        assert ("wizd-url-probe",) in names
        assert q.store.config.schema == schema  # type: ignore[attr-defined]
        assert q.store.config.pool_size == 2  # type: ignore[attr-defined]


def test_a_newer_schema_version_is_refused(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    c, schema = pg
    with wizd.connect_sync(postgres_url):
        pass
    c.execute(f"INSERT INTO {schema}.schema_version VALUES (%s, 0)", (LATEST_VERSION + 1,))
    with (
        pytest.raises(StoreError, match="newer than this wizd knows"),
        wizd.connect_sync(postgres_url),
    ):
        pass


def test_a_schema_that_is_not_wizds_is_refused_and_left_alone(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    c, schema = pg
    c.execute(f"CREATE SCHEMA {schema}")
    c.execute(f"CREATE TABLE {schema}.invoices (id int)")
    with pytest.raises(StoreError, match="not a wizd schema"), wizd.connect_sync(postgres_url):
        pass
    tables = c.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    assert [r[0] for r in tables] == ["invoices"]


def test_an_operator_command_does_not_create_the_schema(
    postgres_url: str, pg: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    c, schema = pg
    with (
        pytest.raises(StoreError, match="has no wizd tables"),
        wizd.connect_sync(postgres_url, create=False),
    ):
        pass
    found = c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert found is None
