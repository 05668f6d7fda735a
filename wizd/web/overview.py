"""The overview (/): every queue the viewer may see, its counts, last hour and daemons, with
a banner for dead daemons and hung jobs; its figures re-fetched live (/parts/overview)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from wizd.model import JobStatus, WorkerInfo
from wizd.queue import DEFAULT_HUNG_TIMEOUT, Queue
from wizd.web.activity import MINUTES, Activity, activity_of
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, viewer
from wizd.web.sparkline import sparkline

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
STATUSES = [s.value for s in JobStatus]


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    counts: dict[str, int]
    paused: bool
    oldest_pending: float | None  # seconds
    activity: Activity
    daemons: int
    slots: int
    busy: int

    def spark(self, kind: str) -> Any:
        values = self.activity.completed if kind == "completed" else self.activity.failed
        return sparkline(values, kind, kind)


def worker_state(worker: WorkerInfo, hung_timeout: float, now: float) -> str:
    """live, stopped (shut down cleanly) or dead (silent past the hung timeout), as
    `wizd workers` says."""
    if worker.stopped_at is not None:
        return "stopped"
    return "live" if now - worker.heartbeat_at.timestamp() < hung_timeout else "dead"


async def figures(q: Queue, seen: Viewer, hung_timeout: float) -> dict[str, Any]:
    """Every figure of the page in a few bounded reads: the stored counts, the queues'
    settings, one grouped count of the last hour's finishes, and per queue only its
    oldest pending job (the head of its claim index)."""
    now = time.time()
    workers = await q.workers()
    states = {w.id: worker_state(w, hung_timeout, now) for w in workers}
    counts = await q.counts_by_queue()
    paused = {name: stopped for name, stopped, _ in await q.queues()}
    names = set(counts) | set(paused)
    names |= {name for w in workers if states[w.id] == "live" for name in w.queues}
    shown = seen.visible(sorted(names))
    finished = await q.finished_per_minute(MINUTES)
    views = []
    for name in shown:
        serving = [w for w in workers if states[w.id] == "live" and name in w.queues]
        views.append(
            QueueView(
                name=name,
                counts=counts.get(name, {}),
                paused=paused.get(name, False),
                oldest_pending=await q.oldest_pending(name)
                if counts.get(name, {}).get("pending")
                else None,
                activity=activity_of(finished, name),
                daemons=len(serving),
                slots=sum(w.concurrency for w in serving),
                busy=sum(w.busy for w in serving),
            )
        )
    mine = set(shown)
    dead = [w for w in workers if states[w.id] == "dead" and mine & set(w.queues)]
    hung = [j for j in await q.hung(hung_timeout) if j.queue in mine]
    return {"queues": views, "statuses": STATUSES, "dead": dead, "hung": hung}


@router.get("/", response_class=HTMLResponse)
async def page(request: Request, seen: Seen) -> HTMLResponse:
    hung_timeout = getattr(request.app.state, "hung_timeout", DEFAULT_HUNG_TIMEOUT)
    found = await figures(queue_of(request), seen, hung_timeout)
    return render(request, "overview.html", seen=seen, **found)


@router.get("/parts/overview", response_class=HTMLResponse)
async def part(request: Request, seen: Seen) -> HTMLResponse:
    hung_timeout = getattr(request.app.state, "hung_timeout", DEFAULT_HUNG_TIMEOUT)
    found = await figures(queue_of(request), seen, hung_timeout)
    return render(request, "_overview.html", seen=seen, **found)
