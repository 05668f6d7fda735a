"""/v1/schedules: recurring jobs (wizd.scheduling): declare, list, read, pause, resume,
run now, remove, and the occurrences each enqueued."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from wizd.errors import InvalidJob, ScheduleNotFound
from wizd.http import schemas as S
from wizd.http.auth import Caller, Client, allow
from wizd.model import JobStatus, Schedule
from wizd.queue import DEFAULT_QUEUE, Queue
from wizd.schedule_model import ScheduleRun
from wizd.token_model import Role, Token

router = APIRouter(prefix="/schedules", tags=["schedules"])
Ref = Annotated[str, Path(min_length=1, max_length=200, description="a schedule's id or key")]


class ScheduleIn(S.Strict):
    """Queue.schedule's arguments: the job (name, payload and options), and when: a cron
    expression in a time zone, or every N seconds. With a key that exists, it is updated."""

    name: str = Field(description="what to run: a processor of the queue's agent")
    payload: dict[str, S.JSONValue] | None = None
    queue: str = DEFAULT_QUEUE
    cron: str | None = Field(default=None, description="'0 9 * * *' (in timezone)")
    every: float | None = Field(default=None, description="or an interval in seconds")
    timezone: str = "UTC"
    catch_up: Literal["latest", "all", "none"] = "latest"
    key: str | None = Field(default=None, description="a name; declaring it again updates it")
    paused: bool = False
    priority: int | str | None = None
    attempts: int | None = None
    backoff: S.BackoffIn | None = None
    timeout: float | None = None
    ttl: float | None = None
    tags: list[str] | None = None
    context: dict[str, S.JSONValue] | None = None
    unique_key: str | None = None
    unique_for: float | None = None
    unique_states: list[JobStatus] | None = None
    on_conflict: Literal["return", "raise", "replace"] | None = None
    concurrency_key: str | None = None


# A schedule and one of its runs are the Python API's own dataclasses: their schema cannot
# drift from what to_dict() sends.
ScheduleOut = Schedule
RunOut = ScheduleRun


def schedule_json(schedule: Schedule, status: int = 200) -> JSONResponse:
    return JSONResponse(schedule.to_dict(), status_code=status)


async def owned(q: Queue, token: Token, ref: str, needed: Role) -> Schedule:
    """The schedule, if the token may do `needed` on its queue (404 / 403 otherwise)."""
    schedule = await q.get_schedule(ref)
    allow(token, needed, schedule.queue)
    return schedule


@router.get("", response_model=list[ScheduleOut], summary="The schedules the token may see")
async def schedules(q: Client, token: Caller) -> Response:
    allow(token, Role.READ, token.queues[0] if token.queues else None)
    return JSONResponse([s.to_dict() for s in await q.schedules() if token.may(Role.READ, s.queue)])


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    summary="Declare a schedule (or update the one with its key)",
)
async def create(body: ScheduleIn, q: Client, token: Caller) -> Response:
    allow(token, Role.OPERATE, body.queue)
    if body.key is not None:  # updating a schedule may move it off a queue the token lacks
        with suppress(ScheduleNotFound, InvalidJob):  # a bad key: q.schedule says why
            await owned(q, token, body.key, Role.OPERATE)
    options: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"name", "payload"})
    if body.backoff is not None:
        options["backoff"] = body.backoff.model_dump()
    return schedule_json(await q.schedule(body.name, body.payload, **options), 201)


@router.get("/{schedule}", response_model=ScheduleOut, summary="One schedule, by id or key")
async def get(schedule: Ref, q: Client, token: Caller) -> Response:
    return schedule_json(await owned(q, token, schedule, Role.READ))


@router.post("/{schedule}/pause", response_model=ScheduleOut, summary="Stop it enqueueing")
async def pause(schedule: Ref, q: Client, token: Caller) -> Response:
    found = await owned(q, token, schedule, Role.OPERATE)
    return schedule_json(await q.pause_schedule(found))


@router.post(
    "/{schedule}/resume",
    response_model=ScheduleOut,
    summary="Fire again from its next occurrence after now",
)
async def resume(schedule: Ref, q: Client, token: Caller) -> Response:
    found = await owned(q, token, schedule, Role.OPERATE)
    return schedule_json(await q.resume_schedule(found))


@router.post(
    "/{schedule}/run",
    status_code=201,
    response_model=S.JobOut,
    summary="Enqueue its job now, once",
    description="The job it would enqueue at an occurrence, now; its occurrences are as they "
    "were (this run is not one of its runs).",
)
async def run(schedule: Ref, q: Client, token: Caller) -> Response:
    found = await owned(q, token, schedule, Role.OPERATE)
    job = await q.run_schedule(found)
    return JSONResponse(job.to_dict(), status_code=201)


@router.delete(
    "/{schedule}", response_model=ScheduleOut, summary="Remove it (the jobs it enqueued stay)"
)
async def delete(schedule: Ref, q: Client, token: Caller) -> Response:
    found = await owned(q, token, schedule, Role.OPERATE)
    return schedule_json(await q.unschedule(found))


@router.get("/{schedule}/runs", response_model=list[RunOut], summary="Its latest occurrences")
async def runs(
    schedule: Ref,
    q: Client,
    token: Caller,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
) -> Response:
    found = await owned(q, token, schedule, Role.READ)
    return JSONResponse([r.to_dict() for r in await q.schedule_runs(found, limit)])
