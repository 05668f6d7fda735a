"""How long a Prometheus scrape of a wizd daemon takes, with an empty store and with 1M jobs.

Run:  python -m bench.metrics_scrape [--jobs 1000000] [--scrapes 50] [--load 20000]

A scrape reads per-status counts from the store's job_counts table (kept by triggers) and
the oldest due pending job per queue (an index lookup per priority), so its cost should not
grow with the number of jobs stored. This script checks that on real files:

1. empty     a daemon on a fresh database;
2. 1M idle   a daemon on a database holding --jobs jobs in 4 queues that it does not serve
             (70 % completed, 10 % failed, 5 % cancelled, 10 % pending, 5 % delayed);
3. 1M busy   the same daemon while it works through --load no-op jobs of its own queue
             (concurrency 16): the scrape waits for a busy event loop.

The big file is filled the way bench/core.py fills its floor: wizd's migrations applied
with the stdlib sqlite3 module, then wizd's INSERT_JOB by executemany in one transaction,
counted in job_counts as wizd's inserts count themselves (job_events rows are left out:
no scrape reads them). Before timing, the script checks that job_counts equals a
GROUP BY over jobs and that the daemon's wizd_jobs equals job_counts.

Each figure: --scrapes GETs of /metrics over HTTP (a new connection each, as wsgiref
closes them) after 5 untimed ones; median, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import wizd
from bench.core import encode, insert_job_columns, job_row_template, new_floor_db
from wizd.store import sqlite_queries as Q

QUEUES = ("research", "summarize", "crawl", "review")
SERVED = "bench"
# (status, share of the jobs), in the order rows are written.
MIX = (("completed", 70), ("failed", 10), ("cancelled", 5), ("pending", 10), ("delayed", 5))
WARMUP = 5
INDEXES_OF_JOBS = (
    "SELECT name, sql FROM sqlite_master "
    "WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL ORDER BY name"
)

APP = """
from wizd.agent import Agent

bench = Agent("bench")


@bench.processor("noop")
async def noop(ctx):
    return None
