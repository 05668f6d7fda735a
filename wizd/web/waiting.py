"""Waiting on people (/waiting): every job waiting for a signal, with its payload and
context, and buttons to send the signal it waits for (approve, reject, or JSON of one's
own); the list follows jobs entering and leaving the wait live (/live/waiting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.errors import IllegalTransition, InvalidJob, JobNotFound
from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.live import Stream, queue_of, sse
from wizd.web.pages import Page, render
from wizd.web.scoped import jobs_in
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SHOWN = 200  # waiting jobs listed at most
ANSWERS: dict[str, Any] = {"approve": {"approved": True}, "reject": {"approved": False}}


@dataclass(frozen=True, slots=True)
class Wait:
    job: Job
    signal: str
    timeout_at: datetime | None


async def newest(q: Queue, ids: list[int]) -> list[Job]:
    """The SHOWN newest of these jobs still waiting for a signal, read one by one: a list
    filtered on the status alone walks every job on SQLite (its planner takes the
    creation-time index for the order), 250 ms at 1,000,000 jobs."""
    found = []
    for job_id in sorted(ids, reverse=True)[:SHOWN]:  # ids grow with creation
        with suppress(JobNotFound):
            job = await q.get(job_id)
            if job.status is JobStatus.WAITING_SIGNAL:
                found.append(job)
    return sorted(found, key=lambda j: (j.created_at, j.id), reverse=True)


async def waits(q: Queue, seen: Viewer) -> tuple[list[Wait], bool]:
    """The waiting jobs `seen` may read, newest first, each with the signal it waits for;
    and whether there were more than SHOWN."""
    names = {job_id: (name, at) for job_id, name, at in await q.signal_waits()}
    if seen.token.queues is None:
        found, more = await newest(q, list(names)), len(names) > SHOWN
    else:  # per queue, on the queue's index
        found, more = await jobs_in(q, seen, JobStatus.WAITING_SIGNAL, SHOWN)
    listed = []
    for job in found:
        name, at = names.get(job.id, ("", None))
        timeout_at = None if at is None else datetime.fromtimestamp(at, UTC)
        listed.append(Wait(job, name, timeout_at))
    return listed, more


async def context(q: Queue, seen: Viewer, **extra: Any) -> dict[str, Any]:
    listed, more = await waits(q, seen)
    return {"seen": seen, "waits": listed, "more": more, "shown": SHOWN, **extra}


@router.get("/waiting", response_class=HTMLResponse)
async def page(request: Request, seen: Seen, sent: int = 0) -> HTMLResponse:
    found = await context(queue_of(request), seen, sent=sent, failed=None)
    return render(request, "waiting.html", **found)


@router.get("/parts/waiting", response_class=HTMLResponse)
async def part(request: Request, seen: Seen) -> HTMLResponse:
    found = await context(queue_of(request), seen, failed=None)
    return render(request, "_waiting.html", **found)


@router.get("/live/waiting")
async def live(request: Request, seen: Seen) -> Response:
    """`refresh` whenever the set of waiting jobs the viewer may see changes."""
    q = queue_of(request)
    shown = {w.job.id for w in (await waits(q, seen))[0]}

    async def changes(events: Sequence[Any]) -> list[bytes]:
        nonlocal shown
        if not any(seen.may(Role.READ, e.queue) for e in events):
            return []
        now = {w.job.id for w in (await waits(q, seen))[0]}
        changed, shown = now != shown, now
        return [sse("refresh")] if changed else []

    return Stream(await q.watch_started(), changes)


def answer(fields: dict[str, list[str]]) -> tuple[str, Any]:
    """What the form sends: (how it is named in the job's history, the signal's data)."""
    choice = (fields.get("choice") or [""])[0]
    if choice in ANSWERS:
        return choice, ANSWERS[choice]
    if choice != "custom":
        raise HTTPException(422, "choice must be approve, reject or custom")
    text = (fields.get("data") or [""])[0]
    if not text.strip():
        raise InvalidJob("data", 'give the signal\'s data as JSON, e.g. {"approved": true}')
    try:
        return "custom data", json.loads(text)
    except ValueError as exc:
        raise InvalidJob("data", f"is not JSON: {exc}") from None


@router.post("/waiting/{job_id}/signal", response_class=HTMLResponse)
async def send(request: Request, job_id: JobId, seen: Seen) -> Response:
    """Send the job the signal it waits for (403 for a read token or another queue's);
    bad JSON is shown on the page and nothing is sent."""
    fields = await form(request, seen)
    q = queue_of(request)
    job = await q.get(job_id)
    seen.require(Role.ENQUEUE, job.queue)
    name = {i: n for i, n, _ in await q.signal_waits()}.get(job.id)
    if job.status != JobStatus.WAITING_SIGNAL or name is None:
        raise IllegalTransition(job.id, job.status, "pending", "send a signal: it waits for none")
    try:
        said, data = answer(fields)
        await q.signal(job, name, data)
    except InvalidJob as exc:
        failed = {"id": job.id, "message": str(exc), "data": (fields.get("data") or [""])[0]}
        found = await context(q, seen, sent=0, failed=failed)
        return render(request, "waiting.html", status=422, **found)
    await q.log(job, f"signal {name!r} sent ({said}) from the console by {seen.who}")
    return RedirectResponse(f"/waiting?sent={job.id}", status_code=303)
