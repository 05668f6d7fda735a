"""Random sequences of client and worker operations on a real SQLite file, with the store's
invariants checked after every step."""

from __future__ import annotations

import functools
import itertools
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal
from conftest import FakeClock
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import wizd
from wizd import IllegalTransition, Job, JobStatus
from wizd.model import FINAL, TRANSITIONS
from wizd.store import Finish

S = JobStatus
QUEUES = ("a", "b")
WORKERS = ("w1", "w2")
HUNG = 100.0

queues = st.sampled_from(QUEUES)
workers = st.sampled_from(WORKERS)
job_specs = st.tuples(
    queues,
    st.integers(1, 5),  # priority
    st.sampled_from([0, 0, 5, 30]),  # delay
    st.integers(1, 3),  # attempts
    st.sampled_from([None, None, None, 120]),  # ttl
)


def claim_key(job: Job) -> tuple[int, float, int]:
    return (-job.priority, job.run_at.timestamp(), job.id)


class QueueMachine(RuleBasedStateMachine):
    """The model is the database itself: each rule states what must follow from what the
    store reported just before it, and the invariants hold for every job at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="wizd-machine-")
        path = str(Path(self.dir) / "wizd.db")
        self.clock = FakeClock()
        self.stack = ExitStack()
        self.portal = self.stack.enter_context(start_blocking_portal())
        try:
            self.q: wizd.Queue = self.stack.enter_context(
                self.portal.wrap_async_context_manager(wizd.connect(path, clock=self.clock))
            )
        except BaseException:
            self.stack.close()
            raise
        self.db = sqlite3.connect(path)
        self.ids: list[int] = []
        self.paused = dict.fromkeys(QUEUES, False)

    def teardown(self) -> None:
        self.db.close()
        self.stack.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(functools.partial(fn, *args, **kwargs))

    def jobs(self, *statuses: JobStatus) -> list[Job]:
        found: list[Job] = self.call(
            self.q.list, status=list(statuses) or None, sort="id", order="asc", limit=10_000
        )
        return found

    def get(self, job_id: int) -> Job:
        job: Job = self.call(self.q.get, job_id)
        return job

    def running(self) -> int:
        counts: dict[str, int] = self.call(self.q.counts)
        return counts["running"]

    def pick(self, data: st.DataObject, *statuses: JobStatus, only: bool = False) -> Job | None:
        """A job in one of `statuses`; unless `only`, now and then any job (to see the
        operations refused). None if there is no such job."""
        if only or data.draw(st.integers(0, 3), label="legal") > 0:
            candidates = self.jobs(*statuses)
        else:
            candidates = self.jobs()
        return data.draw(st.sampled_from(candidates), label="job") if candidates else None

    # -- client rules ----------------------------------------------------------------------

    @initialize(specs=st.lists(job_specs, min_size=2, max_size=6))
    def start(self, specs: list[tuple[str, int, int, int, int | None]]) -> None:
        self.enqueue(specs)

    @rule(specs=st.lists(job_specs, min_size=1, max_size=3))
    def enqueue(self, specs: list[tuple[str, int, int, int, int | None]]) -> None:
        items = [
            {
                "name": "t",
                "payload": {"n": len(self.ids) + i},
                "queue": queue,
                "priority": priority,
                "delay": delay,
                "attempts": attempts,
                "ttl": ttl,
            }
            for i, (queue, priority, delay, attempts, ttl) in enumerate(specs)
        ]
        jobs = self.call(self.q.enqueue_many, items)
        for job, (_, _, delay, _, _) in zip(jobs, specs, strict=True):
            assert job.status is (S.DELAYED if delay else S.PENDING)
            self.ids.append(job.id)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self.pick(data, *(s for s in S if s not in FINAL))
        if job is None:
            return
        if job.status in FINAL:
            self.refused(job, self.q.cancel)
        else:
            assert self.call(self.q.cancel, job.id)[0].status is S.CANCELLED

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self.pick(data, S.FAILED, S.CANCELLED)
        if job is None:
            return
        if job.status in (S.FAILED, S.CANCELLED):
            [retried] = self.call(self.q.retry, job.id)
            assert (retried.status, retried.attempt) == (S.PENDING, 0)
        else:
            self.refused(job, self.q.retry)

    @rule(data=st.data())
    def pause_or_resume_job(self, data: st.DataObject) -> None:
        job = self.pick(data, S.WAITING, S.PENDING, S.DELAYED, S.PAUSED)
        if job is None:
            return
        if job.status is S.PAUSED:
            resumed = self.call(self.q.resume_job, job.id)
            due = job.run_at.timestamp() <= self.clock()
            assert resumed.status is (S.PENDING if due else S.DELAYED)
        elif job.status in (S.WAITING, S.PENDING, S.DELAYED):
            assert self.call(self.q.pause_job, job.id).status is S.PAUSED
        else:
            self.refused(job, self.q.pause_job)
            self.refused(job, self.q.resume_job)

    def refused(self, job: Job, operation: Callable[[int], Any]) -> None:
        """An operation the job's status does not allow: refused, and nothing changes."""
        events = len(self.call(self.q.events, job.id))
        try:
            self.call(operation, job.id)
        except IllegalTransition:
            pass
        else:
            raise AssertionError(f"{operation.__name__} of a {job.status} job was not refused")
        assert self.get(job.id) == job
        assert len(self.call(self.q.events, job.id)) == events

    @rule(queue=queues, paused=st.sampled_from([False, True, False]))
    def pause_queue(self, queue: str, paused: bool) -> None:
        self.call(self.q.pause if paused else self.q.resume, queue)
        self.paused[queue] = paused

    # -- worker rules ----------------------------------------------------------------------

    @rule(queue=queues, worker=workers, n=st.integers(1, 4))
    def claim(self, queue: str, worker: str, n: int) -> None:
        now = self.clock()
        ready = [
            j
            for j in self.jobs(S.PENDING, S.DELAYED)
            if j.queue == queue and j.run_at.timestamp() <= now
        ]
        expected = [] if self.paused[queue] else sorted(ready, key=claim_key)[:n]
        claimed = self.call(self.q.store.claim, queue, worker, n)
        assert [j.id for j in claimed] == [j.id for j in expected]
        for before, job in zip(expected, claimed, strict=True):
            assert (job.status, job.worker_id) == (S.RUNNING, worker)
            assert job.attempt == before.attempt + 1

    @precondition(lambda self: self.running() > 0)
    @rule(data=st.data(), outcome=st.sampled_from(["completed", "failed", "later", "requeue"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        job = self.pick(data, S.RUNNING, only=True)
        if job is None:
            return
        assert job.worker_id is not None
        # Nobody but the worker that holds this attempt can finish it.
        other = next(w for w in WORKERS if w != job.worker_id)
        stale = [
            Finish(job.id, other, job.attempt, "completed"),
            Finish(job.id, job.worker_id, job.attempt - 1, "failed"),
        ]
        assert self.call(self.q.store.finish, stale) == [False, False]
        assert self.get(job.id) == job

        retry = data.draw(st.booleans(), label="retry")
        result = Finish(job.id, job.worker_id, job.attempt, outcome, retry=retry)  # type: ignore[arg-type]
        assert self.call(self.q.store.finish, [result]) == [True]
        after = self.get(job.id)
        if outcome == "completed":
            assert after.status is S.COMPLETED
        elif outcome == "failed":
            retried = retry and job.attempt < job.max_attempts
            assert after.status is (S.DELAYED if retried else S.FAILED)
            if retried:
                delay = job.backoff.delay_for(job.attempt)
                assert after.run_at.timestamp() == self.clock() + delay
        else:
            assert (after.status, after.attempt) == (S.PENDING, job.attempt - 1)
        # The same run cannot finish twice.
        assert self.call(self.q.store.finish, [result]) == [False]

    @precondition(lambda self: self.running() > 0)
    @rule(worker=workers)
    def recover(self, worker: str) -> None:
        running = {j.id: j for j in self.jobs(S.RUNNING) if j.worker_id == worker}
        interrupted = self.call(self.q.store.recover_worker, worker, "worker gone")
        assert {i.job.id for i in interrupted} == set(running)
        for item in interrupted:
            job = running[item.job.id]
            assert item.status is (S.PENDING if job.attempt < job.max_attempts else S.FAILED)
            assert self.get(job.id).status is item.status

    # -- time ------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 5, 30, 60]), alive=st.sampled_from(WORKERS))
    def tick(self, seconds: int, alive: str) -> None:
        """Time passes; one worker heartbeats, the other may look hung."""
        self.clock.advance(seconds)
        now = self.clock()
        owned = {j.id for j in self.jobs(S.RUNNING) if j.worker_id == alive}
        assert self.call(self.q.store.heartbeat, alive, len(owned)) == owned

        due = [j for j in self.jobs(S.DELAYED) if j.run_at.timestamp() <= now]
        assert self.call(self.q.store.promote_due) == len(due)
        assert all(self.get(j.id).status is S.PENDING for j in due)

        stale = [j for j in self.jobs(S.RUNNING) if j.heartbeat_at.timestamp() < now - HUNG]  # type: ignore[union-attr]
        reaped = self.call(self.q.store.reap_hung, HUNG)
        assert {i.job.id for i in reaped} == {j.id for j in stale}

        overdue = {
            j.id
            for j in self.jobs()
            if j.expires_at is not None and j.expires_at.timestamp() <= now and not j.final
        }
        assert set(self.call(self.q.store.expire)) == overdue
        for job_id in overdue:
            job = self.get(job_id)
            assert job.status is S.FAILED
            assert job.error is not None
            assert "expired" in job.error

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def counts_equal_a_recount(self) -> None:
        kept = self.call(self.q.store.counts)
        counted = self.call(self.q.store.recount)
        assert {name: c for name, c in kept.items() if any(c.values())} == counted
        assert sum(self.call(self.q.counts).values()) == len(self.ids)

    @invariant()
    def every_status_is_a_job_status(self) -> None:
        stored = {s for (s,) in self.db.execute("SELECT DISTINCT status FROM jobs")}
        assert stored <= {s.value for s in S}

    @invariant()
    def no_job_disappears(self) -> None:
        jobs = self.call(self.q.store.get_many, self.ids)
        assert [j.id for j in jobs] == self.ids

    @invariant()
    def every_job_is_consistent(self) -> None:
        for job in self.jobs():
            assert isinstance(job.status, JobStatus)
            assert 0 <= job.attempt <= job.max_attempts, job
            if job.status is S.RUNNING:
                assert job.worker_id is not None, job
                assert job.attempt >= 1, job
                assert job.heartbeat_at is not None, job
            assert (job.finished_at is not None) == (job.status in FINAL), job

    @invariant()
    def history_follows_the_transition_table(self) -> None:
        """Each job's status events replay a path through TRANSITIONS to its status now:
        the stored ones and those read from its row, in the order the store gives."""
        for job in self.jobs():
            events = self.call(self.q.events, job.id)
            assert [e.id for e in events] == list(range(1, len(events) + 1)), events
            path = [e.status for e in events if e.status is not None]
            assert path[-1] is job.status, (job.id, path)
            for before, after in itertools.pairwise(path):
                assert after in TRANSITIONS[before], (job.id, path)


# No shrinking: every step is several database round trips, and shrinking a failing run
# would outlast the per-test timeout; the failing run is reported step by step as it was.
QueueMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
)
TestQueueMachine = QueueMachine.TestCase
