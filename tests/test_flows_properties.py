"""Properties of flows under random DAGs, random trees and random outcomes.

Hypothesis builds jobs whose dependencies only point at earlier jobs (so the graph is
acyclic), hangs some of them under random parents, tries back-edges that must be refused
as cycles, then claims, finishes (completed / failed / failed with a retry / cancelled /
wait_children), cancels and adds or removes dependencies in random order. After every step
the invariants below must hold on what the store reports.

The test is synchronous at the top (hypothesis and async fixtures do not mix): each example
runs its own event loop with anyio.run on a fresh SQLite file.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections import deque
from typing import Any

import anyio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import wizd
from wizd import Backoff, DependencyError, IllegalTransition, Job, JobStatus
from wizd.store import Finish

S = JobStatus
FINAL = (S.COMPLETED, S.FAILED, S.CANCELLED)
BROKEN = (S.FAILED, S.CANCELLED)
EDITABLE = (S.WAITING, S.PENDING, S.DELAYED, S.PAUSED)
QUEUE = "flows"
WORKER = "flows-prop-worker"
# Weighted by repetition: mostly runs that end, some that wait, a few cancels and edits.
OUTCOMES = ("completed",) * 3 + ("wait_children",) * 2 + ("failed", "failed_retry", "cancelled")
STEPS = (
    ("claim",) * 3
    + ("finish",) * 4
    + ("enqueue", "enqueue", "spawn", "spawn", "family")
    + ("cancel", "cancel", "add_dep", "remove_dep", "back_edge")
)


class FlowsPropClock:
    def __init__(self) -> None:
        self.now = 1_760_000_000.0

    def __call__(self) -> float:
        return self.now


async def all_jobs(q: wizd.Queue) -> dict[int, Job]:
    return {j.id: j for j in await q.list(limit=10_000, sort="id", order="asc")}


async def event_total(q: wizd.Queue, jobs: dict[int, Job]) -> int:
    return sum([len(await q.events(i)) for i in jobs])


def descendants(jobs: dict[int, Job], root: int) -> list[int]:
    out, todo = [], deque([root])
    while todo:
        node = todo.popleft()
        for j in jobs.values():
            if j.parent_id == node:
                out.append(j.id)
                todo.append(j.id)
    return out


def reachable(jobs: dict[int, Job], start: int) -> set[int]:
    """Every job `start` (transitively) depends on."""
    seen: set[int] = set()
    todo = deque(jobs[start].depends_on)
    while todo:
        node = todo.popleft()
        if node not in seen:
            seen.add(node)
            todo.extend(jobs[node].depends_on)
    return seen


async def check_invariants(q: wizd.Queue) -> None:
    jobs = await all_jobs(q)
    for job in jobs.values():
        deps = [jobs[d] for d in job.depends_on]
        ignore = job.on_dependency_failure == "ignore"
        where = f"job {job.id} ({job.status}, on_dependency_failure={job.on_dependency_failure})"
        if job.status in (S.PENDING, S.DELAYED, S.RUNNING):
            for dep in deps:
                assert dep.status is S.COMPLETED or (ignore and dep.status in FINAL), (
                    f"{where} while its dependency {dep.id} is {dep.status}"
                )
        if job.status is S.WAITING:
            assert any(dep.status not in FINAL for dep in deps), (
                f"{where} left waiting although every dependency is final: "
                f"{[(d.id, d.status.value) for d in deps]}"
            )
        if not ignore and any(dep.status in BROKEN for dep in deps):
            assert job.status in BROKEN, (
                f"{where} although dependency "
                f"{[d.id for d in deps if d.status in BROKEN]} failed or was cancelled"
            )
        if job.status is S.WAITING_CHILDREN:
            children = [c for c in jobs.values() if c.parent_id == job.id]
            assert any(c.status not in FINAL for c in children), (
                f"job {job.id} waits for children but all are final: "
                f"{[(c.id, c.status.value) for c in children]}"
            )
    recount = await q.store.recount()
    total = {s.value: 0 for s in S}
    for per_queue in recount.values():
        for status, n in per_queue.items():
            total[status] += n
    assert await q.counts() == total


class Scenario:
    def __init__(self, q: wizd.Queue, data: Any, clock: FlowsPropClock) -> None:
        self.q = q
        self.data = data
        self.clock = clock
        self.running: dict[int, Job] = {}

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    async def enqueue(self, parent: int | None = None) -> None:
        jobs = await all_jobs(self.q)
        ids = list(jobs)
        deps = (
            self.draw(st.lists(st.sampled_from(ids), max_size=3, unique=True), "deps")
            if ids
            else []
        )
        live = [i for i, j in jobs.items() if j.status not in FINAL]
        if parent is None and live:
            parent = self.draw(st.none() | st.sampled_from(live), "parent")
        job = await self.q.enqueue(
            "j",
            queue=QUEUE,
            depends_on=deps,
            parent=parent,
            attempts=self.draw(st.integers(1, 2), "attempts"),
            backoff=Backoff.fixed(0),
            on_dependency_failure=self.draw(st.sampled_from(["fail", "cancel", "ignore"]), "odf"),
            on_child_failure=self.draw(st.sampled_from(["continue", "fail", "cancel"]), "ocf"),
        )
        assert job.depends_on == tuple(deps)
        assert job.parent_id == parent

    async def family(self) -> None:
        """A parent and its children in one call (the parent may have dependencies too)."""
        jobs = await all_jobs(self.q)
        deps = self.draw(st.lists(st.sampled_from(list(jobs)), max_size=2, unique=True), "deps")
        n = self.draw(st.integers(1, 3), "family_size")
        parent = await self.q.enqueue(
            "family",
            queue=QUEUE,
            depends_on=deps,
            backoff=Backoff.fixed(0),
            on_dependency_failure=self.draw(st.sampled_from(["fail", "cancel", "ignore"]), "odf"),
            on_child_failure=self.draw(st.sampled_from(["continue", "fail", "cancel"]), "ocf"),
            children=[{"name": "member", "queue": QUEUE, "backoff": Backoff.fixed(0)}] * n,
        )
        assert len(await self.q.children(parent)) == n

    async def spawn(self) -> None:
        """A running processor enqueues children (it may then ask to wait for them)."""
        live = [i for i in sorted(self.running)]
        if not live:
            return
        parent = self.draw(st.sampled_from(live), "spawner")
        if (await self.q.get(parent)).status is not S.RUNNING:
            return  # cancelled or failed meanwhile; a final parent takes no children
        for _ in range(self.draw(st.integers(1, 3), "children")):
            await self.enqueue(parent=parent)

    async def claim(self) -> None:
        claimed = await self.q.store.claim(QUEUE, WORKER, self.draw(st.integers(1, 3), "n"))
        for job in claimed:
            assert job.status is S.RUNNING
            self.running[job.id] = job

    async def finish(self) -> None:
        if not self.running:
            return
        job_id = self.draw(st.sampled_from(sorted(self.running)), "run")
        run = self.running.pop(job_id)
        outcome = self.draw(st.sampled_from(OUTCOMES), "outcome")
        before = await self.q.get(job_id)
        owned = before.status is S.RUNNING and before.attempt == run.attempt
        item = Finish(
            job_id,
            WORKER,
            run.attempt,
            "failed" if outcome == "failed_retry" else outcome,
            result={"id": job_id} if outcome == "completed" else None,
            error="boom" if outcome.startswith("failed") else None,
            retry=outcome == "failed_retry",
        )
        [ok] = await self.q.store.finish([item])
        assert ok == owned, f"finish of job {job_id} ({before.status}) returned {ok}"
        if not ok:
            return
        after = await self.q.get(job_id)
        if outcome == "wait_children":
            assert after.attempt == run.attempt - 1  # waiting is not charged
            live = [c for c in await self.q.children(job_id) if c.status not in FINAL]
            assert after.status is (S.WAITING_CHILDREN if live else S.PENDING)
        elif outcome == "failed_retry" and run.attempt < run.max_attempts:
            assert after.status in (S.DELAYED, S.PENDING)
        elif outcome.startswith("failed"):
            assert after.status is S.FAILED
        else:
            assert after.status.value == outcome

    async def cancel(self) -> None:
        jobs = await all_jobs(self.q)
        live = [i for i, j in jobs.items() if j.status not in FINAL]
        if not live:
            return
        # Mostly the top of a tree: that is where cancelling has the most to reach.
        tops = [i for i in live if descendants(jobs, i)]
        pool = tops if tops and self.draw(st.booleans(), "cancel_a_tree") else live
        job_id = self.draw(st.sampled_from(pool), "cancel")
        [got] = await self.q.cancel(job_id)
        assert got.status is S.CANCELLED
        jobs = await all_jobs(self.q)
        unfinished = [d for d in descendants(jobs, job_id) if jobs[d].status not in FINAL]
        assert not unfinished, f"cancelled job {job_id} left descendants {unfinished} unfinished"

    async def add_dep(self) -> None:
        """An edge from a later job to an earlier one: never a cycle."""
        jobs = await all_jobs(self.q)
        ids = sorted(jobs)
        if len(ids) < 2:
            return
        later = self.draw(st.sampled_from(ids[1:]), "later")
        earlier = self.draw(st.sampled_from([i for i in ids if i < later]), "earlier")
        if jobs[later].status in EDITABLE:
            got = await self.q.add_dependency(later, earlier)
            assert earlier in got.depends_on
        else:
            before = await event_total(self.q, jobs)
            try:
                await self.q.add_dependency(later, earlier)
            except IllegalTransition:
                pass
            else:
                raise AssertionError(f"added a dependency to job {later} ({jobs[later].status})")
            assert await all_jobs(self.q) == jobs
            assert await event_total(self.q, jobs) == before

    async def remove_dep(self) -> None:
        jobs = await all_jobs(self.q)
        with_deps = [i for i, j in jobs.items() if j.depends_on]
        if not with_deps:
            return
        job_id = self.draw(st.sampled_from(with_deps), "from")
        dep = self.draw(st.sampled_from(jobs[job_id].depends_on), "dep")
        if jobs[job_id].status in EDITABLE:
            got = await self.q.remove_dependency(job_id, dep)
            assert dep not in got.depends_on
        else:
            try:
                await self.q.remove_dependency(job_id, dep)
            except IllegalTransition:
                pass
            else:
                raise AssertionError(
                    f"removed a dependency of job {job_id} ({jobs[job_id].status})"
                )
            assert await all_jobs(self.q) == jobs

    async def back_edge(self) -> None:
        """Make a job depend on one that (transitively) depends on it: refused, no write."""
        jobs = await all_jobs(self.q)
        with_deps = [i for i, j in jobs.items() if j.depends_on]
        if not with_deps:
            return
        later = self.draw(st.sampled_from(with_deps), "cycle_from")
        earlier = self.draw(st.sampled_from(sorted(reachable(jobs, later))), "cycle_to")
        before = await event_total(self.q, jobs)
        if jobs[earlier].status in EDITABLE:
            try:
                await self.q.add_dependency(earlier, later)
            except DependencyError as err:
                cycle = err.cycle
            else:
                raise AssertionError(f"job {earlier} -> {later} closes a cycle but was accepted")
            assert cycle[0] == cycle[-1] == earlier
            assert cycle[1] == later
            for a, b in itertools.pairwise(cycle[1:]):
                assert b in jobs[a].depends_on, f"{cycle} is not a cycle of dependencies"
        else:
            try:
                await self.q.add_dependency(earlier, later)
            except IllegalTransition:
                pass
            else:
                raise AssertionError(
                    f"added a dependency to job {earlier} ({jobs[earlier].status})"
                )
        assert await all_jobs(self.q) == jobs
        assert await event_total(self.q, jobs) == before


async def run_scenario(data: Any, path: str) -> None:
    clock = FlowsPropClock()
    async with wizd.connect(path, clock=clock) as q:
        scenario = Scenario(q, data, clock)
        for _ in range(data.draw(st.integers(3, 12), label="jobs")):
            await scenario.enqueue()
            await check_invariants(q)
        for _ in range(data.draw(st.integers(0, 3), label="back_edges")):
            await scenario.back_edge()
        await check_invariants(q)
        for _ in range(data.draw(st.integers(15, 40), label="steps")):
            clock.now += 1
            step = data.draw(st.sampled_from(STEPS), label="step")
            await getattr(scenario, step)()
            await check_invariants(q)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: one example costs ~0.3 s and shrinking replays hundreds of them, far
    # past the per-test timeout. A failure still prints every draw of its example, and
    # derandomize makes the run repeatable.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_flows_invariants_hold_under_random_dags_trees_and_outcomes(data: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="wizd-flows-") as tmp:
        anyio.run(run_scenario, data, os.path.join(tmp, "flows.db"))
