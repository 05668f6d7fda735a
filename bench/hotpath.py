"""Hot-path A/B: CPU per job of the daemon's own code, two trees of wizd in one run.

    python -m bench.hotpath [--jobs N] [--rounds R] [--postgres URL] [--watch] [NAME=TREE ...]

Each round runs, for every tree in turn (interleaved, so that the machine's drift falls on
all alike), a fresh subprocess whose `wizd` is imported from TREE (its folder holding the
`wizd` package; the default is this checkout). The subprocess enqueues N no-op jobs on a new
SQLite file (or, with --postgres, in a new schema of that database, dropped afterwards),
then runs the real Supervisor in-process at concurrency 10 until every job has completed,
and reports the CPU time (user + system, all threads) and wall time from the first claim to
the last completion; with --postgres also the CPU that the server's backends serving the
daemon (and the watcher) used meanwhile (the database must run on this machine; its
shared work, the WAL writer's for one, is not counted). Printed: per tree the median CPU
per job (µs) and jobs/s, and each tree's ratio to the first. Nothing is asserted:
machines are shared.

--watch runs every tree that can watch twice a round: as above, and with one watcher
(another process following `Queue.watch(queue="bench")`, leased before the enqueue) for
the whole burn-down; the watched run is named NAME+watch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, time
import anyio
import wizd
from wizd.agent import Agent
from wizd.cli.daemon import serve
from wizd.logging import configure_logging
from wizd.settings import Settings

jobs, db, watched = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "watch"
agent = Agent("bench")


@agent.processor("noop")
async def noop(ctx):
    return None


clients = [os.getpid()]  # this process, and the watcher's once it runs


def server_cpu():  # {backend pid: CPU seconds so far} of the backends serving the clients
    if not db.startswith("postgres"):
        return {}
    import psutil, psycopg
    ports = [c.laddr.port for pid in clients
             for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr]
    with psycopg.connect(db.split("?")[0]) as c:
        pids = [r[0] for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,))]
    cpu = {}
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        cpu[pid] = times.user + times.system
    return cpu


class Count:
    def __init__(self, stop):
        self.stop, self.done, self.t0 = stop, 0, None

    def job_started(self, job, wait):
        if self.t0 is None:
            self.t0 = (time.process_time(), time.perf_counter(), server_cpu())

    def job_finished(self, job, outcome, seconds):
        self.done += 1
        if self.done == jobs:
            self.t1 = (time.process_time(), time.perf_counter(), server_cpu())
            self.stop.set()

    def slots(self, *a):
        pass

    def recovered(self, *a):
        pass

    def throttled(self, *a):
        pass


WATCHER = '''
import sys, anyio, wizd
async def main():
    async with wizd.connect(sys.argv[1]) as q:
        events = q.watch(queue="bench")
        n = 0
        async for _ in events:
            n += 1
anyio.run(main)
'''


async def main():
    watcher = None
    if watched:
        import subprocess
        async with wizd.connect(db) as q:  # the schema exists before the watcher connects
            pass
        watcher = subprocess.Popen([sys.executable, "-c", WATCHER, db])
        clients.append(watcher.pid)
        async with wizd.connect(db) as q:
            while not await q.store._read(
                lambda c: c.execute("SELECT count(*) FROM feed_watchers").fetchone()[0]
            ):
                await anyio.sleep(0.05)
    async with wizd.connect(db) as q:
        for start in range(0, jobs, 1000):
            n = min(1000, jobs - start)
            await q.enqueue_many([{"name": "noop", "queue": "bench"} for _ in range(n)])
    settings = Settings(
        agent=["bench"], database=db, concurrency=10, metrics_port=0, log_level="warning",
        _env_file=None,
    )
    configure_logging("json", "warning")  # as the daemon does: no line per job
    stop = anyio.Event()
    hooks = Count(stop)
    await serve(settings, {"bench": agent}, hooks=hooks, stop=stop)
    if watcher is not None:
        watcher.terminate()
        watcher.wait()
    cpu = hooks.t1[0] - hooks.t0[0]
    wall = hooks.t1[1] - hooks.t0[1]
    server = sum(t - hooks.t0[2].get(pid, 0.0) for pid, t in hooks.t1[2].items())
    print(json.dumps({"cpu": cpu, "wall": wall, "server": server, "jobs": jobs,
                      "wizd": wizd.__file__}))


anyio.run(main)
"""


def run_once(tree: Path, jobs: int, postgres: str | None, watch: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wizd-hotpath-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
        env["PYTHONPATH"] = str(tree)
        schema = f"hotpath_{uuid.uuid4().hex[:10]}"
        db = f"{postgres}?schema={schema}" if postgres else str(Path(folder) / "bench.db")
        try:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(jobs), db, "watch" if watch else "-"],
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            if postgres:
                import psycopg

                with psycopg.connect(postgres, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["wizd"].startswith(str(tree)):
        raise SystemExit(f"{tree}: imported wizd from {result['wizd']}, not from the tree")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database instead of SQLite")
    parser.add_argument("--watch", action="store_true", help="also run with one watcher")
    parser.add_argument("trees", nargs="*", metavar="NAME=TREE")
    args = parser.parse_args(argv)
    trees: dict[str, Path] = {}
    for spec in args.trees or [f"this={ROOT}"]:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "wizd" / "__init__.py").is_file():
            parser.error(f"{spec!r}: give NAME=TREE, TREE a folder holding the wizd package")
        trees[name] = Path(path).resolve()
    variants = [(name, tree, False) for name, tree in trees.items()]
    if args.watch:
        watching = [(n, t) for n, t in trees.items() if (t / "wizd" / "watching.py").is_file()]
        variants += [(name + "+watch", tree, True) for name, tree in watching]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    pg = bool(args.postgres)
    for round_ in range(1, args.rounds + 1):
        for name, tree, watch in variants:
            result = run_once(tree, args.jobs, args.postgres, watch)
            runs[name].append(result)
            us = result["cpu"] / args.jobs * 1e6
            server = f", server {result['server'] / args.jobs * 1e6:6.1f} us/job" * pg
            print(f"round {round_} {name:>10}: {us:6.1f} us CPU/job, "
                  f"{args.jobs / result['wall']:8.0f} jobs/s{server}", flush=True)  # fmt: skip
    first = next(iter(trees))
    base = statistics.median(r["cpu"] for r in runs[first])
    server_base = statistics.median(r.get("server", 0.0) for r in runs[first])
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{args.jobs} no-op jobs, concurrency 10, {store}, {args.rounds} interleaved rounds")
    for name in runs:
        cpu = statistics.median(r["cpu"] for r in runs[name])
        rate = statistics.median(args.jobs / r["wall"] for r in runs[name])
        server = ""
        if pg:
            s = statistics.median(r.get("server", 0.0) for r in runs[name])
            server = (
                f"; server {s / args.jobs * 1e6:6.1f} us/job, x{s / max(server_base, 1e-9):.3f}"
            )
        print(f"{name:>10}: median {cpu / args.jobs * 1e6:6.1f} us CPU/job, {rate:8.0f} jobs/s, "
              f"CPU x{cpu / base:.3f} of {first}{server}")  # fmt: skip


if __name__ == "__main__":
    main()
