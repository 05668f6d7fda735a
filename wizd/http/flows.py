"""Jobs that go together: distributed jobs (wizd.distributed: a prompt fanned out to
sub-tasks, then consolidated), linked batches, and a waiting job's dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from wizd.building import MAX_BATCH_ID
from wizd.http import schemas as S
from wizd.http.auth import Caller, Client, allow
from wizd.http.jobs import JobId, job_json, owned
from wizd.model import JobStatus
from wizd.queue import DEFAULT_QUEUE
from wizd.token_model import Role

router = APIRouter(tags=["flows"])
SubTaskId = Annotated[str, Path(min_length=1, max_length=20, description="sub_1, sub_2, …")]
BatchId = Annotated[str, Path(min_length=1, max_length=MAX_BATCH_ID, description="a batch_id")]


class DistributedIn(S.Strict):
    """Queue.create_distributed's arguments: a parent and one sub-task per query."""

    prompt: str
    subtasks: list[str] = Field(min_length=1, description="one query per sub-task")
    queue: str = DEFAULT_QUEUE
    ttl: float | None = Field(default=60, description="seconds; null: no deadline")
    name: str = "distributed"
    subtask_name: str = Field(default="subtask", description="the sub-tasks' processor")
    dispatch: bool = Field(default=False, description="release the sub-tasks at once")
    priority: int | str | None = None
    attempts: int | None = None
    tags: list[str] | None = None


class Dispatched(BaseModel):
    released: int = Field(description="sub-tasks made claimable by this call")


class SubTaskOut(BaseModel):
    sub_task_id: str
    job_id: int
    query: str
    status: JobStatus
    worker_id: str | None
    attempt: int
    result: S.JSONValue
    error: str | None


class SubTaskResult(BaseModel):
    sub_task_id: str
    query: str
    status: JobStatus
    result: S.JSONValue
    error: str | None


class ConsolidationOut(BaseModel):
    job_id: int
    prompt: str | None
    total_tasks: int
    completed: int
    failed: int
    pending: int
    results: list[SubTaskResult]
    consolidated_at: str | None = Field(description="null until every sub-task is final")


@router.post(
    "/distributed",
    status_code=201,
    response_model=S.JobOut,
    summary="A distributed job: a parent and its held sub-tasks sub_1 … sub_N",
)
async def create(body: DistributedIn, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, body.queue)
    options: dict[str, Any] = body.model_dump(exclude={"prompt", "subtasks"})
    job = await q.create_distributed(body.prompt, body.subtasks, **options)
    return job_json(job, 201)


@router.post(
    "/distributed/{job_id}/dispatch",
    response_model=Dispatched,
    summary="Make its sub-tasks claimable",
)
async def dispatch(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return JSONResponse({"released": await q.dispatch(job_id)})


@router.get(
    "/distributed/{job_id}/subtasks", response_model=list[SubTaskOut], summary="Its sub-tasks"
)
async def subtasks(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse(await q.subtasks(job_id))


@router.get(
    "/distributed/{job_id}/subtasks/{sub_task_id}",
    response_model=S.JobOut,
    summary="One sub-task's job",
)
async def subtask(job_id: JobId, sub_task_id: SubTaskId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return job_json(await q.subtask(job_id, sub_task_id))


@router.get(
    "/distributed/{job_id}/consolidation",
    response_model=ConsolidationOut,
    summary="Its sub-tasks' results together (stored as its result once all are final)",
)
async def consolidation(job_id: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.READ)
    return JSONResponse(await q.consolidate(job_id))


@router.get(
    "/batches/{batch_id}",
    response_model=list[S.JobOut],
    tags=["jobs"],
    summary="Every job of a linked batch, in enqueue order",
)
async def batch(batch_id: BatchId, q: Client, token: Caller) -> Response:
    jobs = await q.batch(batch_id)
    if not jobs:
        raise HTTPException(404, f"batch {batch_id!r} does not exist")
    for queue in {j.queue for j in jobs}:
        allow(token, Role.READ, queue)
    return JSONResponse([j.to_dict() for j in jobs])


@router.post(
    "/jobs/{job_id}/dependencies/{depends_on}",
    response_model=S.JobOut,
    tags=["jobs"],
    summary="Make a job that has not started wait for another (refused if it closes a cycle)",
)
async def add_dependency(job_id: JobId, depends_on: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    await owned(q, token, depends_on, Role.READ)
    return job_json(await q.add_dependency(job_id, depends_on))


@router.delete(
    "/jobs/{job_id}/dependencies/{depends_on}",
    response_model=S.JobOut,
    tags=["jobs"],
    summary="Stop a job waiting for another",
)
async def remove_dependency(job_id: JobId, depends_on: JobId, q: Client, token: Caller) -> Response:
    await owned(q, token, job_id, Role.OPERATE)
    return job_json(await q.remove_dependency(job_id, depends_on))
