"""The Job page (/jobs/{id}): every field, its JSON, error, progress, steps, history and
relations, live; and the actions on it, each written into the job's history with who."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.logging import get_logger
from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.graph import relations
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ACTIONS = {  # action: (role it takes, what the job's log says)
    "cancel": (Role.ENQUEUE, "cancelled"),
    "kill": (Role.OPERATE, "killed"),
    "retry": (Role.OPERATE, "retried"),
    "pause": (Role.OPERATE, "paused"),
    "resume": (Role.OPERATE, "resumed"),
    "delete": (Role.OPERATE, "deleted"),
}
DONE = {action: said for action, (_, said) in ACTIONS.items()}


def offered(job: Job, seen: Viewer) -> list[str]:
    """The actions that make sense for the job now and that the viewer may take."""
    s = job.status
    fit = {
        "cancel": not job.final,
        "kill": s == JobStatus.RUNNING,
        "retry": s in (JobStatus.FAILED, JobStatus.CANCELLED),
        "pause": s in (JobStatus.PENDING, JobStatus.DELAYED, JobStatus.WAITING),
        "resume": s == JobStatus.PAUSED,
        "delete": job.final,
    }
    return [a for a, ok in fit.items() if ok and seen.may(ACTIONS[a][0], job.queue)]


async def summary(q: Queue, job: Job, seen: Viewer) -> dict[str, Any]:
    steps = await q.steps(job)
    return {"job": job, "seen": seen, "actions": offered(job, seen), "steps": steps}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def page(request: Request, job_id: JobId, seen: Seen, did: str = "") -> HTMLResponse:
    q = queue_of(request)
    job = await q.get(job_id)
    seen.require(Role.READ, job.queue)
    events = await q.events(job)
    children = await q.children(job)
    dependencies = await q.dependencies(job)
    dependents = await q.dependents(job)
    return render(
        request,
        "job.html",
        **await summary(q, job, seen),
        events=events,
        after=max((e.id for e in events), default=0),
        stream=await q.stream_text(job),
        children=children,
        dependencies=dependencies,
        dependents=dependents,
        graph=relations(job, children, dependencies, dependents),
        did=DONE.get(did),
    )


@router.get("/parts/jobs/{job_id}", response_class=HTMLResponse)
async def part(request: Request, job_id: JobId, seen: Seen) -> HTMLResponse:
    q = queue_of(request)
    job = await q.get(job_id)
    seen.require(Role.READ, job.queue)
    return render(request, "_job_summary.html", **await summary(q, job, seen))


@router.post("/jobs/{job_id}/{action}")
async def act(request: Request, job_id: JobId, action: str, seen: Seen) -> Response:
    """Do `action` (403 for a token that may not, or without the form's CSRF token); the
    job's history says it was done from the console and by which token."""
    fields = await form(request, seen)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}: one of {', '.join(ACTIONS)}")
    q = queue_of(request)
    job = await q.get(job_id)
    seen.require(ACTIONS[action][0], job.queue)
    step = (fields.get("from_step") or [""])[0] or None
    if action == "cancel":
        await q.cancel(job)
    elif action == "kill":
        await q.kill(job, force=(fields.get("force") or [""])[0] == "yes")
    elif action == "retry":
        await q.retry(job, from_step=step)
    elif action == "pause":
        await q.pause_job(job)
    elif action == "resume":
        await q.resume_job(job)
    else:
        await q.delete(job)
        get_logger().info("console_job_deleted", job_id=job.id, queue=job.queue, by=seen.who)
        return RedirectResponse(f"/jobs?queue={job.queue}", status_code=303)
    said = DONE[action] + (f" from step {step!r}" if step else "")
    await q.log(job, f"{said} from the console by {seen.who}")
    return RedirectResponse(f"/jobs/{job.id}?did={action}", status_code=303)
