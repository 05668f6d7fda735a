"""Pure data: job states and the one transition table, options, backoff, jobs and events.

Nothing here touches a database or the event loop; every other layer builds on it.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from wizd import checks
from wizd.checks import shorten
from wizd.errors import InvalidJob

JSON = Any
"""A JSON-serialisable value."""


class JobStatus(StrEnum):
    WAITING = "waiting"  # dependencies not yet completed
    PENDING = "pending"  # claimable now
    DELAYED = "delayed"  # claimable from run_at
    RUNNING = "running"
    WAITING_CHILDREN = "waiting_children"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


S = JobStatus
FINAL: frozenset[JobStatus] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
ALL_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)

# The one transition table. The store refuses every change that is not listed here.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.WAITING: frozenset({S.PENDING, S.DELAYED, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.PENDING: frozenset({S.RUNNING, S.WAITING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.DELAYED: frozenset({S.PENDING, S.WAITING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.FAILED, S.DELAYED, S.PENDING, S.WAITING_CHILDREN, S.CANCELLED}
    ),
    # completed: a distributed parent is consolidated when its sub-tasks are all final.
    # waiting: its children are done but a dependency of its own is not.
    S.WAITING_CHILDREN: frozenset({S.PENDING, S.WAITING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.PENDING, S.DELAYED, S.WAITING, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    # Only an explicit retry (requeue) leaves failed or cancelled; a distributed job's
    # retry waits for its sub-tasks again.
    S.FAILED: frozenset({S.PENDING, S.WAITING, S.WAITING_CHILDREN}),
    S.CANCELLED: frozenset({S.PENDING, S.WAITING, S.WAITING_CHILDREN}),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: JobStatus) -> tuple[JobStatus, ...]:
    """Every status from which `target` may be reached, in table order."""
    return tuple(s for s in ALL_STATUSES if target in TRANSITIONS[s])


NOT_FINAL: tuple[JobStatus, ...] = tuple(s for s in ALL_STATUSES if s not in FINAL)
PAUSABLE: tuple[JobStatus, ...] = sources_of(S.PAUSED)
CANCELLABLE: tuple[JobStatus, ...] = sources_of(S.CANCELLED)
RETRYABLE: tuple[JobStatus, ...] = (S.FAILED, S.CANCELLED)

# Words the seeds use for our statuses; `hung` is handled by callers (running + stale heartbeat).
STATUS_ALIASES: Mapping[str, JobStatus] = {
    "active": S.RUNNING,
    "processing": S.RUNNING,
    "queued": S.PENDING,
    "scheduled": S.DELAYED,
    "done": S.COMPLETED,
    "canceled": S.CANCELLED,
}


def parse_status(value: str | JobStatus) -> JobStatus:
    if isinstance(value, JobStatus):
        return value
    if not isinstance(value, str):
        raise InvalidJob("status", f"must be a status name, got {shorten(value)}")
    word = value.strip().lower()
    if word in STATUS_ALIASES:
        return STATUS_ALIASES[word]
    try:
        return JobStatus(word)
    except ValueError:
        known = ", ".join([*ALL_STATUSES, *STATUS_ALIASES])
        raise InvalidJob("status", f"unknown status {shorten(value)}; known: {known}") from None


PRIORITY_NAMES: Mapping[str, int] = {"low": 1, "normal": 3, "high": 4, "critical": 5}
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 1, 5, 3


def parse_priority(value: int | str) -> int:
    """1..5 (5 = highest); the names low/normal/high/critical are accepted."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in PRIORITY_NAMES:
            return PRIORITY_NAMES[word]
        try:
            value = int(word)
        except ValueError:
            raise InvalidJob(
                "priority", f"{shorten(value)} is not 1-5 or one of {', '.join(PRIORITY_NAMES)}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob("priority", f"must be an integer 1-5, got {shorten(value)}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidJob("priority", f"must be between 1 and 5, got {shorten(value)}")
    return value


NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")  # use fullmatch: `$` would allow a "\n"
MAX_NAME_LENGTH = 200


_VALID_NAMES: set[str] = set()  # names that passed check_identifier (a few, used again and again)


def check_identifier(field_name: str, value: object) -> str:
    """Queue and job names: 1-200 characters of [A-Za-z0-9_.:-]."""
    if isinstance(value, str) and value in _VALID_NAMES:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidJob(field_name, f"must be a non-empty string, got {shorten(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJob(
            field_name, f"is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not NAME_RE.fullmatch(value):
        raise InvalidJob(
            field_name, f"{shorten(value)} may only contain letters, digits and _ . : -"
        )
    if len(_VALID_NAMES) >= 4096:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(value)
    return value


def check_non_negative(field_name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(field_name, f"must be a number of seconds, got {shorten(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidJob(field_name, f"must be a finite number of seconds, got {value}")
    if value < 0:
        raise InvalidJob(field_name, f"must be >= 0 seconds, got {shorten(value)}")
    if value > MAX_SECONDS:
        shown = f"{value:g}" if isinstance(value, float) else shorten(value)
        raise InvalidJob(
            field_name, f"is {shown} seconds; the limit is {MAX_SECONDS:g} (100 years)"
        )
    return float(value)


MAX_SECONDS = 100 * 365.25 * 86400
MAX_EPOCH = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds


def check_epoch(field_name: str, value: float) -> float:
    if not 0 <= value <= MAX_EPOCH:  # NaN fails the comparison too
        raise InvalidJob(field_name, f"must be a time between 1970 and 9999, got {value}")
    return value


def check_positive(field_name: str, value: float | None) -> float | None:
    if value is None:
        return None
    checked = check_non_negative(field_name, value)
    if checked == 0:
        raise InvalidJob(field_name, "must be > 0 seconds, got 0")
    return checked


MAX_ATTEMPTS = 1_000_000


def check_attempts(value: object) -> int:
    return checks.check_int("attempts", value, low=1, high=MAX_ATTEMPTS)


# Compact JSON for what wizd stores; one encoder made once (json.dumps with options builds
# a new JSONEncoder on every call).
compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_payload(payload: object, limit: int, field_name: str = "payload") -> str:
    """The payload as compact JSON text; it must be a JSON object within `limit` bytes."""
    if type(payload) is not dict:
        payload = as_object(field_name, payload)
    return checks.encode_json(field_name, payload, limit)


def encode_json(value: object, field_name: str, limit: int | None = None) -> str:
    return checks.encode_json(field_name, value, limit)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a retry: fixed, or exponential (delay * 2**(attempt-1)), capped, jittered."""

    kind: Literal["fixed", "exponential"] = "exponential"
    delay: float = 1.0
    cap: float | None = 300.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential"):
            raise InvalidJob(
                "backoff.kind", f"must be fixed or exponential, got {shorten(self.kind)}"
            )
        check_non_negative("backoff.delay", self.delay)
        check_non_negative("backoff.cap", self.cap)
        if not 0.0 <= checks.check_number("backoff.jitter", self.jitter) <= 1.0:
            raise InvalidJob("backoff.jitter", f"must be between 0 and 1, got {self.jitter}")

    @classmethod
    def fixed(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        return cls("fixed", delay, None, jitter)

    @classmethod
    def exponential(
        cls, delay: float, *, cap: float | None = 300.0, jitter: float = 0.0
    ) -> Backoff:
        return cls("exponential", delay, cap, jitter)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), at most 100
        years (2**1024 would not even be a float: attempts may number a million)."""
        doubling = min(max(attempt - 1, 0), 64)
        base = self.delay if self.kind == "fixed" else self.delay * 2.0**doubling
        if self.cap is not None:
            base = min(base, self.cap)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(max(base, 0.0), MAX_SECONDS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "delay": self.delay, "cap": self.cap, "jitter": self.jitter}

    def to_json(self) -> str:
        """Compact JSON, cached: every enqueue stores one."""
        return _backoff_json(self)

    @classmethod
    def from_json(cls, text: str) -> Backoff:
        """Parsed and validated once per distinct text (rows share a handful of them)."""
        return _backoff_from_json(text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Backoff:
        if not isinstance(data, Mapping):
            raise InvalidJob("backoff", f"must be a wizd.Backoff or a dict, got {shorten(data)}")
        unknown = set(data) - {"kind", "delay", "cap", "jitter"}
        if unknown:
            raise InvalidJob("backoff", f"unknown keys {sorted(unknown)}")
        return cls(**data)


@functools.lru_cache(maxsize=256)
def _backoff_json(backoff: Backoff) -> str:
    return json.dumps(backoff.to_dict(), separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _backoff_from_json(text: str) -> Backoff:
    return Backoff.from_dict(json.loads(text))


DEFAULT_BACKOFF = Backoff.exponential(1.0, cap=300.0)


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
class WorkerInfo:
    """A daemon in the registry."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    busy: int = 0
    metrics: str | None = None  # host:port of its metrics endpoint; None: metrics off

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "busy": self.busy,
            "metrics": self.metrics,
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
    sort: str = "created_at"
    order: Literal["asc", "desc"] = "desc"
    limit: int = 50
    offset: int = 0

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


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    counts: dict[str, int]
    paused: bool
    avg_wait_seconds: float | None
    avg_run_seconds: float | None
    throughput_per_minute: float
    window_seconds: float
    oldest_pending_age_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_DEPTH = 32
MAX_CHILDREN = 10_000
SUBTASK_QUERY_LIMIT = 500
SUBTASK_RESULT_SHOWN = 200
SUBTASK_ID_RE = re.compile(r"^sub_[1-9][0-9]{0,5}$")


def check_subtask_id(value: object) -> int:
    """`sub_<n>` (n >= 1) to its 1-based index."""
    if not isinstance(value, str) or not SUBTASK_ID_RE.match(value):
        raise InvalidJob("sub_task_id", f"must look like sub_1, sub_2, …; got {shorten(value)}")
    return int(value[4:])


def shown(result: JSON, limit: int = SUBTASK_RESULT_SHOWN) -> str | None:
    """A result as text of at most `limit` characters (the full result stays on the job)."""
    if result is None:
        return None
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def consolidation(parent: Job, children: Sequence[Job], at: datetime | None) -> dict[str, Any]:
    """The `brain job consolidate` document of a distributed job and its sub-tasks."""
    subtasks = sorted(children, key=lambda j: j.id)
    return {
        "job_id": parent.id,
        "prompt": parent.payload.get("prompt"),
        "total_tasks": len(subtasks),
        "completed": sum(1 for j in subtasks if j.status is S.COMPLETED),
        "failed": sum(1 for j in subtasks if j.status in (S.FAILED, S.CANCELLED)),
        "pending": sum(1 for j in subtasks if j.status not in FINAL),
        "results": [
            {
                "sub_task_id": j.payload.get("sub_task_id"),
                "query": j.payload.get("query"),
                "status": j.status.value,
                "result": shown(j.result),
                "error": j.error,
            }
            for j in subtasks
        ],
        "consolidated_at": at.isoformat() if at else None,
    }


def zero_counts() -> dict[str, int]:
    return {s.value: 0 for s in ALL_STATUSES}


def as_object(field_name: str, value: object) -> dict[str, Any]:
    """A mapping given where a JSON object is wanted, as a dict; anything else is refused."""
    if not isinstance(value, Mapping):
        raise InvalidJob(field_name, f"must be a JSON object, got {type(value).__name__}")
    return dict(value)


def as_tags(tags: object, limit: int = checks.DEFAULT_LIMITS.tags) -> tuple[str, ...]:
    """Tags as a tuple without repeats: at most `limit` of them, each 1-200 characters."""
    if tags is None:
        return ()
    if isinstance(tags, str | bytes | Mapping) or not isinstance(tags, Sequence | set | frozenset):
        raise InvalidJob("tags", f"must be a list of non-empty strings, got {shorten(tags)}")
    if len(tags) > limit:
        raise InvalidJob("tags", f"{len(tags)} tags; the limit is {limit}")
    for tag in tags:
        checks.check_text("tags", tag, limit=checks.MAX_TAG_LENGTH)
    return tuple(dict.fromkeys(tags))


# -- unique jobs ----------------------------------------------------------------------------
CONFLICT_POLICIES = ("return", "raise", "replace")
# What on_conflict="replace" may replace: a job that has not started.
REPLACEABLE: tuple[JobStatus, ...] = (S.WAITING, S.PENDING, S.DELAYED, S.PAUSED)
MAX_KEY_LENGTH = 500


def check_unique_key(value: object) -> str:
    """Any non-empty text of at most 500 characters (research:quantum, user/42/report)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidJob("unique_key", f"must be a non-empty string, got {shorten(value)}")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidJob(
            "unique_key", f"is {len(value)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    return checks.storable("unique_key", value)


def states_text(states: Sequence[JobStatus]) -> str:
    """The stored form of unique_states, matched with LIKE '%,' || status || ',%'."""
    return "," + ",".join(s.value for s in states) + ","


# -- limits ---------------------------------------------------------------------------------
RATE_UNITS: Mapping[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
RATE_NAMES: Mapping[float, str] = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
RATE_RE = re.compile(r"^\s*(\d{1,12})\s*/\s*(\d{1,12}(?:\.\d{1,12})?)?\s*([a-z]+)\s*$", re.ASCII)
RATE_HINT = "write it as 60/min, 10/s, 1000/h, 5000/d or 5/10s"
MAX_RATE_COUNT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` jobs per `period` seconds."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidJob(
                "rate", f"the count must be an integer >= 1, got {shorten(self.count)}"
            )
        if self.count > MAX_RATE_COUNT:
            raise InvalidJob("rate", f"the count is {self.count}; the limit is {MAX_RATE_COUNT}")
        if not 0 < self.period <= MAX_SECONDS:  # NaN fails the comparison too
            raise InvalidJob("rate", f"the period must be > 0 seconds, got {self.period}")

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        name = RATE_NAMES.get(self.period)
        return f"{self.count}/{name}" if name else f"{self.count}/{self.period:g}s"

    @classmethod
    def parse(cls, value: str | Rate) -> Rate:
        if isinstance(value, Rate):
            return value
        if not isinstance(value, str):
            raise InvalidJob("rate", f"must be text such as 60/min, got {shorten(value)}")
        match = RATE_RE.match(value.lower())
        if match is None or match.group(3) not in RATE_UNITS:
            raise InvalidJob("rate", f"{shorten(value)} is not a rate; {RATE_HINT}")
        count, number, unit = match.groups()
        return cls(int(count), float(number or 1) * RATE_UNITS[unit])


# The limits that can hold a queue's due jobs back (Claimed.throttled, the metric's label).
THROTTLE_LIMITS = ("max_running", "rate", "concurrency_key")


MAX_LIMIT = 1_000_000_000


def check_limit(field_name: str, value: object) -> int:
    return checks.check_int(field_name, value, low=1, high=MAX_LIMIT)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits across every daemon: running jobs at once, and a rate (a token
    bucket of `burst` jobs refilled at the rate). None: no such limit."""

    queue: str
    max_running: int | None = None
    rate: Rate | None = None
    burst: int | None = None

    @property
    def any(self) -> bool:
        return self.max_running is not None or self.rate is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "max_running": self.max_running,
            "rate": None if self.rate is None else str(self.rate),
            "rate_per_second": None if self.rate is None else self.rate.per_second,
            "burst": self.burst,
        }


# -- schedules ------------------------------------------------------------------------------
def job_template(new: NewJob) -> dict[str, Any]:
    """The options of a validated job as a schedule keeps them (JSON-ready, user's words);
    options left to the queue's defaults are left out."""
    out: dict[str, Any] = {}
    if new.priority is not None:
        out["priority"] = new.priority
    if new.max_attempts is not None:
        out["attempts"] = new.max_attempts
    if new.backoff is not None:
        out["backoff"] = new.backoff.to_dict()
    if new.timeout is not None:
        out["timeout"] = new.timeout
    if new.ttl is not None:
        out["ttl"] = new.ttl
    if new.tags:
        out["tags"] = list(new.tags)
    if new.context is not None:
        out["context"] = json.loads(new.context)
    if new.unique_key is not None:
        out["unique_key"] = new.unique_key
        out["unique_for"] = new.unique_for
        out["unique_states"] = [s.value for s in new.unique_states]
        out["on_conflict"] = new.on_conflict
    if new.concurrency_key is not None:
        out["concurrency_key"] = new.concurrency_key
    return out


def from_template(
    queue: str, name: str, payload: str, options: Mapping[str, Any], run_at: float
) -> NewJob:
    """The job of one occurrence of a schedule (its options were validated when it was made)."""
    backoff = options.get("backoff")
    context = options.get("context")
    states = options.get("unique_states")
    return NewJob(
        queue=queue,
        name=name,
        payload=payload,
        priority=options.get("priority"),
        max_attempts=options.get("attempts"),
        backoff=None if backoff is None else Backoff.from_dict(backoff),
        timeout=options.get("timeout"),
        run_at=run_at,
        delay=0.0,
        ttl=options.get("ttl"),
        tags=tuple(options.get("tags", ())),
        context=None if context is None else encode_json(context, "context"),
        unique_key=options.get("unique_key"),
        unique_for=options.get("unique_for"),
        unique_states=NOT_FINAL if states is None else tuple(S(x) for x in states),
        on_conflict=options.get("on_conflict", "return"),
        concurrency_key=options.get("concurrency_key"),
    )


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A validated schedule ready to be written (payload and options as JSON text)."""

    key: str | None
    queue: str
    name: str
    payload: str
    options: str
    cron: str | None
    every: float | None
    timezone: str
    catch_up: str
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring job as stored: when it fires (cron in a time zone, or every N seconds),
    the job it enqueues, and the next occurrence not yet enqueued."""

    id: int
    key: str | None
    queue: str
    name: str
    payload: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    every: float | None
    timezone: str
    catch_up: str
    paused: bool
    next_at: datetime
    last_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One occurrence of a schedule that was enqueued: its time, its job, when it was fired.
    job_id is None when the job's unique key was held by another job (nothing enqueued)."""

    schedule_id: int
    fire_at: datetime
    job_id: int | None
    fired_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id,
            "fire_at": self.fire_at.isoformat(),
            "job_id": self.job_id,
            "fired_at": self.fired_at.isoformat(),
        }
