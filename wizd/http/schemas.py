"""The API's request and response bodies, as pydantic models: they validate what comes in
and are what /v1/openapi.json describes. Responses are built from the Python API's
`to_dict()`s (the same JSON as the CLI's --json), checked against these by the tests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wizd.model import Event, Job, JobStatus, QueueStats

JSONValue = Any
# A queue's or a job's name (wizd.job_fields.check_identifier), for the schema to say it.
NAME = r"^[A-Za-z0-9_.:-]{1,200}$"
Name = Annotated[str, Field(pattern=NAME, description="1-200 of A-Z a-z 0-9 _ . : -")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------


class BackoffIn(Strict):
    kind: Literal["exponential", "fixed"] = "exponential"
    delay: float = 1.0
    cap: float | None = 300.0
    jitter: float = 0.0


class JobIn(Strict):
    """One job to enqueue: Queue.enqueue's arguments (see its docs for each)."""

    name: str = Field(pattern=NAME, description="what to run: a processor of the queue's agent")
    payload: dict[str, JSONValue] | None = None
    queue: str | None = Field(
        default=None, pattern=NAME, description="the agent's queue (default: 'default')"
    )
    priority: int | str | None = Field(default=None, description="1-5 or low/normal/high/critical")
    delay: float | None = Field(default=None, description="seconds before it may run")
    run_at: datetime | float | None = Field(default=None, description="when it may run")
    attempts: int | None = None
    backoff: BackoffIn | None = None
    timeout: float | None = None
    ttl: float | None = None
    tags: list[str] | None = None
    context: dict[str, JSONValue] | None = None
    depends_on: list[int] | None = None
    parent: int | None = None
    on_dependency_failure: Literal["fail", "cancel", "ignore"] | None = None
    on_child_failure: Literal["continue", "fail", "cancel"] | None = None
    unique_key: str | None = None
    unique_for: float | None = None
    unique_states: list[JobStatus] | None = None
    on_conflict: Literal["return", "raise", "replace"] | None = None
    concurrency_key: str | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments of Queue.enqueue that were given (None: left out)."""
        given = self.model_dump(exclude_none=True, exclude={"name", "payload"})
        if self.backoff is not None:
            given["backoff"] = self.backoff.model_dump()
        return given


class BatchItemIn(JobIn):
    depends_on: list[int] | None = Field(
        default=None, description="indexes of earlier items of the batch"
    )


class JobsIn(Strict):
    jobs: list[JobIn] = Field(min_length=1, max_length=10_000)
    linked: bool = Field(
        default=False,
        description="one batch: one batch_id, and depends_on names earlier items by index",
    )


class SignalIn(Strict):
    data: JSONValue = None


class RetryIn(Strict):
    from_step: str | None = Field(default=None, description="keep the steps before this one")


# -- responses -----------------------------------------------------------------------------


# A job, an event of its history and a queue's figures are the Python API's own dataclasses:
# their schema is derived from them, so it cannot drift from what to_dict() sends.
JobOut = Job
EventOut = Event
StatsOut = QueueStats


class JobPage(BaseModel):
    jobs: list[JobOut]
    next: str | None = Field(description="pass as `after` for the next page; null: no more")


class StepOut(BaseModel):
    name: str
    occurrence: int
    label: str
    position: int
    kind: str
    status: str
    result: JSONValue
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime
    duration: float


class WatchEventOut(BaseModel):
    """One event of GET /v1/events (its `cursor` is also the SSE id)."""

    cursor: int
    job_id: int
    queue: str
    at: datetime
    kind: str
    status: JobStatus | None
    attempt: int | None
    worker_id: str | None
    message: str | None


class Ids(BaseModel):
    ids: list[int]
