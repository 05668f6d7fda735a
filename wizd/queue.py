"""The public client API that programs call: enqueue, read, and change jobs and queues.

Everything is validated here before the store sees it, so bad input raises a wizd error
naming the field and the limit and writes nothing.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import timedelta
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from typing_extensions import Unpack

from wizd import arguments as arg
from wizd import waiting, watching
from wizd.arguments import UNSET as UNSET  # the CLI's limits commands use them
from wizd.arguments import Seconds, job_id, seconds
from wizd.arguments import Unset as Unset
from wizd.building import DEFAULT_QUEUE as DEFAULT_QUEUE  # the CLI uses it
from wizd.building import MAX_BATCH_ID, EnqueueOptions, Ids, Jobs
from wizd.checks import DEFAULT_LIMITS, SizeLimits, shorten
from wizd.distributed import Distributed
from wizd.errors import InvalidJob
from wizd.job_lists import ListOptions, job_filter
from wizd.model import (
    Backoff,
    Event,
    Job,
    JobOptions,
    JobStatus,
    Page,
    QueueLimits,
    QueueStats,
    Rate,
    WorkerInfo,
    check_identifier,
    check_limit,
    zero_counts,
)
from wizd.scheduling import Scheduling
from wizd.step_model import Step, check_signal_name
from wizd.store import Store, open_store
from wizd.store.feed import WatchEvent
from wizd.store.outcomes import encode_result
from wizd.tokens import Tokens

DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
DEFAULT_HUNG_TIMEOUT = 300.0
KILL_REASON = "killed by operator"
KILL_FORCE_REASON = "killed by operator (force: SIGKILL)"


class Queue(Distributed, Scheduling, Tokens):
    """A connection to a wizd store. Use as `async with wizd.connect(url) as q:`.

    Jobs are built by JobBuilder (wizd.building), distributed jobs, schedules and API tokens
    have their methods in wizd.distributed, wizd.scheduling and wizd.tokens; this class adds
    the rest."""

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

    # -- reads -----------------------------------------------------------------------------

    async def get(self, id: int | str | Job) -> Job:
        return await self.store.get(job_id(id))

    # -- awaiting jobs (wizd.waiting) ------------------------------------------------------

    async def wait(self, id: int | str | Job, timeout: Seconds | None = None) -> Job:
        """The job once it is final (completed, failed, cancelled), whichever process ran
        it; WaitTimeout if it is not within `timeout` seconds (None: wait for ever)."""
        return await waiting.wait(self.store, id, timeout)

    async def result(self, id: int | str | Job, timeout: Seconds | None = None) -> Any:
        """The result of the job once completed; JobFailed (with .job) if it failed or was
        cancelled, WaitTimeout as wait."""
        return await waiting.result(self.store, id, timeout)

    async def wait_many(
        self, jobs: Iterable[int | str | Job], timeout: Seconds | None = None
    ) -> Jobs:
        """The jobs once all are final, in the order given; WaitTimeout as wait."""
        ids, limit = waiting.ids_of(jobs), waiting.timeout_of(timeout)
        return await waiting.wait_many(self.store, ids, limit)

    def as_completed(
        self, jobs: Iterable[int | str | Job], timeout: Seconds | None = None
    ) -> AsyncIterator[Job]:
        """`async for job in q.as_completed(jobs)`: each job once final, in the order they
        became final; WaitTimeout once `timeout` seconds passed with jobs left."""
        ids, limit = waiting.ids_of(jobs), waiting.timeout_of(timeout)
        return waiting.completions(self.store, ids, limit)

    def watch(
        self, queue: str | None = None, job: int | str | Job | None = None, after: object = None
    ) -> AsyncIterator[WatchEvent]:
        """`async for event in q.watch()`: every event of the queue's (or the job's) jobs,
        from any process, in commit order, for ever; `after=event.cursor` resumes after an
        event with nothing missed or repeated (wizd.watching says within what time)."""
        return watching.watch(self.store, queue, job, after)

    async def watch_started(
        self, queue: str | None = None, job: int | str | Job | None = None, after: object = None
    ) -> AsyncIterator[WatchEvent]:
        """As watch, with its lease taken before this returns (every commit from then on
        is seen) and a bad cursor or job raised here; iterate it, or close it."""
        return await watching.started(self.store, queue, job, after)

    async def stream_text(self, id: int | str | Job) -> str:
        """What the job streamed with ctx.stream (its last `stream_tail` characters)."""
        return await self.store.stream_text(job_id(id))

    async def list(self, **options: Unpack[ListOptions]) -> Jobs:
        """The jobs matching every filter given, `limit` (50) of them in `sort` and `order`
        (created_at desc; ties by id), from `offset` or `after` a cursor (ListOptions)."""
        return (await self.list_page(**options)).jobs

    async def list_page(self, **options: Unpack[ListOptions]) -> Page:
        """A page of `list` and the cursor of the next (`page.next`, None after the last
        job): pass it as `after` with the same filters, sort and order. A page starts right
        after the previous page's last job, whatever was added or removed meanwhile, and
        is found through an index however deep it is (keyset paging, not an offset)."""
        return await self.store.list_page(job_filter(**options))

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

    async def finished_per_minute(
        self, minutes: int = 60
    ) -> dict[str, dict[str, builtins.list[int]]]:
        """Jobs completed and failed per minute over the last `minutes` (1..1440), oldest
        first: {queue: {"completed": [...], "failed": [...]}}, each queue that finished one."""
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise InvalidJob("minutes", f"must be a whole number from 1 to 1440, got {minutes!r}")
        return await self.store.finished_per_minute(minutes)

    async def oldest_pending(self, queue: str) -> float | None:
        """Seconds the queue's oldest due pending job has waited (None: none pending)."""
        since = await self.store.oldest_pending(check_identifier("queue", queue))
        return None if since is None else max(self.store.clock() - since, 0.0)

    async def stats(self, queue: str, window: Seconds = 3600.0) -> QueueStats:
        """Counts plus average wait and run time and throughput over the last `window`."""
        w = arg.required_seconds("window", window)
        if w < 1:  # throughput is per minute over the window: a vanishing one divides by 0
            raise InvalidJob("window", f"must be at least 1 second, got {w:g}")
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

    async def retry(self, *ids: int | str | Job, from_step: str | None = None) -> Jobs:
        """Requeue failed or cancelled jobs with a fresh attempt count; all or none.
        from_step (one job): keep only its durable steps before that step's first call."""
        if from_step is None:
            return await self.store.retry(self._ids(ids))
        chosen = self._ids(ids)
        if len(chosen) != 1:
            raise InvalidJob("from_step", f"retries one job at a time, got {len(chosen)}")
        return [await self.store.retry_from_step(chosen[0], from_step)]

    async def steps(self, id: int | str | Job) -> builtins.list[Step]:
        """The job's durable steps (ctx.step), in the order its runs called them."""
        return await self.store.steps(job_id(id))

    async def signal(self, id: int | str | Job, name: str, data: Any = None) -> Job:
        """Send the job signal `name` with JSON `data`: a wait for it (ctx.wait_for_signal)
        returns the data; a job waiting for it becomes pending. Kept until a wait takes it.
        JobNotFound; IllegalTransition for a final job."""
        text = encode_result(data, self.limits.payload)  # InvalidJob naming `result`
        return await self.store.signal(job_id(id), check_signal_name(name), text)

    async def signal_waits(self) -> builtins.list[tuple[int, str, float | None]]:
        """(job id, signal name, timeout time or None) of every job waiting for a signal."""
        return await self.store.signal_waits()

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

    async def remove_queue(self, queue: str) -> None:
        """Forget an empty queue (no jobs, no schedules): its pause, defaults and limits.
        Raises QueueNotEmpty naming what it has, QueueNotFound if no such queue."""
        await self.store.remove_queue(check_identifier("queue", queue))

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
    if not isinstance(limits, SizeLimits):
        raise InvalidJob("limits", f"must be a wizd.SizeLimits, got {shorten(limits)}")
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

    def as_completed(
        self, jobs: Iterable[int | str | Job], timeout: Seconds | None = None
    ) -> Iterator[Job]:
        """`for job in q.as_completed(jobs)`: as Queue.as_completed, blocking."""
        completions = self._queue.as_completed(jobs, timeout)
        if self._portal is None:
            raise RuntimeError("use `with wizd.connect_sync(url) as q:`")
        return waiting.blocking_iterator(self._portal, completions)

    def watch(
        self, queue: str | None = None, job: int | str | Job | None = None, after: object = None
    ) -> Iterator[WatchEvent]:
        """`for event in q.watch()`: as Queue.watch, blocking."""
        if self._portal is None:
            raise RuntimeError("use `with wizd.connect_sync(url) as q:`")
        return waiting.blocking_iterator(self._portal, self._queue.watch(queue, job, after))

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
