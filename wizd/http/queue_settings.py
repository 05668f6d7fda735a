"""A queue's settings and the operations over every queue: defaults, limits, removal, peek,
counts, concurrency limits, hung jobs, cleanup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from wizd.http import schemas as S
from wizd.http.auth import Caller, Client, allow
from wizd.http.queues import QueueName
from wizd.model import JobOptions, JobStatus
from wizd.queue import DEFAULT_HUNG_TIMEOUT
from wizd.token_model import Role, Token

router = APIRouter(tags=["queues"])
MAX_AGE = 100 * 365.25 * 86400  # seconds: the longest older_than the Python API takes
OlderThan = Annotated[float, Query(gt=0, le=MAX_AGE, description="seconds since its heartbeat")]
LimitKey = Annotated[str, Path(min_length=1, max_length=200, description="a concurrency_key")]


class DefaultsIn(S.Strict):
    """Options for the queue's jobs that do not set them; those left out are kept."""

    priority: int | str | None = Field(default=None, description="1-5 or low/normal/high/critical")
    attempts: int | None = None
    backoff: S.BackoffIn | None = None
    timeout: float | None = None
    ttl: float | None = None


DefaultsOut = JobOptions  # a queue's defaults: the Python API's dataclass


class LimitsIn(S.Strict):
    """A limit left out is kept; null removes it."""

    max_running: int | None = Field(default=None, description="its jobs running at once")
    rate: str | None = Field(default=None, description="starts per period: 60/min, 10/s, 5/10s")
    burst: int | None = Field(default=None, description="starts at once within the rate")


class LimitsOut(BaseModel):
    queue: str
    max_running: int | None
    rate: str | None
    rate_per_second: float | None
    burst: int | None


class ConcurrencyLimitIn(S.Strict):
    limit: int | None = Field(description="jobs with this key running at once; null removes it")


class ConcurrencyLimitOut(BaseModel):
    key: str
    limit: int | None


class CleanupIn(S.Strict):
    older_than: float = Field(default=30 * 86400.0, ge=0, description="seconds since it ended")
    statuses: list[JobStatus] = Field(default=[JobStatus.COMPLETED], description="final ones")
    dry_run: bool = Field(default=False, description="only say which jobs it would delete")


class CleanupOut(BaseModel):
    ids: list[int]
    dry_run: bool


def every_queue(token: Token, needed: Role) -> None:
    """403 unless the token may do `needed` on every queue (its queues None)."""
    allow(token, needed, None)


@router.get("/queues/{queue}/defaults", response_model=DefaultsOut, summary="A queue's defaults")
async def defaults(queue: QueueName, q: Client, token: Caller) -> Response:
    allow(token, Role.READ, queue)
    return JSONResponse((await q.defaults(queue)).to_dict())


@router.put("/queues/{queue}/defaults", response_model=DefaultsOut, summary="Set its defaults")
async def set_defaults(queue: QueueName, body: DefaultsIn, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, queue)
    given: dict[str, Any] = body.model_dump(exclude_none=True)
    if body.backoff is not None:
        given["backoff"] = body.backoff.model_dump()
    return JSONResponse((await q.set_defaults(queue, **given)).to_dict())


@router.get("/queues/{queue}/limits", response_model=LimitsOut, summary="A queue's limits")
async def limits(queue: QueueName, q: Client, token: Caller) -> Response:
    allow(token, Role.READ, queue)
    return JSONResponse((await q.queue_limits(queue)).to_dict())


@router.put("/queues/{queue}/limits", response_model=LimitsOut, summary="Set its limits")
async def set_limits(queue: QueueName, body: LimitsIn, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, queue)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return JSONResponse((await q.set_queue_limits(queue, **changes)).to_dict())


@router.delete(
    "/queues/{queue}",
    status_code=204,
    summary="Forget an empty queue",
    description="Its pause, defaults and limits; 409 while it has jobs or schedules.",
)
async def remove(queue: QueueName, q: Client, token: Caller) -> Response:
    allow(token, Role.ADMIN, queue)
    await q.remove_queue(queue)
    return Response(status_code=204)


@router.get(
    "/queues/{queue}/peek", response_model=list[S.JobOut], summary="The jobs it would hand out next"
)
async def peek(
    queue: QueueName, q: Client, token: Caller, n: Annotated[int, Query(ge=1, le=1000)] = 10
) -> Response:
    allow(token, Role.READ, queue)
    return JSONResponse([j.to_dict() for j in await q.peek(queue, n)])


@router.get(
    "/counts",
    response_model=dict[str, int],
    summary="Jobs by status, of one queue or of every queue the token may see",
)
async def counts(
    q: Client,
    token: Caller,
    queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Response:
    if queue is not None or token.queues is None:
        allow(token, Role.READ, queue)
        return JSONResponse(await q.counts(queue))
    allow(token, Role.READ, token.queues[0])
    total = await q.counts(token.queues[0])
    for name in token.queues[1:]:
        for status, n in (await q.counts(name)).items():
            total[status] += n
    return JSONResponse(total)


@router.get(
    "/concurrency-limits",
    response_model=dict[str, int],
    tags=["limits"],
    summary="Every concurrency_key's limit",
)
async def concurrency_limits(q: Client, token: Caller) -> Response:
    every_queue(token, Role.READ)
    return JSONResponse(await q.concurrency_limits())


@router.put(
    "/concurrency-limits/{key}",
    response_model=ConcurrencyLimitOut,
    tags=["limits"],
    summary="Limit the jobs with this concurrency_key running at once, whatever their queue",
)
async def set_concurrency_limit(
    key: LimitKey, body: ConcurrencyLimitIn, q: Client, token: Caller
) -> Response:
    every_queue(token, Role.OPERATE)
    await q.set_concurrency_limit(key, body.limit)
    return JSONResponse({"key": key, "limit": body.limit})


@router.get(
    "/hung",
    response_model=list[S.JobOut],
    tags=["jobs"],
    summary="Running jobs whose heartbeat is old (of the queues the token may see)",
)
async def hung(q: Client, token: Caller, older_than: OlderThan = DEFAULT_HUNG_TIMEOUT) -> Response:
    allow(token, Role.READ, token.queues[0] if token.queues else None)
    jobs = await q.hung(older_than)
    return JSONResponse([j.to_dict() for j in jobs if token.may(Role.READ, j.queue)])


@router.post(
    "/hung/reap",
    response_model=list[S.JobOut],
    tags=["jobs"],
    summary="Retry (or fail) every hung job now, as the daemons' reaper would",
)
async def reap(q: Client, token: Caller, older_than: OlderThan = DEFAULT_HUNG_TIMEOUT) -> Response:
    every_queue(token, Role.OPERATE)
    return JSONResponse([j.to_dict() for j in await q.reap_hung(older_than)])


@router.post(
    "/cleanup",
    response_model=CleanupOut,
    tags=["jobs"],
    summary="Delete final jobs that ended long ago (dry_run: only list them)",
)
async def cleanup(q: Client, token: Caller, body: CleanupIn | None = None) -> Response:
    every_queue(token, Role.ADMIN)
    body = body or CleanupIn()
    ids = await q.cleanup(body.older_than, list(body.statuses), body.dry_run)
    return JSONResponse({"ids": list(ids), "dry_run": body.dry_run})
