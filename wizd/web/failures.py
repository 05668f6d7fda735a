"""Failures (/failures): the newest failed jobs grouped by name and the first line of their
error, each group with its count, queues, last failure and a sample; a whole group is
retried through the Jobs page's confirmed bulk retry (which logs who did it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from wizd.model import Job, JobStatus
from wizd.token_model import Role
from wizd.web.jobs import MAX_BULK
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.scoped import jobs_in
from wizd.web.session import Viewer, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
READ = MAX_BULK  # failed jobs read at most (newest first): a group fits one bulk retry
MESSAGE = 200  # characters of an error's first line that make its group


@dataclass(slots=True)
class Group:
    name: str
    message: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def queues(self) -> list[str]:
        return sorted({j.queue for j in self.jobs})

    @property
    def last(self) -> datetime:
        return max(j.finished_at or j.updated_at for j in self.jobs)

    @property
    def sample(self) -> Job:
        return max(self.jobs, key=lambda j: j.finished_at or j.updated_at)


def first_line(error: str | None) -> str:
    """The error's first non-blank line, trimmed: what a group of failures shares."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[0][:MESSAGE] if lines else "(no error message)"


def grouped(jobs: list[Job]) -> list[Group]:
    """Groups by (name, first line of the error), the largest first, then the latest."""
    groups: dict[tuple[str, str], Group] = {}
    for job in jobs:
        key = (job.name, first_line(job.error))
        groups.setdefault(key, Group(*key)).jobs.append(job)
    return sorted(groups.values(), key=lambda g: (-len(g.jobs), -g.last.timestamp()))


@router.get("/failures", response_class=HTMLResponse)
async def page(request: Request, seen: Seen) -> HTMLResponse:
    found, more = await jobs_in(queue_of(request), seen, JobStatus.FAILED, READ)
    groups = grouped(found)
    retry = [all(seen.may(Role.OPERATE, name) for name in g.queues) for g in groups]
    return render(
        request,
        "failures.html",
        seen=seen,
        groups=list(zip(groups, retry, strict=True)),
        read=len(found),
        more=more,
        limit=READ,
    )
