"""/v1/jobs: enqueue (one, many, a linked batch; idempotent with Idempotency-Key), read,
list, await, signal, and the actions on one job."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from wizd.errors import InvalidJob, WaitTimeout
from wizd.http import schemas as S
from wizd.http.auth import Caller, Client, allow
from wizd.model import Job, JobStatus
from wizd.queue import DEFAULT_QUEUE, Queue
from wizd.token_model import Role, Token

router = APIRouter(prefix="/jobs", tags=["jobs"])
IDEMPOTENCY_WINDOW = 86400.0  # seconds an Idempotency-Key returns the job it made
MAX_WAIT = 300.0  # seconds a long poll may hold the request at most
MAX_KEY = 200  # characters of an Idempotency-Key
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a job's id")]


def job_json(job: Job, status: int = 200) -> JSONResponse:
    return JSONResponse(job.to_dict(), status_code=status)


async def owned(q: Queue, token: Token, job_id: int, needed: Role) -> Job:
    """The job, if the token may do `needed` to jobs of its queue (404 / 403 otherwise)."""
    job = await q.get(job_id)
    allow(token, needed, job.queue)
    return job


@router.post(
    "",
    status_code=201,
    response_model=S.JobOut,
    summary="Enqueue one job",
    responses={200: {"model": S.JobOut, "description": "the job this Idempotency-Key made"}},
)
async def enqueue(
    body: S.JobIn,
    q: Client,
    token: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=MAX_KEY,
            description="a retried request with the same key returns the job it made "
            f"(for {IDEMPOTENCY_WINDOW / 3600:g} h) instead of making another",
        ),
    ] = None,
) -> Response:
    return await enqueue_one(q, token, body, idempotency_key)


async def enqueue_one(
    q: Queue, token: Token, body: S.JobIn, idempotency_key: str | None
) -> Response:
    """POST /v1/jobs once the request is read: the route's body, and wizd.http.fast_enqueue's
    (its fast path for the plain case), so both answer alike. 403 (HTTPException) before
    anything is written if the token may not enqueue there."""
    queue = body.queue or DEFAULT_QUEUE
    allow(token, Role.ENQUEUE, queue)
    started = time.time()
    options = body.options()
    if idempotency_key is not None:
        if body.unique_key is not None:
            raise InvalidJob("unique_key", "give unique_key or an Idempotency-Key header, not both")
        options |= {
            # Per queue: a key can never hand back a job of a queue the caller may not see.
            "unique_key": f"idempotency:{queue}:{idempotency_key}",
            "unique_for": IDEMPOTENCY_WINDOW,
            "unique_states": list(JobStatus),
            "on_conflict": "return",
        }
    job = await q.enqueue(body.name, body.payload, **options)
    # A job the key made before this request is returned as it is: 200, not 201.
    return job_json(job, 201 if job.created_at.timestamp() >= started else 200)


@router.post("/batch", status_code=201, response_model=S.JobPage, summary="Enqueue many jobs")
async def enqueue_many(body: S.JobsIn, q: Client, token: Caller) -> Response:
    items: list[dict[str, Any]] = []
    for item in body.jobs:
        allow(token, Role.ENQUEUE, item.queue or DEFAULT_QUEUE)
        items.append({"name": item.name, "payload": item.payload, **item.options()})
    try:
        jobs = await (q.enqueue_batch(items) if body.linked else q.enqueue_many(items))
    except InvalidJob as exc:  # the Python API's `items[i]` is this body's `jobs[i]`
        if not exc.field.startswith("items["):
            raise
        field = "jobs" + exc.field.removeprefix("items")
        raise InvalidJob(field, str(exc).removeprefix(f"{exc.field}: ")) from None
    return JSONResponse({"jobs": [j.to_dict() for j in jobs], "next": None}, status_code=201)


@router.get("", response_model=S.JobPage, summary="List jobs, newest first by default")
async def list_jobs(
    q: Client,
    token: Caller,
    queue: Annotated[str | None, Query(pattern=S.NAME)] = None,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    name: Annotated[str | None, Query(pattern=S.NAME)] = None,
    tag: Annotated[list[str] | None, Query(description="jobs carrying every tag given")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    batch_id: str | None = None,
    sort: Literal[
        "id", "created_at", "updated_at", "priority", "run_at", "status", "name", "queue"
    ] = "created_at",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    after: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
) -> Response:
    allow(token, Role.READ, queue)
    page = await q.list_page(
        queue=queue,
        status=status,
        name=name,
        tags=tag,
        created_after=created_after,
        created_before=created_before,
        parent=parent,
        batch_id=batch_id,
        sort=sort,
        order=order,
        limit=limit,
        after=after,
    )
    return JSONResponse({"jobs": [j.to_dict() for j in page.jobs], "next": page.next})


@router.get("/{job_id}", response_model=S.JobOut, summary="One job")
async def get(job_id: JobId, q: Client, token: Caller) -> Response:
    return job_json(await owned(q, token, job_id, Role.READ))


@router.post(
    "/{job_id}/wait",
    response_model=S.JobOut,
    summary="Await a job (long poll)",
    description="Answers as soon as the job is final (completed, failed, cancelled), or "
    "when `timeout` seconds have passed with the job as it is then: look at its status.",
)
async def wait(
    job_id: JobId,
    q: Client,
    token: Caller,
    timeout: Annotated[float, Query(gt=0, le=MAX_WAIT)] = 30.0,
) -> Response:
    job = await owned(q, token, job_id, Role.READ)
    if not job.final:
        try:
            job = await q.wait(job, timeout=timeout)
        except WaitTimeout:
            job = await q.get(job)
    return job_json(job)


@router.get("/{job_id}/events", response_model=list[S.EventOut], summary="A job's history")
async def events(
    job_id: JobId,
    q: Client,
    token: Caller,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse([e.to_dict() for e in await q.events(job_id, after)])


@router.get("/{job_id}/steps", response_model=list[S.StepOut], summary="A job's durable steps")
async def steps(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse([s.to_dict() for s in await q.steps(job_id)])


@router.get(
    "/{job_id}/stream",
    response_class=PlainTextResponse,
    summary="What the job streamed (ctx.stream), its capped tail",
)
async def stream(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return PlainTextResponse(await q.stream_text(job_id))


@router.get("/{job_id}/tree", summary="The job and its descendants")
async def tree(job_id: JobId, q: Client, token: Caller) -> dict[str, Any]:
    await owned(q, token, job_id, Role.READ)
    return await q.tree(job_id)


@router.get("/{job_id}/children", response_model=list[S.JobOut], summary="The job's children")
async def children(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse([j.to_dict() for j in await q.children(job_id)])


@router.get("/{job_id}/dependencies", response_model=list[S.JobOut], summary="What it waits for")
async def dependencies(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse([j.to_dict() for j in await q.dependencies(job_id)])


@router.get("/{job_id}/dependents", response_model=list[S.JobOut], summary="What waits for it")
async def dependents(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse([j.to_dict() for j in await q.dependents(job_id)])


@router.post(
    "/{job_id}/signals/{name}",
    response_model=S.JobOut,
    summary="Send a signal (ctx.wait_for_signal)",
    description="Kept until the job waits for it; a job waiting for it runs again.",
)
async def signal(
    job_id: JobId,
    name: Annotated[str, Path(min_length=1, max_length=200)],
    q: Client,
    token: Caller,
    body: S.SignalIn | None = None,
) -> Response:
    await owned(q, token, job_id, Role.ENQUEUE)
    return job_json(await q.signal(job_id, name, None if body is None else body.data))


@router.post("/{job_id}/cancel", response_model=S.JobOut, summary="Cancel a job")
async def cancel(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.ENQUEUE)
    (job,) = await q.cancel(job_id)
    return job_json(job)


@router.post("/{job_id}/retry", response_model=S.JobOut, summary="Run a finished job again")
async def retry(job_id: JobId, q: Client, token: Caller, body: S.RetryIn | None = None) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    (job,) = await q.retry(job_id, from_step=None if body is None else body.from_step)
    return job_json(job)


@router.post("/{job_id}/kill", response_model=S.JobOut, summary="Stop a running job now")
async def kill(job_id: JobId, q: Client, token: Caller, force: bool = False) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return job_json(await q.kill(job_id, force=force))


@router.post("/{job_id}/pause", response_model=S.JobOut, summary="Hold a job back")
async def pause(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return job_json(await q.pause_job(job_id))


@router.post("/{job_id}/resume", response_model=S.JobOut, summary="Let a held job run")
async def resume(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return job_json(await q.resume_job(job_id))


@router.delete("/{job_id}", response_model=S.Ids, summary="Delete a job and its history")
async def delete(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return JSONResponse({"ids": list(await q.delete(job_id))})
