"""Prometheus metrics of one daemon, and the HTTP endpoint that serves them with /healthz.

Per-status job counts come from the store's counts table at scrape time (no scan of the
jobs table). The HTTP server runs in a thread; it reaches the event loop through a blocking
portal, with a deadline, so a stuck loop shows as a failed /healthz rather than a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from anyio.from_thread import BlockingPortal
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from wizd.model import ALL_STATUSES, THROTTLE_LIMITS, Job

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
SCRAPE_DEADLINE = 5.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a scrape reads from the store: {queue: {status: n}} and oldest pending ages."""

    counts: dict[str, dict[str, int]]
    oldest_pending_age: dict[str, float]


class Metrics:
    """The daemon's collectors, in a registry of its own. Implements the worker's Hooks."""

    def __init__(self, worker_id: str, version: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.processed = Counter(
            "wizd_jobs_processed",
            "Runs that ended, by outcome (completed, failed, later, requeue, cancelled, "
            "wait_children, wait_signal, lost)",
            ["queue", "name", "outcome"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "wizd_job_run_seconds",
            "Run time of a job",
            ["queue", "name"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.wait_seconds = Histogram(
            "wizd_job_wait_seconds",
            "Time from due (run_at) to claim",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "wizd_job_retries", "Failed runs that will be retried", ["queue", "name"], registry=r
        )
        self.recovered_total = Counter(
            "wizd_jobs_recovered",
            "Running jobs recovered after their run was lost",
            ["queue", "reason"],
            registry=r,
        )
        self.slots_gauge = Gauge(
            "wizd_worker_slots", "Worker slots by state", ["queue", "state"], registry=r
        )
        self.heartbeat_age = Gauge(
            "wizd_heartbeat_age_seconds",
            "Seconds since the last heartbeat was written",
            registry=r,
        )
        self.loop_lag = Gauge(
            "wizd_event_loop_lag_seconds",
            "How late the event loop woke a sleeping task",
            registry=r,
        )
        self.throttled_seconds = Counter(
            "wizd_throttled_seconds",
            "Seconds a queue's claimer had free slots and due jobs that a limit held back "
            "(max_running, rate, concurrency_key); the jobs stay pending",
            ["queue", "limit"],
            registry=r,
        )
        self.schedule_jobs = Counter(
            "wizd_schedule_jobs",
            "Jobs this daemon enqueued for due occurrences of schedules",
            registry=r,
        )
        self.schedule_skipped = Counter(
            "wizd_schedule_skipped",
            "Due occurrences of schedules this daemon did not enqueue: missed (dropped by "
            "the catch_up policy) or duplicate (the job's unique key was held)",
            ["reason"],
            registry=r,
        )
        for reason in ("missed", "duplicate"):
            self.schedule_skipped.labels(reason)
        info = Gauge("wizd_info", "This daemon", ["version", "worker_id"], registry=r)
        info.labels(version=version, worker_id=worker_id).set(1)
        self.last_heartbeat = time.monotonic()
        self.heartbeat_age.set_function(lambda: time.monotonic() - self.last_heartbeat)
        # Read at scrape time, so a stalled loop shows as growing lag, not a frozen value.
        self.last_lag = 0.0
        self.lag_probe_due = time.monotonic()
        self.loop_lag.set_function(
            lambda: max(self.last_lag, time.monotonic() - self.lag_probe_due, 0.0)
        )

    # -- Hooks -----------------------------------------------------------------------------
    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), looked up once per label set (these run once per job)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_started(self, job: Job, wait_seconds: float) -> None:
        self._child(self.wait_seconds, job.queue).observe(wait_seconds)

    def job_finished(self, job: Job, outcome: str, run_seconds: float) -> None:
        self._child(self.processed, job.queue, job.name, outcome).inc()
        self._child(self.run_seconds, job.queue, job.name).observe(run_seconds)
        if outcome == "failed" and job.attempt < job.max_attempts:
            self._child(self.retries, job.queue, job.name).inc()

    def watch_slots(self, queue: str, busy: Callable[[], int], total: int) -> None:
        """Slots of a queue, read at scrape time from `busy()` (the worker's taken slots:
        exactly what runs, a synchronous run's thread included, never a stale count)."""
        self.slots_gauge.labels(queue, "busy").set_function(busy)
        self.slots_gauge.labels(queue, "idle").set_function(lambda: max(total - busy(), 0))

    def recovered(self, queue: str, reason: str, n: int) -> None:
        self.recovered_total.labels(queue, reason).inc(n)

    def throttled(self, queue: str, limit: str, seconds: float) -> None:
        self.throttled_seconds.labels(queue, limit).inc(max(seconds, 0.0))

    def serve_queue(self, queue: str) -> None:
        """Show the queue's throttled time from the start (0 until a limit holds it)."""
        for limit in THROTTLE_LIMITS:
            self.throttled_seconds.labels(queue, limit)

    def scheduled(self, enqueued: int, missed: int, duplicates: int) -> None:
        self.schedule_jobs.inc(enqueued)
        self.schedule_skipped.labels("missed").inc(missed)
        self.schedule_skipped.labels("duplicate").inc(duplicates)

    def heartbeat(self) -> None:
        self.last_heartbeat = time.monotonic()

    def add_store_collector(self, read: Callable[[], Snapshot]) -> None:
        """Per-status counts and oldest pending age, read from the store at scrape time."""
        self.registry.register(_StoreCollector(read))


class _StoreCollector:
    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self.read()
        except _ScrapeFailed:
            # The loop or the store is stuck: the daemon's own gauges (heartbeat age, loop
            # lag) still go out, which is when they matter; /healthz reports the failure.
            return
        yield from self._families(snap)

    @staticmethod
    def _families(snap: Snapshot) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "wizd_jobs",
            "Jobs per queue and status, every status present",
            labels=["queue", "status"],
        )
        for queue in sorted(snap.counts):
            counts = snap.counts[queue]
            for status in ALL_STATUSES:
                jobs.add_metric([queue, status.value], counts.get(status.value, 0))
        yield jobs
        oldest = GaugeMetricFamily(
            "wizd_oldest_pending_age_seconds",
            "Age of the oldest due pending job (0 when none)",
            labels=["queue"],
        )
        for queue in sorted(snap.counts):
            oldest.add_metric([queue], snap.oldest_pending_age.get(queue, 0.0))
        yield oldest


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """Serves /metrics and /healthz from a thread, calling into the event loop by a portal."""

    def __init__(
        self,
        metrics: Metrics,
        portal: BlockingPortal,
        snapshot: Callable[[], Awaitable[Snapshot]],
        healthy: Callable[[], Awaitable[bool]],
        host: str,
        port: int,
    ) -> None:
        self.portal = portal
        self._snapshot = snapshot
        self._healthy = healthy
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path == "/healthz":
                ok, detail = self._health()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable",
                    [("Content-Type", "text/plain; charset=utf-8")],
                )
                return [detail.encode()]
            if path in ("/metrics", "/"):
                try:
                    body: list[bytes] = metrics_app(environ, start_response)
                    return body
                except _ScrapeFailed as exc:
                    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                    return [str(exc).encode()]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        self.server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
        metrics.add_store_collector(self._read_snapshot)  # once bound (a taken port raises)
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="metrics"
        )

    def _read_snapshot(self) -> Snapshot:
        try:
            return self.portal.start_task_soon(self._snapshot).result(timeout=SCRAPE_DEADLINE)
        except FutureTimeout:
            raise _ScrapeFailed("the event loop did not answer in time\n") from None
        except Exception as exc:
            raise _ScrapeFailed(f"cannot read the store: {exc}\n") from None

    def _health(self) -> tuple[bool, str]:
        try:
            ok = self.portal.start_task_soon(self._healthy).result(timeout=SCRAPE_DEADLINE)
        except FutureTimeout:
            return False, "event loop not answering\n"
        except Exception as exc:
            return False, f"unhealthy: {exc}\n"
        return (True, "ok\n") if ok else (False, "database not reachable\n")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()


class _ScrapeFailed(Exception):
    pass
