"""Daemons (/daemons): every daemon serving a queue the viewer may see (host, pid,
version, queues, slots, heartbeat age; live, dead or stopped) and the hung jobs, which a
token for every queue with the operate role may reap (retry or fail now)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from wizd.logging import get_logger
from wizd.queue import DEFAULT_HUNG_TIMEOUT, Queue
from wizd.token_model import Role
from wizd.web.live import queue_of
from wizd.web.overview import worker_state
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]


def hung_timeout(request: Request) -> float:
    found: float = getattr(request.app.state, "hung_timeout", DEFAULT_HUNG_TIMEOUT)
    return found


async def figures(q: Queue, seen: Viewer, timeout: float) -> dict[str, Any]:
    now = time.time()
    every = seen.token.queues is None
    mine = set(seen.token.queues or ())
    workers = [w for w in await q.workers() if every or mine & set(w.queues)]
    rows = [(w, worker_state(w, timeout, now), now - w.heartbeat_at.timestamp()) for w in workers]
    hung = [j for j in await q.hung(timeout) if seen.may(Role.READ, j.queue)]
    return {
        "seen": seen,
        "daemons": rows,
        "hung": hung,
        "hung_timeout": timeout,
        "may_reap": seen.may(Role.OPERATE, None),
    }


@router.get("/daemons", response_class=HTMLResponse)
async def page(request: Request, seen: Seen, reaped: int = -1) -> HTMLResponse:
    found = await figures(queue_of(request), seen, hung_timeout(request))
    return render(request, "daemons.html", reaped=reaped, **found)


@router.get("/parts/daemons", response_class=HTMLResponse)
async def part(request: Request, seen: Seen) -> HTMLResponse:
    found = await figures(queue_of(request), seen, hung_timeout(request))
    return render(request, "_daemons.html", **found)


@router.post("/daemons/reap")
async def reap(request: Request, seen: Seen) -> Response:
    """Retry (or fail, out of attempts) every hung job now, as a daemon's reaper would:
    it spans every queue, so it takes an operate token for every queue. Each job's
    history says who did it."""
    await form(request, seen)
    seen.require(Role.OPERATE, None)
    q = queue_of(request)
    reaped = await q.reap_hung(hung_timeout(request))
    for job in reaped:
        await q.log(job, f"reaped as hung ({job.status} now) from the console by {seen.who}")
    get_logger().info("console_hung_reaped", job_ids=[j.id for j in reaped], by=seen.who)
    return RedirectResponse(f"/daemons?reaped={len(reaped)}", status_code=303)
