"""A queue's last hour minute by minute: jobs completed and failed per minute, for the
overview's sparklines.

The Python API has throughput over a window (Queue.stats) but no per-minute buckets, so
they are counted here from Queue.list: the queue's final jobs, most recently updated
first, read in pages until one finished before the window, at most BOUND jobs. A queue
that finished more than BOUND jobs in the hour gets `capped` set (its older minutes are
undercounted, and the page says so) rather than an unbounded read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wizd.model import JobStatus
from wizd.queue import Queue

MINUTES = 60
BOUND = 2000  # final jobs read per queue at most
PAGE = 500


@dataclass(frozen=True, slots=True)
class Activity:
    completed: list[int]  # per minute, oldest first; the last is the current minute
    failed: list[int]
    capped: bool


async def last_hour(q: Queue, queue: str, now: float | None = None) -> Activity:
    now = time.time() if now is None else now
    start = now - MINUTES * 60
    completed, failed = [0] * MINUTES, [0] * MINUTES
    read = 0
    while read < BOUND:
        jobs = await q.list(
            queue=queue,
            status=[JobStatus.COMPLETED, JobStatus.FAILED],
            sort="updated_at",
            order="desc",
            limit=PAGE,
            offset=read,
        )
        read += len(jobs)
        for job in jobs:
            at = (job.finished_at or job.updated_at).timestamp()
            if start <= at <= now:
                slot = min(int((at - start) // 60), MINUTES - 1)
                (completed if job.status == JobStatus.COMPLETED else failed)[slot] += 1
        if len(jobs) < PAGE or jobs[-1].updated_at.timestamp() < start:
            return Activity(completed, failed, capped=False)
    return Activity(completed, failed, capped=True)
