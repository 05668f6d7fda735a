"""The HTTP API against the Python API: enqueue and await over HTTP beside `Queue`, one run.

    python -m bench.http [--jobs N] [--waits N] [--rounds R] [--postgres URL] [--out DIR]
                         [NAME=TREE ...]

A real `wizd serve --port 0` runs in a subprocess of its own (one per TREE given, each
importing `wizd` from that folder; the default is this checkout) on a new SQLite file (and,
with --postgres, again in a new schema of that database, dropped afterwards). This process
is the one client: its `Queue` (this checkout's) and its HTTP connections take turns, round
after round (interleaved, so the machine's drift falls on all alike):

- one at a time: N jobs (over R rounds) enqueued with sequential `await q.enqueue(...)`,
  and the same through `POST /v1/jobs` from one `httpx.Client` (keep-alive), and from one
  raw `http.client` keep-alive connection (the least client code: what is left is the
  server's);
- in batches of 100: `q.enqueue_many` against `POST /v1/jobs/batch`;
- commit -> wait: a job is awaited (`q.wait`, or the long poll `POST /v1/jobs/{id}/wait`
  from httpx), and 20 ms after the wait begins another process claims the job and completes
  it, as a daemon would; timed from its `finished_at` (stamped in the transaction that
  completes it, just before its COMMIT) to the wait returning here. The methods alternate
  job by job; 10 warm-up jobs each are left out.

Each HTTP request's answer is checked (201; a batch's 100 jobs; a wait's job completed).
Printed: jobs/s of each and its ratio to the Python API; the CPU per job of the process that
enqueued it (this one for the Python API, the server, from /proc, for HTTP: what serving a
request costs beside the enqueue itself); p50/p99 of the waits and their difference to
`q.wait`'s. Nothing is asserted: machines are shared. Targets (issue 22):
enqueue one at a time over HTTP >= 50% of the Python API's rate; the HTTP wait adds <= 2 ms
p50 over the Python API's. Results go to DIR/http.json and DIR/http.md (default
bench/results/).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

import wizd

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100  # jobs per batch
DELAY = 0.02  # seconds between a wait beginning and the job completing
WARM = 10  # awaited jobs per method left out at the start

SERVER = "from wizd.cli import main; main()"

COMPLETER = r"""
import sys, time, anyio, wizd
from wizd.store.base import Finish

async def main():
    async with wizd.connect(sys.argv[1]) as q:
        print("ready", flush=True)
        for line in sys.stdin:
            time.sleep(float(sys.argv[2]))
            (job,) = await q.store.claim("waited", "bench", 1)
            done = Finish(job.id, "bench", job.attempt, "completed", {}, None, retry=False)
            assert await q.store.finish([done]) == [True]
            print(job.id, flush=True)

