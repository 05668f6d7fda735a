"""Flows: the time per job of releasing dependents and of a fan-out, against plain work.

Run:  python -m bench.flows [--quick] [--synchronous NORMAL|FULL] [--repeats N] [--profile]

Cases (each on a fresh database file in a temporary directory, all in one run):

  plain     the baseline: the worker loop of bench.core's claim100 case through the store
            API: store.claim(queue, worker, 100), then store.finish([...100 completed]) in
            one call, until N pre-filled pending jobs are all completed.
  release   one root job and D dependents (each `depends_on=[root]`, enqueued with
            enqueue_many in chunks of 1000; not timed). The root is claimed (not timed),
            then the one store.finish() call that completes it is timed: that transaction
            releases all D dependents from waiting to pending.
  fan-out   a parent enqueued with `children=[...C job dicts]` (it starts waiting_children;
            not timed). The children are claimed and completed at batch 100 through the
            store API, timed until the parent is pending again: it is released in the
            transaction of the last child's completion.

The figure is µs per job: plain = seconds / N; release = seconds / D (per released job);
fan-out = seconds / C (per child). ratio = µs per job / plain µs per job; the target of
the "Flows" issue is ≤ 2.0 for release and fan-out.

Before each timed part the database is closed (its WAL checkpointed) and opened again, so
every case starts from the same state as plain's pre-filled file. Every figure is verified
(statuses, per-kind event counts, job_counts) before it is printed; a case that did not do
its work prints FAILED instead of a number. Each figure is the best of --repeats runs (3 by
default, 1 with --quick). --profile runs release and fan-out once more under cProfile,
inside the writer's transactions only (SQLiteStore._attempt_group), and prints where the
time went; the profiled runs do not count towards the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

import wizd
from bench.core import (
    NAME,
    QUEUE,
    RESULT,
    WORKER,
    Run,
    TempFiles,
    Unverified,
    failure,
    inspect_db,
    prefill,
    scalar,
    watch_writer,
    wizd_claim_complete,
)
from wizd.store import Finish
from wizd.store.sqlite import LATEST_VERSION, SQLiteStore

BATCH = 100
CHUNK = 1000  # dependents per enqueue_many call
TARGET = 2.0


@dataclass(frozen=True)
class Sizes:
    plain: int
    dependents: int
    children: int
    repeats: int


FULL_SIZES = Sizes(plain=10_000, dependents=10_000, children=1_000, repeats=3)
QUICK_SIZES = Sizes(plain=2_000, dependents=1_000, children=200, repeats=1)


@dataclass
class Row:
    name: str
    jobs: int = 0
    seconds: float = 0.0
    target: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def us(self) -> float:
        return self.seconds / self.jobs * 1e6


# -- profiling -----------------------------------------------------------------------------


class Profiler:
    """cProfile switched on only inside the writer's transactions (wraps the store's
    _attempt_group on the instance), and only while `armed`."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self.armed = False
        self.calls = 0

    def attach(self, q: wizd.Queue) -> None:
        store = q.store
        if not isinstance(store, SQLiteStore) or not hasattr(store, "_attempt_group"):
            raise RuntimeError("--profile needs SQLiteStore._attempt_group")
        attempt = store._attempt_group

        def profiled(*args: Any, **kwargs: Any) -> Any:
            if not self.armed:
                return attempt(*args, **kwargs)
            self.calls += 1
            self.profile.enable()
            try:
                return attempt(*args, **kwargs)
            finally:
                self.profile.disable()

        store._attempt_group = profiled  # type: ignore[method-assign]

    def report(self, limit: int = 18) -> str:
        out = io.StringIO()
        stats = pstats.Stats(self.profile, stream=out)
        stats.sort_stats("tottime").print_stats(limit)
        # SQLite's own time is all in Connection.execute: split it by the wizd function
        # that ran the statement.
        stats.print_callers("execute' of 'sqlite3.Connection")
        text = out.getvalue()
        start = text.find("   ncalls")
        text = text[start:] if start >= 0 else text
        return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


# -- checks --------------------------------------------------------------------------------


