"""One page of jobs for the Jobs page, and the cursor of the next: Queue.list_page (keyset
paging), newest first.

Text in the error is no filter of Queue.list, so it is applied here, in Python, to the
pages read: the page reads on, a whole page at a time (at most SCAN jobs), until it has
`limit` jobs whose error holds the text, and shows every match of the pages it read (a
little more than `limit` at times); the cursor goes on after the last page read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wizd.model import Job, JobStatus
from wizd.queue import Queue

SCAN = 5000  # jobs read for one page at most when filtering on the error's text


@dataclass(frozen=True, slots=True)
class Filters:
    queue: str | None = None
    status: tuple[JobStatus, ...] = ()
    name: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    error: str | None = None


async def page(q: Queue, f: Filters, after: str | None, limit: int) -> tuple[list[Job], str | None]:
    """Up to `limit` jobs matching `f`, newest first, from the cursor `after`; and the
    cursor of the next page (None: this is the last)."""
    found: list[Job] = []
    needle = (f.error or "").casefold()
    read = 0
    while True:
        page = await q.list_page(
            queue=f.queue,
            status=list(f.status) or None,
            name=f.name,
            tags=[f.tag] if f.tag else None,
            created_after=f.created_after,
            created_before=f.created_before,
            limit=limit,
            after=after,
        )
        read += len(page.jobs)
        found += [j for j in page.jobs if not needle or needle in (j.error or "").casefold()]
        after = page.next
        if len(found) >= limit or after is None or read >= SCAN:
            return found, after
