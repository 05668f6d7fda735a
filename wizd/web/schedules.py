"""The Schedules page (/schedules): every schedule of the queues the viewer may see, its
next run, its last runs and how their jobs ended; pause, resume, run now and remove."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.errors import JobNotFound
from wizd.logging import get_logger
from wizd.model import Job, Schedule, ScheduleRun
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RUNS = 5  # last runs shown per schedule
ACTIONS = {"pause": "paused", "resume": "resumed", "run": "run now", "remove": "removed"}


@dataclass(frozen=True, slots=True)
class Run:
    """One occurrence a schedule fired, with its job as it is now (None: nothing was
    enqueued, its unique key was held; or the job was deleted since)."""

    run: ScheduleRun
    job: Job | None


@dataclass(frozen=True, slots=True)
class ScheduleView:
    schedule: Schedule
    runs: list[Run]


async def runs_of(q: Queue, schedule: Schedule) -> list[Run]:
    found = []
    for run in await q.schedule_runs(schedule, RUNS):
        job = None
        if run.job_id is not None:
            with suppress(JobNotFound):  # deleted since
                job = await q.get(run.job_id)
        found.append(Run(run, job))
    return found


@router.get("/schedules", response_class=HTMLResponse)
async def page(request: Request, seen: Seen, did: str = "", job: int | None = None) -> HTMLResponse:
    q = queue_of(request)
    shown = [s for s in await q.schedules() if seen.may(Role.READ, s.queue)]
    views = [ScheduleView(s, await runs_of(q, s)) for s in shown]
    return render(
        request,
        "schedules.html",
        seen=seen,
        schedules=views,
        did=ACTIONS.get(did),
        enqueued=job,
        may=lambda s: seen.may(Role.OPERATE, s.queue),
    )


@router.post("/schedules/{schedule_id}/{action}")
async def act(request: Request, schedule_id: ScheduleId, action: str, seen: Seen) -> Response:
    """Pause, resume, run now or remove (operate on the schedule's queue, with the form's
    CSRF token). A job run now says in its history who enqueued it from the console."""
    await form(request, seen)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}: one of {', '.join(ACTIONS)}")
    q = queue_of(request)
    schedule = await q.get_schedule(schedule_id)
    seen.require(Role.OPERATE, schedule.queue)
    log = get_logger()
    if action == "run":
        job = await q.run_schedule(schedule)
        await q.log(job, f"run now from schedule {schedule.id} in the console by {seen.who}")
        return RedirectResponse(f"/schedules?did=run&job={job.id}", status_code=303)
    if action == "pause":
        await q.pause_schedule(schedule)
    elif action == "resume":
        await q.resume_schedule(schedule)
    else:
        await q.unschedule(schedule)
    log.info(f"console_schedule_{ACTIONS[action]}", schedule_id=schedule.id, by=seen.who)
    return RedirectResponse(f"/schedules?did={action}", status_code=303)
