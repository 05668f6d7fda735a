"""Queues (/queues): every queue the viewer may see, paused or not, its default job
options and its limits, changed in place: each queue's row is an htmx form that swaps
itself for the row as it is now, or for the row with wizd's error (nothing changed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.errors import InvalidJob
from wizd.logging import get_logger
from wizd.model import JobOptions, QueueLimits, Rate, check_limit
from wizd.queue import Queue
from wizd.token_model import Role
from wizd.web.jobs import queue_names
from wizd.web.live import queue_of
from wizd.web.pages import Page, render
from wizd.web.session import Viewer, form, viewer

router = APIRouter(route_class=Page, include_in_schema=False)
Seen = Annotated[Viewer, Depends(viewer)]
QueueName = Annotated[str, Path(min_length=1, max_length=200)]
DEFAULTS = ("priority", "attempts", "timeout", "ttl")  # edited here (backoff: shown only)
LIMITS = ("max_running", "rate", "burst")


async def row(q: Queue, name: str, paused: set[str] | None = None) -> dict[str, Any]:
    """What a queue's row shows."""
    if paused is None:
        paused = {n for n, p, _ in await q.queues() if p}
    return {
        "name": name,
        "paused": name in paused,
        "defaults": await q.defaults(name),
        "limits": await q.queue_limits(name),
    }


@router.get("/queues", response_class=HTMLResponse)
async def page(request: Request, seen: Seen) -> HTMLResponse:
    q = queue_of(request)
    paused = {n for n, p, _ in await q.queues() if p}
    rows = [await row(q, name, paused) for name in await names(q, seen)]
    return render(request, "queues.html", seen=seen, rows=rows)


async def names(q: Queue, seen: Viewer) -> list[str]:
    """The queues the viewer may see: with jobs or settings, or served by a daemon."""
    served = {name for w in await q.workers() if w.stopped_at is None for name in w.queues}
    return sorted(set(await queue_names(q, seen)) | set(seen.visible(sorted(served))))


def whole(field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidJob(field, f"must be a whole number, got {text[:40]!r}") from None


def seconds(field: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidJob(field, f"must be a number of seconds, got {text[:40]!r}") from None


def changes(
    fields: dict[str, list[str]], defaults: JobOptions, limits: QueueLimits
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(defaults to set, limits to set): the fields whose value differs from the queue's,
    each validated first (InvalidJob names the first bad one, before anything is written).
    An empty default is left as it is; an empty limit removes it."""
    text = {k: (fields.get(k) or [""])[0].strip() for k in (*DEFAULTS, *LIMITS)}
    given: dict[str, Any] = {}
    for k in DEFAULTS:
        if text[k]:
            given[k] = (
                text[k]
                if k == "priority"
                else (whole(k, text[k]) if k == "attempts" else seconds(k, text[k]))
            )
    merged = defaults.merged(**given)  # validates every field given
    new_defaults = {
        k: getattr(merged, k) for k in given if getattr(merged, k) != getattr(defaults, k)
    }
    wanted: dict[str, Any] = {
        "max_running": check_limit("max_running", whole("max_running", text["max_running"]))
        if text["max_running"]
        else None,
        "rate": Rate.parse(text["rate"]) if text["rate"] else None,
        "burst": check_limit("burst", whole("burst", text["burst"])) if text["burst"] else None,
    }
    new_limits = {k: v for k, v in wanted.items() if v != getattr(limits, k)}
    return new_defaults, new_limits


@router.post("/queues/{queue}/{action}", response_class=HTMLResponse)
async def act(request: Request, queue: QueueName, action: str, seen: Seen) -> Response:
    """pause, resume, or settings (its defaults and limits); operate role on the queue.
    From htmx: the queue's row as it is now (with the error, 422, for a bad value)."""
    fields = await form(request, seen)
    if action not in ("pause", "resume", "settings"):
        raise HTTPException(404, f"no action {action!r}: one of pause, resume, settings")
    seen.require(Role.OPERATE, queue)
    q = queue_of(request)
    error = None
    if action == "pause":
        await q.pause(queue)
    elif action == "resume":
        await q.resume(queue)
    else:
        try:
            new_defaults, new_limits = changes(
                fields, await q.defaults(queue), await q.queue_limits(queue)
            )
        except InvalidJob as exc:
            error = str(exc)
        else:
            if new_defaults:
                await q.set_defaults(queue, **new_defaults)
            if new_limits:
                await q.set_queue_limits(queue, **new_limits)
            changed = {
                **new_defaults,
                **{k: str(v) if isinstance(v, Rate) else v for k, v in new_limits.items()},
            }
            get_logger().info("console_queue_settings", queue=queue, changed=changed, by=seen.who)
    if action != "settings":
        get_logger().info(f"console_queue_{action}d", queue=queue, by=seen.who)
    status = 422 if error else 200
    if request.headers.get("HX-Request"):
        shown = await row(q, queue)
        return render(request, "_queue_row.html", status=status, seen=seen, r=shown, error=error)
    if error:
        rows = [await row(q, name) for name in await names(q, seen)]
        return render(
            request, "queues.html", status=status, seen=seen, rows=rows, error=error, failed=queue
        )
    return RedirectResponse(f"/queues#queue-{queue}", status_code=303)