def status_counts(c: sqlite3.Connection, where: str, *args: Any) -> dict[str, int]:
    sql = f"SELECT status, COUNT(*) FROM jobs WHERE {where} GROUP BY status"
    return dict(c.execute(sql, args).fetchall())


def event_count(c: sqlite3.Connection, kind: str, where: str = "1", *args: Any) -> int:
    sql = f"SELECT COUNT(*) FROM job_events WHERE kind = ? AND ({where})"
    return int(scalar(c, sql, kind, *args))


def counted(c: sqlite3.Connection, status: str) -> int:
    row = c.execute(
        "SELECT n FROM job_counts WHERE queue = ? AND status = ?", (QUEUE, status)
    ).fetchone()
    return int(row[0]) if row else 0


def expect(ok: bool, message: str) -> None:
    if not ok:
        raise Unverified(message)


def check_release_setup(path: str, root: int, n: int) -> None:
    c = inspect_db(path)
    try:
        deps = status_counts(c, "id IN (SELECT job_id FROM job_deps WHERE depends_on = ?)", root)
        root_status = scalar(c, "SELECT status FROM jobs WHERE id = ?", root)
    finally:
        c.close()
    expect(
        deps == {"waiting": n} and root_status == "pending",
        f"before the release: expected root pending and {n} waiting dependents, found root "
        f"{root_status}, dependents {deps}",
    )


def check_released(path: str, root: int, n: int) -> None:
    c = inspect_db(path)
    try:
        deps = status_counts(c, "id IN (SELECT job_id FROM job_deps WHERE depends_on = ?)", root)
        everything = status_counts(c, "1")
        root_status = scalar(c, "SELECT status FROM jobs WHERE id = ?", root)
        released = event_count(c, "released")
        pending, waiting = counted(c, "pending"), counted(c, "waiting")
    finally:
        c.close()
    expect(
        deps == {"pending": n}
        and everything == {"pending": n, "completed": 1}
        and root_status == "completed"
        and released == n
        and pending == n
        and waiting == 0,
        f"expected root completed and {n} dependents pending, found root {root_status}, "
        f"dependents {deps}, all jobs {everything}, {released} released events, "
        f"job_counts pending={pending} "
        f"waiting={waiting}",
    )


def check_fan_out_setup(path: str, parent: int, n: int) -> None:
    c = inspect_db(path)
    try:
        kids = status_counts(c, "parent_id = ?", parent)
        parent_status = scalar(c, "SELECT status FROM jobs WHERE id = ?", parent)
    finally:
        c.close()
    expect(
        kids == {"pending": n} and parent_status == "waiting_children",
        f"before the fan-out: expected the parent waiting_children and {n} pending children, "
        f"found parent {parent_status}, children {kids}",
    )


def check_fanned_in(path: str, parent: int, n: int) -> None:
    c = inspect_db(path)
    try:
        kids = status_counts(c, "parent_id = ?", parent)
        parent_status = scalar(c, "SELECT status FROM jobs WHERE id = ?", parent)
        # Each child ran once: completed at its first attempt, and no run of it ended any
        # other way (such a run stores its claimed event; a completed one stores none).
        first = scalar(c, "SELECT COUNT(*) FROM jobs WHERE parent_id = ? AND attempt = 1", parent)
        ended_otherwise = event_count(c, "claimed", "job_id <> ?", parent)
        woken = event_count(c, "children_done", "job_id = ?", parent)
        done, pending = counted(c, "completed"), counted(c, "pending")
        waiting = counted(c, "waiting_children")
    finally:
        c.close()
    expect(
        kids == {"completed": n}
        and parent_status == "pending"
        and first == done == n
        and ended_otherwise == 0
        and woken == 1
        and pending == 1
        and waiting == 0,
        f"expected {n} completed children and the parent pending, found children {kids}, "
        f"parent {parent_status}, {first} at attempt 1, {ended_otherwise} runs ended "
        "otherwise, "
        f"{woken} children_done events, job_counts completed={done} pending={pending} "
        f"waiting_children={waiting}",
    )


# -- cases ---------------------------------------------------------------------------------


