"""huey with RedisHuey: the same consumer and tasks as SqliteHuey, on Redis DB 11 (flushed
before every run). RedisHuey blocks on BRPOP, so there is no polling interval to tune."""

from __future__ import annotations

from typing import ClassVar

from bench import stores
from bench.apps.huey_app import make
from bench.harness import BIN
from bench.systems.huey_sqlite import BEST_WORKERS, CONSUMER, DOCS, HueySqlite

DB = 11


class HueyRedis(HueySqlite):
    key = "huey-redis"
    label = "huey (RedisHuey)"
    storage = "redis"
    settings: ClassVar[dict[str, str]] = {
        "worker": f"huey_consumer {CONSUMER} -w {BEST_WORKERS} -k thread -n -q",
        "processes": "2 processes = two consumers on the same Redis DB",
        "store": f"RedisHuey defaults (blocking BRPOP), Redis DB {DB}",
        "why": "thread workers (the consumer's default); -w 1 (the default) was the fastest of "
        "1, 10 and 100 threads for no-op jobs in trial runs here; -q logs errors only; -n: no "
        "periodic tasks",
        "docs": DOCS,
    }

    def fresh(self) -> None:
        stores.flush_redis(DB)
        self.location = stores.redis_url(DB)
        self.huey, self.tasks = make(self.storage, self.location)

    def stop(self) -> None:
        super().stop()
        stores.flush_redis(DB)

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        workers = str(concurrency or BEST_WORKERS)
        command = [str(BIN / "huey_consumer"), CONSUMER, "-w", workers, "-k", "thread", "-n", "-q"]
        return [command] * processes
