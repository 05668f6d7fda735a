"""One page of jobs for the Jobs page, and the cursor of the next.

The seam to the Python API's paging: today Queue.list with an offset, wrapped in an opaque
cursor as /v1/jobs does, so the page never sees how it pages. When Queue.list_page (keyset
paging) is on main, only `page` changes.

Text in the error is no filter of Queue.list, so it is applied here, in Python, to the
jobs read: the page reads on (at most SCAN jobs for one page) until it has `limit` jobs
whose error holds the text; the cursor goes on from the last job read.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from wizd.errors import InvalidJob
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


def cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def offset_of(after: str | None) -> int:
    if not after:
        return 0
    try:
        text = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode("ascii")
        if text[:1] == "o" and text[1:].isdecimal() and len(text) < 20:
            return int(text[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidJob("after", "is not a page cursor this console gave (its Next link)")


async def page(q: Queue, f: Filters, after: str | None, limit: int) -> tuple[list[Job], str | None]:
    """Up to `limit` jobs matching `f`, newest first, from the cursor `after`; and the
    cursor of the next page (None: this is the last)."""
    offset = offset_of(after)
    found: list[Job] = []
    needle = (f.error or "").casefold()
    read = 0
    while True:
        jobs = await q.list(
            queue=f.queue,
            status=list(f.status) or None,
            name=f.name,
            tags=[f.tag] if f.tag else None,
            created_after=f.created_after,
            created_before=f.created_before,
            limit=limit,
            offset=offset,
        )
        offset += len(jobs)
        read += len(jobs)
        for i, job in enumerate(jobs):
            if not needle or needle in (job.error or "").casefold():
                found.append(job)
                if len(found) == limit:
                    offset -= len(jobs) - i - 1
                    return found, cursor(offset)
        if len(jobs) < limit:
            return found, None
        if read >= SCAN:
            return found, cursor(offset)
