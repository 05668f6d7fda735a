"""The public client API that programs call: enqueue, read, and change jobs and queues.

Everything is validated here before the store sees it, so bad input raises a wizd error
naming the field and the limit and writes nothing.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

from anyio.from_thread import BlockingPortal, start_blocking_portal
from typing_extensions import Unpack

from wizd import arguments as arg
from wizd.arguments import UNSET as UNSET  # the CLI's limits commands use them
from wizd.arguments import Seconds, epoch, job_id, schedule_ref, seconds
from wizd.arguments import Unset as Unset
from wizd.checks import DEFAULT_LIMITS, SizeLimits, shorten, storable
from wizd.errors import InvalidJob
from wizd.model import (
    CONFLICT_POLICIES,
    MAX_CHILDREN,
    NOT_FINAL,
    SUBTASK_QUERY_LIMIT,
    Backoff,
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    NewSchedule,
    QueueLimits,
    QueueStats,
    Rate,
    Schedule,
    ScheduleRun,
    WorkerInfo,
    as_object,
    as_tags,
    check_attempts,
    check_identifier,
    check_limit,
    check_positive,
    check_subtask_id,
    check_unique_key,
    consolidation,
    encode_json,
    encode_payload,
    job_template,
    new_job,
    parse_priority,
    zero_counts,
)
from wizd.recurrence import CATCH_UP, Timing
from wizd.store import Store, open_store
from wizd.store.base import Fired

DEFAULT_QUEUE = "default"
DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
DEFAULT_HUNG_TIMEOUT = 300.0
KILL_REASON = "killed by operator"
KILL_FORCE_REASON = "killed by operator (force: SIGKILL)"
DEPENDENCY_POLICIES = ("fail", "cancel", "ignore")
CHILD_POLICIES = ("continue", "fail", "cancel")


Jobs = list[Job]
Ids = list[int]


class EnqueueOptions(TypedDict, total=False):
    """The options of one job (Queue.enqueue's keyword arguments, an enqueue_many item)."""

    queue: str
    priority: int | str | None
    delay: Seconds | None
    run_at: datetime | float | None
    attempts: int | None
    backoff: Backoff | Mapping[str, Any] | None
    timeout: Seconds | None
    ttl: Seconds | None
    tags: Sequence[str] | None
    context: Mapping[str, Any] | None
    depends_on: Iterable[int | Job] | None
    parent: int | Job | None
    on_dependency_failure: str
    on_child_failure: str
    children: Sequence[Mapping[str, Any]] | None
    unique_key: str | None
    unique_for: Seconds | None
    unique_states: Iterable[str | JobStatus] | None
    on_conflict: str | None
    concurrency_key: str | None


# The keys an item of enqueue_many (or of children=) may carry: enqueue's arguments.
ENQUEUE_KEYS = ("name", "payload", *EnqueueOptions.__annotations__)
_ENQUEUE_KEY_SET = frozenset(ENQUEUE_KEYS)
_PLAIN_KEYS = frozenset({"queue"})  # options of a job that Queue._build_plain builds
_PUBLIC_OPTIONS = tuple(EnqueueOptions.__annotations__)
# build's keyword arguments: the public options and those set by enqueue_batch and friends.
_OPTION_KEYS = frozenset(_PUBLIC_OPTIONS) | {
    "depends_on_index",
    "batch_id",
    "kind",
    "start_waiting_children",
    "start_paused",
}
KINDS = ("job", "distributed")
MAX_BATCH_ID = 200


class ScheduleJobOptions(TypedDict, total=False):
    """The options of the job a schedule enqueues (Queue.schedule's keyword arguments)."""

    priority: int | str | None
    attempts: int | None
    backoff: Backoff | Mapping[str, Any] | None
    timeout: Seconds | None
    ttl: Seconds | None
    tags: Sequence[str] | None
    context: Mapping[str, Any] | None
    unique_key: str | None
    unique_for: Seconds | None
    unique_states: Iterable[str | JobStatus] | None
    on_conflict: str | None
    concurrency_key: str | None


SCHEDULE_JOB_KEYS = tuple(ScheduleJobOptions.__annotations__)


class Queue:
    """A connection to a wizd store. Use as `async with wizd.connect(url) as q:`."""

    def __init__(
        self,
        store: Store,
        *,
        payload_limit: int | None = None,
        limits: SizeLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = limits.replace(payload=payload_limit)
        self.payload_limit = self.limits.payload
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
        children: Sequence[Mapping[str, Any]] | None = None,
        start_paused: bool = False,
        kind: str = "job",
        unique_key: str | None = None,
        unique_for: Seconds | None = None,
        unique_states: Iterable[str | JobStatus] | None = None,
        on_conflict: str | None = None,
        concurrency_key: str | None = None,
    ) -> NewJob:
        """Validate one job's arguments into a NewJob. Raises InvalidJob; writes nothing."""
        if delay is not None and run_at is not None:
            raise InvalidJob("delay", "give delay or run_at, not both")
        unique = self._unique(unique_key, unique_for, unique_states, on_conflict)
        if isinstance(backoff, Mapping):
            backoff = Backoff.from_dict(backoff)
        elif backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidJob("backoff", f"must be a wizd.Backoff, got {shorten(backoff)}")
        arg.one_of("on_dependency_failure", on_dependency_failure, DEPENDENCY_POLICIES)
        arg.one_of("on_child_failure", on_child_failure, CHILD_POLICIES)
        arg.one_of("kind", kind, KINDS)
        timeout_s = seconds("timeout", timeout)
        ttl_s = seconds("ttl", ttl)
        built_children: tuple[NewJob, ...] = ()
        if children is not None:
            if isinstance(children, Mapping) or not isinstance(children, Sequence):
                raise InvalidJob("children", "must be a list of job dicts")
            if not children:
                raise InvalidJob("children", "give at least one child, or leave children out")
            if len(children) > MAX_CHILDREN:
                raise InvalidJob(
                    "children", f"{len(children)} children; the limit is {MAX_CHILDREN}"
                )
            built_children = tuple(
                self._build_item(i, {"queue": queue, **item}, field="children")
                for i, item in enumerate(children)
            )
        return new_job(
            queue=check_identifier("queue", queue),
            name=check_identifier("name", name),
            payload=encode_payload({} if payload is None else payload, self.limits.payload),
            priority=None if priority is None else parse_priority(priority),
            max_attempts=None if attempts is None else check_attempts(attempts),
            backoff=backoff,
            timeout=check_positive("timeout", timeout_s),
            run_at=epoch("run_at", run_at),
            delay=seconds("delay", delay) or 0.0,
            ttl=check_positive("ttl", ttl_s),
            tags=as_tags(tags, self.limits.tags),
            context=None
            if context is None
            else encode_json(as_object("context", context), "context", self.limits.context),
            parent_id=None if parent is None else job_id(parent, "parent"),
            depends_on=tuple(arg.job_ids(depends_on, "depends_on", empty=True)),
            depends_on_index=arg.indexes("depends_on_index", depends_on_index),
            batch_id=arg.text("batch_id", batch_id, MAX_BATCH_ID),
            on_dependency_failure=on_dependency_failure,
            on_child_failure=on_child_failure,
            start_waiting_children=arg.flag("start_waiting_children", start_waiting_children),
            start_paused=arg.flag("start_paused", start_paused),
            kind=kind,
            children=built_children,
            concurrency_key=(
                None
                if concurrency_key is None
                else check_identifier("concurrency_key", concurrency_key)
            ),
            **unique,
        )

    def _build_any(
        self, name: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> NewJob:
        """build(name, payload, **options), by _build_plain when only a queue is given."""
        if options.keys() <= _PLAIN_KEYS:
            return self._build_plain(name, payload, options.get("queue", DEFAULT_QUEUE))
        if not _OPTION_KEYS.issuperset(options):
            unknown = sorted(map(str, set(options) - _OPTION_KEYS))
            raise InvalidJob(unknown[0], f"unknown option; known: {', '.join(_PUBLIC_OPTIONS)}")
        return self.build(name, payload, **options)

    def _build_plain(self, name: str, payload: Mapping[str, Any] | None, queue: str) -> NewJob:
        """build(name, payload, queue=queue) with every other option left out, without
        looking at each of them (the usual item of a bulk enqueue)."""
        return new_job(
            queue=check_identifier("queue", queue),
            name=check_identifier("name", name),
            payload=encode_payload({} if payload is None else payload, self.limits.payload),
            priority=None,
            max_attempts=None,
            backoff=None,
            timeout=None,
            run_at=None,
            delay=0.0,
            ttl=None,
        )

    @staticmethod
    def _unique(
        key: str | None,
        period: Seconds | None,
        states: Iterable[str | JobStatus] | None,
        on_conflict: str | None,
    ) -> dict[str, Any]:
        """NewJob's unique_* fields, validated (none without a key)."""
        if key is None:
            for name, value in (
                ("unique_for", period),
                ("unique_states", states),
                ("on_conflict", on_conflict),
            ):
                if value is not None:
                    raise InvalidJob(name, "applies to a job with a unique_key: give one")
            return {}
        held_for = check_positive("unique_for", seconds("unique_for", period))
        chosen = NOT_FINAL if states is None else arg.unique_states_of(states)
        if not chosen and held_for is None:
            raise InvalidJob(
                "unique_states", "is empty and no unique_for is given: the key would never hold"
            )
        policy = "return" if on_conflict is None else on_conflict
        if policy not in CONFLICT_POLICIES:
            raise InvalidJob(
                "on_conflict",
                f"must be one of {', '.join(CONFLICT_POLICIES)}, got {shorten(on_conflict)}",
            )
        return {
            "unique_key": check_unique_key(key),
            "unique_for": held_for,
            "unique_states": chosen,
            "on_conflict": policy,
        }

    async def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """Add one job. Options left out take the queue's defaults (see set_defaults).

        queue, priority (1-5 or low/normal/high/critical), delay or run_at, attempts,
        backoff, timeout, ttl, tags, context; depends_on: the job waits until these jobs
        complete; parent: the job is a child of that job; children: job dicts created with
        this one in one transaction (the job starts waiting_children and runs when they
        are all final); on_dependency_failure (fail, cancel, ignore) and on_child_failure
        (continue, fail, cancel).

        unique_key: while a job with this key is in one of unique_states (default: not
        final) or younger than unique_for, another enqueue of the key returns that job
        (on_conflict="return", the default), raises DuplicateJob ("raise"), or cancels it
        and takes its place if it has not started ("replace"). concurrency_key: jobs
        sharing it share its limit (set_concurrency_limit), whatever their queue."""
        return (await self.store.enqueue([self._build_any(name, payload, options)]))[0]

    async def enqueue_many(self, items: Sequence[Mapping[str, Any]]) -> Jobs:
        """Add every item (each a dict of enqueue's arguments) in one transaction, or none."""
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidJob("items", "must be a list of job dicts")
        built = [self._build_item(i, item) for i, item in enumerate(items)]
        if not built:
            return []
        return await self.store.enqueue(built)

    def _build_item(
        self, index: int, item: Mapping[str, Any], field: str = "items", **extra: Any
    ) -> NewJob:
        if not isinstance(item, Mapping):
            raise InvalidJob(f"{field}[{index}]", f"must be a dict, got {type(item).__name__}")
        if not _ENQUEUE_KEY_SET.issuperset(item):
            unknown = sorted(set(item) - _ENQUEUE_KEY_SET)
            known = ", ".join(ENQUEUE_KEYS)
            raise InvalidJob(f"{field}[{index}]", f"unknown keys {unknown}; known: {known}")
        if "name" not in item:
            raise InvalidJob(f"{field}[{index}].name", "is required")
        args = dict(item)
        if extra:
            args.update(extra)
        name, payload = args.pop("name"), args.pop("payload", None)
        try:
            return self._build_any(name, payload, args)
        except InvalidJob as exc:
            message = str(exc).split(": ", 1)[-1]
            raise InvalidJob(f"{field}[{index}].{exc.field}", message) from None

    async def enqueue_batch(self, items: Sequence[Mapping[str, Any]]) -> Jobs:
        """Add a linked batch in one transaction with one batch_id. An item's `depends_on`
        lists indexes of earlier items (`[0, 1]`); a bad or forward index refuses the batch."""
        if isinstance(items, Mapping) or not isinstance(items, Sequence) or not items:
            raise InvalidJob("items", "must be a non-empty list of job dicts")
        batch_id = uuid.uuid4().hex
        built = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidJob(f"items[{i}]", f"must be a dict, got {type(item).__name__}")
            refs = item.get("depends_on", [])
            refs = [] if refs is None else refs
            if not isinstance(refs, builtins.list | tuple) or not all(
                isinstance(r, int) and not isinstance(r, bool) for r in refs
            ):
                raise InvalidJob(
                    f"items[{i}].depends_on", f"must be a list of item indexes, got {shorten(refs)}"
                )
            for ref in refs:
                if not 0 <= ref < i:
                    raise InvalidJob(
                        f"items[{i}].depends_on",
                        f"index {ref} is not an earlier item (0..{i - 1})"
                        if i
                        else f"index {ref}: the first item can depend on no item",
                    )
            rest = {k: v for k, v in item.items() if k != "depends_on"}
            built.append(self._build_item(i, rest, depends_on_index=tuple(refs), batch_id=batch_id))
        return await self.store.enqueue(built)

    async def batch(self, batch_id: str) -> Jobs:
        """Every job of a linked batch, in enqueue order."""
        arg.check_text("batch_id", batch_id, limit=MAX_BATCH_ID)
        return await self.list(batch_id=batch_id, sort="id", order="asc", limit=10_000)

    async def add_dependency(
        self, id: int | str | Job, depends_on: int | str | Job | Iterable[int | str | Job]
    ) -> Job:
        """Make a job that has not started wait for more jobs (refused if it would close a
        cycle: the error names the jobs on it)."""
        return await self.store.add_dependencies(job_id(id), self._many(depends_on))

    async def remove_dependency(
        self, id: int | str | Job, depends_on: int | str | Job | Iterable[int | str | Job]
    ) -> Job:
        return await self.store.remove_dependencies(job_id(id), self._many(depends_on))

    async def dependencies(self, id: int | str | Job) -> Jobs:
        return await self.store.dependencies(job_id(id))

    async def dependents(self, id: int | str | Job) -> Jobs:
        return await self.store.dependents(job_id(id))

    async def children(self, id: int | str | Job) -> Jobs:
        return await self.store.children(job_id(id))

    async def tree(self, id: int | str | Job) -> dict[str, Any]:
        """The delegation tree under a job: each node has id, name, queue, status, attempt,
        age_seconds, depends_on and children."""
        jobs = await self.store.subtree(job_id(id))
        now = self.clock()
        nodes: dict[int, dict[str, Any]] = {
            j.id: {
                "id": j.id,
                "name": j.name,
                "queue": j.queue,
                "status": j.status.value,
                "attempt": j.attempt,
                "max_attempts": j.max_attempts,
                "age_seconds": round(max(now - j.created_at.timestamp(), 0.0), 3),
                "depends_on": list(j.depends_on),
                "error": j.error,
                "children": [],
            }
            for j in jobs
        }
        root = job_id(id)
        for j in jobs:
            if j.id != root and j.parent_id in nodes:
                nodes[j.parent_id]["children"].append(nodes[j.id])
        return nodes[root]

    # -- distributed sub-tasks -------------------------------------------------------------
    async def create_distributed(
        self,
        prompt: str,
        subtasks: Sequence[str],
        *,
        queue: str = DEFAULT_QUEUE,
        ttl: Seconds | None = 60,
        name: str = "distributed",
        subtask_name: str = "subtask",
        dispatch: bool = False,
        priority: int | str | None = None,
        attempts: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> Job:
        """A parent and its sub-tasks sub_1 … sub_N, one query each, in one transaction.

        The sub-tasks are held until dispatch() (or dispatch=True); any worker of the queue
        with a `subtask_name` processor runs them. When every sub-task is final, the parent
        completes with the consolidation as its result. At the ttl, unfinished sub-tasks
        fail as expired and the consolidation reports them."""
        arg.check_text("prompt", prompt, limit=self.limits.payload)
        arg.flag("dispatch", dispatch)
        if isinstance(subtasks, str) or not isinstance(subtasks, Sequence) or not subtasks:
            raise InvalidJob("subtasks", "must be a non-empty list of query strings")
        for i, query in enumerate(subtasks, start=1):
            if not isinstance(query, str) or not query.strip():
                raise InvalidJob(f"subtasks[sub_{i}]", "must be a non-empty string")
            if len(query) > SUBTASK_QUERY_LIMIT:
                raise InvalidJob(
                    f"subtasks[sub_{i}]",
                    f"is {len(query)} characters; the limit is {SUBTASK_QUERY_LIMIT}",
                )
            storable(f"subtasks[sub_{i}]", query)
        children = [
            {
                "name": subtask_name,
                "payload": {"sub_task_id": f"sub_{i}", "query": query, "prompt": prompt},
                "priority": priority,
                "attempts": attempts,
                "tags": tags,
            }
            for i, query in enumerate(subtasks, start=1)
        ]
        parent = self.build(
            name,
            {"prompt": prompt, "subtasks": list(subtasks)},
            queue=queue,
            ttl=ttl,
            priority=priority,
            tags=tags,
            kind="distributed",
            children=[{k: v for k, v in c.items() if v is not None} for c in children],
        )
        held = tuple(replace(child, start_paused=not dispatch) for child in parent.children)
        return (await self.store.enqueue([replace(parent, children=held)]))[0]

    async def dispatch(self, id: int | str | Job) -> int:
        """Make a distributed job's sub-tasks claimable now; returns how many were released."""
        return await self.store.dispatch(job_id(id))

    async def subtasks(self, id: int | str | Job) -> builtins.list[dict[str, Any]]:
        """Each sub-task: sub_task_id, job_id, query, status, worker_id, result, error."""
        parent = await self._distributed(id)
        return [
            {
                "sub_task_id": child.payload.get("sub_task_id"),
                "job_id": child.id,
                "query": child.payload.get("query"),
                "status": child.status.value,
                "worker_id": child.worker_id,
                "attempt": child.attempt,
                "result": child.result,
                "error": child.error,
            }
            for child in await self.store.children(parent.id)
        ]

    async def subtask(self, id: int | str | Job, sub_task_id: str) -> Job:
        """One sub-task's job by its id (`sub_3`)."""
        number = check_subtask_id(sub_task_id)
        parent = await self._distributed(id)
        for child in await self.store.children(parent.id):
            if child.payload.get("sub_task_id") == f"sub_{number}":
                return child
        raise InvalidJob("sub_task_id", f"job {parent.id} has no sub-task {sub_task_id}")

    async def consolidate(self, id: int | str | Job) -> dict[str, Any]:
        """The consolidation: job_id, total_tasks, completed, failed, pending, results
        (each result shown in at most 200 characters), consolidated_at (None until every
        sub-task is final, when it is stored as the parent's result)."""
        parent = await self._distributed(id)
        if parent.status is JobStatus.COMPLETED and isinstance(parent.result, dict):
            return parent.result
        return consolidation(parent, await self.store.children(parent.id), None)

    async def _distributed(self, id: int | str | Job) -> Job:
        parent = await self.store.get(job_id(id))
        if parent.kind != "distributed":
            raise InvalidJob("id", f"job {parent.id} is not a distributed job")
        return parent

    @staticmethod
    def _many(value: int | str | Job | Iterable[int | str | Job]) -> builtins.list[int]:
        return arg.job_ids(value, "depends_on")

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
        return await self.store.list_jobs(
            JobFilter(
                queue=arg.name("queue", queue),
                statuses=() if status is None else arg.statuses(status),
                name=arg.name("name", name),
                tags=as_tags(tags, arg.MAX_PAGE),
                created_after=epoch("created_after", created_after),
                created_before=epoch("created_before", created_before),
                parent_id=None if parent is None else job_id(parent, "parent"),
                batch_id=arg.text("batch_id", batch_id, MAX_BATCH_ID),
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            )
        )

    async def peek(self, queue: str, n: int = 10) -> Jobs:
        """The next n jobs the queue would hand out, in claim order. Changes nothing."""
        arg.page("n", n)
        return await self.store.peek(check_identifier("queue", queue), n)

    async def counts(self, queue: str | None = None) -> dict[str, int]:
        """{status: n} for every status (zeros included), of one queue or of all."""
        per_queue = await self.store.counts(arg.name("queue", queue))
        total = zero_counts()
        for counts in per_queue.values():
            for status, n in counts.items():
                total[status] += n
        return total

    async def counts_by_queue(self) -> dict[str, dict[str, int]]:
        return await self.store.counts(None)

    async def stats(self, queue: str, window: Seconds = 3600.0) -> QueueStats:
        """Counts plus average wait and run time and throughput over the last `window`."""
        w = arg.required_seconds("window", window)
        return await self.store.stats(check_identifier("queue", queue), w)

    async def events(self, id: int | str | Job, after: int = 0) -> builtins.list[Event]:
        """The job's history and log lines, oldest first; `after=n` skips its first n lines
        (an event's id is its line number, so after=the last id seen gives what is new)."""
        return await self.store.events(job_id(id), arg.offset("after", after))

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

    async def kill(self, id: int | str | Job, force: bool = False) -> Job:
        """Cancel a job; if it is running, its daemon stops the run within a poll interval
        (a command processor gets SIGTERM, then SIGKILL after its grace; force: SIGKILL)."""
        reason = KILL_FORCE_REASON if arg.flag("force", force) else KILL_REASON
        return (await self.store.cancel([job_id(id)], reason))[0]

    async def hung(self, older_than: Seconds = DEFAULT_HUNG_TIMEOUT) -> Jobs:
        """Running jobs whose heartbeat is older than `older_than` (the daemon's hung timeout)."""
        age = arg.required_seconds("older_than", older_than)
        return await self.store.stale_running(age)

    async def reap_hung(self, older_than: Seconds = DEFAULT_HUNG_TIMEOUT) -> builtins.list[Job]:
        """Retry (or fail, when out of attempts) hung jobs now, as the daemon's reaper would;
        returns them as they are now."""
        age = arg.required_seconds("older_than", older_than)
        reaped = await self.store.reap_hung(age, "hung")
        return await self.store.get_many([item.job.id for item in reaped])

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

    # -- limits ----------------------------------------------------------------------------
    async def set_queue_limits(
        self,
        queue: str,
        *,
        max_running: int | Unset | None = UNSET,
        rate: str | Rate | Unset | None = UNSET,
        burst: int | Unset | None = UNSET,
    ) -> QueueLimits:
        """Limits of a queue across every daemon: at most `max_running` of its jobs run at
        once; at most `rate` jobs start ("60/min", "10/s", "5/10s"), as a token bucket of
        `burst` jobs (default 1: evenly spaced starts). None removes a limit; a limit left
        out is kept. Jobs over a limit stay pending: they are not failures."""
        changes: dict[str, Any] = {}
        if max_running is not UNSET:
            changes["max_running"] = (
                None if max_running is None else check_limit("max_running", max_running)
            )
        if rate is not UNSET:
            changes["rate"] = None if rate is None else Rate.parse(rate)
        if burst is not UNSET:
            changes["burst"] = None if burst is None else check_limit("burst", burst)
        if not changes:
            raise InvalidJob("limits", "give at least one of max_running, rate, burst")
        return await self.store.set_queue_limits(check_identifier("queue", queue), changes)

    async def queue_limits(self, queue: str) -> QueueLimits:
        return await self.store.queue_limits(check_identifier("queue", queue))

    async def all_queue_limits(self) -> builtins.list[QueueLimits]:
        """Every queue that has a limit, by name."""
        return await self.store.all_queue_limits()

    async def set_concurrency_limit(self, key: str, limit: int | None) -> None:
        """At most `limit` jobs enqueued with concurrency_key=`key` run at once, whatever
        their queue and daemon (agents sharing a provider share its budget); None removes
        the limit."""
        checked = None if limit is None else check_limit("limit", limit)
        await self.store.set_concurrency_limit(check_identifier("key", key), checked)

    async def concurrency_limits(self) -> dict[str, int]:
        return await self.store.concurrency_limits()

    # -- schedules -------------------------------------------------------------------------
    async def schedule(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        cron: str | None = None,
        every: Seconds | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
        key: str | None = None,
        paused: bool = False,
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Enqueue `name` with `payload` at every occurrence of a cron expression in
        `timezone` ("0 9 * * *", "Europe/Lisbon"), or every `every` seconds from now.

        The daemons enqueue each due occurrence once, however many run. Occurrences missed
        while no daemon ran follow catch_up: latest (enqueue the last one), all, or none.
        options are the job's (priority, attempts, backoff, timeout, ttl, tags, context,
        unique_key, unique_for, unique_states, on_conflict, concurrency_key). With a `key`,
        a schedule that exists is updated instead, so a program may declare its schedules
        at every start."""
        unknown = set(options) - set(SCHEDULE_JOB_KEYS)
        if unknown:
            raise InvalidJob(
                sorted(unknown)[0],
                f"unknown schedule option; known: {', '.join(SCHEDULE_JOB_KEYS)}",
            )
        arg.text("cron", cron, 1000)
        arg.check_text("timezone", timezone, limit=1000)
        timing = Timing(cron, None if every is None else seconds("every", every), timezone)
        if catch_up not in CATCH_UP:
            raise InvalidJob(
                "catch_up", f"must be one of {', '.join(CATCH_UP)}, got {shorten(catch_up)}"
            )
        if key is not None:
            check_identifier("key", key)
            if key.isdigit():
                raise InvalidJob("key", f"{shorten(key)} would read as a schedule id; use a name")
        new = self.build(name, payload, queue=queue, **options)
        spec = NewSchedule(
            key=key,
            queue=new.queue,
            name=new.name,
            payload=new.payload,
            options=json.dumps(job_template(new), separators=(",", ":")),
            cron=timing.cron,
            every=timing.every,
            timezone=timing.timezone,
            catch_up=catch_up,
            paused=arg.flag("paused", paused),
        )
        return await self.store.create_schedule(spec)

    async def schedules(self) -> builtins.list[Schedule]:
        return await self.store.schedules()

    async def get_schedule(self, ref: int | str | Schedule) -> Schedule:
        """A schedule by id or key."""
        return await self.store.get_schedule(schedule_ref(ref))

    async def unschedule(self, ref: int | str | Schedule) -> Schedule:
        """Remove a schedule (jobs it enqueued stay); returns it as it was."""
        return await self.store.delete_schedule(schedule_ref(ref))

    async def pause_schedule(self, ref: int | str | Schedule) -> Schedule:
        return await self.store.set_schedule_paused(schedule_ref(ref), True)

    async def resume_schedule(self, ref: int | str | Schedule) -> Schedule:
        """Fire again from the next occurrence after now (the pause is not caught up)."""
        return await self.store.set_schedule_paused(schedule_ref(ref), False)

    async def schedule_runs(
        self, ref: int | str | Schedule, limit: int = 20
    ) -> builtins.list[ScheduleRun]:
        """The schedule's latest enqueued occurrences (fire time, job id), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidJob("limit", f"must be between 1 and 10000, got {shorten(limit)}")
        return await self.store.schedule_runs(schedule_ref(ref), limit)

    async def fire_schedules(self) -> Fired:
        """Enqueue every due occurrence now, as the daemons do (each occurrence once)."""
        return await self.store.fire_schedules()

    async def log(self, id: int | str | Job, message: str) -> None:
        await self.store.log(job_id(id), arg.log_line(message, self.limits.log))

    async def cleanup(
        self,
        older_than: Seconds = timedelta(days=30),
        statuses: Sequence[str | JobStatus] = ("completed",),
        dry_run: bool = False,
    ) -> Ids:
        """Ids of final jobs finished before `older_than` ago; deleted unless dry_run."""
        age = arg.required_seconds("older_than", older_than, positive=False)
        chosen = builtins.list(arg.statuses(statuses, "statuses"))
        if not chosen:
            raise InvalidJob("statuses", "give at least one final status")
        # The store refuses a status that is not final, before it reads or deletes anything.
        return await self.store.cleanup(age, chosen, arg.flag("dry_run", dry_run))

    @staticmethod
    def _ids(ids: Sequence[int | str | Job]) -> Ids:
        return arg.job_ids(ids)


def connect(
    url: str = "wizd.db",
    *,
    payload_limit: int | None = None,
    limits: SizeLimits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.time,
    **store_options: Any,
) -> Queue:
    """A client for the store at `url` (a path, sqlite:///path, :memory:, postgresql://…).

    Use as `async with wizd.connect(url) as q:`; the store is opened (and migrated) on entry.
    `limits` caps what a job may hold (wizd.SizeLimits: payload, context, result, log line,
    tags, error); payload_limit, if given, replaces its payload cap.
    """
    limits = limits.replace(payload=payload_limit)
    store = open_store(url, clock=clock, size_limits=limits, **store_options)
    return Queue(store, limits=limits, clock=clock)


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
