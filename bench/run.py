"""`python -m bench run [--quick]`: every system on the same workloads, in one run on this
machine, written to bench/results/ as JSON, a Markdown table and a PNG chart.

Systems (one module each in bench/systems/): wizd on SQLite and on PostgreSQL, the stdlib
sqlite3 floor, huey (SqliteHuey, RedisHuey), RQ (SimpleWorker), arq, Celery (threads pool,
Redis broker), procrastinate and pgqueuer, each with its own fresh SQLite file, Redis DB
number or PostgreSQL database.

Workloads (every job a no-op that writes its stamp line, see bench/jobs.py):
  1. enqueue: N jobs one at a time from one producer, and in bulk where the system has it;
  2. burn-down: N jobs queued, then the workers started; jobs/s from the first job's start
     to the last job's end, with one worker process and with two;
  3. steady state (on the same workers, right after the burn-down): a producer holds the
     queue depth near 1,000 for 30 s; completions/s in that window, and pickup latency
     p50/p99 (enqueue call returned -> job started; it includes the wait behind ~1,000
     queued jobs);
  4. 1 ms jobs (asyncio/anyio sleep, or time.sleep where tasks are synchronous), one
     process at concurrency 1, 10 and 100;
  5. peak RSS of the worker process(es) during 2.
A figure is reported only when the jobs' stamps show every job ran exactly once and the
system's store agrees that nothing is left; otherwise the table says FAILED and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import NotApplicable, Sizes, System, failure

RESULTS = Path(__file__).resolve().parent / "results"

SYSTEMS: dict[str, str] = {
    "floor": "bench.systems.floor:Floor",
    "wizd-sqlite": "bench.systems.wizd_sqlite:WizdSqlite",
    "wizd-postgres": "bench.systems.wizd_postgres:WizdPostgres",
    "huey-sqlite": "bench.systems.huey_sqlite:HueySqlite",
    "huey-redis": "bench.systems.huey_redis:HueyRedis",
    "rq": "bench.systems.rq_redis:RQ",
    "arq": "bench.systems.arq_redis:Arq",
    "celery": "bench.systems.celery_redis:Celery",
    "procrastinate": "bench.systems.procrastinate_pg:Procrastinate",
    "pgqueuer": "bench.systems.pgqueuer_pg:PgQueuer",
}

CONCURRENCIES = (1, 10, 100)
PROCESSES = (1, 2)
# (key, title) of every figure, in report order
WORKLOADS: list[tuple[str, str]] = [
    ("enqueue_one", "enqueue, 1 at a time"),
    ("enqueue_bulk", "enqueue, bulk"),
    *[(f"burn_down_{p}", f"burn-down, {p} process{'es' * (p > 1)}") for p in PROCESSES],
    *[(f"steady_{p}", f"steady state, {p} process{'es' * (p > 1)}") for p in PROCESSES],
    *[(f"sleep_{c}", f"1 ms jobs, concurrency {c}") for c in CONCURRENCIES],
    *[(f"rss_{p}", f"peak RSS in burn-down, {p} process{'es' * (p > 1)}") for p in PROCESSES],
]


def sizes_for(jobs: int, steady: float, depth: int) -> Sizes:
    """N jobs for enqueue and burn-down; 1 ms jobs: N/20 at concurrency 1, N/4 above."""
    return Sizes(
        enqueue=jobs,
        burn_down=jobs,
        steady_seconds=steady,
        depth=depth,
        sleep={1: max(jobs // 20, 20), 10: max(jobs // 4, 100), 100: max(jobs // 4, 100)},
    )


def burn_down_sizes(specs: list[str], keys: list[str]) -> dict[str, int]:
    """{system: burn-down jobs} from SYSTEM=N items (comma-separated, option repeated)."""
    sizes: dict[str, int] = {}
    for item in (part.strip() for spec in specs for part in spec.split(",")):
        key, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"{item!r} is not SYSTEM=N with N a whole number of jobs >= 1")
        if key not in keys:
            raise ValueError(f"{key!r} is not a system of this run ({', '.join(keys)})")
        sizes[key] = int(n)
    return sizes


def load(key: str) -> System:
    module, name = SYSTEMS[key].split(":")
    system: System = getattr(importlib.import_module(module), name)()
    return system


def attempt(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A figure, or {"na": reason}, or {"error": "FAILED …"}: a failure never stops the run."""
    try:
        return run()
    except NotApplicable as exc:
        return {"na": str(exc)}
    except Exception as exc:
        if not isinstance(exc, (AssertionError, RuntimeError, OSError, ValueError)):
            traceback.print_exc(limit=3, file=sys.stderr)
        return {"error": failure(exc)}


