"""The Distributed jobs page (/distributed): each distributed job of a queue (newest first,
a page at a time) with its sub-tasks ○ pending ◉ running ✓ completed ✗ failed, a button to
dispatch held sub-tasks, and its consolidation once every sub-task is final."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.jobs import queue_names
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PAGE = 20
MARKS = {  # a sub-task's status: its mark (anything else is pending: ○)
    JobStatus.RUNNING: ("◉", "running"),
    JobStatus.COMPLETED: ("✓", "completed"),
    JobStatus.FAILED: ("✗", "failed"),
    JobStatus.CANCELLED: ("✗", "cancelled"),
}


def mark(status: str) -> tuple[str, str]:
    """(mark, what it means) of a sub-task's status."""
    return MARKS.get(JobStatus(status), ("○", "pending"))


@dataclass(frozen=True, slots=True)
class DistributedView:
    job: Job
    subtasks: list[dict[str, Any]]
    consolidation: dict[str, Any] | None  # once the job is final

    @property
    def held(self) -> int:
        """Sub-tasks not yet dispatched (held paused)."""
        return sum(1 for t in self.subtasks if t["status"] == JobStatus.PAUSED)


async def view(q: Queue, job: Job) -> DistributedView:
    done = await q.consolidate(job) if job.final else None
    return DistributedView(job, await q.subtasks(job), done)


@router.get("/distributed", response_class=HTMLResponse)
async def page(
    request: Request, seen: Seen, queue: str = "", after: str = "", did: int | None = None
) -> HTMLResponse:
    q = queue_of(request)
    names = await queue_names(q, seen)
    if not queue and seen.token.queues is not None:
        queue = names[0] if names else seen.token.queues[0]  # a scoped token sees one queue
    seen.require(Role.READ, queue or None)
    found = await q.list_page(
        kind="distributed", queue=queue or None, limit=PAGE, after=after or None
    )
    return render(
        request,
        "distributed.html",
        seen=seen,
        jobs=[await view(q, job) for job in found.jobs],
        more=found.next,
        queue=queue,
        queues=names,
        mark=mark,
        dispatched=did,
    )


@router.post("/distributed/{job_id}/dispatch")
async def dispatch(request: Request, job_id: JobId, seen: Seen) -> Response:
    """Make its held sub-tasks claimable (operate on its queue, with the form's CSRF
    token); the job's history says who did it from the console."""
    fields = await form(request, seen)
    q = queue_of(request)
    job = await q.get(job_id)
    seen.require(Role.OPERATE, job.queue)
    released = await q.dispatch(job)
    await q.log(job, f"dispatched {released} sub-tasks from the console by {seen.who}")
    shown = quote((fields.get("queue") or [""])[0])  # the queue the page showed
    return RedirectResponse(
        f"/distributed?queue={shown}&did={job.id}#distributed-{job.id}", status_code=303
    )