"""


class BenchFailed(Exception):
    pass


def fill(path: str, n: int) -> dict[tuple[str, str], int]:
    """A wizd database holding n jobs spread over QUEUES and MIX; {(queue, status): n}."""
    c = new_floor_db(path, "NORMAL")
    try:
        now = time.time()
        template, at = job_row_template(now)
        columns = insert_job_columns()
        col = {name: columns.index(name) for name in ("queue", "name", "status", "run_at")}
        finished = columns.index("finished_at")
        plan: list[tuple[str, str, int]] = []
        for q_index, queue in enumerate(QUEUES):
            share = n // len(QUEUES) + (1 if q_index < n % len(QUEUES) else 0)
            left = share
            for s_index, (status, percent) in enumerate(MIX):
                k = left if s_index == len(MIX) - 1 else share * percent // 100
                plan.append((queue, status, k))
                left -= k

        def rows() -> Iterator[list[Any]]:
            i = 0
            for queue, status, k in plan:
                for _ in range(k):
                    row = template.copy()
                    row[at] = encode({"i": i})
                    row[col["queue"]] = queue
                    row[col["name"]] = "task"
                    row[col["status"]] = status
                    age = (n - i) * 0.01  # older rows first, up to ~3 h for 1M
                    row[col["run_at"]] = now + 3600 if status == "delayed" else now - age
                    if status in ("completed", "failed", "cancelled"):
                        row[finished] = now - age
                    i += 1
                    yield row

        # wizd's INSERT_JOB without its RETURNING clause (nothing reads the rows back), with
        # the jobs indexes dropped and created again from their own SQL in the same
        # transaction (faster than updating 9 indexes per row); the triggers stay.
        insert = Q.INSERT_JOB.split("RETURNING")[0]
        indexes = c.execute(INDEXES_OF_JOBS).fetchall()
        c.execute("BEGIN IMMEDIATE")
        for index, _ in indexes:
            c.execute(f"DROP INDEX {index}")
        c.executemany(insert, rows())
        for queue, status, k in plan:  # inserts count themselves (schema 7), as wizd's do
            if k:
                c.execute(Q.COUNT_ADD, (queue, status, k))
        for _, sql in indexes:
            c.execute(sql)
        c.execute("COMMIT")
        if c.execute(INDEXES_OF_JOBS).fetchall() != indexes:
            raise BenchFailed("the jobs indexes differ after the fill")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        expected: dict[tuple[str, str], int] = {}
        for queue, status, k in plan:
            if k:
                expected[queue, status] = expected.get((queue, status), 0) + k
        scanned = {
            (q, s): k
            for q, s, k in c.execute("SELECT queue, status, COUNT(*) FROM jobs GROUP BY 1, 2")
        }
        counted = {(q, s): k for q, s, k in c.execute("SELECT queue, status, n FROM job_counts")}
        counted = {key: k for key, k in counted.items() if k}
        if not scanned == counted == expected:
            raise BenchFailed(f"job_counts {counted} != jobs {scanned} != planned {expected}")
        return expected
    finally:
        c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@contextmanager
def daemon(directory: Path, db: str) -> Iterator[str]:
    """A wizd daemon serving SERVED on `db`; yields its metrics base URL once healthy."""
    (directory / "bench_metrics_app.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    port = free_port()
    log_path = directory / f"daemon-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZD_")}
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    argv = [
        sys.executable,
        "-c",
        "from wizd.cli import main; main()",
        "--agent", SERVED,
        "--app", "bench_metrics_app:bench",
        "--database", db,
        "--concurrency", "16",
        "--metrics-port", str(port),
        "--poll-interval", "0.2",
        "--log-format", "json",
        "--log-level", "warning",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchFailed(f"the daemon exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                if get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchFailed(f"the daemon is not healthy after 60 s:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def scrape_once(base: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, body = get(base + "/metrics")
    elapsed = time.perf_counter() - started
    if status != 200:
        raise BenchFailed(f"/metrics answered {status}: {body[:200]!r}")
    return elapsed, body


def timed(base: str, n: int) -> tuple[list[float], bytes]:
    body = b""
    for _ in range(WARMUP):
        _, body = scrape_once(base)
    times = []
    for _ in range(n):
        elapsed, body = scrape_once(base)
        times.append(elapsed * 1000)
    return times, body


def summary(label: str, times: list[float], body: bytes) -> str:
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return (
        f"{label:<11} median {statistics.median(times):6.2f} ms   p90 {cuts[89]:6.2f} ms   "
        f"p99 {cuts[98]:6.2f} ms   max {max(times):6.2f} ms   ({len(body):,} bytes)"
    )


def wizd_jobs(body: bytes) -> dict[tuple[str, str], int]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "wizd_jobs":
            for sample in family.samples:
                if sample.value:
                    out[sample.labels["queue"], sample.labels["status"]] = int(sample.value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--load", type=int, default=20_000, help="no-op jobs run while busy")
    args = parser.parse_args()
    if args.scrapes < 2:
        parser.error("--scrapes: give at least 2")

    with tempfile.TemporaryDirectory(prefix="wizd-scrape-") as name:
        directory = Path(name)
        lines = []

        empty = str(directory / "empty.db")
        with daemon(directory, empty) as base:
            lines.append(summary("empty", *timed(base, args.scrapes)))

        big = str(directory / "big.db")
        started = time.perf_counter()
        expected = fill(big, args.jobs)
        fill_seconds = time.perf_counter() - started
        size = os.path.getsize(big) / 2**20
        print(f"filled {args.jobs:,} jobs in {fill_seconds:.1f} s ({size:,.0f} MiB)", flush=True)

        with daemon(directory, big) as base:
            times, body = timed(base, args.scrapes)
            if wizd_jobs(body) != expected:
                raise BenchFailed(f"wizd_jobs {wizd_jobs(body)} != stored {expected}")
            lines.append(summary(f"{args.jobs // 1000:,}k idle", times, body))

            with wizd.connect_sync(big) as q:
                for start in range(0, args.load, 1000):
                    k = min(1000, args.load - start)
                    q.enqueue_many([{"name": "noop", "queue": SERVED}] * k)
                times, body = timed(base, args.scrapes)
                left = q.counts(SERVED)
                running = left["pending"] + left["running"]
            lines.append(summary(f"{args.jobs // 1000:,}k busy", times, body))
            if running == 0:
                lines.append("  (warning: the load was done before the busy scrapes ended)")

        print(f"{args.scrapes} scrapes of /metrics each (after {WARMUP} untimed):")
        for line in lines:
            print(line)


if __name__ == "__main__":
    try:
        main()
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
