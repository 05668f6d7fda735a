"""Jobs of one status from the queues a viewer may see, newest first and bounded: one
Queue.list for an unscoped token, one per queue for a token scoped to queues (so a
scoped viewer never reads, even briefly, another queue's jobs)."""

from __future__ import annotations

from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.web.session import Viewer


async def jobs_in(q: Queue, seen: Viewer, status: JobStatus, limit: int) -> tuple[list[Job], bool]:
    """Up to `limit` jobs in `status` that `seen` may read, newest first; and whether
    there were more than that (the read stopped at `limit`)."""
    scopes: list[str | None] = list(seen.token.queues) if seen.token.queues is not None else [None]
    found: list[Job] = []
    for queue in scopes:
        found += await q.list(queue=queue, status=status, limit=limit + 1)
    found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
    return found[:limit], len(found) > limit