@dataclass
class Timed:
    """One verified run: `jobs` jobs in `seconds`, and what wizd's writer did meanwhile."""

    jobs: int
    seconds: float
    commits: int | None
    busy: float | None

    @property
    def us(self) -> float:
        return self.seconds / self.jobs * 1e6


class Bench(TempFiles):
    def __init__(self, root: str, sync: str, sizes: Sizes) -> None:
        super().__init__(root)
        self.sync = sync
        self.sizes = sizes

    def connect(self, path: str) -> wizd.Queue:
        return wizd.connect(path, synchronous=self.sync)

    async def best(self, run: Callable[[str], Awaitable[Timed]], tag: str) -> Timed:
        best: Timed | None = None
        for _ in range(self.sizes.repeats):
            path = self.fresh(tag)
            try:
                t = await run(path)
            finally:
                self.remove(path)
            if best is None or t.seconds < best.seconds:
                best = t
        assert best is not None
        return best

    async def plain(self, path: str) -> Timed:
        n = self.sizes.plain
        prefill(path, self.sync, n)
        r: Run = await wizd_claim_complete(path, self.sync, BATCH, n, n)
        return Timed(r.jobs, r.seconds, r.commits, r.busy)

    async def release(self, path: str, profiler: Profiler | None = None) -> Timed:
        n = self.sizes.dependents
        async with self.connect(path) as q:  # set-up, not timed
            root = await q.enqueue(NAME, {"root": True}, queue=QUEUE)
            for start in range(0, n, CHUNK):
                await q.enqueue_many(
                    [
                        {"name": NAME, "payload": {"i": i}, "queue": QUEUE, "depends_on": [root]}
                        for i in range(start, min(start + CHUNK, n))
                    ]
                )
        check_release_setup(path, root.id, n)
        async with self.connect(path) as q:
            store = q.store
            (job,) = await store.claim(QUEUE, WORKER, 1)
            expect(job.id == root.id, f"claimed job {job.id}, not the root {root.id}")
            writer = watch_writer(q)
            if profiler is not None:
                profiler.attach(q)
                profiler.armed = True
            start = time.perf_counter()
            ok = await store.finish([Finish(job.id, WORKER, job.attempt, "completed", RESULT)])
            seconds = time.perf_counter() - start
            if profiler is not None:
                profiler.armed = False
            expect(ok == [True], "wizd lost the root it had claimed")
        check_released(path, root.id, n)
        return Timed(n, seconds, writer.commits, writer.busy)

    async def fan_out(self, path: str, profiler: Profiler | None = None) -> Timed:
        n = self.sizes.children
        async with self.connect(path) as q:  # set-up, not timed
            children = [{"name": NAME, "payload": {"i": i}} for i in range(n)]
            parent = await q.enqueue(NAME, {"parent": True}, queue=QUEUE, children=children)
        check_fan_out_setup(path, parent.id, n)
        async with self.connect(path) as q:
            store = q.store
            writer = watch_writer(q)
            if profiler is not None:
                profiler.attach(q)
                profiler.armed = True
            done = 0
            start = time.perf_counter()
            while done < n:
                jobs = await store.claim(QUEUE, WORKER, min(BATCH, n - done))
                if not jobs:
                    break
                if any(j.parent_id != parent.id for j in jobs):
                    raise Unverified("claimed a job that is not a child of the parent")
                ok = await store.finish(
                    [Finish(j.id, WORKER, j.attempt, "completed", result=RESULT) for j in jobs]
                )
                if not all(ok):
                    raise Unverified("wizd lost a child it had claimed")
                done += len(jobs)
            seconds = time.perf_counter() - start
            if profiler is not None:
                profiler.armed = False
        expect(done == n, f"completed {done} children of {n}")
        check_fanned_in(path, parent.id, n)
        return Timed(n, seconds, writer.commits, writer.busy)


def note(name: str, t: Timed, what: str) -> str:
    busy = f", writer in txns {t.busy:.3f}s" if t.busy is not None else ""
    txns = f" in {t.commits:,} txns" if t.commits is not None else ""
    return f"{name}: {t.jobs:,} {what} in {t.seconds:.3f}s{txns}{busy}"


