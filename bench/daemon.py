"""Daemon benchmark: burn-down, pickup latency and memory of a real `wizd` daemon process.

    python -m bench.daemon [--quick] [--jobs N]

- burn-down: N no-op jobs queued first, then one daemon started at concurrency 1, 10 and
  100; jobs/s from the daemon's `daemon_ready` to the last completion (verified: every job
  completed exactly once), and as a ratio to the stdlib-sqlite3 floor of claim+complete at
  batch 100 (bench.core).
- pickup latency: an idle daemon (default poll interval of 1 s); another process enqueues
  one job at a time; latency = processor start - enqueue commit, p50/p99.
- RSS of the daemon process: idle, and with 1M jobs queued (in a paused queue that the
  daemon serves, so it keeps polling but runs nothing), and peak during the burn-down.
Figures are printed; nothing is asserted. Machines are shared: compare ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import wizd

APP = """
import time
from wizd.agent import Agent

agent = Agent("bench")


@agent.processor("noop")
async def noop(ctx):
    return None


@agent.processor("stamp")
async def stamp(ctx):
    return {"started": time.time()}
"""


class Daemon:
    """A `wizd` daemon subprocess whose stderr (JSON logs) is watched for events."""

    def __init__(self, folder: Path, db: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(folder)}
        cmd = [
            sys.executable, "-c", "from wizd.cli import main; main()",
            "--agent", "bench", "--app", "bench_app:agent", "--database", str(db),
            "--metrics-port", "0", "--log-format", "json", *args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if '"daemon_ready"' in line:
                self.ready_at = time.perf_counter()
                self.ready.set()
            elif '"level": "error"' in line or "Traceback" in line:
                print("daemon:", line.rstrip(), file=sys.stderr)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, self.rss())

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise RuntimeError("daemon did not become ready")

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(timeout=60)


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wizd-bench-") as tmp:
        folder = Path(tmp)
        (folder / "bench_app.py").write_text(APP)
        yield folder


def fill(db: Path, n: int, name: str = "noop") -> None:
    with wizd.connect_sync(str(db)) as q:
        for start in range(0, n, 10_000):
            q.enqueue_many([{"name": name, "queue": "bench"}] * min(10_000, n - start))


def burn_down(n: int, concurrency: int) -> tuple[float, int]:
    with workspace() as folder:
        db = folder / "burn.db"
        fill(db, n)
        daemon = Daemon(folder, db, "--concurrency", str(concurrency))
        try:
            daemon.wait_ready()
            with wizd.connect_sync(str(db)) as q:
                while True:
                    counts = q.counts("bench")
                    if counts["completed"] + counts["failed"] >= n:
                        done_at = time.perf_counter()
                        break
                    time.sleep(0.02)
                events = q.list(status="completed", limit=1)
                assert counts["completed"] == n, counts
                assert events, "no completed job"
            rate = n / (done_at - daemon.ready_at)
        finally:
            daemon.stop()
        return rate, daemon.peak_rss


def pickup_latency(samples: int, database: str | None = None) -> tuple[float, float]:
    """p50 and p99 of enqueue commit -> processor start, one job at a time, idle daemon
    (on a fresh SQLite file, or on `database`)."""
    with workspace() as folder:
        db = database or folder / "latency.db"
        with wizd.connect_sync(str(db)):
            pass
        daemon = Daemon(folder, db, "--concurrency", "4")
        latencies = []
        try:
            daemon.wait_ready()
            with wizd.connect_sync(str(db)) as q:
                for i in range(samples):
                    time.sleep(0.01 + (i % 5) * 0.01)  # an idle daemon between jobs
                    job = q.enqueue("stamp", {}, queue="bench")
                    committed = time.time()
                    while True:
                        got = q.get(job.id)
                        if got.status is wizd.JobStatus.COMPLETED:
                            break
                        time.sleep(0.002)
                    latencies.append(got.result["started"] - committed)
        finally:
            daemon.stop()
    latencies.sort()
    return statistics.median(latencies), latencies[max(int(len(latencies) * 0.99) - 1, 0)]


def memory(queued: int) -> tuple[int, int]:
    with workspace() as folder:
        db = folder / "memory.db"
        with wizd.connect_sync(str(db)) as q:
            q.pause("bench")
        daemon = Daemon(folder, db, "--concurrency", "10", "--poll-interval", "0.2")
        try:
            daemon.wait_ready()
            time.sleep(2)
            idle = daemon.rss()
            fill(db, queued)
            time.sleep(3)  # the daemon polls its (paused) queue meanwhile
            loaded = daemon.rss()
        finally:
            daemon.stop()
    return idle, loaded


def floor_batch_100(n: int) -> float:
    """Claim+complete on stdlib sqlite3 at batch 100, same schema and statements (bench.core)."""
    from bench import core

    with tempfile.TemporaryDirectory(prefix="wizd-floor-") as tmp:
        path = f"{tmp}/floor.db"
        core.prefill(path, "NORMAL", n)
        c = core.floor_connect(path, "NORMAL")
        started = time.perf_counter()
        done = core.floor_claim_complete(c, 100, n)
        elapsed = time.perf_counter() - started
        c.close()
    assert done == n, f"floor completed {done} of {n}"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, 100k memory fill")
    parser.add_argument("--jobs", type=int, default=None, help="burn-down size [100000]")
    args = parser.parse_args()
    n = args.jobs or (5_000 if args.quick else 100_000)
    queued = 100_000 if args.quick else 1_000_000
    print(
        f"wizd daemon benchmark: {n} no-op jobs, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores"
    )
    floor = floor_batch_100(n)
    print(f"floor (stdlib sqlite3 claim+complete, batch 100): {floor:,.0f} jobs/s")
    peak = 0
    for concurrency in (1, 10, 100):
        rate, rss = burn_down(n, concurrency)
        peak = max(peak, rss)
        ratio = f"  {rate / floor:.2f} of floor"
        target = "  (target >= 0.5)" if concurrency == 100 else ""
        print(f"burn-down concurrency {concurrency:>3}: {rate:>9,.0f} jobs/s{ratio}{target}")
    p50, p99 = pickup_latency(60 if args.quick else 300)
    print(
        f"pickup latency (idle daemon, poll 1 s): p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms  (target p50 <= 5, p99 <= 20)"
    )
    idle, loaded = memory(queued)
    mib = 2**20
    print(
        f"daemon RSS: idle {idle / mib:.1f} MB, with {queued:,} queued {loaded / mib:.1f} MB, "
        f"peak during burn-down {peak / mib:.1f} MB  (target <= 60 MB, flat)"
    )
    print(json.dumps({"jobs": n, "queued": queued}))


if __name__ == "__main__":
    main()
