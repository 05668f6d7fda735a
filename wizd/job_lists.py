"""What Queue.list and Queue.list_page take (ListOptions), checked into a JobFilter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal, TypedDict

from typing_extensions import Unpack

from wizd import arguments as arg
from wizd.building import MAX_BATCH_ID
from wizd.errors import InvalidJob
from wizd.model import JobFilter, JobStatus, as_tags
from wizd.paging import position


class ListOptions(TypedDict, total=False):
    """The filters of a job list (each selects jobs; none given: every job), its sort and
    order ("created_at", "desc" unless given; ties go by id), its page size (`limit`, 50)
    and where it starts: `after` the cursor of the page before, or an `offset`."""

    queue: str | None
    status: str | JobStatus | Sequence[str | JobStatus] | None
    name: str | None
    tags: Sequence[str] | None
    created_after: datetime | float | None
    created_before: datetime | float | None
    parent: int | None
    batch_id: str | None
    kind: str | None
    sort: str
    order: Literal["asc", "desc"]
    limit: int
    offset: int
    after: str | None


KNOWN = tuple(ListOptions.__annotations__)


def job_filter(**options: Unpack[ListOptions]) -> JobFilter:
    """The JobFilter of these options; InvalidJob names the first bad one."""
    unknown = sorted(set(options).difference(KNOWN))
    if unknown:
        raise InvalidJob(unknown[0], f"unknown option; known: {', '.join(KNOWN)}")
    status, parent = options.get("status"), options.get("parent")
    f = JobFilter(
        queue=arg.name("queue", options.get("queue")),
        statuses=() if status is None else arg.statuses(status),
        name=arg.name("name", options.get("name")),
        tags=as_tags(options.get("tags"), arg.MAX_PAGE),
        created_after=arg.epoch("created_after", options.get("created_after")),
        created_before=arg.epoch("created_before", options.get("created_before")),
        parent_id=None if parent is None else arg.job_id(parent, "parent"),
        batch_id=arg.text("batch_id", options.get("batch_id"), MAX_BATCH_ID),
        kind=arg.name("kind", options.get("kind")),
        sort=options.get("sort", "created_at"),
        order=options.get("order", "desc"),
        limit=options.get("limit", 50),
        offset=options.get("offset", 0),
    )
    after = options.get("after")
    if after is None:
        return f
    return replace(f, after=position(after, f.sort, f.order))