# (case key, printed name, target)
PLAN: list[tuple[str, str, float | None]] = [
    ("plain", f"plain claim+complete, batch {BATCH}", None),
    ("release", "release dependents (1 finish)", TARGET),
    ("fan-out", f"fan-out children, batch {BATCH}", TARGET),
]


async def run_all(sync: str, sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    what = {"plain": "jobs", "release": "dependents released", "fan-out": "children"}
    with tempfile.TemporaryDirectory(prefix="wizd-bench-flows-") as root:
        b = Bench(root, sync, sizes)
        runs: dict[str, Callable[[str], Awaitable[Timed]]] = {
            "plain": b.plain,
            "release": b.release,
            "fan-out": b.fan_out,
        }
        for key, name, target in PLAN:
            print(f"  running {name} ...", flush=True)
            try:
                t = await b.best(runs[key], key)
            except Exception as exc:  # reported in the table; the other cases still run
                rows.append(Row(name, target=target, error=failure(exc)))
                continue
            row = Row(name, t.jobs, t.seconds, target)
            row.notes.append(note(name, t, what[key]))
            rows.append(row)
    return rows


async def profile_all(sync: str, sizes: Sizes) -> list[tuple[str, Profiler, Timed]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="wizd-bench-flows-") as root:
        b = Bench(root, sync, dataclasses.replace(sizes, repeats=1))
        for key, run in (("release", b.release), ("fan-out", b.fan_out)):
            profiler = Profiler()
            path = b.fresh(f"profile-{key}")
            t = await run(path, profiler)
            b.remove(path)
            out.append((key, profiler, t))
    return out


# -- output --------------------------------------------------------------------------------


def table(rows: list[Row]) -> Iterator[str]:
    width = max(len(r.name) for r in rows) + 2
    yield (
        f"{'case':<{width}}{'jobs':>8}{'total s':>10}{'µs/job':>10}{'ratio to plain':>16}"
        f"{'target':>8}  ok/below"
    )
    base = next((r for r in rows if r.name == PLAN[0][1] and r.error is None), None)
    for r in rows:
        if r.error is not None:
            yield f"{r.name:<{width}}{r.error}"
            continue
        ratio = f"{r.us / base.us:.2f}" if base is not None else "-"
        target = f"≤{r.target:.1f}" if r.target is not None else "-"
        if r.target is None or base is None:
            verdict = "-"
        else:
            verdict = "ok" if r.us / base.us <= r.target else "below"
        yield (
            f"{r.name:<{width}}{r.jobs:>8,}{r.seconds:>10.3f}{r.us:>10.1f}{ratio:>16}"
            f"{target:>8}  {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flows", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 dependents, 200 children, 2,000 plain jobs"
    )
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--repeats", type=int, help="best of this many runs per case")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile release and fan-out inside the writer (cProfile)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)

    print(
        f"wizd {wizd.__version__} flows benchmark: synchronous={args.synchronous}, "
        f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
        f"schema v{LATEST_VERSION}, {'quick' if args.quick else 'full'} run, "
        f"best of {sizes.repeats}",
        flush=True,
    )
    started = time.perf_counter()
    rows = anyio.run(run_all, args.synchronous, sizes)
    print()
    print(
        f"plain = claim {BATCH} + finish {BATCH} completed per store call (bench.core claim100);\n"
        "release = the one finish() that completes the root and releases every dependent,\n"
        "per released job; fan-out = claim+complete of every child until the parent is\n"
        "pending again, per child. ratio = µs/job / plain µs/job."
    )
    print()
    for line in table(rows):
        print(line)
    print()
    print("  (writer in txns = time wizd's writer thread spent between BEGIN and COMMIT)")
    for r in rows:
        for n in r.notes:
            print(f"  {n}")
    if args.profile:
        print()
        for key, profiler, t in anyio.run(profile_all, args.synchronous, sizes):
            print(
                f"profile of {key} ({t.jobs:,} jobs, {t.seconds:.3f}s under cProfile, "
                f"{profiler.calls} writer transactions), by own time:"
            )
            print(profiler.report())
    print(f"  total {time.perf_counter() - started:.0f}s")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