def show(key: str, workload: str, figure: dict[str, Any]) -> None:
    title = dict(WORKLOADS)[workload]
    print(f"  {key:<14} {title:<40} {report.cell(figure, latency=True)}", flush=True)


def run_system(key: str, sizes: Sizes, work: Path) -> dict[str, Any]:
    """Every workload of one system, in order; a failure is recorded and the next one runs."""
    started = time.perf_counter()
    out: dict[str, Any] = {"key": key, "label": key, "workloads": {}, "burn_down_jobs": 0}
    out["burn_down_jobs"] = sizes.burn_down

    def record(workload: str, figure: dict[str, Any]) -> None:
        out["workloads"][workload] = figure
        show(key, workload, figure)

    system: System | None = None
    try:
        system = load(key)
        out.update(label=system.label, settings=system.settings)
        out["version"] = report.version(system.package) if system.package else "-"
        system.start(work / key)
    except Exception as exc:  # the system cannot run at all: every figure says why
        out["error"] = f"FAILED to start ({type(exc).__name__}): {exc}"
        for workload, _ in WORKLOADS:
            record(workload, {"error": out["error"]})
        if system is not None:
            stop(system, out)
        return out
    try:
        for workload, bulk in (("enqueue_one", False), ("enqueue_bulk", True)):
            record(workload, attempt(partial(system.enqueue, sizes.enqueue, bulk)))
        for p in PROCESSES:
            parts = attempt(partial(system.burn_down, sizes, p))
            if "na" in parts or "error" in parts:  # one outcome for all three figures
                parts = {"burn_down": parts, "steady": parts, "rss": parts}
            for part in ("burn_down", "steady", "rss"):
                record(f"{part}_{p}", parts[part])
        for c in CONCURRENCIES:
            record(f"sleep_{c}", attempt(partial(system.sleep_jobs, sizes.sleep[c], c)))
    finally:
        stop(system, out)
    out["seconds"] = time.perf_counter() - started
    return out


def stop(system: System, out: dict[str, Any]) -> None:
    try:
        system.stop()
    except Exception as exc:
        out["cleanup_error"] = failure(exc)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 jobs and a 5 s steady state (about 4 minutes in all)",
    )
    parser.add_argument(
        "--jobs", type=int, help="N for enqueue and burn-down [10,000; quick 1,000]"
    )
    parser.add_argument("--steady", type=float, help="seconds of steady state [30; quick 5]")
    parser.add_argument(
        "--depth", type=int, default=1000, help="queue depth held in the steady state [1,000]"
    )
    parser.add_argument(
        "--burn-down-of",
        action="append",
        default=[],
        metavar="SYSTEM=N[,SYSTEM=N]",
        help="a longer burn-down for a fast system: N jobs instead of --jobs (10,000 jobs "
        "last well under a second for the fastest); the results say who ran how many",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder [bench/results]")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )


def run(args: argparse.Namespace) -> int:
    keys = [k.strip() for k in args.systems.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEMS]
    if unknown:
        print(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    try:
        longer = burn_down_sizes(args.burn_down_of, keys)
    except ValueError as exc:
        print(f"--burn-down-of: {exc}", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full"
    sizes = sizes_for(
        args.jobs or (1_000 if args.quick else 10_000),
        args.steady if args.steady is not None else (5.0 if args.quick else 30.0),
        args.depth,
    )
    machine = report.machine()
    print(
        f"bench run ({mode}): {len(keys)} systems, {sizes.enqueue:,} jobs, "
        f"{sizes.steady_seconds:g} s steady state; {machine['cores']} cores, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"PostgreSQL {machine['postgresql']}, Redis {machine['redis']}",
        flush=True,
    )
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": machine,
        "sizes": dataclasses.asdict(sizes),
        "burn_down_of": longer,
        "workloads": dict(WORKLOADS),
        "method": report.METHOD,
        "systems": {},
    }
    work = Path(tempfile.mkdtemp(prefix="wizd-bench-run-"))
    try:
        for key in keys:
            own = dataclasses.replace(sizes, burn_down=longer.get(key, sizes.burn_down))
            results["systems"][key] = run_system(key, own, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    written = report.write(results, args.out, mode)
    print()
    print(report.markdown(results))
    for path in written:
        print(f"wrote {path}")
    print(f"total {results['seconds']:.0f} s")
    failed = [
        (key, workload)
        for key, system in results["systems"].items()
        for workload, figure in system["workloads"].items()
        if "error" in figure
    ]
    return 1 if failed else 0
