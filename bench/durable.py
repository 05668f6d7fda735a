"""Durable steps against DBOS: wizd's `ctx.step` jobs beside DBOS's workflows, one run.

    python -m bench.durable [--quick] [--jobs N] [--awaits N] [--postgres URL] [--out DIR]
                            [--only recovery]

Both systems run on the same machine and the same kind of store: a new SQLite file each,
and with --postgres a new schema each in that database (wizd: `?schema=`, DBOS:
`dbos_system_schema`), dropped afterwards. Every measurement runs each system in fresh
subprocesses of its own, wizd then DBOS, figure after figure (interleaved, so the machine's
drift falls on both alike); there is one run, no rounds.

- steps/s: N jobs of ten no-op steps (wizd: an `async def` processor awaiting
  `ctx.step("noop", noop)` ten times; DBOS: a workflow calling a `@DBOS.step` ten times),
  enqueued first, then run by one executor at concurrency 10 (wizd: the real Supervisor
  in-process, as bench/hotpath.py runs it; DBOS: `DBOS.launch()` and a queue with
  worker_concurrency=10 in-process, which is how DBOS runs; its workflows and steps are
  plain functions run in its threads, its usual form, as `async def` is wizd's). Timed from
  the first job/workflow starting to the last one finishing (wizd: its outcome written;
  DBOS: its body returned).
- jobs/s: the same with one step each. A step's cost is (10-step time - 1-step time) / 9
  per job, printed as a fraction of a whole 1-step job.
- enqueue -> await: a client process enqueues one 1-step job at a time and awaits its
  result (wizd: `q.enqueue` + `q.wait`; DBOS: `DBOSClient.enqueue` +
  `handle.get_result(polling_interval_sec=0.005)`) while an executor process runs them;
  p50 and p99 in ms, after 10 warm-up ones.
- restart -> recovered: an executor runs one 10-step job that blocks in step 5 (on a file),
  is killed with SIGKILL there, and a new executor process is started on the same store;
  timed from starting that process to the recovered run finishing (wizd recovers a dead
  daemon's jobs of this host at start-up; DBOS recovers its executor's PENDING workflows at
  launch). Includes each process's start (interpreter, imports, opening the store). The
  step bodies must have run 1-5, then 5-10 (1-4 replayed from the store), and every
  throughput run must leave all its jobs completed, or the benchmark stops.

wizd's modules are byte-compiled first (into its tree's __pycache__), as pip compiles a package
it installs and as DBOS's are in site-packages: a checkout run with PYTHONDONTWRITEBYTECODE set
would otherwise compile every wizd module from source in every process it starts, a cost no
installed daemon pays. `--only recovery` runs the restart figure alone and writes no results.

DBOS is given its fast settings: queue polling every 0.01 s (its default is 1 s) and result
polling every 0.005 s (default 1 s). Nothing is asserted: machines are shared. Results go
to DIR/durable.json and DIR/durable.md (default bench/results/).
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("wizd", "dbos")

WIZD = r"""
import json, os, sys, time
import anyio
import wizd
from wizd.agent import Agent
from wizd.cli.daemon import serve
from wizd.logging import configure_logging
from wizd.settings import Settings

mode, db, folder = sys.argv[1], sys.argv[2], sys.argv[5]
n, steps = int(sys.argv[3]), int(sys.argv[4])
agent = Agent("bench")


async def noop():
    return None


async def block(i):
    with open(os.path.join(folder, "calls"), "a") as f:
        f.write(f"{i}\n")
    if i == 5 and not os.path.exists(os.path.join(folder, "go")):
        open(os.path.join(folder, "in-step-5"), "w").close()
        while not os.path.exists(os.path.join(folder, "go")):
            await anyio.sleep(0.005)


@agent.processor("steps")
async def run_steps(ctx):
    for _ in range(ctx.payload["steps"]):
        await ctx.step("noop", noop)


@agent.processor("blocking")
async def blocking(ctx):
    for i in range(1, 11):
        await ctx.step("block", block, i)


class Hooks:
    def __init__(self, stop, until):
        self.stop, self.until, self.done, self.t0, self.t1 = stop, until, 0, None, None

    def job_started(self, job, wait):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def job_finished(self, job, outcome, seconds):
        self.done += 1
        if self.done == self.until:
            self.t1 = time.perf_counter()
            if mode == "recover":
                print(json.dumps({"done": time.time()}), flush=True)
            self.stop.set()

    def slots(self, *a):
        pass

    def recovered(self, *a):
        pass

    def throttled(self, *a):
        pass


