"""The machinery every queue system shares: workers as subprocesses, the jobs' stamp files,
and the workloads themselves, timed and verified the same way for every system.

A system (bench/systems/*.py) says only how to empty its store, how to enqueue, how its
workers are started and how to ask its store what is left; `QueueSystem` turns that into the
workloads. Nothing is timed from inside a worker: the jobs write stamps (bench.jobs), the
harness reads them, and the store is asked afterwards whether it agrees. A figure is only
returned once both say every job ran exactly once; otherwise `Unverified` is raised and the
report prints FAILED with the reason.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    ExitStack,
    contextmanager,
    suppress,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import psutil
from anyio.from_thread import BlockingPortal, start_blocking_portal

from bench.jobs import STAMPS

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHUNK = 1000  # jobs per bulk-enqueue call
STALL = 30.0  # seconds without a single job finishing before a run is declared stuck
SETTLE = 30.0  # seconds the store gets to record completions the jobs have stamped
C = TypeVar("C")


class Unverified(Exception):
    """The run did not do the work it claims: no figure is reported for it."""


class NotApplicable(Exception):
    """The workload has no meaning for this system (the reason is reported instead)."""


@dataclass(frozen=True)
class Sizes:
    """Every size a run uses (recorded in the results)."""

    enqueue: int  # jobs per enqueue case
    burn_down: int  # jobs queued before the workers start
    steady_seconds: float
    depth: int  # queue depth the steady-state producer holds
    sleep: dict[int, int]  # 1 ms jobs per concurrency


# -- what the jobs wrote -------------------------------------------------------------------


class Stamps:
    """The stamp files of one run (bench.jobs): which jobs ran, when each started and ended.

    `poll()` reads what was appended since the last call (cheap: the harness calls it in its
    wait loops). A job seen twice is counted in `repeats`, which fails verification."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.started: dict[int, float] = {}
        self.ended: dict[int, float] = {}
        self.repeats: list[int] = []
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def poll(self) -> int:
        for entry in os.scandir(self.folder):
            offset = self._offsets.get(entry.name, 0)
            if entry.stat().st_size <= offset:
                continue
            with open(entry.path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            self._offsets[entry.name] = offset + len(chunk)
            lines = (self._partial.pop(entry.name, b"") + chunk).split(b"\n")
            if lines[-1]:  # a line still being written
                self._partial[entry.name] = lines[-1]
            for line in lines[:-1]:
                i, started, ended = line.split()
                job = int(i)
                if job in self.started:
                    self.repeats.append(job)
                self.started[job] = float(started)
                self.ended[job] = float(ended)
        return len(self.started)

    def check(self, ids: range) -> None:
        """Every job of `ids` ran exactly once, and no other job ran."""
        if self.repeats:
            raise Unverified(
                f"{len(self.repeats)} jobs ran more than once (first: job {self.repeats[0]})"
            )
        missing = [i for i in ids if i not in self.started]
        if missing or len(self.started) != len(ids):
            raise Unverified(
                f"{len(ids) - len(missing)} of {len(ids)} jobs ran (missing e.g. {missing[:3]}), "
                f"{len(self.started)} stamped in all"
            )

    def rate(self, ids: range, confirmed: float) -> dict[str, Any]:
        """A throughput figure for `ids`: from the first job's start until the last job has
        ended and the store has confirmed every completion (`confirmed`)."""
        first = min(self.started[i] for i in ids)
        last = max(self.ended[i] for i in ids)
        seconds = max(last, confirmed) - first
        return {
            "value": len(ids) / seconds,
            "unit": "jobs/s",
            "jobs": len(ids),
            "seconds": seconds,
            "confirmed_after_last_end_ms": (max(last, confirmed) - last) * 1000,
        }


# -- workers -------------------------------------------------------------------------------


class Workers:
    """Worker processes started as a user would start them (each in its own process group),
    their output in log files, and the peak of their summed RSS (children included)."""

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str], logs: Path):
        self.logs: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.commands = [list(c) for c in commands]
        self.peak_rss = 0
        self.started = time.time()
        self._stop = threading.Event()
        logs.mkdir(parents=True, exist_ok=True)
        for n, command in enumerate(self.commands):
            log = logs / f"worker-{n}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        cwd=logs,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss(self) -> int:
        total = 0
        for proc in self.procs:
            try:
                parent = psutil.Process(proc.pid)
                for p in [parent, *parent.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, self.rss())

    def check(self) -> None:
        """Raise if a worker has exited (they are meant to run until stopped)."""
        for command, proc, log in zip(self.commands, self.procs, self.logs, strict=True):
            code = proc.poll()
            if code is not None:
                name = " ".join([Path(command[0]).name, *command[1:3]])
                raise RuntimeError(f"worker `{name} …` exited with code {code}: {tail(log)}")

    def wait_for(self, stamps: Stamps, n: int, what: str) -> None:
        """Until n jobs have stamped; fails if the workers die or nothing ends for STALL s."""
        seen, progress = stamps.poll(), time.monotonic()
        while seen < n:
            time.sleep(0.005)
            self.check()
            now = stamps.poll()
            if now > seen:
                seen, progress = now, time.monotonic()
            elif time.monotonic() - progress > STALL:
                raise Unverified(
                    f"{what}: stuck at {seen} of {n} jobs (none ended for {STALL:.0f} s); "
                    f"worker output: {self.output()}"
                )

    def output(self) -> str:
        return "; ".join(tail(log, 300) for log in self.logs)

    def settle(self, check: Callable[[], None]) -> float:
        """settle(check), with the workers' last output in the error if it never passes."""
        try:
            return settle(check)
        except Unverified as exc:
            raise Unverified(f"{exc}; worker output: {self.output()}") from exc

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL to each process group after `grace` s: by then every job
        has been verified, so how gracefully a worker shuts down is not part of the
        benchmark."""
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The worker and any children it forked, even when the worker itself has exited:
            # a child left behind (a pool's worker, a scheduler) would take the next run's jobs.
            signal_group(proc, signal.SIGKILL)
            proc.wait()


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group this harness created for one worker (and only that)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no output)"
    return " | ".join(text[-limit:].splitlines()) or "(no output)"


def settle(check: Callable[[], None], timeout: float = SETTLE) -> float:
    """Run `check` until it passes and return when it did (time.time()): a store may record
    a completion a little after the job's stamp (group commits, buffered acknowledgements),
    and a job counts as done only once its store says so."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return time.time()
        except Unverified:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- producers -----------------------------------------------------------------------------


