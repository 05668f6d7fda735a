"""`python -m bench.scaling`: the PostgreSQL queues side by side with 1, 2 and 4 processes.

    python -m bench.scaling [--quick] [--jobs N] [--processes 1,2,4] [--jobs-of SYSTEM=N]

For each system (wizd on PostgreSQL, pgqueuer, procrastinate: every one on the same server,
each in its own fresh database) and each process count, in one run:
- burn-down: N no-op jobs queued, then the worker processes started; jobs/s from the first
  job's start to the last job's end, verified as in `bench run` (every job ran exactly once,
  and the system's own store holds nothing unfinished);
- pickup latency: right after, on the same workers, a producer keeps one job queued at a
  time for a few seconds: enqueue call returned -> job started, p50/p99. The workers wait
  for the next job as they wait at any quiet time: all three are woken by PostgreSQL's
  LISTEN/NOTIFY, so this is a notification's latency, not a poll interval's;
- peak RSS of the worker processes during the burn-down.
Each system runs with the settings of `bench run` (see its results' settings). A system too
slow for N may be given fewer jobs (--jobs-of); the table says how many each one ran.
Writes bench/results/scaling.json and scaling.md; figures only, nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import Sizes
from bench.run import RESULTS, attempt, load

SYSTEMS = ("wizd-postgres", "pgqueuer", "procrastinate")


def sizes(jobs: int, seconds: float) -> Sizes:
    """Burn-down of `jobs`, then `seconds` with one job queued at a time."""
    return Sizes(enqueue=0, burn_down=jobs, steady_seconds=seconds, depth=1, sleep={})


def run_system(
    key: str, jobs: int, seconds: float, processes: list[int], work: Path
) -> dict[str, Any]:
    system = load(key)
    out: dict[str, Any] = {
        "label": system.label,
        "version": report.version(system.package) if system.package else "-",
        "settings": system.settings,
        "jobs": jobs,
        "runs": {},
    }
    system.start(work / key)
    try:
        for p in processes:
            parts = attempt(partial(system.burn_down, sizes(jobs, seconds), p))
            if "error" in parts or "na" in parts:
                parts = {"burn_down": parts, "steady": parts, "rss": parts}
            out["runs"][str(p)] = parts
            print(f"  {key:<14} {p} process{'es' * (p > 1):<2} {row(parts)}", flush=True)
    finally:
        system.stop()
    return out


def row(parts: dict[str, Any]) -> str:
    """burn-down jobs/s | pickup p50 / p99 ms | peak RSS MiB, or why a figure is missing."""
    burn, steady, rss = parts["burn_down"], parts["steady"], parts["rss"]
    cells = [
        f"{burn['value']:,.0f}" if "value" in burn else burn.get("error", burn.get("na", "?")),
        (
            f"{steady['latency_p50_ms']:.1f} / {steady['latency_p99_ms']:.1f}"
            if "latency_p50_ms" in steady
            else steady.get("error", steady.get("na", "?"))
        ),
        f"{rss['value']:,.1f}" if "value" in rss else rss.get("error", rss.get("na", "?")),
    ]
    return " | ".join(cells)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pg = m["postgresql_settings"]
    processes = results["processes"]
    lines = [
        "# PostgreSQL queues with 1, 2 and 4 processes",
        "",
        f"Run on {results['date']} with `{results['command']}` in {results['seconds']:.0f} s. "
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}; "
        f"Python {m['python']}; PostgreSQL {m['postgresql']}, fsync={pg.get('fsync', '?')}, "
        f"synchronous_commit={pg.get('synchronous_commit', '?')}. The worker processes and "
        "the server share the machine's cores. One run: compare systems within it.",
        "",
        "| system | jobs | processes | burn-down jobs/s | pickup p50 / p99 ms | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for system in results["systems"].values():
        for p in processes:
            parts = system["runs"].get(str(p))
            if parts is None:
                continue
            cells = row(parts).split(" | ")
            lines.append(
                f"| {system['label']} | {system['jobs']:,} | {p} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        f"Pickup latency: for {results['latency_seconds']:g} s after each burn-down, one job "
        "queued at a time (enqueue call returned -> job started), on workers that wait for "
        "work through LISTEN/NOTIFY.",
        "",
        "How the burn-down is measured: " + results["method"],
        "",
        "Settings per system:",
        "",
    ]
    for system in results["systems"].values():
        lines.append(f"- **{system['label']}** {system['version']}:")
        for setting, value in system["settings"].items():
            lines.append(f"  - {setting}: {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 2 s of pickups")
    parser.add_argument("--jobs", type=int, help="burn-down size [100,000; quick 2,000]")
    parser.add_argument("--jobs-of", action="append", default=[], metavar="SYSTEM=N",
                        help="fewer jobs for a slow system, e.g. procrastinate=10000")  # fmt: skip
    parser.add_argument("--processes", default="1,2,4", help="process counts [1,2,4]")
    parser.add_argument("--seconds", type=float, help="seconds of pickups [10; quick 2]")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder [bench/results]")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.systems.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in SYSTEMS]:
        parser.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    try:
        processes = [int(p) for p in args.processes.split(",")]
        jobs_of = {k: int(n) for k, _, n in (item.partition("=") for item in args.jobs_of)}
    except ValueError as exc:
        parser.error(f"--processes and --jobs-of take whole numbers ({exc})")
    if bad := [k for k in jobs_of if k not in keys]:
        parser.error(f"--jobs-of names systems not in this run: {bad}")
    if any(p < 1 for p in processes) or any(n < 1 for n in jobs_of.values()):
        parser.error("process counts and job counts must be at least 1")
    jobs = args.jobs or (2_000 if args.quick else 100_000)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    machine = report.machine()
    print(f"bench.scaling: {', '.join(keys)}; {jobs:,} jobs; processes {processes}", flush=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m bench.scaling", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine,
        "processes": processes,
        "latency_seconds": seconds,
        "sizes": {k: jobs_of.get(k, jobs) for k in keys},
        "method": report.METHOD,
        "systems": {},
    }
    work = Path(tempfile.mkdtemp(prefix="wizd-bench-scaling-"))
    try:
        for key in keys:
            results["systems"][key] = run_system(
                key, jobs_of.get(key, jobs), seconds, processes, work
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scaling-quick" if args.quick else "scaling"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    print()
    print(markdown(results))
    print(f"wrote {args.out / stem}.json and .md in {results['seconds']:.0f} s")
    failed = [
        (key, p)
        for key, system in results["systems"].items()
        for p, parts in system["runs"].items()
        if any("error" in figure for figure in parts.values())
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
