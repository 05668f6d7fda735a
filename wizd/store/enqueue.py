"""Enqueue in the store's transaction: a new job's row (its start state, its queue's
defaults), inserted one by one (Inserter: links, unique keys, children) or many at once
(plain and bare jobs), and the Jobs built from what was written."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from wizd.errors import DependencyError, DuplicateJob, IllegalTransition, InvalidJob, StoreError
from wizd.model import (
    FINAL,
    MAX_CHILDREN,
    MAX_DEPTH,
    REPLACEABLE,
    Backoff,
    Job,
    JobOptions,
    JobStatus,
    NewJob,
    build_job,
    states_text,
)
from wizd.model import utc_at as utc_of
from wizd.store import flows
from wizd.store import rows as rowmap
from wizd.store import sqlite_queries as Q
from wizd.store.conn import Conn, group_cache, insert_many

S = JobStatus


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = MAX_DEPTH
    max_children: int = MAX_CHILDREN


def enqueue(c: Conn, now: float, items: list[NewJob], limits: Limits | None = None) -> list[Job]:
    """Insert every item (and the children each carries) or raise before committing.
    Items that are all plain go through enqueue_plain instead (SQLStore.enqueue)."""
    inserter = Inserter(c, now, limits or Limits())
    for index, new in enumerate(items):
        dep_ids = list(new.depends_on)
        for ref in new.depends_on_index:
            if not 0 <= ref < index:
                raise DependencyError(
                    f"item {index} depends on item {ref}; only earlier items "
                    f"(0..{index - 1}) may be named"
                    if index
                    else f"item 0 depends on item {ref}; the first item can depend on no item"
                )
            dep_ids.append(inserter.created[ref].id)
        inserter.insert(new, dep_ids)
    inserter.written()
    return inserter.created


def enqueue_plain(
    c: Conn, now: float, items: list[NewJob], limits: Limits | None = None
) -> Created:
    """Insert jobs without links or unique keys (is_plain) in one executemany; their Jobs
    are built later, outside the transaction (Created.build)."""
    inserter = Inserter(c, now, limits or Limits())
    created = inserter.insert_plain(items)
    inserter.written()
    return created


@dataclass(slots=True)
class _Row:
    new: NewJob
    status: JobStatus
    error: str | None
    priority: int
    attempts: int
    backoff: Backoff
    timeout: float | None
    run_at: float
    expires_at: float | None
    parent_id: int | None
    deps: tuple[int, ...]
    final: bool
    values: tuple[Any, ...] = ()
    worker_id: str | None = None  # handed over: inserted already claimed for this worker


def handed_row(row: _Row, worker_id: str) -> _Row:
    """The row of a job that an enqueue handed over to an idle worker (PostgreSQL's
    trigger wizd_hand_over): written running, attempt 1, claimed by `worker_id` as made."""
    return replace(row, status=S.RUNNING, worker_id=worker_id)


def is_plain(new: NewJob) -> bool:
    """No links and no unique key: a job that many can be inserted with at once."""
    return not (
        new.depends_on or new.depends_on_index or new.parent_id or new.children or new.unique_key
    )


def starts_pending_alone(new: NewJob, now: float) -> bool:
    """Is this a plain job (is_plain) without a concurrency key that starts pending, with
    no event to store? Its row is then all there is to write (plain_pending_row)."""
    if not is_plain(new) or new.concurrency_key is not None:
        return False
    return initial_status(new, {}, _run_at(new, now), now) == (S.PENDING, None)


def plain_pending_row(new: NewJob, opts: JobOptions, now: float) -> _Row:
    """What Inserter.prepare makes of a job that starts_pending_alone, given its queue's
    defaults, without reading anything."""
    run_at, expires_at = _run_at(new, now), _expires_at(new, opts, now)
    return _make_row(new, opts, now, S.PENDING, None, run_at, expires_at, None, ())


def _run_at(new: NewJob, now: float) -> float:
    return new.run_at if new.run_at is not None else now + new.delay


def _expires_at(new: NewJob, opts: JobOptions, now: float) -> float | None:
    ttl = new.ttl if new.ttl is not None else opts.ttl
    return now + ttl if ttl is not None else None


# A bare job sets its queue, name and payload and nothing else (Queue._build_plain, the
# usual item of a bulk enqueue): its row is its queue's defaults.
_BARE = {
    f.name: 0.0 if f.name == "delay" else (None if f.default is MISSING else f.default)
    for f in fields(NewJob)
    if f.name not in ("queue", "name", "payload")
}
_BARE_FIELDS = attrgetter(*_BARE)
_BARE_VALUES = tuple(_BARE.values())


def is_bare(new: NewJob) -> bool:
    return bool(_BARE_FIELDS(new) == _BARE_VALUES)


def _insert_columns(sql: str) -> list[str]:
    return [col.strip() for col in sql[sql.index("(") + 1 : sql.index(")")].split(",")]


# _Row.values holds INSERT_JOB's columns; INSERT_JOB_PLAIN writes some of them (after the
# id) and leaves the others to the table's defaults: NULL, or these.
_ROW_COLUMNS = _insert_columns(Q.INSERT_JOB)
_TABLE_DEFAULTS = {
    "tags": "[]",
    "on_dependency_failure": "fail",
    "on_child_failure": "continue",
    "kind": "job",
}
_PLAIN_COLUMNS = _insert_columns(Q.INSERT_JOB_PLAIN)[1:]  # after the id
_LEFT_OUT_COLUMNS = [col for col in _ROW_COLUMNS if col not in _PLAIN_COLUMNS]
_PLAIN = itemgetter(*[_ROW_COLUMNS.index(col) for col in _PLAIN_COLUMNS])
_LEFT_OUT = itemgetter(*[_ROW_COLUMNS.index(col) for col in _LEFT_OUT_COLUMNS])
_LEFT_OUT_DEFAULTS = tuple(_TABLE_DEFAULTS.get(col) for col in _LEFT_OUT_COLUMNS)

UNIQUE_TRIES = 20  # a key let go and taken again between two statements: look again (a
# fast daemon finishing each new holder while two enqueuers race made 5 too few under load)


class Inserter:
    """Writes new jobs inside the caller's transaction: checks, the queue's defaults, unique
    keys, then rows and events (enqueue, and the occurrences of schedules)."""

    def __init__(self, c: Conn, now: float, limits: Limits) -> None:
        self.c = c
        self.now = now
        self.limits = limits
        self.created: list[Job] = []
        self.events: list[tuple[int, str, JobStatus | None, int | None, str | None, str | None]]
        self.events = []
        self._defaults: dict[Any, Any] = group_cache(c)
        self.created_at = utc_of(now)
        # Per op, not per group: a rolled-back op must not leave a queue believed marked.
        self._keyed: set[str] = set()
        self.existing: set[int] = set()  # jobs returned for a unique key, not created

    def options(self, queue: str) -> JobOptions:
        key = ("queue_defaults", queue)
        if key not in self._defaults:
            row = self.c.execute(Q.QUEUE_GET, (queue,)).fetchone()
            self._defaults[key] = JobOptions.from_dict(json.loads(row[2])) if row else JobOptions()
        options: JobOptions = self._defaults[key]
        return options

    def mark_keyed(self, queue: str) -> None:
        """Claims of this queue must look at concurrency limits from now on."""
        if queue not in self._keyed:
            self.c.execute(Q.QUEUE_ENSURE, (queue,))
            self.c.execute(Q.QUEUE_MARK_KEYED, (queue,))
            self._keyed.add(queue)

    def insert(self, new: NewJob, dep_ids: list[int], parent: Job | None = None) -> Job:
        if new.unique_key is not None:
            return self.insert_unique(new, new.unique_key, dep_ids, parent)
        row = self.prepare(new, dep_ids, parent)
        (job_id,) = self.c.execute(Q.INSERT_JOB, row.values).fetchone()
        return self.inserted(row, job_id)

    def insert_unique(self, new: NewJob, key: str, dep_ids: list[int], parent: Job | None) -> Job:
        """Insert a job that takes a unique key, or follow its on_conflict policy. The
        unique index on unique_lock decides between concurrent enqueuers of the key."""
        c = self.c
        for _ in range(UNIQUE_TRIES):
            c.execute(Q.UNIQUE_RELEASE_STALE, {"key": key, "now": self.now})
            row = self.prepare(new, dep_ids, parent)
            found = c.execute(Q.INSERT_JOB_UNIQUE, row.values).fetchone()
            if found is not None:
                return self.inserted(row, found[0])
            held = c.execute(Q.UNIQUE_HOLDER, (key,)).fetchone()
            if held is None or not still_holds(held[-2], held[-1], held[4], self.now):
                continue  # let go, or done with it, since the release looked: again
            holder = rowmap.jobs(c, [held])[0]
            if new.on_conflict == "return":
                self.created.append(holder)
                self.existing.add(holder.id)
                return holder
            if new.on_conflict == "raise":
                raise DuplicateJob(key, holder.id, holder.status)
            if holder.status not in REPLACEABLE:
                raise DuplicateJob(
                    key, holder.id, holder.status, "; only a job that has not started is replaced"
                )
            try:
                flows.cancel_tree(c, self.now, holder.id, f"replaced: unique key {key!r}")
            except IllegalTransition:  # it started meanwhile
                raise DuplicateJob(
                    key, holder.id, holder.status, "; it changed while being replaced"
                ) from None
            c.execute(Q.UNIQUE_RELEASE_JOB, (holder.id,))
        raise StoreError(f"unique_key {key!r} changed hands {UNIQUE_TRIES} times in one enqueue")

    def inserted(self, row: _Row, job_id: int) -> Job:
        """Record a job just inserted, then its dependency edges and its children."""
        new = row.new
        job = self.record(row, job_id)
        for dep in job.depends_on:
            self.c.execute(Q.INSERT_DEP, (job.id, dep))
        if new.children:
            if len(new.children) > self.limits.max_children:
                raise InvalidJob(
                    "children",
                    f"{len(new.children)} children; the limit is {self.limits.max_children} "
                    "per parent",
                )
            for child in new.children:
                self.insert(child, list(child.depends_on), parent=job)
        return job

    def insert_plain(self, items: list[NewJob]) -> Created:
        """Jobs without links: one in one INSERT, many in one executemany with their ids
        reserved first (and only the columns they set when the others all hold the table's
        defaults). Their Jobs are built after the transaction, from what was written."""
        if len(items) > 1 and all(map(is_bare, items)):
            return self.insert_bare(items)
        rows = [self.prepare(new, [], None) for new in items]
        if len(rows) == 1:  # one statement, as the insert of a linked job
            ids = [self.c.execute(Q.INSERT_JOB, rows[0].values).fetchone()[0]]
        elif all(_LEFT_OUT(row.values) == _LEFT_OUT_DEFAULTS for row in rows):
            ids = self.reserve_ids(len(rows))
            values = [(job_id, *_PLAIN(row.values)) for job_id, row in zip(ids, rows, strict=True)]
            insert_many(self.c, Q.INSERT_JOB_PLAIN, values)
        else:
            ids = self.reserve_ids(len(rows))
            values = [(job_id, *row.values) for job_id, row in zip(ids, rows, strict=True)]
            insert_many(self.c, Q.INSERT_JOB_WITH_ID, values)
        return self.wrote(ids, rows)

    def insert_bare(self, items: list[NewJob]) -> Created:
        """insert_plain of bare jobs (is_bare): every job of a queue has the row its queue's
        first job got from prepare() (the template), but for its name and payload, so only
        that one is prepared. Their _Rows keep no values: the template's, with each job's own
        name and payload, went into the insert."""
        templates: dict[str, _Row] = {}
        for new in items:
            if new.queue not in templates:
                templates[new.queue] = self.prepare(new, [], None)
        if all(_LEFT_OUT(t.values) == _LEFT_OUT_DEFAULTS for t in templates.values()):
            statement = Q.INSERT_JOB_PLAIN
            tails = {queue: _PLAIN(t.values)[3:] for queue, t in templates.items()}
        else:
            statement = Q.INSERT_JOB_WITH_ID
            tails = {queue: t.values[3:] for queue, t in templates.items()}
        ids = self.reserve_ids(len(items))
        rows: list[_Row] = []
        values: list[tuple[Any, ...]] = []
        for job_id, new in zip(ids, items, strict=True):
            t = templates[new.queue]
            rows.append(
                _Row(new, t.status, t.error, t.priority, t.attempts, t.backoff, t.timeout,
                     t.run_at, t.expires_at, t.parent_id, t.deps, t.final)
            )  # fmt: skip
            values.append((job_id, new.queue, new.name, new.payload, *tails[new.queue]))
        insert_many(self.c, statement, values)
        return self.wrote(ids, rows)

    def wrote(self, ids: list[int], rows: list[_Row]) -> Created:
        """Rows just inserted together: counted once per (queue, status), their events
        noted; their Jobs are built after the transaction (Created.build)."""
        rowmap.counted(self.c, Counter((row.new.queue, row.status) for row in rows))
        for job_id, row in zip(ids, rows, strict=True):
            self.note_enqueued(job_id, row)
        return Created(ids, rows, self.now, self.created_at)

    def note_enqueued(self, job_id: int, row: _Row) -> None:
        """The enqueued event, unless the row holds it (a pending job without a message)."""
        if row.status is not S.PENDING or row.error is not None:
            self.events.append((job_id, "enqueued", row.status, 0, None, row.error))

    def reserve_ids(self, n: int) -> list[int]:
        return sorted(r[0] for r in self.c.execute(Q.RESERVE_JOB_IDS, (n,)))

    def prepare(self, new: NewJob, dep_ids: list[int], parent: Job | None) -> _Row:
        """Everything about a new job but its id: checks, defaults, status, the row."""
        c, now = self.c, self.now
        opts = self.options(new.queue)
        dep_status: dict[int, JobStatus] = {}
        for dep in dict.fromkeys(dep_ids) if dep_ids else ():
            found = c.execute(Q.DEPENDENCY_STATUS, {"dep": dep}).fetchone()
            if found is None:
                raise DependencyError(f"job {dep} does not exist")
            dep_status[dep] = S(found[0])
        expires_at = _expires_at(new, opts, now)
        parent_id = parent.id if parent is not None else new.parent_id
        if parent_id is not None:
            # A parent written by this same call may start final (a failed dependency):
            # its children are then written cancelled.
            deadline = self.check_parent(parent_id, 1, allow_final=parent is not None)
            if deadline is not None:  # a child never outlives its parent's deadline
                expires_at = deadline if expires_at is None else min(expires_at, deadline)
        run_at = _run_at(new, now)
        status, error = initial_status(new, dep_status, run_at, now, parent)
        if new.concurrency_key is not None:
            self.mark_keyed(new.queue)
        return _make_row(
            new, opts, now, status, error, run_at, expires_at, parent_id, tuple(dep_status)
        )

    def written(self) -> None:
        """After the last insert of the operation: the events of what it wrote."""
        rowmap.events(self.c, self.now, self.events)

    def record(self, row: _Row, job_id: int) -> Job:
        """The Job as written (not read back: the writer's time is the queue's time),
        counted at once in its queue and status."""
        rowmap.counted(self.c, {(row.new.queue, row.status): 1})
        job = job_of(row, job_id, self.now, self.created_at)
        self.created.append(job)
        self.note_enqueued(job_id, row)
        return job

    def check_parent(self, parent_id: int, adding: int, allow_final: bool = False) -> float | None:
        """Refuse a child of a missing or final parent, or beyond the depth or fan-out
        limits; return the parent's deadline."""
        c = self.c
        row = c.execute(Q.PARENT_ROW, {"parent": parent_id}).fetchone()
        if row is None:
            raise InvalidJob("parent", f"job {parent_id} does not exist")
        if S(row[4]) in FINAL and not allow_final:
            raise InvalidJob("parent", f"job {parent_id} is {row[4]}; it takes no children")
        depth = c.execute(Q.DEPTH, (parent_id,)).fetchone()[0] + 1
        if depth > self.limits.max_depth:
            raise InvalidJob(
                "parent",
                f"a child of job {parent_id} would be at depth {depth}; "
                f"the limit is {self.limits.max_depth}",
            )
        children = c.execute(Q.CHILD_COUNT, (parent_id,)).fetchone()[0] + adding
        if children > self.limits.max_children:
            raise InvalidJob(
                "parent",
                f"job {parent_id} would have {children} children; "
                f"the limit is {self.limits.max_children}",
            )
        deadline: float | None = row[11]
        return deadline