class Producer(Protocol):
    def enqueue(self, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
        """Enqueue jobs `ids` (job is "noop" or "sleep"), one call per job or in bulk calls
        of CHUNK; return, per job, the time.time() at which its enqueue call returned."""
        ...


# an async client's enqueue: (client, ids, job, bulk) -> commit times, as Producer.enqueue
AsyncSend = Callable[[C, Sequence[int], str, bool], Awaitable[list[float]]]


@dataclass
class AsyncProducer(Generic[C]):
    """A producer with an async client: its event loop runs in a thread (an anyio blocking
    portal) and each enqueue() call runs a whole batch there, so a thread hop is paid per
    batch, not per job."""

    portal: BlockingPortal
    client: C
    send: AsyncSend[C]

    def enqueue(self, ids: Sequence[int], job: str, bulk: bool) -> list[float]:
        return self.portal.call(self.send, self.client, ids, job, bulk)


@contextmanager
def async_producer(
    client: Callable[[], AbstractAsyncContextManager[C]], send: AsyncSend[C]
) -> Iterator[AsyncProducer[C]]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(client()) as opened,
    ):
        yield AsyncProducer(portal, opened, send)


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# -- systems -------------------------------------------------------------------------------


class System:
    """What the runner calls. Each workload returns a figure (a dict with "value", "unit"
    and details) or {workload: figure}; it raises Unverified when the work was not all done
    and NotApplicable when the workload means nothing for the system."""

    key: str = ""
    label: str = ""
    package: str = ""  # the distribution whose version is reported
    settings: ClassVar[dict[str, Any]] = {}

    def start(self, work: Path) -> None:
        """Once, before the workloads: create what the system needs; raise if it cannot run."""

    def stop(self) -> None:
        """Once, after: drop what start() created."""

    def enqueue(self, n: int, bulk: bool) -> dict[str, Any]:
        raise NotImplementedError

    def burn_down(self, sizes: Sizes, processes: int) -> dict[str, dict[str, Any]]:
        """Figures of workloads 2, 3 and 5: burn-down, steady state, peak RSS."""
        raise NotImplementedError

    def sleep_jobs(self, n: int, concurrency: int) -> dict[str, Any]:
        raise NotImplementedError