async def main():
    settings = Settings(
        agent=["bench"], database=db, concurrency=10, metrics_port=0, log_level="warning",
        _env_file=None,
    )
    configure_logging("json", "warning")
    if mode == "client":
        out = []
        async with wizd.connect(db) as q:
            for i in range(n + 10):
                start = time.perf_counter()
                job = await q.enqueue("steps", queue="bench", payload={"steps": 1})
                await q.wait(job, timeout=60)
                if i >= 10:
                    out.append(time.perf_counter() - start)
        print(json.dumps({"latencies": out}))
        return
    if mode in ("throughput", "prepare", "crash"):
        async with wizd.connect(db) as q:
            if mode == "throughput":
                for start in range(0, n, 1000):
                    await q.enqueue_many([
                        {"name": "steps", "queue": "bench", "payload": {"steps": steps}}
                        for _ in range(min(1000, n - start))
                    ])
            if mode == "crash":
                await q.enqueue("blocking", queue="bench", attempts=3)
        if mode == "prepare":
            return
    stop = anyio.Event()
    hooks = Hooks(stop, n if mode == "throughput" else 1 if mode == "recover" else -1)
    await serve(settings, {"bench": agent}, hooks=hooks, stop=stop)
    if mode == "throughput":
        async with wizd.connect(db) as q:
            completed = (await q.counts("bench"))["completed"]
            last = (await q.list(queue="bench", limit=1))[0]
            stored = len(await q.steps(last))
        print(json.dumps({"wall": hooks.t1 - hooks.t0, "completed": completed, "steps": stored}))


anyio.run(main)
"""

DBOS_CHILD = r"""
import json, os, signal, sys, threading, time
from dbos import DBOS, DBOSClient, SetWorkflowID

mode, db, folder = sys.argv[1], sys.argv[2], sys.argv[5]
n, steps = int(sys.argv[3]), int(sys.argv[4])
schema = os.environ.get("BENCH_DBOS_SCHEMA") or "dbos"
lock = threading.Lock()
done = threading.Event()
state = {"done": 0, "t0": None, "t1": None}


@DBOS.step()
def noop():
    return None


@DBOS.step()
def block(i):
    with open(os.path.join(folder, "calls"), "a") as f:
        f.write(f"{i}\n")
    if i == 5 and not os.path.exists(os.path.join(folder, "go")):
        open(os.path.join(folder, "in-step-5"), "w").close()
        while not os.path.exists(os.path.join(folder, "go")):
            time.sleep(0.005)


@DBOS.workflow()
def run_steps(count):
    with lock:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
    for _ in range(count):
        noop()
    with lock:
        state["done"] += 1
        if state["done"] == n:
            state["t1"] = time.perf_counter()
            done.set()


@DBOS.workflow()
def blocking():
    for i in range(1, 11):
        block(i)


def client():
    return DBOSClient(system_database_url=db, dbos_system_schema=schema)


def launch():
    DBOS(config={
        "name": "bench", "system_database_url": db, "dbos_system_schema": schema,
        "log_level": "WARNING", "application_version": "bench",
    })
    DBOS.launch()
    return DBOS.register_queue("bench", worker_concurrency=10, polling_interval_sec=0.01)


if mode == "prepare":
    launch()
    DBOS.destroy()
elif mode == "throughput":
    c = client()
    for _ in range(n):
        c.enqueue({"queue_name": "bench", "workflow_name": "run_steps"}, steps)
    c.destroy()
    launch()
    done.wait()
    wall = state["t1"] - state["t0"]
    deadline = time.monotonic() + 30  # the last status write follows the body's return
    while True:
        ok = DBOS.list_workflows(status="SUCCESS", load_input=False, load_output=False)
        if len(ok) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stored = len(DBOS.list_workflow_steps(ok[-1].workflow_id, load_output=False)) if ok else 0
    print(json.dumps({"wall": wall, "completed": len(ok), "steps": stored}))
    DBOS.destroy()
elif mode == "serve":
    launch()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait()
    DBOS.destroy()
elif mode == "client":
    c = client()
    out = []
    for i in range(n + 10):
        start = time.perf_counter()
        h = c.enqueue({"queue_name": "bench", "workflow_name": "run_steps"}, 1)
        h.get_result(polling_interval_sec=0.005)
        if i >= 10:
            out.append(time.perf_counter() - start)
    c.destroy()
    print(json.dumps({"latencies": out}))
