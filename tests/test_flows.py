"""Flows: dependencies, parents and children, linked batches and distributed sub-tasks.

Each test drives the worker side directly (store.claim / store.finish) and moves a fake
clock by hand; no sleeps. Every scenario ends by checking the per-status counts against a
recount of the jobs table. Self-contained: the fixtures here are prefixed `flows_`.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import wizd
from wizd import DependencyError, IllegalTransition, InvalidJob, Job, JobStatus
from wizd.store import Finish

S = JobStatus
WORKER = "flows-worker"
START = 1_760_000_000.0


class FlowsClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Opener = Callable[..., contextlib.AbstractAsyncContextManager[wizd.Queue]]


@pytest.fixture
def flows_clock() -> FlowsClock:
    return FlowsClock()


@pytest.fixture
def flows_open(backend_url: str, flows_clock: FlowsClock) -> Opener:
    """`async with flows_open(**store_options) as q:` — a Queue on a fresh store (once per
    backend: a SQLite file, a PostgreSQL schema).

    Opened inside the test (not in a fixture): the store's task group must be left by the
    task that entered it. On a clean exit the counts are checked against a recount."""

    @contextlib.asynccontextmanager
    async def opener(**options: Any) -> AsyncIterator[wizd.Queue]:
        async with wizd.connect(backend_url, clock=flows_clock, **options) as q:
            yield q
            await assert_counts_match(q)

    return opener


# -- helpers -------------------------------------------------------------------------------


async def assert_counts_match(q: wizd.Queue) -> None:
    """The kept counts equal a recount of the jobs table, in total and per queue."""
    recount = await q.store.recount()
    total = {s.value: 0 for s in S}
    for per_queue in recount.values():
        for status, n in per_queue.items():
            total[status] += n
    assert await q.counts() == total
    kept = await q.counts_by_queue()
    zero = {s.value: 0 for s in S}
    for queue in set(kept) | set(recount):
        assert kept.get(queue, zero) == recount.get(queue, zero), queue


async def status(q: wizd.Queue, job: Job | int) -> JobStatus:
    return (await q.get(job)).status


async def statuses(q: wizd.Queue, *jobs: Job) -> list[JobStatus]:
    return [(await q.get(j)).status for j in jobs]


async def start(q: wizd.Queue, job: Job | int) -> Job:
    """Claim `job` (it must be pending) as WORKER; others claimed on the way go back."""
    job_id = job.id if isinstance(job, Job) else job
    queue = (await q.get(job_id)).queue
    claimed = await q.store.claim(queue, WORKER, 1000)
    others = [Finish(j.id, WORKER, j.attempt, "requeue") for j in claimed if j.id != job_id]
    if others:
        assert all(await q.store.finish(others))
    mine = [j for j in claimed if j.id == job_id]
    assert mine, f"job {job_id} was not claimable: {await status(q, job_id)}"
    return mine[0]


async def finish(q: wizd.Queue, run: Job, outcome: Any, **kw: Any) -> bool:
    assert run.worker_id is not None
    [ok] = await q.store.finish([Finish(run.id, run.worker_id, run.attempt, outcome, **kw)])
    return ok


async def complete(q: wizd.Queue, job: Job | int, result: Any = None) -> None:
    run = await start(q, job)
    assert await finish(q, run, "completed", result=result)


async def fail(q: wizd.Queue, job: Job | int, error: str = "boom") -> None:
    run = await start(q, job)
    assert await finish(q, run, "failed", error=error, retry=False)


async def snapshot(q: wizd.Queue) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Every job (with its dependencies) and every event: to prove nothing was written."""
    jobs = await q.list(limit=10_000, sort="id", order="asc")
    return (
        [j.to_dict() for j in jobs],
        [[e.to_dict() for e in await q.events(j)] for j in jobs],
    )


def ids_in(message: object) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", str(message))}


async def assert_empty(q: wizd.Queue) -> None:
    assert await q.list(limit=10_000) == []
    assert set((await q.counts()).values()) == {0}


# -- dependencies --------------------------------------------------------------------------


