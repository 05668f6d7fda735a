"""The public client API that programs call: enqueue, read, and change jobs and queues.

Everything is validated here before the store sees it, so bad input raises a wizd error
naming the field and the limit and writes nothing.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime, timedelta
from typing import Any, Literal

from anyio.from_thread import BlockingPortal, start_blocking_portal

from wizd.errors import InvalidJob
from wizd.model import (
    FINAL,
    Backoff,
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    QueueStats,
    WorkerInfo,
    as_tags,
    check_attempts,
    check_identifier,
    check_non_negative,
    check_positive,
    encode_json,
    encode_payload,
    parse_priority,
    parse_status,
    zero_counts,
)
from wizd.store import Store, open_store

DEFAULT_QUEUE = "default"
DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
DEPENDENCY_POLICIES = ("fail", "cancel", "ignore")
CHILD_POLICIES = ("continue", "fail", "cancel")

# The keys an item of enqueue_many may carry: enqueue's parameters.
ENQUEUE_KEYS = (
    "name",
    "payload",
    "queue",
    "priority",
    "delay",
    "run_at",
    "attempts",
    "backoff",
    "timeout",
    "ttl",
    "tags",
    "context",
    "depends_on",
    "parent",
    "on_dependency_failure",
    "on_child_failure",
)

Seconds = float | int | timedelta
Jobs = list[Job]
Ids = list[int]


def seconds(field: str, value: Seconds | None) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return check_non_negative(field, value)


def epoch(field: str, value: datetime | float | int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidJob(field, f"needs a timezone (UTC), got naive {value.isoformat()}")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(field, f"must be a datetime or epoch seconds, got {value!r}")
    return float(value)


def job_id(value: object) -> int:
    if isinstance(value, Job):
        return value.id
    if isinstance(value, bool):
        raise InvalidJob("id", f"must be a job id, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise InvalidJob("id", f"must be a positive integer, got {value}")
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return job_id(int(value.strip()))
    raise InvalidJob("id", f"must be a job id (a positive integer), got {value!r}")


class Queue:
    """A connection to a wizd store. Use as `async with wizd.connect(url) as q:`."""

    def __init__(
        self,
        store: Store,
        *,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.payload_limit = payload_limit
        self.clock = clock

    async def __aenter__(self) -> Queue:
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    # -- enqueue ---------------------------------------------------------------------------
    def build(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int | str | None = None,
        delay: Seconds | None = None,
        run_at: datetime | float | None = None,
        attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout: Seconds | None = None,
        ttl: Seconds | None = None,
        tags: Sequence[str] | None = None,
        context: Mapping[str, Any] | None = None,
        depends_on: Iterable[int | Job] | None = None,
        parent: int | Job | None = None,
        on_dependency_failure: str = "fail",
        on_child_failure: str = "continue",
        depends_on_index: Sequence[int] = (),
        batch_id: str | None = None,
        start_waiting_children: bool = False,
    ) -> NewJob:
        """Validate one job's arguments into a NewJob. Raises InvalidJob; writes nothing."""
        if delay is not None and run_at is not None:
            raise InvalidJob("delay", "give delay or run_at, not both")
        if isinstance(backoff, Mapping):
            backoff = Backoff.from_dict(backoff)
        elif backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidJob("backoff", f"must be a wizd.Backoff, got {backoff!r}")
        if on_dependency_failure not in DEPENDENCY_POLICIES:
            raise InvalidJob(
                "on_dependency_failure",
                f"must be one of {', '.join(DEPENDENCY_POLICIES)}, got {on_dependency_failure!r}",
            )
        if on_child_failure not in CHILD_POLICIES:
            raise InvalidJob(
                "on_child_failure",
                f"must be one of {', '.join(CHILD_POLICIES)}, got {on_child_failure!r}",
            )
        timeout_s = seconds("timeout", timeout)
        ttl_s = seconds("ttl", ttl)
        return NewJob(
            queue=check_identifier("queue", queue),
            name=check_identifier("name", name),
            payload=encode_payload({} if payload is None else payload, self.payload_limit),
            priority=None if priority is None else parse_priority(priority),
            max_attempts=None if attempts is None else check_attempts(attempts),
            backoff=backoff,
            timeout=check_positive("timeout", timeout_s),
            run_at=epoch("run_at", run_at),
            delay=seconds("delay", delay) or 0.0,
            ttl=check_positive("ttl", ttl_s),
            tags=as_tags(tags),
            context=None if context is None else encode_json(dict(context), "context"),
            parent_id=None if parent is None else job_id(parent),
            depends_on=tuple(dict.fromkeys(job_id(d) for d in (depends_on or ()))),
            depends_on_index=tuple(depends_on_index),
            batch_id=batch_id,
            on_dependency_failure=on_dependency_failure,
            on_child_failure=on_child_failure,
            start_waiting_children=start_waiting_children,
        )

    async def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int | str | None = None,
        delay: Seconds | None = None,
        run_at: datetime | float | None = None,
        attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout: Seconds | None = None,
        ttl: Seconds | None = None,
        tags: Sequence[str] | None = None,
        context: Mapping[str, Any] | None = None,
        depends_on: Iterable[int | Job] | None = None,
        parent: int | Job | None = None,
        on_dependency_failure: str = "fail",
        on_child_failure: str = "continue",
    ) -> Job:
        """Add one job. Options left out take the queue's defaults (see set_defaults)."""
        new = self.build(
            name,
            payload,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            attempts=attempts,
            backoff=backoff,
            timeout=timeout,
            ttl=ttl,
            tags=tags,
            context=context,
            depends_on=depends_on,
            parent=parent,
            on_dependency_failure=on_dependency_failure,
            on_child_failure=on_child_failure,
        )
        return (await self.store.enqueue([new]))[0]

    async def enqueue_many(self, items: Sequence[Mapping[str, Any]]) -> Jobs:
        """Add every item (each a dict of enqueue's arguments) in one transaction, or none."""
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidJob("items", "must be a list of job dicts")
        built = [self._build_item(i, item) for i, item in enumerate(items)]
        if not built:
            return []
        return await self.store.enqueue(built)

    def _build_item(self, index: int, item: Mapping[str, Any], **extra: Any) -> NewJob:
        if not isinstance(item, Mapping):
            raise InvalidJob(f"items[{index}]", f"must be a dict, got {type(item).__name__}")
        unknown = set(item) - set(ENQUEUE_KEYS)
        if unknown:
            raise InvalidJob(
                f"items[{index}]",
                f"unknown keys {sorted(unknown)}; known: {', '.join(ENQUEUE_KEYS)}",
            )
        if "name" not in item:
            raise InvalidJob(f"items[{index}].name", "is required")
        args = dict(item)
        try:
            return self.build(args.pop("name"), args.pop("payload", None), **args, **extra)
        except InvalidJob as exc:
            raise InvalidJob(f"items[{index}].{exc.field}", str(exc).split(": ", 1)[-1]) from None

    # -- reads -----------------------------------------------------------------------------
    async def get(self, id: int | str | Job) -> Job:
        return await self.store.get(job_id(id))

    async def list(
        self,
        *,
        queue: str | None = None,
        status: str | JobStatus | Sequence[str | JobStatus] | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | float | None = None,
        created_before: datetime | float | None = None,
        parent: int | None = None,
        batch_id: str | None = None,
        sort: str = "created_at",
        order: Literal["asc", "desc"] = "desc",
        limit: int = 50,
        offset: int = 0,
    ) -> Jobs:
        if status is None:
            statuses: tuple[JobStatus, ...] = ()
        elif isinstance(status, str):
            statuses = (parse_status(status),)
        else:
            statuses = tuple(parse_status(s) for s in status)
        return await self.store.list_jobs(
            JobFilter(
                queue=queue,
                statuses=statuses,
                name=name,
                tags=as_tags(tags),
                created_after=epoch("created_after", created_after),
                created_before=epoch("created_before", created_before),
                parent_id=None if parent is None else job_id(parent),
                batch_id=batch_id,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            )
        )

    async def peek(self, queue: str, n: int = 10) -> Jobs:
        """The next n jobs the queue would hand out, in claim order. Changes nothing."""
        if n < 1 or n > 10_000:
            raise InvalidJob("n", f"must be between 1 and 10000, got {n}")
        return await self.store.peek(check_identifier("queue", queue), n)

    async def counts(self, queue: str | None = None) -> dict[str, int]:
        """{status: n} for every status (zeros included), of one queue or of all."""
        per_queue = await self.store.counts(queue)
        total = zero_counts()
        for counts in per_queue.values():
            for status, n in counts.items():
                total[status] += n
        return total

    async def counts_by_queue(self) -> dict[str, dict[str, int]]:
        return await self.store.counts(None)

    async def stats(self, queue: str, window: Seconds = 3600.0) -> QueueStats:
        """Counts plus average wait and run time and throughput over the last `window`."""
        w = check_positive("window", seconds("window", window))
        assert w is not None
        return await self.store.stats(check_identifier("queue", queue), w)

    async def events(self, id: int | str | Job, after: int = 0) -> builtins.list[Event]:
        """The job's history and log lines, oldest first."""
        return await self.store.events(job_id(id), after)

    async def queues(self) -> builtins.list[tuple[str, bool, JobOptions]]:
        return await self.store.queues()

    async def workers(self) -> builtins.list[WorkerInfo]:
        return await self.store.workers()

    # -- changes ---------------------------------------------------------------------------
    async def cancel(self, *ids: int | str | Job) -> Jobs:
        """Cancel every job given (and their unfinished children), or none of them."""
        return await self.store.cancel(self._ids(ids))

    async def retry(self, *ids: int | str | Job) -> Jobs:
        """Requeue failed or cancelled jobs with a fresh attempt count; all or none."""
        return await self.store.retry(self._ids(ids))

    async def pause(self, queue: str) -> None:
        """Stop handing out the queue's jobs (running ones finish). Jobs keep their status."""
        await self.store.set_queue_paused(check_identifier("queue", queue), True)

    async def resume(self, queue: str) -> None:
        await self.store.set_queue_paused(check_identifier("queue", queue), False)

    async def pause_job(self, id: int | str | Job) -> Job:
        return await self.store.pause_job(job_id(id))

    async def resume_job(self, id: int | str | Job) -> Job:
        return await self.store.resume_job(job_id(id))

    async def delete(self, *ids: int | str | Job) -> Ids:
        return await self.store.delete(self._ids(ids))

    async def set_defaults(
        self,
        queue: str,
        *,
        priority: int | str | None = None,
        attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout: Seconds | None = None,
        ttl: Seconds | None = None,
    ) -> JobOptions:
        """Per-queue defaults for jobs that do not set these options themselves."""
        given = {
            k: v
            for k, v in {
                "priority": priority,
                "attempts": attempts,
                "backoff": backoff,
                "timeout": seconds("timeout", timeout),
                "ttl": seconds("ttl", ttl),
            }.items()
            if v is not None
        }
        if not given:
            raise InvalidJob("defaults", f"give at least one of {', '.join(JobOptions.FIELDS)}")
        validated = JobOptions().merged(**given).to_dict()
        given = {k: validated[k] for k in given}
        return await self.store.set_queue_defaults(check_identifier("queue", queue), given)

    async def defaults(self, queue: str) -> JobOptions:
        return (await self.store.queue_options(check_identifier("queue", queue)))[1]

    async def log(self, id: int | str | Job, message: str) -> None:
        await self.store.log(job_id(id), message)

    async def cleanup(
        self,
        older_than: Seconds = timedelta(days=30),
        statuses: Sequence[str | JobStatus] = ("completed",),
        dry_run: bool = False,
    ) -> Ids:
        """Ids of final jobs finished before `older_than` ago; deleted unless dry_run."""
        age = seconds("older_than", older_than)
        assert age is not None
        chosen = [parse_status(s) for s in statuses]
        for s in chosen:
            if s not in FINAL:
                raise InvalidJob("statuses", f"cleanup removes final jobs only; {s} is not final")
        return await self.store.cleanup(age, chosen, dry_run)

    @staticmethod
    def _ids(ids: Sequence[int | str | Job]) -> Ids:
        if not ids:
            raise InvalidJob("id", "give at least one job id")
        return builtins.list(dict.fromkeys(job_id(i) for i in ids))


def connect(
    url: str = "wizd.db",
    *,
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    clock: Callable[[], float] = time.time,
    **store_options: Any,
) -> Queue:
    """A client for the store at `url` (a path, sqlite:///path, :memory:, postgresql://…).

    Use as `async with wizd.connect(url) as q:`; the store is opened (and migrated) on entry.
    """
    return Queue(
        open_store(url, clock=clock, **store_options), payload_limit=payload_limit, clock=clock
    )


class SyncQueue:
    """The same methods as Queue, blocking: each call runs the async client in a portal."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> SyncQueue:
        self._portal = self._stack.enter_context(start_blocking_portal())
        try:
            self._stack.enter_context(self._portal.wrap_async_context_manager(self._queue))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._portal = None

    def close(self) -> None:
        self.__exit__(None, None, None)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._queue, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        portal = self._portal
        if portal is None:
            raise RuntimeError("use `with wizd.connect_sync(url) as q:`")

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return portal.call(functools.partial(attr, *args, **kwargs))

        return call


def connect_sync(url: str = "wizd.db", **options: Any) -> AbstractContextManager[SyncQueue]:
    """A blocking client: `with wizd.connect_sync(url) as q: q.enqueue(...)`."""
    return SyncQueue(connect(url, **options))