def _make_row(
    new: NewJob,
    opts: JobOptions,
    now: float,
    status: JobStatus,
    error: str | None,
    run_at: float,
    expires_at: float | None,
    parent_id: int | None,
    deps: tuple[int, ...],
) -> _Row:
    """A new job's row (Inserter.prepare, once it has decided everything but the row)."""
    row = _Row(
        new=new,
        status=status,
        error=error,
        priority=new.priority if new.priority is not None else opts.priority,
        attempts=new.max_attempts if new.max_attempts is not None else opts.attempts,
        backoff=new.backoff or opts.backoff,
        timeout=new.timeout if new.timeout is not None else opts.timeout,
        run_at=run_at,
        expires_at=expires_at,
        parent_id=parent_id,
        deps=deps,
        final=status in FINAL,
    )
    row.values = (
        new.queue,
        new.name,
        new.payload,
        status,
        row.priority,
        row.attempts,
        row.backoff.to_json(),
        row.timeout,
        run_at,
        expires_at,
        parent_id,
        new.batch_id,
        json.dumps(list(new.tags)) if new.tags else "[]",
        new.context,
        error,
        new.on_dependency_failure,
        new.on_child_failure,
        now,
        now,
        now if row.final else None,
        new.kind,
        new.unique_key,
        new.unique_key,  # unique_lock: the key is held from the start
        None if new.unique_for is None else now + new.unique_for,
        None if new.unique_key is None else states_text(new.unique_states),
        new.concurrency_key,
    )
    return row