elif mode == "crash":
    q = launch()
    with SetWorkflowID("recovered-run"):
        q.enqueue(blocking)
    threading.Event().wait()
elif mode == "recover":
    launch()
    DBOS.retrieve_workflow("recovered-run").get_result(polling_interval_sec=0.005)
    print(json.dumps({"done": time.time()}), flush=True)
    DBOS.destroy()
"""


class Store:
    """One system's store: a SQLite file in `folder`, or a schema of its own in PostgreSQL."""

    def __init__(self, system: str, folder: Path, postgres: str | None) -> None:
        self.system, self.folder, self.postgres = system, folder, postgres
        self.schema = f"durable_{system}_{uuid.uuid4().hex[:8]}"
        if postgres is None:
            path = folder / f"{system}.db"
            self.url = str(path) if system == "wizd" else f"sqlite:///{path}"
        else:
            self.url = f"{postgres}?schema={self.schema}" if system == "wizd" else postgres

    def drop(self) -> None:
        if self.postgres is not None:
            import psycopg

            with psycopg.connect(self.postgres, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@contextmanager
def store(system: str, postgres: str | None) -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix=f"wizd-durable-{system}-") as folder:
        made = Store(system, Path(folder), postgres)
        try:
            child(made, "prepare")
            yield made
        finally:
            made.drop()


def command(s: Store, mode: str, n: int = 0, steps: int = 0) -> list[str]:
    script = WIZD if s.system == "wizd" else DBOS_CHILD
    return [sys.executable, "-c", script, mode, s.url, str(n), str(steps), str(s.folder)]


def environment(s: Store) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIZD_", "DBOS"))}
    env["PYTHONPATH"] = str(ROOT)
    env["BENCH_DBOS_SCHEMA"] = s.schema
    return env


