"""Jobs: a queue's default options, a job to be written (NewJob) and as stored (Job),
its history (Event), what `list` selects (JobFilter) and the limits of a job tree."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from wizd import checks
from wizd.backoff import DEFAULT_BACKOFF, Backoff
from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.job_fields import DEFAULT_PRIORITY, JSON, check_attempts, check_positive, parse_priority
from wizd.states import FINAL, NOT_FINAL, JobStatus


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-queue defaults; a job's own options override them field by field."""

    priority: int = DEFAULT_PRIORITY
    attempts: int = 3
    backoff: Backoff = DEFAULT_BACKOFF
    timeout: float | None = None
    ttl: float | None = None

    FIELDS = ("priority", "attempts", "backoff", "timeout", "ttl")

    def merged(self, **overrides: Any) -> JobOptions:
        """These options with every non-None override applied, each validated."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - set(self.FIELDS)
        if unknown:
            raise InvalidJob(
                sorted(unknown)[0], f"unknown queue option; known: {', '.join(self.FIELDS)}"
            )
        if "priority" in given:
            given["priority"] = parse_priority(given["priority"])
        if "attempts" in given:
            given["attempts"] = check_attempts(given["attempts"])
        if "backoff" in given:
            b = given["backoff"]
            if isinstance(b, Mapping):
                given["backoff"] = Backoff.from_dict(b)
            elif not isinstance(b, Backoff):
                raise InvalidJob("backoff", f"must be a wizd.Backoff, got {shorten(b)}")
        if "timeout" in given:
            given["timeout"] = check_positive("timeout", given["timeout"])
        if "ttl" in given:
            given["ttl"] = check_positive("ttl", given["ttl"])
        return replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "attempts": self.attempts,
            "backoff": self.backoff.to_dict(),
            "timeout": self.timeout,
            "ttl": self.ttl,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobOptions:
        return cls().merged(**data)


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def utc_at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to be written. `deps` are ids of jobs it waits for."""

    queue: str
    name: str
    payload: str  # JSON text of an object
    # None: the queue's default (set_defaults), else wizd's.
    priority: int | None
    max_attempts: int | None
    backoff: Backoff | None
    timeout: float | None
    run_at: float | None  # absolute UTC epoch seconds; None: now + delay
    delay: float
    ttl: float | None  # seconds from creation to the deadline for a final state
    tags: tuple[str, ...] = ()
    context: str | None = None  # JSON text
    parent_id: int | None = None
    depends_on: tuple[int, ...] = ()
    batch_id: str | None = None
    # For linked batches: indexes of earlier items in the same enqueue call.
    depends_on_index: tuple[int, ...] = ()
    on_dependency_failure: str = "fail"
    on_child_failure: str = "continue"
    start_waiting_children: bool = False
    start_paused: bool = False
    kind: str = "job"
    children: tuple[NewJob, ...] = ()
    # Unique jobs: while a job with this key is in one of unique_states, or younger than
    # unique_for seconds, another enqueue of the key follows on_conflict.
    unique_key: str | None = None
    unique_for: float | None = None
    unique_states: tuple[JobStatus, ...] = NOT_FINAL
    on_conflict: str = "return"
    # Jobs sharing a concurrency key share its limit (set_concurrency_limit), across queues.
    concurrency_key: str | None = None


def _new_job_builder() -> Callable[..., NewJob]:
    """NewJob from its keyword arguments, set slot by slot: what the frozen __init__ does
    (it has no __post_init__) without an object.__setattr__ per field, at about a third of
    its cost (a bulk enqueue builds a thousand at a time)."""
    namespace: dict[str, Any] = {"new": object.__new__, "NewJob": NewJob}
    params, body = [], []
    for f in fields(NewJob):
        if f.default_factory is not MISSING:  # pragma: no cover - a guard for new fields
            raise TypeError(f"NewJob.{f.name}: the builder takes plain defaults only")
        namespace[f"set_{f.name}"] = getattr(NewJob, f.name).__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"default_{f.name}"] = f.default
            params.append(f"{f.name}=default_{f.name}")
        body.append(f"    set_{f.name}(job, {f.name})\n")
    source = f"def build(*, {', '.join(params)}):\n    job = new(NewJob)\n"
    exec(source + "".join(body) + "    return job\n", namespace)
    build: Callable[..., NewJob] = namespace["build"]
    return build


new_job = _new_job_builder()


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored. Timestamps are UTC datetimes."""

    id: int
    queue: str
    name: str
    payload: dict[str, Any]
    status: JobStatus
    priority: int
    attempt: int
    max_attempts: int
    backoff: Backoff
    timeout: float | None
    run_at: datetime
    expires_at: datetime | None
    parent_id: int | None
    batch_id: str | None
    tags: tuple[str, ...]
    context: dict[str, Any] | None
    result: JSON
    error: str | None
    progress: float | None
    progress_message: str | None
    worker_id: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    on_dependency_failure: str = "fail"
    on_child_failure: str = "continue"
    kind: str = "job"
    unique_key: str | None = None
    concurrency_key: str | None = None
    depends_on: tuple[int, ...] = field(default=())

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON-ready keys (datetimes as ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Backoff):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


def _job_builder() -> Callable[[Sequence[Any]], Job]:
    """Job from all its field values in declaration order, set slot by slot: what the
    frozen __init__ does, without a keyword call and an object.__setattr__ per field (a
    claim builds a hundred jobs at a time; this takes a third of the time)."""
    names = [f.name for f in fields(Job)]
    namespace: dict[str, Any] = {"new": object.__new__, "Job": Job}
    namespace.update({f"set_{name}": getattr(Job, name).__set__ for name in names})
    body = "".join(f"    set_{name}(job, values[{i}])\n" for i, name in enumerate(names))
    exec(f"def build(values):\n    job = new(Job)\n{body}    return job\n", namespace)
    build: Callable[[Sequence[Any]], Job] = namespace["build"]
    return build


build_job = _job_builder()


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a job's history: a status change, a recovery, a log line, progress.
    `id` numbers the lines of one job's history from 1, oldest first."""

    id: int
    job_id: int
    at: datetime
    kind: str
    status: JobStatus | None
    attempt: int | None
    worker_id: str | None
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "status": self.status,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What `list` selects. Empty fields select everything."""

    queue: str | None = None
    statuses: tuple[JobStatus, ...] = ()
    name: str | None = None
    tags: tuple[str, ...] = ()
    created_after: float | None = None
    created_before: float | None = None
    parent_id: int | None = None
    batch_id: str | None = None
    kind: str | None = None  # 'job' or 'distributed'
    sort: str = "created_at"
    order: Literal["asc", "desc"] = "desc"
    limit: int = 50
    offset: int = 0
    # Keyset paging: the (sort value, id) of the job the list starts after (wizd.paging).
    after: tuple[Any, int] | None = None

    SORTS = ("id", "created_at", "updated_at", "priority", "run_at", "status", "name", "queue")

    def __post_init__(self) -> None:
        if not isinstance(self.sort, str) or self.sort not in self.SORTS:
            raise InvalidJob(
                "sort", f"unknown sort {shorten(self.sort)}; known: {', '.join(self.SORTS)}"
            )
        if not isinstance(self.order, str) or self.order not in ("asc", "desc"):
            raise InvalidJob("order", f"must be asc or desc, got {shorten(self.order)}")
        checks.check_int("limit", self.limit, low=1, high=10_000)
        checks.check_int("offset", self.offset, low=0)
        if self.after is not None and self.offset:
            raise InvalidJob("after", "give a page cursor or an offset, not both")


MAX_DEPTH = 32
MAX_CHILDREN = 10_000
