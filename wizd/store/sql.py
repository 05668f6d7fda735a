"""What the SQLite and PostgreSQL stores share: group commit and every Store method.

Every operation is a plain function of a connection (wizd.store.conn.Conn) that runs whole
inside one transaction on the connection's own thread: one thread hop per transaction
instead of one per statement. Writes from concurrent callers are grouped: whoever finds no
group commit running runs one transaction for everything queued so far, so one commit (and
one fsync) serves a whole group and one caller's bad input never spoils another's.

A backend supplies the connections (`_run_on_writer`, `_read`), a transaction's begin, end
and count of changes, the exceptions of a failed database, how others' commits are noticed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar, cast

import anyio
import anyio.lowlevel

from wizd.checks import DEFAULT_LIMITS, truncate
from wizd.errors import StoreError, WizdError
from wizd.model import (
    MAX_CHILDREN,
    MAX_DEPTH,
    Event,
    Job,
    JobFilter,
    JobOptions,
    JobStatus,
    NewJob,
    NewSchedule,
    Page,
    QueueLimits,
    QueueStats,
    Schedule,
    ScheduleRun,
    WorkerInfo,
)
from wizd.step_model import Step, StepOutcome
from wizd.store import admin, flows, limits, listing, ops, outcomes, reads, schedules
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store import steps as step_ops
from wizd.store.base import Claimed, Finish, Fired, Interrupted
from wizd.store.conn import reset_group_cache
from wizd.store.waits import making_final

T = TypeVar("T")
Op = Callable[[Any, float], T]


class SQLStore:
    """The Store protocol over a SQL database (see wizd.store.base for each method's
    contract). Subclasses connect; this class decides what runs in which transaction."""

    backend: str
    # Exceptions that mean the database failed (locked, I/O, connection lost) rather than
    # that one op refused its input: they fail the whole group.
    database_failures: ClassVar[tuple[type[BaseException], ...]] = ()
    read_only = False  # opened with read_only=True: every write is refused

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_depth: int = MAX_DEPTH,
        max_children: int = MAX_CHILDREN,
    ) -> None:
        self.clock = clock
        self.limits = ops.Limits(max_depth, max_children)
        self.size_limits = DEFAULT_LIMITS  # what a run's outcome may hold (open_store sets it)
        self._pending: list[tuple[Op[Any], _Waiter]] = []
        self._flushing = False  # a caller is running a group commit right now
        self._open = False
        self._closed = False
        # Futures of callers waiting for this process's next commit (wait_for_change).
        self._commit_waiters: set[asyncio.Future[bool]] = set()

    async def __aenter__(self) -> Any:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def wait_for_change(self, timeout: float) -> None:
        raise NotImplementedError

    async def start_waiting(self) -> None:
        raise NotImplementedError

    async def stop_waiting(self) -> None:
        raise NotImplementedError

    async def final_mark(self) -> int:
        raise NotImplementedError

    async def wait_for_final(self, mark: int, timeout: float) -> None:
        raise NotImplementedError

    def handed_over(self, queue: str, worker_id: str) -> Claimed:
        return Claimed()

    async def stop_claiming(self, queue: str, worker_id: str) -> None:
        pass

    # -- what a backend supplies -----------------------------------------------------------
    async def _run_on_writer(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` on the writing connection's thread."""
        raise NotImplementedError

    async def _read(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` on a reading connection's thread."""
        raise NotImplementedError

    def _begin(self, c: Any) -> None:
        c.execute("BEGIN")

    def _rollback(self, c: Any) -> None:
        raise NotImplementedError

    def _commit(self, c: Any) -> None:
        c.execute("COMMIT")

    def _changes(self, c: Any) -> int:
        """A counter of rows changed on `c` (any number that grows when rows change)."""
        raise NotImplementedError

    def _changed(self) -> None:
        """This process committed a change: wake its own waiters at once."""
        waiters, self._commit_waiters = self._commit_waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def _committed_within(self, seconds: float) -> bool:
        """Whether this process commits a change within `seconds`. A future and a timer,
        not a cancel scope: wait_for_change polls every few ms, and a scope that times out
        costs an exception each time."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._commit_waiters.add(waiter)
        timer = loop.call_later(seconds, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._commit_waiters.discard(waiter)

    def _fail_pending(self) -> None:
        """Writes queued but not started fail: the store is closing."""
        for _, waiter in self._pending:
            waiter.fail(StoreError("store closed before the write ran"))
        self._pending.clear()

    # -- the writer ------------------------------------------------------------------------
    async def _write(self, op: Op[T]) -> T:
        """Run `op` in the next group commit and return its own outcome.

        There is no writer task: whoever finds no group commit running runs one, for every
        op queued so far, then hands the lead to the next queued caller. Ops that arrive
        while a group runs go into the next group, so one transaction (and one fsync)
        serves everything that arrived within a commit's time."""
        if not self._open or self._closed:
            raise StoreError("store is not open (use `async with wizd.connect(...)`)")
        if self.read_only:
            raise StoreError("the store is open read-only (read_only=True): nothing is written")
        waiter = _Waiter()
        entry = (op, waiter)
        self._pending.append(entry)
        try:
            while not waiter.done:
                if self._flushing:
                    # asyncio's own Event: anyio.Event() costs a backend lookup per caller,
                    # and a busy store makes one for nearly every write (the stores run on
                    # asyncio: aiosqlite is asyncio-only).
                    waiter.event = asyncio.Event()
                    await waiter.event.wait()
                    continue
                self._flushing = True
                try:
                    with anyio.CancelScope(shield=True):  # a group runs to its end
                        # Callers that are ready to write in this same tick join the group.
                        await anyio.lowlevel.cancel_shielded_checkpoint()
                        await self._flush()
                finally:
                    self._flushing = False
                    self._hand_over()
        except BaseException:
            if entry in self._pending:  # never started: it never will
                self._pending.remove(entry)
                self._hand_over()
            raise
        return cast(T, waiter.outcome())

    def _hand_over(self) -> None:
        """Wake the first queued caller so that it runs the next group."""
        if self._pending and not self._flushing:
            self._pending[0][1].wake()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        ops = [op for op, _ in batch]
        try:
            outcomes, changed = await self._run_ops(ops)
        except Exception as exc:  # the whole group failed: every caller hears it
            for _, waiter in batch:
                waiter.fail(exc)
            return
        if changed:
            self._changed()
        for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                waiter.succeed(value)
            else:
                waiter.fail(value)

    async def _run_ops(self, ops: list[Op[Any]]) -> tuple[list[tuple[bool, Any]], bool]:
        """Run a group of ops on the writer: each op's outcome, and whether any row changed."""
        return await self._run_on_writer(functools.partial(self._run_group, ops=ops))

    def _run_group(self, c: Any, ops: list[Op[Any]]) -> tuple[list[tuple[bool, Any]], bool]:
        """Run every op in one transaction; return each op's outcome and whether any row
        changed (a claim that found nothing must not wake the daemon's own watchers).

        The group runs without savepoints first (they cost two statements per op); only if
        an op refuses its input is the group rolled back and run again with each op in a
        savepoint of its own, so that the refusal undoes that op alone."""
        if len(ops) > 1:
            try:
                return self._attempt_group(c, ops, isolated=False)
            except _Refused:
                pass
        return self._attempt_group(c, ops, isolated=True)

    def _attempt_group(
        self, c: Any, ops: list[Op[Any]], *, isolated: bool
    ) -> tuple[list[tuple[bool, Any]], bool]:
        before = self._changes(c)
        reset_group_cache(c)
        self._begin(c)
        now = self.clock()  # under the write lock: on SQLite, times follow the commit order
        outcomes: list[tuple[bool, Any]] = []
        try:
            if len(ops) == 1:
                outcomes.append((True, ops[0](c, now)))
            elif not isolated:
                try:
                    outcomes.extend(self._run_merged(c, now, ops))
                except self.database_failures:
                    raise  # the database itself failed (locked, I/O, gone): the group fails
                except Exception:
                    raise _Refused from None
            else:
                for op in ops:
                    c.execute("SAVEPOINT op")
                    try:
                        outcomes.append((True, op(c, now)))
                    except self.database_failures:
                        raise
                    except Exception as exc:  # this op's own failure spoils no other op
                        c.execute("ROLLBACK TO op")
                        outcomes.append((False, _as_store_error(exc)))
                    c.execute("RELEASE op")
            self._commit(c)
        except WizdError as exc:  # the single op refused: nothing written
            self._rollback(c)
            return [(False, exc)], False
        except BaseException:
            self._rollback(c)
            raise
        return outcomes, self._changes(c) != before

    def _run_merged(self, c: Any, now: float, group: list[Op[Any]]) -> list[tuple[bool, Any]]:
        """Run a group's ops in order; consecutive enqueues of plain jobs (one caller each,
        the common case under load) run as one enqueue, whose executemany writes them all."""
        outcomes: list[tuple[bool, Any]] = []
        i = 0
        while i < len(group):
            j = i
            while j < len(group) and isinstance(group[j], PlainEnqueue):
                j += 1
            if j - i > 1:
                run = cast(list[PlainEnqueue], group[i:j])
                items = [new for op in run for new in op.items]
                created = ops.enqueue_plain(c, now, items, self.limits)
                start = 0
                for op in run:
                    outcomes.append((True, created[start : start + len(op.items)]))
                    start += len(op.items)
                i = j
            else:
                outcomes.append((True, group[i](c, now)))
                i += 1
        return outcomes

    # -- enqueue ---------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        items = list(jobs)
        if all(ops.is_plain(new) for new in items):
            created = await self._write(PlainEnqueue(items, self.limits))
            return created.build()  # after the commit, on the caller's thread
        return await self._write(lambda c, now: ops.enqueue(c, now, items, self.limits))

    # -- reads -----------------------------------------------------------------------------
    async def get(self, job_id: int) -> Job:
        return await self._read(lambda c: rowmap.get(c, job_id))

    async def get_many(self, job_ids: Sequence[int]) -> list[Job]:
        ids = list(job_ids)
        return await self._read(lambda c: rowmap.get_many(c, ids))

    async def list_page(self, f: JobFilter) -> Page:
        return await self._read(lambda c: listing.list_page(c, f))

    async def peek(self, queue: str, n: int) -> list[Job]:
        return await self._read(lambda c: reads.peek(c, self.clock(), queue, n))

    async def counts(self, queue: str | None = None) -> dict[str, dict[str, int]]:
        return await self._read(lambda c: reads.counts(c, queue))

    async def recount(self) -> dict[str, dict[str, int]]:
        return await self._read(reads.recount)

    async def oldest_pending(self, queue: str) -> float | None:
        return await self._read(lambda c: reads.oldest_pending(c, queue))

    async def stats(self, queue: str, window: float) -> QueueStats:
        return await self._read(lambda c: reads.stats(c, self.clock(), queue, window))

    async def events(self, job_id: int, after: int = 0) -> list[Event]:
        return await self._read(lambda c: reads.events(c, job_id, after))

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def owned(self, worker_id: str, runs: Sequence[tuple[int, int]]) -> set[int]:
        pairs = list(runs)
        return await self._read(lambda c: reads.owned(c, worker_id, pairs)) if pairs else set()

    # -- flows -----------------------------------------------------------------------------
    async def add_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        ids = list(deps)
        return await self._write(lambda c, now: flows.add_dependencies(c, now, job_id, ids))

    async def remove_dependencies(self, job_id: int, deps: Sequence[int]) -> Job:
        ids = list(deps)
        return await self._write(lambda c, now: flows.remove_dependencies(c, now, job_id, ids))

    async def dependencies(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.DEPENDENCIES, job_id))

    async def dependents(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.DEPENDENTS, job_id))

    async def children(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.CHILDREN, job_id))

    async def subtree(self, job_id: int) -> list[Job]:
        return await self._read(lambda c: rowmap.related(c, Q.SUBTREE, job_id))

    async def dispatch(self, job_id: int) -> int:
        return await self._write(lambda c, now: flows.dispatch(c, now, job_id))

    # -- queues ----------------------------------------------------------------------------
    async def queues(self) -> list[tuple[str, bool, JobOptions]]:
        return await self._read(reads.queues)

    async def queue_options(self, queue: str) -> tuple[bool, JobOptions]:
        return await self._read(lambda c: reads.queue_options(c, queue))

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._write(lambda c, now: admin.set_queue_paused(c, now, queue, paused))

    async def remove_queue(self, queue: str) -> None:
        await self._write(lambda c, now: admin.remove_queue(c, now, queue))

    async def set_queue_defaults(self, queue: str, overrides: dict[str, Any]) -> JobOptions:
        return await self._write(lambda c, now: admin.set_queue_defaults(c, now, queue, overrides))

    # -- limits ----------------------------------------------------------------------------
    async def queue_limits(self, queue: str) -> QueueLimits:
        return await self._read(lambda c: limits.queue_limits(c, queue))

    async def all_queue_limits(self) -> list[QueueLimits]:
        return await self._read(limits.all_queue_limits)

    async def set_queue_limits(self, queue: str, changes: dict[str, Any]) -> QueueLimits:
        given = dict(changes)
        return await self._write(lambda c, now: limits.set_queue_limits(c, now, queue, given))

    async def set_concurrency_limit(self, key: str, limit: int | None) -> None:
        await self._write(lambda c, now: limits.set_concurrency_limit(c, now, key, limit))

    async def concurrency_limits(self) -> dict[str, int]:
        return await self._read(limits.concurrency_limits)

    # -- schedules -------------------------------------------------------------------------
    async def create_schedule(self, spec: NewSchedule) -> Schedule:
        return await self._write(lambda c, now: schedules.create(c, now, spec))

    async def schedules(self) -> list[Schedule]:
        return await self._read(schedules.all_schedules)

    async def get_schedule(self, ref: int | str) -> Schedule:
        return await self._read(lambda c: schedules.get(c, ref))

    async def delete_schedule(self, ref: int | str) -> Schedule:
        return await self._write(lambda c, now: schedules.delete(c, now, ref))

    async def set_schedule_paused(self, ref: int | str, paused: bool) -> Schedule:
        return await self._write(lambda c, now: schedules.set_paused(c, now, ref, paused))

    async def schedule_runs(self, ref: int | str, limit: int) -> list[ScheduleRun]:
        return await self._read(lambda c: schedules.runs(c, ref, limit))

    async def fire_schedules(self) -> Fired:
        return await self._write(lambda c, now: schedules.fire(c, now, self.limits))

    async def next_schedule_due(self) -> float | None:
        return await self._read(schedules.next_due)

    async def prune_schedule_runs(self, older_than: float) -> None:
        await self._write(lambda c, now: schedules.prune_runs(c, now, older_than))

    # -- the hot path ----------------------------------------------------------------------
    async def claim(self, queue: str, worker_id: str, n: int) -> Claimed:
        if n < 1:
            return Claimed()
        taken = await self._write(lambda c, now: ops.claim(c, now, queue, worker_id, n))
        return taken.claimed()

    async def finish(self, items: Sequence[Finish]) -> list[bool]:
        batch = [outcomes.storable(f, self.size_limits) for f in items]
        return await self._write(making_final(lambda c, now: ops.finish_many(c, now, batch)))

    async def heartbeat(
        self, worker_id: str, busy: int, runs: Sequence[int] | None = None
    ) -> set[int]:
        ids = None if runs is None else list(runs)
        return await self._write(lambda c, now: ops.heartbeat(c, now, worker_id, busy, ids))

    async def progress(
        self, job_id: int, worker_id: str, attempt: int, value: float | None, message: str | None
    ) -> bool:
        return await self._write(
            lambda c, now: ops.progress(c, now, job_id, worker_id, attempt, value, message)
        )

    async def log(
        self, job_id: int, message: str, *, worker_id: str | None = None, attempt: int | None = None
    ) -> None:
        await self._write(lambda c, now: ops.log(c, now, job_id, message, worker_id, attempt))

    async def save_step(self, outcome: StepOutcome) -> bool:
        error = outcome.error
        if error is not None:
            outcome = replace(outcome, error=truncate(error, self.size_limits.error))
        return await self._write(lambda c, now: step_ops.save(c, now, outcome))

    async def steps(self, job_id: int) -> list[Step]:
        return await self._read(lambda c: step_ops.history(c, job_id))

    async def retry_from_step(self, job_id: int, name: str) -> Job:
        return await self._write(lambda c, now: step_ops.retry_from(c, now, job_id, name))

    async def promote_due(self) -> int:
        return await self._write(ops.promote_due)

    async def expire(self) -> list[int]:
        return await self._write(making_final(ops.expire))

    # -- recovery --------------------------------------------------------------------------
    async def recover_worker(self, worker_id: str, reason: str) -> list[Interrupted]:
        return await self._write(
            making_final(lambda c, now: ops.recover_worker(c, now, worker_id, reason))
        )

    async def reap_hung(self, older_than: float, reason: str = "hung") -> list[Interrupted]:
        return await self._write(
            making_final(lambda c, now: ops.reap_hung(c, now, older_than, reason))
        )

    async def stale_running(self, older_than: float) -> list[Job]:
        return await self._read(lambda c: reads.stale_running(c, self.clock(), older_than))

    async def running_workers(self) -> set[str]:
        return await self._read(reads.running_workers)

    # -- operator changes ------------------------------------------------------------------
    async def cancel(self, job_ids: Sequence[int], reason: str = "cancelled") -> list[Job]:
        ids = list(job_ids)
        return await self._write(making_final(lambda c, now: admin.cancel(c, now, ids, reason)))

    async def retry(self, job_ids: Sequence[int]) -> list[Job]:
        ids = list(job_ids)
        return await self._write(lambda c, now: admin.retry(c, now, ids))

    async def pause_job(self, job_id: int) -> Job:
        return await self._write(lambda c, now: admin.pause_job(c, now, job_id))

    async def resume_job(self, job_id: int) -> Job:
        return await self._write(lambda c, now: admin.resume_job(c, now, job_id))

    async def delete(self, job_ids: Sequence[int]) -> list[int]:
        ids = list(job_ids)
        return await self._write(lambda c, now: admin.delete(c, now, ids))

    async def cleanup(
        self, older_than: float, statuses: Sequence[JobStatus], dry_run: bool
    ) -> list[int]:
        chosen = admin.cleanup_statuses(statuses)
        if dry_run:
            return await self._read(
                lambda c: admin.cleanup_candidates(c, self.clock(), chosen, older_than)
            )
        return await self._write(lambda c, now: admin.cleanup(c, now, chosen, older_than))

    # -- the agent registry ----------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        await self._write(lambda c, now: admin.register_worker(c, now, info))

    async def worker_stopped(self, worker_id: str) -> None:
        await self._write(lambda c, now: admin.worker_stopped(c, now, worker_id))

    async def workers(self) -> list[WorkerInfo]:
        return await self._read(reads.workers)

    async def prune_workers(self, older_than: float) -> None:
        await self._write(lambda c, now: admin.prune_workers(c, now, older_than))


def _as_store_error(exc: Exception) -> Exception:
    if isinstance(exc, WizdError):
        return exc
    return StoreError(f"write refused by the database: {type(exc).__name__}: {exc}")


class PlainEnqueue:
    """An enqueue of jobs without links or unique keys: it may share one insert with its
    neighbours in a group (SQLStore._run_merged)."""

    __slots__ = ("items", "limits")

    def __init__(self, items: list[NewJob], limits: ops.Limits) -> None:
        self.items = items
        self.limits = limits

    def __call__(self, c: Any, now: float) -> ops.Created:
        return ops.enqueue_plain(c, now, self.items, self.limits)


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


class _Refused(Exception):
    """An op of an unisolated group refused its input: run the group again, isolated."""


class _Waiter:
    __slots__ = ("_error", "_value", "done", "event")

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None  # made when its caller has to wait
        self.done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()

    def succeed(self, value: Any) -> None:
        self._value = value
        self.done = True
        self.wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self.done = True
        self.wake()

    def outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value