anyio.run(main)
"""


class Server:
    """`wizd serve --port 0` from `tree`, on `db`, and the URL it logged."""

    def __init__(self, name: str, tree: Path, db: str, folder: str) -> None:
        self.name = name
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
        env |= {"PYTHONPATH": str(tree), "WIZD_LOG_FORMAT": "json"}
        command = [sys.executable, "-c", SERVER, "serve", "--port", "0", "--database", db]
        self.process = subprocess.Popen(
            command, env=env, cwd=folder, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if '"http_api_listening"' in line:
                self.url: str = json.loads(line)["url"]
                break
        else:
            raise SystemExit(f"{name}: `wizd serve` ended without listening")
        parts = urlsplit(self.url)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.raw = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)

    def cpu(self) -> float:
        """The server's CPU seconds so far (user + system, every thread), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.http.close()
        self.raw.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def post_httpx(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    response = server.http.post("/v1/jobs", json=body)
    if response.status_code != 201:
        raise SystemExit(f"{server.name}: POST /v1/jobs answered {response.text}")
    job: dict[str, Any] = response.json()
    return job


def post_raw(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    server.raw.request("POST", "/v1/jobs", data, {"Content-Type": "application/json"})
    response = server.raw.getresponse()
    text = response.read()
    if response.status != 201:
        raise SystemExit(f"{server.name}: POST /v1/jobs answered {text!r}")
    job: dict[str, Any] = json.loads(text)
    return job


def fresh(server: Server, raw: bool = False) -> None:
    """A new keep-alive connection (the server closes one idle for 5 s), opened untimed."""
    if raw:
        server.raw.close()
        post_raw(server, job_body(0))
    else:
        server.http.close()
        server.http = httpx.Client(base_url=server.url, timeout=60)
        post_httpx(server, job_body(0))


def job_body(i: int) -> dict[str, Any]:
    return {"name": "noop", "queue": "bench", "payload": {"n": i}}


class Tally:
    """Jobs, seconds and CPU seconds of the enqueuing process (this one for the Python API,
    the server for HTTP) of each method, summed over the rounds."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def timing(self, method: str, jobs: int, server: Server | None = None) -> Iterator[None]:
        cpu = server.cpu if server else time.process_time
        cpu0, start = cpu(), time.perf_counter()
        yield
        seconds, used = time.perf_counter() - start, cpu() - cpu0
        self.jobs[method] = self.jobs.get(method, 0) + jobs
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds
        self.cpu[method] = self.cpu.get(method, 0.0) + used

    def rates(self) -> dict[str, float]:
        return {m: self.jobs[m] / self.seconds[m] for m in self.jobs}

    def cpu_us(self) -> dict[str, float]:
        """CPU µs per job of the process that enqueued it."""
        return {m: self.cpu[m] / self.jobs[m] * 1e6 for m in self.jobs}


async def enqueues(db: str, servers: list[Server], jobs: int, batches: int, rounds: int) -> Tally:
    """One at a time and in batches, every method in turn each round."""
    tally = Tally()
    per, times = max(1, jobs // rounds), max(1, batches // rounds)
    items = [job_body(i) for i in range(BATCH)]
    async with wizd.connect(db) as q:
        await q.enqueue("noop", {"n": 0}, queue="bench")  # warm: connections, statements
        for _ in range(rounds):
            with tally.timing("api", per):
                for i in range(per):
                    await q.enqueue("noop", {"n": i}, queue="bench")
            for s in servers:
                fresh(s)
                with tally.timing(f"{s.name} httpx", per, s):
                    for i in range(per):
                        post_httpx(s, job_body(i))
                fresh(s, raw=True)
                with tally.timing(f"{s.name} raw", per, s):
                    for i in range(per):
                        post_raw(s, job_body(i))
        for _ in range(rounds):
            with tally.timing("api batch", times * BATCH):
                for _ in range(times):
                    await q.enqueue_many(items)
            for s in servers:
                fresh(s)
                with tally.timing(f"{s.name} httpx batch", times * BATCH, s):
                    for _ in range(times):
                        response = s.http.post("/v1/jobs/batch", json={"jobs": items})
                        if response.status_code != 201 or len(response.json()["jobs"]) != BATCH:
                            raise SystemExit(f"{s.name}: POST /v1/jobs/batch: {response.text}")
    return tally


def completer(db: str, folder: str) -> subprocess.Popen[str]:
    """Another process that completes the next job of queue "waited", DELAY seconds after
    each line it is sent, and answers with the job's id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, "-c", COMPLETER, db, str(DELAY)],
        env=env,
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the completer did not start")
    return process


async def waits(
    db: str, servers: list[Server], n: int, completing: subprocess.Popen[str]
) -> dict[str, list[float]]:
    """Seconds from each awaited job's completion commit to its wait returning here."""
    assert completing.stdin is not None
    assert completing.stdout is not None
    stdin, stdout = completing.stdin, completing.stdout
    found: dict[str, list[float]] = {"api": [], **{s.name: [] for s in servers}}
    for s in servers:
        fresh(s)
    try:
        async with wizd.connect(db) as q:
            for i in range(n + WARM):
                for method in found:
                    job = await q.enqueue("noop", queue="waited")
                    stdin.write("go\n")
                    stdin.flush()
                    if method == "api":
                        done = await q.wait(job, timeout=60)
                        end = time.time()
                        status, finished = done.status, done.finished_at
                    else:
                        (s,) = (s for s in servers if s.name == method)
                        response = s.http.post(f"/v1/jobs/{job.id}/wait", params={"timeout": 60})
                        end = time.time()
                        answer = response.json()
                        status, finished = answer["status"], answer["finished_at"]
                        finished = finished and datetime.datetime.fromisoformat(finished)
                    if int(stdout.readline()) != job.id or status != "completed" or not finished:
                        raise SystemExit(f"{method}: job {job.id} not awaited to completion")
                    if i >= WARM:
                        found[method].append(end - finished.timestamp())
    finally:
        stdin.close()
        completing.wait(30)
    return found


class Store:
    """A new SQLite file in `folder`, or a new schema of the PostgreSQL database."""

    def __init__(self, folder: str, postgres: str | None) -> None:
        self.postgres = postgres
        self.schema = f"http_{uuid.uuid4().hex[:10]}"
        self.url = f"{postgres}?schema={self.schema}" if postgres else f"{folder}/bench.db"

    def drop(self) -> None:
        if self.postgres:
            import psycopg

            with psycopg.connect(self.postgres, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@contextmanager
def serving(
    trees: dict[str, Path], postgres: str | None
) -> Iterator[tuple[str, str, list[Server]]]:
    """The store's URL, a scratch folder, and a server from each tree on that store."""
    with tempfile.TemporaryDirectory(prefix="wizd-http-") as folder:
        made = Store(folder, postgres)
        servers: list[Server] = []
        try:
            anyio.run(make_database, made.url)
            for name, tree in trees.items():
                servers.append(Server(name, tree, made.url, folder))
            yield made.url, folder, servers
        finally:
            for s in servers:
                s.stop()
            made.drop()


async def make_database(db: str) -> None:
    async with wizd.connect(db):
        pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(
    trees: dict[str, Path], postgres: str | None, jobs: int, waited: int, rounds: int
) -> dict[str, Any]:
    with serving(trees, postgres) as (db, folder, servers):
        batches = max(rounds, jobs // BATCH * 4)
        tally = anyio.run(enqueues, db, servers, jobs, batches, rounds)
        latencies = anyio.run(waits, db, servers, waited, completer(db, folder))
    return {
        "rates": tally.rates(),
        "cpu_us": tally.cpu_us(),
        "waits": {
            m: {"p50_ms": statistics.median(v) * 1000, "p99_ms": percentile(v, 99) * 1000}
            for m, v in latencies.items()
        },
    }


def table(results: dict[str, dict[str, Any]], trees: list[str]) -> str:
    rows = ["| store | figure | Python API | " + " | ".join(f"HTTP ({t})" for t in trees)
            + " | " + " | ".join(f"{t} / API" for t in trees) + " |",
            "|---|---|---:|" + "---:|" * (2 * len(trees))]  # fmt: skip

    def row(store: str, figure: str, base: float, ours: list[float], unit: str = "") -> None:
        rows.append(f"| {store} | {figure} | {base:.0f}{unit} | "
                    + " | ".join(f"{r:.0f}{unit}" for r in ours) + " | "
                    + " | ".join(f"{r / base:.2f}" for r in ours) + " |")  # fmt: skip

    for store, found in results.items():
        rates, cpu, waits = found["rates"], found["cpu_us"], found["waits"]
        for figure, api, suffix in (
            ("enqueue one at a time (httpx)", "api", " httpx"),
            ("enqueue one at a time (http.client)", "api", " raw"),
            (f"enqueue in batches of {BATCH} (httpx)", "api batch", " httpx batch"),
        ):
            row(store, figure + ", jobs/s", rates[api], [rates[t + suffix] for t in trees])
            row(store, figure + ", CPU/job", cpu[api], [cpu[t + suffix] for t in trees], " µs")
        for p in ("p50", "p99"):
            base = waits["api"][f"{p}_ms"]
            ours = [waits[t][f"{p}_ms"] for t in trees]
            rows.append(f"| {store} | commit -> wait {p} | {base:.2f} ms | "
                        + " | ".join(f"{w:.2f} ms" for w in ours) + " | "
                        + " | ".join(f"{w - base:+.2f} ms" for w in ours) + " |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="jobs enqueued one at a time")
    parser.add_argument("--waits", type=int, default=200, help="awaited jobs per method")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL database")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("trees", nargs="*", metavar="NAME=TREE", help="the servers' wizd trees")
    args = parser.parse_args(argv)
    trees: dict[str, Path] = {}
    for spec in args.trees or [f"this={ROOT}"]:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "wizd" / "__init__.py").is_file():
            parser.error(f"{spec!r}: give NAME=TREE, TREE a folder holding the wizd package")
        trees[name] = Path(path).resolve()
    started = datetime.datetime.now(datetime.UTC)
    results = {"SQLite": measure(trees, None, args.jobs, args.waits, args.rounds)}
    if args.postgres:
        results["PostgreSQL"] = measure(trees, args.postgres, args.jobs, args.waits, args.rounds)
    text = table(results, list(trees))
    print()
    print(text)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "jobs": args.jobs,
        "waits": args.waits,
        "rounds": args.rounds,
        "batch": BATCH,
        "servers": {name: str(tree) for name, tree in trees.items()},
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    head = (
        f"wizd's HTTP API (`wizd serve`, another process) against its Python API, "
        f"{meta['date']}, {os.cpu_count()} CPUs, {args.jobs} jobs one at a time per method "
        f"over {args.rounds} interleaved rounds, {args.waits} awaited jobs per method, one "
        f"client, one run.\n\n"
    )
    (args.out / "http.md").write_text(head + text + "\n")


if __name__ == "__main__":
    main()