async def test_dependent_becomes_pending_in_the_same_call_as_the_last_completion(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        a = await q.enqueue("fetch", queue="a")
        b = await q.enqueue("fetch", queue="b")
        c = await q.enqueue("merge", queue="c", depends_on=[a, b.id])
        assert c.status is S.WAITING
        assert c.depends_on == (a.id, b.id)
        assert [j.id for j in await q.dependencies(c)] == [a.id, b.id]
        assert [j.id for j in await q.dependents(a)] == [c.id]
        assert await q.store.claim("c", WORKER, 10) == []  # a waiting job is never claimed

        await complete(q, a)
        assert await status(q, c) is S.WAITING
        await complete(q, b)
        # Nothing between the finish() that completed b and this read.
        assert await status(q, c) is S.PENDING
        assert "released" in [e.kind for e in await q.events(c)]
        await complete(q, c)


async def test_released_dependent_with_a_future_run_at_becomes_delayed(
    flows_open: Opener, flows_clock: FlowsClock
) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        later = await q.enqueue("later", queue="l", depends_on=[a], delay=30)
        assert later.status is S.WAITING
        await complete(q, a)
        assert await status(q, later) is S.DELAYED
        flows_clock.advance(31)
        assert await q.store.promote_due() == 1
        assert await status(q, later) is S.PENDING


async def test_enqueue_after_dependencies_are_final(flows_open: Opener) -> None:
    async with flows_open() as q:
        done = await q.enqueue("done", queue="d")
        await complete(q, done)
        broken = await q.enqueue("broken", queue="b")
        await fail(q, broken)
        assert (await q.enqueue("x", depends_on=[done])).status is S.PENDING
        failed = await q.enqueue("x", depends_on=[done, broken])
        assert failed.status is S.FAILED
        assert str(broken.id) in (failed.error or "")
        cancelled = await q.enqueue("x", depends_on=[broken], on_dependency_failure="cancel")
        assert cancelled.status is S.CANCELLED
        ignored = await q.enqueue("x", depends_on=[broken], on_dependency_failure="ignore")
        assert ignored.status is S.PENDING


async def test_add_and_remove_dependency(flows_open: Opener) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        b = await q.enqueue("b", queue="b")
        x = await q.enqueue("x", queue="x")
        assert x.status is S.PENDING

        x = await q.add_dependency(x, a)
        assert x.status is S.WAITING
        assert x.depends_on == (a.id,)
        x = await q.add_dependency(x, [b.id])
        assert [j.id for j in await q.dependencies(x)] == [a.id, b.id]
        assert [j.id for j in await q.dependents(b)] == [x.id]

        x = await q.remove_dependency(x, a)
        assert x.status is S.WAITING  # b is still unfinished
        assert [j.id for j in await q.dependents(a)] == []
        x = await q.remove_dependency(x, b)
        assert x.status is S.PENDING  # nothing left to wait for: released at once
        assert await q.dependencies(x) == []

        with pytest.raises(DependencyError):
            await q.remove_dependency(x, a)  # not a dependency (any more)

        await complete(q, a)
        x = await q.add_dependency(x, a)  # already completed: nothing to wait for
        assert x.status is S.PENDING
        kinds = [e.kind for e in await q.events(x)]
        assert kinds.count("dependency_added") == 3
        assert kinds.count("dependency_removed") == 2


async def test_add_dependency_to_a_started_or_final_job_is_refused(flows_open: Opener) -> None:
    async with flows_open() as q:
        dep = await q.enqueue("dep", queue="dep")
        running = await q.enqueue("r", queue="r")
        await start(q, running)
        parent = await q.enqueue("p", queue="p", children=[{"name": "c", "queue": "c"}])
        assert parent.status is S.WAITING_CHILDREN
        completed = await q.enqueue("d", queue="d")
        await complete(q, completed)
        failed = await q.enqueue("f", queue="f")
        await fail(q, failed)
        cancelled = await q.enqueue("k", queue="k")
        await q.cancel(cancelled)

        before = await snapshot(q)
        for job in (running, parent, completed, failed, cancelled):
            with pytest.raises(IllegalTransition) as err:
                await q.add_dependency(job, dep)
            assert err.value.job_id == job.id
        assert await snapshot(q) == before


async def test_unknown_dependency_is_refused_and_nothing_is_written(flows_open: Opener) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        x = await q.enqueue("x", queue="x")
        before = await snapshot(q)

        with pytest.raises(DependencyError) as err:
            await q.enqueue("y", depends_on=[a, 9999])
        assert 9999 in ids_in(err.value)
        with pytest.raises(DependencyError) as err:
            await q.add_dependency(x, [a, 9999])  # the good one is not kept either
        assert 9999 in ids_in(err.value)
        assert await snapshot(q) == before


async def test_a_dependency_that_closes_a_cycle_is_refused_naming_the_cycle(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        b = await q.enqueue("b", queue="b", depends_on=[a])
        c = await q.enqueue("c", queue="c", depends_on=[b])
        free = await q.enqueue("free", queue="free")
        before = await snapshot(q)

        with pytest.raises(DependencyError) as err:
            await q.add_dependency(a, [free, c])
        cycle = err.value.cycle
        assert set(cycle) == {a.id, b.id, c.id}
        assert cycle[0] == cycle[-1] == a.id
        assert ids_in(err.value) >= {a.id, b.id, c.id}
        # The walk is real: a (would) depend on c, c on b, b on a.
        edges = {(b.id, a.id), (c.id, b.id), (a.id, c.id)}
        assert all(pair in edges for pair in itertools.pairwise(cycle))

        with pytest.raises(DependencyError) as err:
            await q.add_dependency(b, c)  # two jobs
        assert set(err.value.cycle) == {b.id, c.id}
        with pytest.raises(DependencyError) as err:
            await q.add_dependency(free, free)  # itself
        assert set(err.value.cycle) == {free.id}

        assert await snapshot(q) == before  # no dependency, no event, no status change
        assert await status(q, a) is S.PENDING


async def test_failed_dependency_fails_dependents_through_chains(flows_open: Opener) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        b = await q.enqueue("b", queue="b", depends_on=[a])
        c = await q.enqueue("c", queue="c", depends_on=[b])
        d = await q.enqueue("d", queue="d", depends_on=[c])
        cancel = await q.enqueue("e", queue="e", depends_on=[a], on_dependency_failure="cancel")
        ignore = await q.enqueue("f", queue="f", depends_on=[a], on_dependency_failure="ignore")
        other = await q.enqueue("o", queue="o")
        both = await q.enqueue(
            "g", queue="g", depends_on=[a, other], on_dependency_failure="ignore"
        )

        await fail(q, a)
        # All of it happened inside the finish() call.
        b2, c2, d2 = (await q.get(b)), (await q.get(c)), (await q.get(d))
        assert (b2.status, c2.status, d2.status) == (S.FAILED, S.FAILED, S.FAILED)
        assert a.id in ids_in(b2.error)
        assert "failed" in (b2.error or "")
        assert b.id in ids_in(c2.error)
        assert c.id in ids_in(d2.error)
        assert await status(q, cancel) is S.CANCELLED
        assert a.id in ids_in((await q.get(cancel)).error)
        assert await status(q, ignore) is S.PENDING  # a final dependency counts as done
        assert await status(q, both) is S.WAITING  # ignore still waits for every one to end
        await complete(q, other)
        assert await status(q, both) is S.PENDING


async def test_cancelled_dependency_applies_the_policy(flows_open: Opener) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        failing = await q.enqueue("b", depends_on=[a])
        cancelling = await q.enqueue("c", depends_on=[a], on_dependency_failure="cancel")
        ignoring = await q.enqueue("d", depends_on=[a], on_dependency_failure="ignore")
        await q.cancel(a)
        got = await q.get(failing)
        assert got.status is S.FAILED
        assert a.id in ids_in(got.error)
        assert "cancelled" in (got.error or "")
        assert await status(q, cancelling) is S.CANCELLED
        assert await status(q, ignoring) is S.PENDING


async def test_adding_a_failed_dependency_applies_the_policy(flows_open: Opener) -> None:
    async with flows_open() as q:
        broken = await q.enqueue("broken", queue="b")
        await fail(q, broken)
        x = await q.enqueue("x")
        y = await q.enqueue("y", on_dependency_failure="ignore")
        assert (await q.add_dependency(x, broken)).status is S.FAILED
        assert (await q.add_dependency(y, broken)).status is S.PENDING


async def test_paused_dependent_is_released_on_resume(flows_open: Opener) -> None:
    async with flows_open() as q:
        a = await q.enqueue("a", queue="a")
        x = await q.enqueue("x", queue="x", depends_on=[a])
        await q.pause_job(x)
        await complete(q, a)
        assert await status(q, x) is S.PAUSED
        assert (await q.resume_job(x)).status is S.PENDING


# -- parents and children ------------------------------------------------------------------


async def test_processor_spawns_children_and_waits_for_them(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.enqueue("plan", queue="plan", attempts=1)
        run = await start(q, parent)
        assert run.attempt == 1
        c1 = await q.enqueue("step", {"n": 1}, queue="steps", parent=parent)
        c2 = await q.enqueue("step", {"n": 2}, queue="steps", parent=parent)
        assert (c1.parent_id, c2.parent_id) == (parent.id, parent.id)

        assert await finish(q, run, "wait_children")
        waiting = await q.get(parent)
        assert waiting.status is S.WAITING_CHILDREN
        assert waiting.attempt == 0  # waiting is not charged
        assert await q.store.claim("plan", WORKER, 10) == []

        await complete(q, c1, result={"n": 1})
        assert await status(q, parent) is S.WAITING_CHILDREN
        await fail(q, c2, error="step 2 broke")
        # on_child_failure=continue: pending as soon as every child is final.
        assert await status(q, parent) is S.PENDING

        kids = await q.children(parent)
        assert [k.id for k in kids] == [c1.id, c2.id]
        assert [k.status for k in kids] == [S.COMPLETED, S.FAILED]
        assert [k.result for k in kids] == [{"n": 1}, None]
        assert [k.error for k in kids] == [None, "step 2 broke"]

        again = await start(q, parent)  # its processor runs once more, on the same attempt
        assert again.attempt == 1
        assert await finish(q, again, "completed", result="merged")
        assert await status(q, parent) is S.COMPLETED


async def test_wait_for_children_already_final_runs_again_at_once(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.enqueue("plan", queue="plan")
        run = await start(q, parent)
        child = await q.enqueue("step", queue="steps", parent=parent)
        await complete(q, child)
        assert await status(q, parent) is S.RUNNING  # not waiting yet: nothing to wake
        assert await finish(q, run, "wait_children")
        assert await status(q, parent) is S.PENDING


async def test_enqueue_with_children_in_one_call(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.enqueue(
            "report",
            {"topic": "x"},
            queue="plan",
            children=[
                {"name": "search", "payload": {"q": "a"}, "queue": "steps"},
                {"name": "search", "payload": {"q": "b"}, "queue": "steps", "priority": 5},
            ],
        )
        assert parent.status is S.WAITING_CHILDREN
        kids = await q.children(parent)
        assert [(k.name, k.payload, k.parent_id) for k in kids] == [
            ("search", {"q": "a"}, parent.id),
            ("search", {"q": "b"}, parent.id),
        ]
        assert [k.status for k in kids] == [S.PENDING, S.PENDING]
        assert kids[1].priority == 5
        await complete(q, kids[0])
        assert await status(q, parent) is S.WAITING_CHILDREN
        await complete(q, kids[1])
        assert await status(q, parent) is S.PENDING


@pytest.mark.parametrize(
    ("bad_child", "error"),
    [
        ({"name": "bad name!"}, InvalidJob),
        ({"name": "ok", "payload": ["not", "an", "object"]}, InvalidJob),
        ({"name": "ok", "priority": 9}, InvalidJob),
        ({"name": "ok", "colour": "red"}, InvalidJob),
        ({"name": "ok", "depends_on": [9999]}, DependencyError),
        ({"name": "ok", "children": [{"name": "deeper", "payload": 3}]}, InvalidJob),
    ],
)
async def test_a_bad_child_refuses_the_whole_call(
    flows_open: Opener, bad_child: dict[str, Any], error: type[Exception]
) -> None:
    async with flows_open() as q:
        with pytest.raises(error):
            await q.enqueue("parent", children=[{"name": "good"}, bad_child])
        await assert_empty(q)
        # The store is still usable and ids were not burnt on half a write.
        assert (await q.enqueue("after")).status is S.PENDING


async def test_on_child_failure_fail_fails_parent_and_cancels_the_others(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        parent = await q.enqueue(
            "p",
            queue="plan",
            on_child_failure="fail",
            children=[{"name": "c", "queue": f"k{i}"} for i in range(4)],
        )
        done, broken, busy, idle = await q.children(parent)
        await complete(q, done)
        run = await start(q, busy)
        await fail(q, broken, error="nope")
        got = await q.get(parent)
        assert got.status is S.FAILED
        assert broken.id in ids_in(got.error)
        assert await statuses(q, done, broken, busy, idle) == [
            S.COMPLETED,
            S.FAILED,
            S.CANCELLED,
            S.CANCELLED,
        ]
        assert not await finish(q, run, "completed")  # the cancelled run lost its job


async def test_child_failure_fails_a_running_parent_and_climbs_the_tree(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        top = await q.enqueue("top", queue="top", on_child_failure="fail")
        middle = await q.enqueue("middle", queue="middle", parent=top, on_child_failure="fail")
        run = await start(q, middle)  # its processor is still running while a child fails
        sibling = await q.enqueue("sibling", queue="sibling", parent=top)
        leaf = await q.enqueue("leaf", queue="leaf", parent=middle)
        await fail(q, leaf, error="leaf broke")
        assert await statuses(q, leaf, middle, top, sibling) == [
            S.FAILED,
            S.FAILED,
            S.FAILED,
            S.CANCELLED,
        ]
        assert leaf.id in ids_in((await q.get(middle)).error)
        assert middle.id in ids_in((await q.get(top)).error)
        assert not await finish(q, run, "wait_children")


async def test_on_child_failure_cancel_cancels_parent_and_the_others(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.enqueue(
            "p",
            queue="plan",
            on_child_failure="cancel",
            children=[{"name": "c", "queue": "k1"}, {"name": "c", "queue": "k2"}],
        )
        first, second = await q.children(parent)
        await q.cancel(first)
        assert await status(q, parent) is S.CANCELLED
        assert await status(q, second) is S.CANCELLED


async def test_on_child_failure_continue_wakes_parent_even_if_all_children_fail(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        parent = await q.enqueue(
            "p", queue="plan", children=[{"name": "c", "queue": "k"}, {"name": "c", "queue": "k"}]
        )
        assert parent.on_child_failure == "continue"
        first, second = await q.children(parent)
        await fail(q, first)
        assert await status(q, parent) is S.WAITING_CHILDREN
        await q.cancel(second)
        assert await status(q, parent) is S.PENDING


@pytest.mark.parametrize("policy", ["continue", "fail", "cancel"])
async def test_cancelling_a_parent_cancels_its_subtree(flows_open: Opener, policy: str) -> None:
    async with flows_open() as q:
        parent = await q.enqueue(
            "p",
            queue="plan",
            on_child_failure=policy,
            children=[{"name": "c", "queue": f"k{i}"} for i in range(3)],
        )
        done, busy, middle = await q.children(parent)
        grandchild = await q.enqueue("g", queue="g", parent=middle)
        await complete(q, done)
        run = await start(q, busy)

        await q.cancel(parent)
        got = await q.get(parent)
        assert got.status is S.CANCELLED  # not failed, whatever the policy
        assert await statuses(q, done, busy, middle, grandchild) == [
            S.COMPLETED,
            S.CANCELLED,
            S.CANCELLED,
            S.CANCELLED,
        ]
        assert not await finish(q, run, "completed")


async def test_cancel_reaches_grandchildren_under_a_finished_child(flows_open: Opener) -> None:
    """A child that completed without waiting for its own children leaves them running;
    cancelling the top of the tree must still cancel those unfinished grandchildren."""
    async with flows_open() as q:
        top = await q.enqueue("top", queue="top")
        middle = await q.enqueue("middle", queue="middle", parent=top)
        leaf = await q.enqueue("leaf", queue="leaf", parent=middle)
        await complete(q, middle)
        await q.cancel(top)
        assert await statuses(q, top, middle, leaf) == [S.CANCELLED, S.COMPLETED, S.CANCELLED]


async def test_a_child_never_outlives_its_parents_deadline(
    flows_open: Opener, flows_clock: FlowsClock
) -> None:
    async with flows_open() as q:
        await q.set_defaults("long", ttl=1000)
        parent = await q.enqueue(
            "p",
            queue="plan",
            ttl=100,
            children=[{"name": "c"}, {"name": "c", "ttl": 500}, {"name": "c", "ttl": 10}],
        )
        deadline = parent.expires_at
        assert deadline is not None
        assert deadline.timestamp() == START + 100
        no_ttl, longer, shorter = await q.children(parent)
        assert no_ttl.expires_at == deadline
        assert longer.expires_at == deadline
        assert shorter.expires_at is not None
        assert shorter.expires_at.timestamp() == START + 10

        flows_clock.advance(50)
        late = await q.enqueue("c", queue="long", parent=parent)  # queue default ttl 1000
        assert late.expires_at == deadline
        grandchild = await q.enqueue("g", parent=late, ttl=3600)
        assert grandchild.expires_at == deadline

        free = await q.enqueue("free", ttl=5)
        child_of_free = await q.enqueue("c", parent=free, ttl=3)
        assert child_of_free.expires_at is not None
        assert child_of_free.expires_at.timestamp() == flows_clock.now + 3
        open_parent = await q.enqueue("open")
        assert (await q.enqueue("c", parent=open_parent)).expires_at is None


async def test_child_of_a_missing_or_final_parent_is_refused(flows_open: Opener) -> None:
    async with flows_open() as q:
        done = await q.enqueue("done", queue="d")
        await complete(q, done)
        before = await snapshot(q)
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("c", parent=9999)
        assert err.value.field == "parent"
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("c", parent=done)
        assert err.value.field == "parent"
        assert await snapshot(q) == before


async def test_tree(flows_open: Opener, flows_clock: FlowsClock) -> None:
    async with flows_open() as q:
        root = await q.enqueue("root", queue="plan")
        flows_clock.advance(5)
        dep = await q.enqueue("dep", queue="d")
        child = await q.enqueue("child", queue="kids", parent=root, depends_on=[dep])
        grandchild = await q.enqueue("grand", queue="kids", parent=child)
        other = await q.enqueue("other", queue="kids", parent=root)
        flows_clock.advance(2)

        tree = await q.tree(root)
        assert {"id", "name", "queue", "status", "attempt", "age_seconds", "depends_on"} <= set(
            tree
        )
        assert tree["id"] == root.id
        assert (tree["name"], tree["queue"], tree["status"]) == ("root", "plan", "pending")
        assert tree["attempt"] == 0
        assert tree["age_seconds"] == pytest.approx(7.0)
        assert tree["depends_on"] == []
        first, second = tree["children"]
        assert (first["id"], second["id"]) == (child.id, other.id)
        assert first["status"] == "waiting"
        assert first["depends_on"] == [dep.id]
        assert first["age_seconds"] == pytest.approx(2.0)
        assert [g["id"] for g in first["children"]] == [grandchild.id]
        assert first["children"][0]["children"] == []
        assert second["children"] == []
        # A subtree on its own.
        assert (await q.tree(child))["children"][0]["id"] == grandchild.id


async def test_depth_limit(flows_open: Opener) -> None:
    async with flows_open(max_depth=3) as q:
        root = await q.enqueue("r")
        child = await q.enqueue("c", parent=root)
        grandchild = await q.enqueue("g", parent=child)
        before = await snapshot(q)
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("too-deep", parent=grandchild)
        assert err.value.field == "parent"
        assert "depth" in str(err.value)
        assert "3" in str(err.value)
        with pytest.raises(InvalidJob):  # nested children in one call, one level too many
            await q.enqueue(
                "r",
                children=[{"name": "c", "children": [{"name": "g", "children": [{"name": "x"}]}]}],
            )
        assert await snapshot(q) == before
        ok = await q.enqueue("r", children=[{"name": "c", "children": [{"name": "g"}]}])
        assert len((await q.tree(ok))["children"][0]["children"]) == 1


async def test_default_depth_limit_is_32(flows_open: Opener) -> None:
    async with flows_open() as q:
        job = await q.enqueue("level")
        for _ in range(31):
            job = await q.enqueue("level", parent=job)
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("level", parent=job)
        assert "32" in str(err.value)
        assert sum((await q.counts()).values()) == 32


async def test_fan_out_limit(flows_open: Opener) -> None:
    async with flows_open(max_children=5) as q:
        parent = await q.enqueue("p")
        before = await snapshot(q)
        with pytest.raises(InvalidJob) as err:  # six in one call: none is written
            await q.enqueue_many([{"name": "c", "parent": parent.id} for _ in range(6)])
        assert "5" in str(err.value)
        with pytest.raises(InvalidJob):
            await q.enqueue("p2", children=[{"name": "c"} for _ in range(6)])
        assert await snapshot(q) == before

        for _ in range(5):
            await q.enqueue("c", parent=parent)
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("c", parent=parent)
        assert err.value.field == "parent"
        assert len(await q.children(parent)) == 5
        assert len(await q.children(await q.enqueue("p3", children=[{"name": "c"}] * 5))) == 5


async def test_default_fan_out_limit_is_10000(flows_open: Opener) -> None:
    async with flows_open() as q:
        with pytest.raises(InvalidJob) as err:
            await q.enqueue("p", children=[{"name": "c"}] * 10_001)
        assert "10000" in str(err.value)
        await assert_empty(q)


async def test_deleting_the_last_unfinished_child_does_not_strand_the_parent(
    flows_open: Opener,
) -> None:
    """A parent in waiting_children always has an unfinished child to wait for: deleting
    that child must either be refused or wake the parent."""
    async with flows_open() as q:
        parent = await q.enqueue("p", queue="plan", children=[{"name": "c", "queue": "k"}])
        [child] = await q.children(parent)
        try:
            await q.delete(child)
        except IllegalTransition:
            assert await status(q, parent) is S.WAITING_CHILDREN
            assert [c.id for c in await q.children(parent)] == [child.id]
        else:
            assert await status(q, parent) is S.PENDING


async def test_parent_with_dependencies_and_children_waits_for_both(flows_open: Opener) -> None:
    """enqueue(depends_on=..., children=...): when the children are done the parent must
    still wait for its dependencies before it runs again."""
    async with flows_open() as q:
        dep = await q.enqueue("dep", queue="dep")
        parent = await q.enqueue(
            "p", queue="plan", depends_on=[dep], children=[{"name": "c", "queue": "k"}]
        )
        [child] = await q.children(parent)
        await complete(q, child)
        assert await status(q, parent) not in (S.PENDING, S.DELAYED, S.RUNNING)
        await complete(q, dep)
        assert await status(q, parent) is S.PENDING


async def test_parent_waiting_for_children_follows_its_dependency_failure_policy(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        dep = await q.enqueue("dep", queue="dep")
        parent = await q.enqueue(
            "p", queue="plan", depends_on=[dep], children=[{"name": "c", "queue": "k"}]
        )
        [child] = await q.children(parent)
        await fail(q, dep)
        got = await q.get(parent)
        assert got.status is S.FAILED
        assert dep.id in ids_in(got.error)
        # Its child would work for a parent that already failed: it is cancelled with it.
        assert (await q.get(child)).status is S.CANCELLED


@pytest.mark.parametrize(
    ("policy", "expected"), [("fail", S.FAILED), ("cancel", S.CANCELLED), ("ignore", None)]
)
async def test_parent_with_children_enqueued_after_its_dependency_failed(
    flows_open: Opener, policy: str, expected: JobStatus | None
) -> None:
    """A dependency already failed applies the policy at once, children or not."""
    async with flows_open() as q:
        broken = await q.enqueue("broken", queue="dep")
        await fail(q, broken)
        parent = await q.enqueue(
            "p",
            queue="plan",
            depends_on=[broken],
            on_dependency_failure=policy,
            children=[{"name": "c", "queue": "k"}],
        )
        if expected is None:  # ignore: a final dependency counts as done
            assert parent.status is S.WAITING_CHILDREN
            [child] = await q.children(parent)
            await complete(q, child)
            assert await status(q, parent) is S.PENDING
            return
        assert parent.status is expected
        assert broken.id in ids_in(parent.error)
        # A final parent keeps no unfinished child.
        assert all(c.final for c in await q.children(parent))


async def test_parent_cancelled_by_its_dependency_policy_cancels_its_children(
    flows_open: Opener,
) -> None:
    """A parent that ends cancelled (here: on_dependency_failure=cancel while it waits for
    its children) leaves no unfinished child behind, as when it is cancelled by hand."""
    async with flows_open() as q:
        dep = await q.enqueue("dep", queue="dep")
        parent = await q.enqueue(
            "p",
            queue="plan",
            depends_on=[dep],
            on_dependency_failure="cancel",
            children=[{"name": "c", "queue": "k"}, {"name": "c", "queue": "k"}],
        )
        grandchild = await q.enqueue("g", queue="g", parent=(await q.children(parent))[0])
        await fail(q, dep)
        assert await status(q, parent) is S.CANCELLED
        kids = await q.children(parent)
        assert [k.status for k in kids] == [S.CANCELLED, S.CANCELLED]
        assert await status(q, grandchild) is S.CANCELLED


# -- linked batches ------------------------------------------------------------------------


async def test_linked_batch(flows_open: Opener) -> None:
    async with flows_open() as q:
        jobs = await q.enqueue_batch(
            [
                {"name": "fetch", "payload": {"i": 0}, "queue": "f"},
                {"name": "fetch", "payload": {"i": 1}, "queue": "f"},
                {"name": "fetch", "payload": {"i": 2}, "queue": "f"},
                {"name": "merge", "queue": "m", "depends_on": [0, 1, 2]},
                {"name": "publish", "queue": "p", "depends_on": [3]},
            ]
        )
        assert len(jobs) == 5
        batch_id = jobs[0].batch_id
        assert batch_id
        assert all(j.batch_id == batch_id for j in jobs)
        listed = await q.batch(batch_id)
        assert [j.id for j in listed] == [j.id for j in jobs]
        assert [j.name for j in listed] == ["fetch", "fetch", "fetch", "merge", "publish"]
        merge, publish = listed[3], listed[4]
        assert merge.depends_on == tuple(j.id for j in jobs[:3])
        assert publish.depends_on == (merge.id,)
        assert [j.status for j in listed] == [S.PENDING] * 3 + [S.WAITING] * 2

        for j in jobs[:2]:
            await complete(q, j)
        assert await status(q, merge) is S.WAITING
        await complete(q, jobs[2])
        assert await status(q, merge) is S.PENDING
        await complete(q, merge)
        assert await status(q, publish) is S.PENDING

        other = await q.enqueue_batch([{"name": "x"}])
        assert other[0].batch_id not in (None, batch_id)
        assert [j.id for j in await q.batch(batch_id)] == [j.id for j in jobs]


@pytest.mark.parametrize(
    "items",
    [
        [{"name": "a"}, {"name": "b", "depends_on": [1]}],  # itself
        [{"name": "a", "depends_on": [1]}, {"name": "b"}],  # forward
        [{"name": "a"}, {"name": "b", "depends_on": [0]}, {"name": "c", "depends_on": [5]}],
        [{"name": "a"}, {"name": "b", "depends_on": [-1]}],
        [{"name": "a"}, {"name": "b", "depends_on": ["0"]}],
        [{"name": "a"}, {"name": "b", "depends_on": 0}],
        [{"name": "a"}, {"name": "b", "depends_on": [True]}],
        [{"name": "a"}, {"name": "bad name", "depends_on": [0]}],
        [{"name": "a"}, "not a dict"],
    ],
)
async def test_bad_linked_batch_is_refused_and_nothing_is_written(
    flows_open: Opener, items: list[Any]
) -> None:
    async with flows_open() as q:
        with pytest.raises(InvalidJob):
            await q.enqueue_batch(items)
        await assert_empty(q)


async def test_store_refuses_a_forward_batch_reference(flows_open: Opener) -> None:
    """The store checks indexes too, for callers that build jobs themselves."""
    async with flows_open() as q:
        first = q.build("a", depends_on_index=(1,), batch_id="b")
        second = q.build("b", batch_id="b")
        with pytest.raises(DependencyError):
            await q.store.enqueue([first, second])
        await assert_empty(q)


# -- distributed sub-tasks -----------------------------------------------------------------

QUERIES = ["what is a", "what is b", "what is c"]


async def test_create_distributed_holds_sub_tasks_until_dispatch(
    flows_open: Opener, flows_clock: FlowsClock
) -> None:
    async with flows_open() as q:
        parent = await q.create_distributed(
            prompt="research", subtasks=QUERIES, queue="research", ttl=60, name="study"
        )
        assert parent.kind == "distributed"
        assert parent.name == "study"
        assert parent.status is S.WAITING_CHILDREN
        assert parent.expires_at is not None
        assert parent.expires_at.timestamp() == flows_clock.now + 60
        kids = await q.children(parent)
        assert [k.payload["sub_task_id"] for k in kids] == ["sub_1", "sub_2", "sub_3"]
        assert [k.payload["query"] for k in kids] == QUERIES
        assert {k.status for k in kids} == {S.PAUSED}
        assert {k.queue for k in kids} == {"research"}
        assert all(k.expires_at == parent.expires_at for k in kids)
        assert await q.store.claim("research", WORKER, 10) == []

        assert await q.dispatch(parent) == 3
        assert {k.status for k in await q.children(parent)} == {S.PENDING}
        assert await q.dispatch(parent) == 0
        claimed = await q.store.claim("research", WORKER, 10)
        assert sorted(j.id for j in claimed) == [k.id for k in kids]


async def test_create_distributed_with_dispatch(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.create_distributed(prompt="p", subtasks=QUERIES, dispatch=True)
        assert {k.status for k in await q.children(parent)} == {S.PENDING}


async def test_subtasks_and_subtask_ids(flows_open: Opener) -> None:
    async with flows_open() as q:
        parent = await q.create_distributed(prompt="p", subtasks=QUERIES, dispatch=True)
        second = await q.subtask(parent, "sub_2")
        assert second.payload["query"] == "what is b"
        run = await start(q, second)
        assert await finish(q, run, "completed", result={"answer": 42})

        rows = await q.subtasks(parent)
        assert [r["sub_task_id"] for r in rows] == ["sub_1", "sub_2", "sub_3"]
        assert [r["query"] for r in rows] == QUERIES
        assert [r["status"] for r in rows] == ["pending", "completed", "pending"]
        assert rows[1]["job_id"] == second.id
        assert rows[1]["worker_id"] == WORKER
        assert rows[1]["result"] == {"answer": 42}
        assert rows[0]["result"] is None

        for bad in ("sub_0", "sub_x", "task_1", "sub_", "sub_-1", "SUB_1", "sub_1 "):
            with pytest.raises(InvalidJob):
                await q.subtask(parent, bad)
        with pytest.raises(InvalidJob):
            await q.subtask(parent, "sub_4")  # well-formed but not there

        plain = await q.enqueue("plain")
        with pytest.raises(InvalidJob):
            await q.subtasks(plain)
        with pytest.raises(InvalidJob):
            await q.consolidate(plain)
        with pytest.raises(IllegalTransition):
            await q.dispatch(plain)


async def test_consolidation(flows_open: Opener, flows_clock: FlowsClock) -> None:
    async with flows_open() as q:
        parent = await q.create_distributed(
            prompt="p", subtasks=QUERIES, queue="research", dispatch=True
        )
        s1, s2, s3 = await q.children(parent)
        long_text = "x" * 300
        await complete(q, s1, result=long_text)

        early = await q.consolidate(parent)
        assert {"job_id", "total_tasks", "completed", "failed", "pending", "results"} <= set(early)
        assert early["consolidated_at"] is None
        assert (early["job_id"], early["total_tasks"]) == (parent.id, 3)
        assert (early["completed"], early["failed"], early["pending"]) == (1, 0, 2)

        await fail(q, s2, error="no source")
        await complete(q, s3, result={"answer": "y" * 500})

        got = await q.get(parent)
        assert got.status is S.FAILED  # consolidated in the last sub-task's finish()
        assert got.error == "1 of 3 sub-tasks did not complete (sub_2 failed: no source)"
        doc = await q.consolidate(parent)
        assert got.result == doc
        assert doc["consolidated_at"] is not None
        assert (doc["completed"], doc["failed"], doc["pending"]) == (2, 1, 0)
        r1, r2, r3 = doc["results"]
        assert set(r1) >= {"sub_task_id", "query", "status", "result", "error"}
        assert [r["sub_task_id"] for r in doc["results"]] == ["sub_1", "sub_2", "sub_3"]
        assert [r["query"] for r in doc["results"]] == QUERIES
        assert [r["status"] for r in doc["results"]] == ["completed", "failed", "completed"]
        assert (r2["result"], r2["error"]) == (None, "no source")
        assert len(r1["result"]) <= 200
        assert r1["result"].startswith("x" * 150)
        assert len(r3["result"]) <= 200
        assert "yyyy" in r3["result"]
        # The full results stay on the sub-tasks.
        assert (await q.get(s1)).result == long_text
        assert (await q.get(s3)).result == {"answer": "y" * 500}


async def test_distributed_job_whose_only_sub_task_failed_is_failed(
    flows_open: Opener,
) -> None:
    """Seed 001 counts each sub-task completed or failed; the job itself is `completed` only
    when every sub-task completed, else `failed` (so `jobs -s failed` finds it and its
    dependents do not run), the consolidation of every sub-task kept as its result."""
    async with flows_open() as q:
        parent = await q.create_distributed(prompt="p", subtasks=["only"], dispatch=True)
        after = await q.enqueue("report", depends_on=[parent])
        [sub] = await q.children(parent)
        await fail(q, sub, error="endpoint down")

        got = await q.get(parent)
        assert got.status is S.FAILED
        assert got.error == "1 of 1 sub-tasks did not complete (sub_1 failed: endpoint down)"
        failed = {j.id for j in await q.list(status="failed")}
        assert failed == {parent.id, sub.id, after.id}
        doc = await q.consolidate(parent)
        assert got.result == doc
        assert (doc["total_tasks"], doc["completed"], doc["failed"]) == (1, 0, 1)
        assert doc["consolidated_at"] is not None
        assert (await q.get(after)).status is S.FAILED  # its dependency failed
        kinds = [e.kind for e in await q.events(parent)]
        assert kinds[-1] == "consolidated"
        await assert_counts_match(q)


async def test_distributed_job_ends_completed_only_when_every_sub_task_completed(
    flows_open: Opener,
) -> None:
    async with flows_open() as q:
        good = await q.create_distributed(prompt="p", subtasks=QUERIES, dispatch=True)
        for sub in await q.children(good):
            await complete(q, sub, result="ok")
        assert (await q.get(good)).status is S.COMPLETED
        assert (await q.get(good)).error is None

        mixed = await q.create_distributed(prompt="p", subtasks=QUERIES * 2, dispatch=True)
        subs = await q.children(mixed)
        await complete(q, subs[0], result="ok")
        await q.cancel(subs[1])
        for sub in subs[2:]:
            await fail(q, sub, error="x" * 500)
        got = await q.get(mixed)
        assert got.status is S.FAILED
        assert got.error is not None
        assert got.error.startswith("5 of 6 sub-tasks did not complete (sub_2 cancelled: ")
        assert got.error.endswith("; 2 more)")
        assert "x" * 201 not in got.error
        doc = await q.consolidate(mixed)
        assert (doc["completed"], doc["failed"], doc["pending"]) == (1, 5, 0)
        assert [r["status"] for r in doc["results"]][:2] == ["completed", "cancelled"]
        await assert_counts_match(q)


async def test_retrying_a_failed_distributed_job_runs_its_failed_sub_tasks_again(
    flows_open: Opener,
) -> None:
    """No processor runs a distributed parent: `retry` (as `wizd retry --failed`) makes it
    wait for its sub-tasks again and runs again those that failed; the others keep their
    results, and the new consolidation decides its status."""
    async with flows_open() as q:
        parent = await q.create_distributed(prompt="p", subtasks=QUERIES, dispatch=True)
        s1, s2, s3 = await q.children(parent)
        await complete(q, s1, result="one")
        await fail(q, s2, error="flaky")
        await q.cancel(s3)
        assert (await q.get(parent)).status is S.FAILED

        [again] = await q.retry(parent)
        assert again.status is S.WAITING_CHILDREN
        assert (again.error, again.result) == (None, None)
        statuses = [(await q.get(j)).status for j in (s1, s2, s3)]
        assert statuses == [S.COMPLETED, S.PENDING, S.PENDING]
        await complete(q, s2, result="two")
        await complete(q, s3, result="three")
        done = await q.get(parent)
        assert done.status is S.COMPLETED
        doc = await q.consolidate(parent)
        assert [r["result"] for r in doc["results"]] == ["one", "two", "three"]
        await assert_counts_match(q)


async def test_sub_task_query_limit(flows_open: Opener) -> None:
    async with flows_open() as q:
        with pytest.raises(InvalidJob) as err:
            await q.create_distributed(prompt="p", subtasks=["ok", "q" * 501])
        assert "500" in str(err.value)
        await assert_empty(q)
        parent = await q.create_distributed(prompt="p", subtasks=["q" * 500])
        [child] = await q.children(parent)
        assert child.payload["query"] == "q" * 500


async def test_expired_distributed_job_is_consolidated(
    flows_open: Opener, flows_clock: FlowsClock
) -> None:
    """At the ttl, unfinished sub-tasks fail as expired and the consolidation (stored as
    the parent's result, once every sub-task is final) reports them."""
    async with flows_open() as q:
        parent = await q.create_distributed(
            prompt="p", subtasks=QUERIES, queue="research", ttl=60, dispatch=True
        )
        s1, s2, s3 = await q.children(parent)
        await complete(q, s1, result="done")
        run = await start(q, s2)  # still running at the deadline

        flows_clock.advance(59)
        assert await q.store.expire() == []
        flows_clock.advance(2)
        expired = await q.store.expire()
        assert {s2.id, s3.id} <= set(expired)
        for job in (s2, s3):
            got = await q.get(job)
            assert got.status is S.FAILED
            assert "expired" in (got.error or "")
        assert not await finish(q, run, "completed")

        doc = await q.consolidate(parent)
        assert (doc["completed"], doc["failed"], doc["pending"]) == (1, 2, 0)
        assert ["expired" in (r["error"] or "") for r in doc["results"]] == [False, True, True]
        assert doc["consolidated_at"] is not None
        got = await q.get(parent)
        assert got.status is S.FAILED
        assert (got.error or "").startswith("2 of 3 sub-tasks did not complete (sub_2 failed: exp")
        assert got.result == doc
