"""The Jobs page (/jobs): filters, paging, and bulk cancel / retry / delete behind a
confirmation page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.errors import InvalidJob
from wizd.logging import get_logger
from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.paging import Filters, page
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
PAGE = 50
MAX_BULK = 500  # jobs one bulk action may name
BACK = ("/jobs", "/failures")  # pages a bulk action may return to (no open redirect)
BULK = {  # action: (role it takes, past tense for the job's log)
    "cancel": (Role.ENQUEUE, "cancelled"),
    "retry": (Role.OPERATE, "retried"),
    "delete": (Role.OPERATE, "deleted"),
}


def when(field: str, value: str | None) -> datetime | None:
    """A date or date-time from a form field (the browser's datetime-local: UTC here)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidJob(
            field, f"must be a date and time (2026-01-31T12:00), got {value[:40]!r}"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def queue_names(q: Queue, seen: Viewer) -> list[str]:
    names = set(await q.counts_by_queue()) | {name for name, _, _ in await q.queues()}
    return seen.visible(sorted(names | set(seen.token.queues or ())))


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(
    request: Request,
    seen: Seen,
    queue: str = "",
    status: Annotated[list[JobStatus] | None, Query()] = None,
    name: str = "",
    tag: str = "",
    created_after: str = "",
    created_before: str = "",
    error: str = "",
    after: str = "",
) -> HTMLResponse:
    q = queue_of(request)
    names = await queue_names(q, seen)
    if not queue and seen.token.queues is not None:
        queue = names[0] if names else seen.token.queues[0]  # a scoped token sees one queue
    seen.require(Role.READ, queue or None)
    filters = Filters(
        queue=queue or None,
        status=tuple(status or ()),
        name=name or None,
        tag=tag or None,
        created_after=when("created_after", created_after),
        created_before=when("created_before", created_before),
        error=error or None,
    )
    found, more = await page(q, filters, after or None, PAGE)
    args = {
        "queue": queue,
        "status": [s.value for s in filters.status],
        "name": name,
        "tag": tag,
        "created_after": created_after,
        "created_before": created_before,
        "error": error,
    }
    return render(
        request,
        "jobs.html",
        seen=seen,
        jobs=found,
        more=more,
        args=args,
        queues=names,
        statuses=[s.value for s in JobStatus],
        actions=[a for a, (role, _) in BULK.items() if seen.token.role.allows(role)],
    )


async def chosen(q: Queue, seen: Viewer, ids: list[str], needed: Role) -> list[Job]:
    """The jobs named, each one the viewer may act on (403 otherwise)."""
    if not ids:
        raise InvalidJob("id", "select at least one job")
    if len(ids) > MAX_BULK:
        raise InvalidJob("id", f"{len(ids)} jobs selected; the limit is {MAX_BULK}")
    found = []
    for text in dict.fromkeys(ids):
        if not text.isdecimal() or len(text) > 19:
            raise InvalidJob("id", f"not a job id: {text[:40]!r}")
        job = await q.get(int(text))
        seen.require(needed, job.queue)
        found.append(job)
    return found


@router.post("/jobs/bulk", response_class=HTMLResponse)
async def bulk(request: Request, seen: Seen) -> Response:
    """First POST: the confirmation page listing the jobs. Second (confirm=yes): done,
    each job's log saying who did it; back to the list."""
    fields = await form(request, seen)
    action = (fields.get("action") or [""])[0]
    if action not in BULK:
        raise HTTPException(422, f"action must be one of {', '.join(BULK)}")
    needed, done = BULK[action]
    q = queue_of(request)
    targets = await chosen(q, seen, fields.get("id", []), needed)
    back = (fields.get("back") or ["/jobs"])[0]
    back = back if back.startswith(BACK) else "/jobs"
    if (fields.get("confirm") or [""])[0] != "yes":
        return render(request, "confirm.html", seen=seen, action=action, jobs=targets, back=back)
    line = f"{done} from the console by {seen.who}"
    if action == "delete":
        await q.delete(*targets)  # its history goes with it: the server's log says who
        ids = [job.id for job in targets]
        get_logger().info("console_jobs_deleted", job_ids=ids, by=seen.who)
    else:
        await (q.cancel(*targets) if action == "cancel" else q.retry(*targets))
        for job in targets:
            await q.log(job, line)
    return RedirectResponse(back, status_code=303)
