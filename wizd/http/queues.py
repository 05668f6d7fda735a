"""/v1/queues and /v1/workers: every queue with its counts and pause, a queue's stats,
pause and resume, and the live daemons."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from wizd.http import schemas as S
from wizd.http.auth import Caller, Client, allow
from wizd.http.schemas import NAME
from wizd.token_model import Role

router = APIRouter(tags=["queues"])
QueueName = Annotated[str, Path(pattern=NAME, description="a queue's name")]


class QueueOut(BaseModel):
    queue: str
    paused: bool
    counts: dict[str, int]
    defaults: dict[str, Any]


class WorkerOut(BaseModel):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    started_at: str
    heartbeat_at: str
    stopped_at: str | None
    busy: int
    metrics: str | None


@router.get("/queues", response_model=list[QueueOut], summary="Every queue the token may see")
async def queues(q: Client, token: Caller) -> Response:
    allow(token, Role.READ, token.queues[0] if token.queues else None)
    counts = await q.counts_by_queue()
    out = []
    for name, paused, defaults in await q.queues():
        if token.may(Role.READ, name):
            out.append(
                {
                    "queue": name,
                    "paused": paused,
                    "counts": counts.get(name) or {},
                    "defaults": defaults.to_dict(),
                }
            )
    return JSONResponse(out)


@router.get("/queues/{queue}/stats", response_model=S.StatsOut, summary="A queue's figures")
async def stats(
    queue: QueueName,
    q: Client,
    token: Caller,
    window: Annotated[float, Query(ge=1, le=30 * 86400, description="seconds")] = 3600.0,
) -> Response:
    allow(token, Role.READ, queue)
    return JSONResponse((await q.stats(queue, window)).to_dict())


@router.post("/queues/{queue}/pause", status_code=204, summary="Stop handing out its jobs")
async def pause(queue: QueueName, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, queue)
    await q.pause(queue)
    return Response(status_code=204)


@router.post("/queues/{queue}/resume", status_code=204, summary="Hand out its jobs again")
async def resume(queue: QueueName, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, queue)
    await q.resume(queue)
    return Response(status_code=204)


@router.get("/workers", response_model=list[WorkerOut], summary="The daemons and their slots")
async def workers(q: Client, token: Caller) -> Response:
    allow(token, Role.READ, token.queues[0] if token.queues else None)
    return JSONResponse(
        [
            w.to_dict()
            for w in await q.workers()
            if token.queues is None or set(w.queues) & set(token.queues)
        ]
    )
