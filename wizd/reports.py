"""What wizd reports about itself: a daemon in the registry (WorkerInfo) and a queue's
counts and timings (QueueStats)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A daemon in the registry."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    busy: int = 0
    metrics: str | None = None  # host:port of its metrics endpoint; None: metrics off

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "busy": self.busy,
            "metrics": self.metrics,
        }


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    counts: dict[str, int]
    paused: bool
    avg_wait_seconds: float | None
    avg_run_seconds: float | None
    throughput_per_minute: float
    window_seconds: float
    oldest_pending_age_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