class QueueSystem(System):
    """A real queue: a store, a client that enqueues, and worker processes."""

    bulk: str | None = None  # how bulk enqueue is done; None: the system has no bulk API
    no_bulk: str = ""

    work: Path

    # -- what each system provides --

    def fresh(self) -> None:
        """Make the store empty (a new file, a flushed Redis DB, a new database)."""
        raise NotImplementedError

    def producer(self) -> AbstractContextManager[Producer]:
        raise NotImplementedError

    def worker_commands(self, processes: int, concurrency: int | None) -> list[list[str]]:
        """argv of each worker process; concurrency None means the system's best settings
        for no-op jobs (in self.settings)."""
        raise NotImplementedError

    def worker_env(self, concurrency: int | None) -> dict[str, str]:
        """Environment of the worker processes, besides PYTHONPATH and BENCH_STAMPS."""
        return {}

    def queued(self) -> int:
        """Jobs waiting in the store, as the store counts them."""
        raise NotImplementedError

    def check_finished(self, total: int) -> None:
        """Raise Unverified unless the store holds no unfinished job (and, where it keeps
        them, exactly `total` completed ones)."""
        raise NotImplementedError

    # -- the workloads, the same for every system --

    def start(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.held = ExitStack()

    def stop(self) -> None:
        self.held.close()

    def hold(self, resource: AbstractContextManager[C]) -> C:
        """Keep a client open until the next run (closed by renew() and stop())."""
        return self.held.enter_context(resource)

    def renew(self) -> None:
        """Close what the last run held open, then make the store empty."""
        self.held.close()
        self.fresh()

    def run_folder(self, tag: str) -> Path:
        folder = self.work / f"{tag}-{time.monotonic_ns()}"
        folder.mkdir(parents=True)
        return folder

    def env(self, stamps: Path, concurrency: int | None) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        extra = self.worker_env(concurrency)
        return {**os.environ, "PYTHONPATH": path, STAMPS: str(stamps), **extra}

    def enqueue(self, n: int, bulk: bool) -> dict[str, Any]:
        if bulk and self.bulk is None:
            raise NotApplicable(self.no_bulk)
        self.renew()
        with self.producer() as producer:
            started = time.perf_counter()
            commits = producer.enqueue(range(n), "noop", bulk)
            seconds = time.perf_counter() - started
        queued = self.queued()
        if len(commits) != n or queued != n:
            raise Unverified(f"enqueued {n} jobs, the store holds {queued}")
        return {"value": n / seconds, "unit": "jobs/s", "jobs": n, "seconds": seconds}

    def prefill(self, producer: Producer, n: int, job: str) -> None:
        producer.enqueue(range(n), job, self.bulk is not None)
        queued = self.queued()
        if queued != n:
            raise Unverified(f"prefilled {n} jobs, the store holds {queued}")

    def burn_down(self, sizes: Sizes, processes: int) -> dict[str, dict[str, Any]]:
        n = sizes.burn_down
        self.renew()
        folder = self.run_folder(f"burn{processes}")
        stamps = Stamps(folder / "stamps")
        with self.producer() as producer:
            self.prefill(producer, n, "noop")
            workers = Workers(
                self.worker_commands(processes, None), self.env(stamps.folder, None), folder
            )
            try:
                workers.wait_for(stamps, n, "burn-down")
                peak = workers.peak_rss
                stamps.check(range(n))
                confirmed = workers.settle(lambda: self.check_finished(n))
                first = min(stamps.started.values())
                out = {
                    "burn_down": {
                        **stamps.rate(range(n), confirmed),
                        "first_job_after_start_s": first - workers.started,
                    },
                    "rss": {
                        "value": peak / 2**20,
                        "unit": "MiB",
                        "processes": processes,
                        "note": "peak of the summed RSS of the worker processes (and their "
                        "children) during the burn-down, sampled every 50 ms",
                    },
                }
                try:
                    out["steady"] = self.steady(producer, workers, stamps, sizes)
                except Exception as exc:  # the burn-down's figures stand on their own
                    out["steady"] = {"error": failure(exc)}
                return out
            finally:
                workers.stop()

    def steady(
        self, producer: Producer, workers: Workers, stamps: Stamps, sizes: Sizes
    ) -> dict[str, Any]:
        """Hold the queue near `depth` jobs for `seconds` while the workers drain it."""
        first = sizes.burn_down
        depth, step = sizes.depth, (sizes.depth if self.bulk else 100)
        committed: dict[int, float] = {}
        backlog: list[int] = []
        next_id = first
        t0 = time.time()
        end = t0 + sizes.steady_seconds
        while time.time() < end:
            waiting = (next_id - first) - (stamps.poll() - first)
            backlog.append(waiting)
            if waiting < depth:
                ids = range(next_id, next_id + min(depth - waiting, step))
                times = producer.enqueue(ids, "noop", self.bulk is not None)
                committed.update(zip(ids, times, strict=True))
                next_id = ids[-1] + 1
            else:
                time.sleep(0.005)
            workers.check()
        t1 = time.time()
        workers.wait_for(stamps, next_id, "steady state (draining)")
        stamps.check(range(next_id))
        workers.settle(lambda: self.check_finished(next_id))
        done = sum(1 for i in range(first, next_id) if t0 <= stamps.ended[i] <= t1)
        latency = [stamps.started[i] - committed[i] for i in range(first, next_id)]
        return {
            "value": done / (t1 - t0),
            "unit": "jobs/s",
            "seconds": t1 - t0,
            "jobs": next_id - first,
            "completed_in_window": done,
            "mean_depth": statistics.fmean(backlog),
            "latency_p50_ms": percentile(latency, 0.50) * 1000,
            "latency_p99_ms": percentile(latency, 0.99) * 1000,
        }

    def sleep_jobs(self, n: int, concurrency: int) -> dict[str, Any]:
        self.renew()
        folder = self.run_folder(f"sleep{concurrency}")
        stamps = Stamps(folder / "stamps")
        with self.producer() as producer:
            self.prefill(producer, n, "sleep")
            workers = Workers(
                self.worker_commands(1, concurrency), self.env(stamps.folder, concurrency), folder
            )
            try:
                workers.wait_for(stamps, n, f"1 ms jobs at concurrency {concurrency}")
                stamps.check(range(n))
                confirmed = workers.settle(lambda: self.check_finished(n))
            finally:
                workers.stop()
        return stamps.rate(range(n), confirmed)


def failure(exc: BaseException) -> str:
    if isinstance(exc, Unverified):
        return f"FAILED (unverified): {exc}"
    if isinstance(exc, NotApplicable):
        return f"n/a: {exc}"
    return f"FAILED ({type(exc).__name__}): {exc}"
