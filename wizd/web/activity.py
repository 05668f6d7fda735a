"""A queue's last hour minute by minute: jobs completed and failed per minute, for the
overview's sparklines, from Queue.finished_per_minute (one grouped count for every queue,
whatever the number of jobs in the store)."""

from __future__ import annotations

from dataclasses import dataclass

MINUTES = 60


@dataclass(frozen=True, slots=True)
class Activity:
    completed: list[int]  # per minute, oldest first; the last is the current minute
    failed: list[int]

    @property
    def per_minute(self) -> float:
        """Jobs completed per minute over the hour (Queue.stats' throughput)."""
        return sum(self.completed) / MINUTES


def activity_of(counts: dict[str, dict[str, list[int]]], queue: str) -> Activity:
    found = counts.get(queue)
    if found is None:
        return Activity([0] * MINUTES, [0] * MINUTES)
    return Activity(found["completed"], found["failed"])