def still_holds(until: float | None, states: str, status: str, now: float) -> bool:
    """Does a job with these unique_until, unique_states and status keep its key now?
    (UNIQUE_RELEASE_STALE's condition, for a holder read after it ran.)"""
    return (until is not None and until > now) or f",{status}," in states


def job_of(row: _Row, job_id: int, now: float, created_at: datetime) -> Job:
    """The Job a new row holds as written; `created_at` is `now` as a UTC datetime."""
    new = row.new
    claimed = None if row.worker_id is None else created_at  # handed over (handed_row)
    return build_job(  # Job's fields in order (see rows.job_from_row)
        (
            job_id,
            new.queue,
            new.name,
            json.loads(new.payload),
            row.status,
            row.priority,
            0 if claimed is None else 1,  # attempt
            row.attempts,
            row.backoff,
            row.timeout,
            created_at if row.run_at == now else utc_of(row.run_at),
            None if row.expires_at is None else utc_of(row.expires_at),
            row.parent_id,
            new.batch_id,
            new.tags,
            None if new.context is None else json.loads(new.context),
            None,  # result
            row.error,
            None,  # progress
            None,  # progress_message
            row.worker_id,
            claimed,  # heartbeat_at
            created_at,
            created_at,  # updated_at
            claimed,  # started_at
            created_at if row.final else None,  # finished_at
            new.on_dependency_failure,
            new.on_child_failure,
            new.kind,
            new.unique_key,
            new.concurrency_key,
            row.deps,
        )
    )


