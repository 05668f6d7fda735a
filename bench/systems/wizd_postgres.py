"""wizd on PostgreSQL: the same daemon, client and settings as wizd on SQLite, with a
postgresql:// URL to a database of its own (bench_wizd, created afresh for every run and
dropped at the end)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from bench import stores
from bench.systems.wizd_sqlite import WizdSqlite

DATABASE = "bench_wizd"


class WizdPostgres(WizdSqlite):
    key = "wizd-postgres"
    label = "wizd (PostgreSQL)"
    settings: ClassVar[dict[str, str]] = {
        **WizdSqlite.settings,
        "store": f"PostgreSQL database {DATABASE} on this machine, wizd defaults",
    }

    def start(self, work: Path) -> None:
        super().start(work)
        self.renew()
        self.counts()  # fails here if the backend cannot run at all

    def stop(self) -> None:
        super().stop()
        stores.drop_database(DATABASE)

    def url(self) -> str:
        return stores.pg_url(DATABASE)

    def fresh(self) -> None:
        self.probe = None
        stores.recreate_database(DATABASE)