def child(s: Store, mode: str, n: int = 0, steps: int = 0, timeout: float = 600) -> dict[str, Any]:
    out = subprocess.run(
        command(s, mode, n, steps),
        env=environment(s),
        cwd=s.folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{s.system} {mode}: the run failed:\n{out.stderr[-3000:]}")
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def throughput(s: Store, n: int, steps: int) -> float:
    """Jobs (workflows) per second of `steps`-step no-op jobs, every one of them completed
    in the store and the last one holding its `steps` steps."""
    found = child(s, "throughput", n, steps)
    if (found["completed"], found["steps"]) != (n, steps):
        raise SystemExit(f"{s.system}: {found['completed']} of {n} completed, {found['steps']} "
                         f"steps stored of the last, not {steps}")  # fmt: skip
    return n / float(found["wall"])


def await_latency(s: Store, n: int) -> tuple[float, float]:
    """p50 and p99, in ms, of enqueue -> awaited result, one at a time from a client."""
    server = subprocess.Popen(command(s, "serve"), env=environment(s), cwd=s.folder)
    try:
        ms = sorted(v * 1000 for v in child(s, "client", n)["latencies"])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return percentile(ms, 50), percentile(ms, 99)


def restart_to_recovered(s: Store) -> float:
    """Seconds from starting a new executor to the run it recovered finishing."""
    marker, go = s.folder / "in-step-5", s.folder / "go"
    first = subprocess.Popen(command(s, "crash"), env=environment(s), cwd=s.folder)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if first.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{s.system}: the run never reached step 5")
            time.sleep(0.005)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    go.touch()
    start = time.time()
    second = subprocess.Popen(
        command(s, "recover"), env=environment(s), cwd=s.folder, stdout=subprocess.PIPE, text=True
    )
    try:
        assert second.stdout is not None
        line = second.stdout.readline()
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    if not line:
        raise SystemExit(f"{s.system}: the recovered run did not finish")
    calls = [int(x) for x in (s.folder / "calls").read_text().split()]
    if calls != [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]:  # steps 1-4 replayed, not run again
        raise SystemExit(f"{s.system}: the step bodies ran {calls}, not 1-5 then 5-10")
    return float(json.loads(line)["done"]) - start


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


FIGURES = [  # key, label, unit, higher is better
    ("steps_per_s", "10-step job: steps/s", "", True),
    ("jobs_per_s", "1-step job: jobs/s", "", True),
    ("await_p50_ms", "enqueue -> await p50", " ms", False),
    ("await_p99_ms", "enqueue -> await p99", " ms", False),
    ("recovery_s", "restart -> recovered run done", " s", False),
    ("step_fraction", "a step / a whole 1-step job", "", False),
]


def byte_compile() -> None:
    """wizd's modules as an installed package has them: compiled (pip does it on install)."""
    if not compileall.compile_dir(ROOT / "wizd", quiet=1):
        raise SystemExit("wizd: byte-compiling its modules failed")


def recovery(postgres: str | None) -> dict[str, float]:
    """The restart -> recovered figure of both systems on one store kind."""
    kind = "PostgreSQL" if postgres else "SQLite"
    found: dict[str, float] = {}
    for system in SYSTEMS:
        with store(system, postgres) as s:
            found[system] = restart_to_recovered(s)
        print(f"{kind:>10} {system:>5}: restart -> recovered {found[system]:.3f} s", flush=True)
    return found


def measure(postgres: str | None, jobs: int, awaits: int) -> dict[str, dict[str, float]]:
    """Every figure of both systems on one store kind, interleaved figure by figure."""
    found: dict[str, dict[str, float]] = {system: {} for system in SYSTEMS}
    kind = "PostgreSQL" if postgres else "SQLite"
    steps: dict[str, float] = {}
    for system in SYSTEMS:
        with store(system, postgres) as s:
            steps[system] = throughput(s, jobs, 10)
        found[system]["steps_per_s"] = steps[system] * 10
        print(f"{kind:>10} {system:>5}: {steps[system] * 10:9.0f} steps/s", flush=True)
    for system in SYSTEMS:
        with store(system, postgres) as s:
            rate = throughput(s, jobs, 1)
        found[system]["jobs_per_s"] = rate
        step = (1 / steps[system] - 1 / rate) / 9
        found[system]["step_fraction"] = step * rate
        print(f"{kind:>10} {system:>5}: {rate:9.0f} jobs/s (1 step)", flush=True)
    for system in SYSTEMS:
        with store(system, postgres) as s:
            p50, p99 = await_latency(s, awaits)
        found[system].update(await_p50_ms=p50, await_p99_ms=p99)
        print(f"{kind:>10} {system:>5}: await p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    for system, seconds in recovery(postgres).items():
        found[system]["recovery_s"] = seconds
    return found


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| store | figure | wizd | DBOS | wizd / DBOS | wizd ahead |",
        "|---|---|---:|---:|---:|---|",
    ]
    for kind, found in results.items():
        for key, label, unit, higher in FIGURES:
            w, d = found["wizd"][key], found["dbos"][key]
            ahead = (w > d) if higher else (w < d)
            digits = 0 if w >= 100 else 3 if key in ("recovery_s", "step_fraction") else 2
            ratio = f"{w / d:.2f}" if d else "-"
            lines.append(
                f"| {kind} | {label} | {w:.{digits}f}{unit} | {d:.{digits}f}{unit} | {ratio} | "
                f"{'yes' if ahead else 'no'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.durable", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (200 jobs, 100 awaits)")
    parser.add_argument("--jobs", type=int, help="jobs per throughput figure (default 2000)")
    parser.add_argument("--awaits", type=int, help="awaited jobs per latency figure (default 500)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL database")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--only", choices=["recovery"], help="run this figure alone (no results written)"
    )
    args = parser.parse_args(argv)
    jobs = args.jobs or (200 if args.quick else 2000)
    awaits = args.awaits or (100 if args.quick else 500)
    import dbos  # noqa: F401  (fail here, naming it, rather than in a child)

    byte_compile()
    if args.only == "recovery":
        ratios = {"SQLite": recovery(None)}
        if args.postgres:
            ratios["PostgreSQL"] = recovery(args.postgres)
        for kind, found in ratios.items():
            print(f"{kind}: wizd / DBOS {found['wizd'] / found['dbos']:.2f}")
        return
    started = datetime.datetime.now(datetime.UTC)
    results = {"SQLite": measure(None, jobs, awaits)}
    if args.postgres:
        results["PostgreSQL"] = measure(args.postgres, jobs, awaits)
    text = table(results)
    print()
    print(text)
    from importlib.metadata import version

    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "jobs": jobs,
        "awaits": awaits,
        "wizd": version("wizd"),
        "dbos": version("dbos"),
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "durable.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    head = (
        f"wizd {meta['wizd']} against DBOS {meta['dbos']}, {meta['date']}, {os.cpu_count()} "
        f"CPUs, {jobs} jobs per throughput figure, {awaits} awaited jobs, one run.\n\n"
    )
    (args.out / "durable.md").write_text(head + text + "\n")


if __name__ == "__main__":
    main()