@dataclass(frozen=True, slots=True)
class Created:
    """What a plain enqueue wrote in its transaction; `build()` makes its Jobs after it,
    so that the writer (on SQLite, the holder of the write lock) spends its time on
    statements. A group of enqueues shares one insert: each takes its slice."""

    ids: Sequence[int]
    rows: Sequence[_Row]
    now: float
    created_at: datetime

    def __getitem__(self, part: slice) -> Created:
        return Created(self.ids[part], self.rows[part], self.now, self.created_at)

    def build(self) -> list[Job]:
        now, at = self.now, self.created_at
        return [
            job_of(row, job_id, now, at) for job_id, row in zip(self.ids, self.rows, strict=True)
        ]


def initial_status(
    new: NewJob,
    deps: dict[int, JobStatus],
    run_at: float,
    now: float,
    parent: Job | None = None,
) -> tuple[JobStatus, str | None]:
    """Where a new job starts. A failed dependency (under policy fail/cancel) decides first;
    a child created with a parent that starts final is cancelled with it."""
    if deps:
        broken = [d for d, s in deps.items() if s in (S.FAILED, S.CANCELLED)]
        if broken and new.on_dependency_failure != "ignore":
            reason = f"dependency {broken[0]} is {deps[broken[0]]}"
            return (S.CANCELLED if new.on_dependency_failure == "cancel" else S.FAILED), reason
    if parent is not None and parent.status in FINAL:
        return S.CANCELLED, f"parent {parent.id} is {parent.status}"
    if new.start_waiting_children or new.children:
        return S.WAITING_CHILDREN, None
    if new.start_paused:
        return S.PAUSED, None
    if deps and any(s not in FINAL for s in deps.values()):
        return S.WAITING, None
    return (S.DELAYED if run_at > now else S.PENDING), None
