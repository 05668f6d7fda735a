"""The daemon: start-up recovery, one claimer per queue, heartbeats, reaper, promoter,
scheduler, expiry, retention and graceful stop, all children of one task group.

If any background activity crashes, the task group cancels the rest and the error
propagates: the daemon exits non-zero and systemd restarts it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import BlockingPortal

from wizd import __version__
from wizd.agent import Agent
from wizd.errors import ConfigError, JobNotFound, StoreError
from wizd.hooks import Hooks, NoHooks
from wizd.metrics_port import listen
from wizd.model import WorkerInfo, parse_status, zero_counts
from wizd.processors import CommandProcessor, ProcessGuard
from wizd.queue import KILL_FORCE_REASON, Queue, connect
from wizd.settings import Settings
from wizd.systemd import Notifier
from wizd.worker import QueueWorker, backoff

if TYPE_CHECKING:  # wizd.metrics (prometheus_client, an HTTP server) is loaded only when on
    from wizd.metrics import Metrics, MetricsServer, Snapshot

RETENTION_INTERVAL = 3600.0
LAG_PROBE = 0.5  # seconds between event-loop lag probes
SCHEDULER_MIN_SLEEP = 0.005  # seconds: a pass that left work due looks again this soon


def load_agents(settings: Settings) -> dict[str, Agent]:
    """Agents from `--app module:attr` (Python processors) and the config's command processors;
    those of the queues to serve are checked (ConfigError naming one that cannot run)."""
    agents: dict[str, Agent] = {}
    guard = ProcessGuard()  # one guard process for all the daemon's command runs
    for spec in settings.app:
        for agent in _import_agents(spec):
            if agent.name in agents:
                for name, fn in agent.processors.items():
                    agents[agent.name].add(name, fn)
            else:
                agents[agent.name] = agent
    for queue, cfg in settings.agents.items():
        agent = agents.setdefault(queue, Agent(queue))
        for name, proc in cfg.processors.items():
            if name in agent.processors:
                raise ConfigError(f"agents.{queue}.processors.{name}: defined twice")
            processor = CommandProcessor(**proc.model_dump(), guard=guard)
            if not settings.agent or queue in settings.agent:  # one config may serve many hosts
                processor.check(f"agents.{queue}.processors.{name}")
            agent.add(name, processor)
    return agents


def _import_agents(spec: str) -> list[Agent]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app: {spec!r} must be module:attribute (e.g. myagents:researcher)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"app: cannot import {module_name!r}: {exc}") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"app: module {module_name!r} has no attribute {attr!r}") from None
    found = list(value.values()) if isinstance(value, Mapping) else value
    found = found if isinstance(found, list | tuple) else [found]
    if not found or not all(isinstance(a, Agent) for a in found):
        raise ConfigError(f"app: {spec} is not a wizd.Agent (or a list of them)")
    return list(found)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _taken(worker: QueueWorker) -> Callable[[], int]:
    return lambda: worker.active


class Supervisor:
    """One daemon process serving one or more agent queues."""

    def __init__(
        self,
        settings: Settings,
        agents: Mapping[str, Agent],
        *,
        log: Any,
        notifier: Notifier | None = None,
        hooks: Hooks | None = None,
        on_ready: Callable[[Queue], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.settings = settings
        self.hostname = socket.gethostname()
        self.worker_id = f"{self.hostname}-{os.getpid()}-{secrets.token_hex(3)}"
        self.log = log.bind(worker_id=self.worker_id)
        self.notifier = notifier or Notifier()
        self.metrics: Metrics | None = None
        if settings.metrics_port != 0:
            from wizd.metrics import Metrics

            self.metrics = Metrics(self.worker_id, __version__)
        self.hooks: Hooks = hooks or self.metrics or NoHooks()
        self.on_ready = on_ready
        self.serve = self._queues_to_serve(agents)
        self.agents = {name: agents[name] for name in self.serve}
        self.workers: list[QueueWorker] = []
        self.stopping = False
        self._grace: anyio.CancelScope | None = None
        self._skip_grace = False

    def _queues_to_serve(self, agents: Mapping[str, Agent]) -> list[str]:
        wanted = list(dict.fromkeys(self.settings.agent)) or sorted(
            name for name, agent in agents.items() if agent.processors
        )
        if not wanted:
            raise ConfigError(
                "agent: nothing to serve: no agent has processors "
                "(give --app module:agent or [agents.NAME.processors.JOB] in the config)"
            )
        for name in wanted:
            if name not in agents or not agents[name].processors:
                raise ConfigError(
                    f"agent: {name!r} has no processors (give --app module:agent or "
                    f"[agents.{name}.processors.JOB] command = [...] in the config)"
                )
        return wanted

    async def run(self, stop: anyio.Event) -> None:
        """Serve until `stop` is set; then stop claiming, wait up to the grace period, and
        requeue what still runs. Returns when everything is written back."""
        s = self.settings
        queue = connect(s.database, limits=s.size_limits(), **s.store_options())
        async with queue, BlockingPortal() as portal:
            self.queue = queue
            store = queue.store
            server = self._metrics_server(portal)  # bound (not yet serving): its port is known
            try:
                await self._start(server)
                await self._serve(stop)
            finally:
                if server is not None:
                    server.stop()
                with anyio.CancelScope(shield=True):
                    await store.worker_stopped(self.worker_id)
                    self.log.info("daemon_stopped")

    async def _start(self, server: MetricsServer | None) -> None:
        """Register, recover, make the workers, serve metrics, say ready."""
        s, queue = self.settings, self.queue
        await queue.store.register_worker(
            WorkerInfo(
                id=self.worker_id,
                hostname=self.hostname,
                pid=os.getpid(),
                queues=tuple(self.serve),
                concurrency=sum(s.concurrency_for(n) for n in self.serve),
                version=__version__,
                started_at=datetime.now(UTC),
                heartbeat_at=datetime.now(UTC),
                metrics=None if server is None else f"{s.metrics_host}:{server.port}",
            )
        )
        await self.recover()
        self.workers = [
            QueueWorker(
                queue=queue,
                agent=self.agents[name],
                worker_id=self.worker_id,
                concurrency=s.concurrency_for(name),
                poll_interval=s.poll_interval,
                log=self.log,
                hooks=self.hooks,
            )
            for name in self.serve
        ]
        if self.metrics is not None:
            for worker in self.workers:
                self.metrics.serve_queue(worker.name)
                self.metrics.watch_slots(worker.name, _taken(worker), worker.concurrency)
        if server is not None:
            server.start()
            url = f"http://{s.metrics_host}:{server.port}/metrics"
            self.log.info("metrics_listening", url=url)
        self._announce_ready()

    def _announce_ready(self) -> None:
        self.notifier.ready(f"serving {', '.join(self.serve)} on {self.queue.store.backend}")
        self.log.info(
            "daemon_ready",
            queues=self.serve,
            concurrency={w.name: w.concurrency for w in self.workers},
            database=self.settings.database,
            pid=os.getpid(),
        )

    def _metrics_server(self, portal: BlockingPortal) -> MetricsServer | None:
        if self.metrics is None:
            return None
        from wizd.metrics import MetricsServer

        s, metrics = self.settings, self.metrics

        def bind(port: int) -> MetricsServer:
            return MetricsServer(
                metrics, portal, self._snapshot, self._healthy, s.metrics_host, port
            )

        server, taken = listen(bind, s.metrics_host, s.metrics_port, s.metrics_base_port)
        if taken:
            self.log.warning(
                "metrics_port_taken",
                taken=taken,
                port=server.port,
                why="metrics_port is not set: the next free port is used (wizd agents shows it)",
            )
        return server

    async def _snapshot(self) -> Snapshot:
        from wizd.metrics import Snapshot

        store = self.queue.store
        counts = await store.counts()
        for name in self.serve:
            counts.setdefault(name, zero_counts())
        now = time.time()
        oldest = {}
        for name in counts:
            since = await store.oldest_pending(name)
            oldest[name] = max(now - since, 0.0) if since is not None else 0.0
        return Snapshot(counts, oldest)

    async def _healthy(self) -> bool:
        with anyio.move_on_after(2.0):
            await self.queue.store.ping()
            return True
        return False

    async def _loop_lag(self) -> None:
        assert self.metrics is not None
        while True:
            self.metrics.lag_probe_due = time.monotonic() + LAG_PROBE
            await anyio.sleep(LAG_PROBE)
            self.metrics.last_lag = max(time.monotonic() - self.metrics.lag_probe_due, 0.0)

    async def _serve(self, stop: anyio.Event) -> None:
        side = anyio.CancelScope()

        async def side_tasks() -> None:
            with side:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeats)
                    tg.start_soon(self._report_busy)
                    tg.start_soon(self._watch_changes)
                    tg.start_soon(self._check_owned)
                    tg.start_soon(self._reaper)
                    tg.start_soon(self._promoter)
                    tg.start_soon(self._scheduler)
                    tg.start_soon(self._retention)
                    if self.metrics is not None:
                        tg.start_soon(self._loop_lag)
                    if self.on_ready is not None:
                        tg.start_soon(self.on_ready, self.queue)

        async with anyio.create_task_group() as outer:
            outer.start_soon(side_tasks)
            async with anyio.create_task_group() as pool:
                for worker in self.workers:
                    pool.start_soon(worker.serve)
                pool.start_soon(self._stop_when, stop)
            side.cancel()

    async def _stop_when(self, stop: anyio.Event) -> None:
        await stop.wait()
        self.stopping = True
        running = sum(w.busy for w in self.workers)
        self.log.info("daemon_stopping", running=running, grace=self.settings.shutdown_grace)
        self.notifier.stopping(f"stopping: {running} jobs running")
        for worker in self.workers:
            worker.stop_claiming()
        grace_seconds = 0.0 if self._skip_grace else self.settings.shutdown_grace
        with anyio.move_on_after(grace_seconds) as grace:
            self._grace = grace
            for worker in self.workers:
                await worker.drained()
        held = sorted(job_id for w in self.workers for job_id in w.in_threads)
        requeued = sum(w.stop_runs("shutdown") for w in self.workers) - len(held)
        if requeued:
            self.log.info("jobs_requeued_on_shutdown", count=requeued)
        if held:
            # wizd.threads: a thread cannot be interrupted; its job stays ours until it returns.
            self.log.warning(
                "waiting_for_threads",
                job_ids=held,
                why="synchronous processors were asked to stop (ctx.should_stop()); "
                "the daemon exits when they return",
            )

    def stop_now(self) -> None:
        """End the grace period at once: running jobs are requeued without an attempt."""
        self.stopping = True
        if self._grace is not None:
            self._grace.cancel()
        else:
            self._skip_grace = True

    # -- recovery --------------------------------------------------------------------------
    async def recover(self) -> int:
        """Requeue (or fail) jobs left running by daemons that are gone."""
        store = self.queue.store
        owners = await store.running_workers()
        if not owners:
            return 0
        registry = {w.id: w for w in await store.workers()}
        now = time.time()
        total = 0
        for owner in sorted(owners):
            if owner == self.worker_id:
                continue
            info = registry.get(owner)
            reason = self._gone(info, now)
            if reason is None:
                continue
            interrupted = await store.recover_worker(owner, "startup")
            for item in interrupted:
                self.log.warning(
                    "job_recovered",
                    job_id=item.job.id,
                    queue=item.job.queue,
                    name=item.job.name,
                    attempt=item.job.attempt,
                    previous_worker=owner,
                    why=reason,
                    status=item.status,
                )
                self.hooks.recovered(item.job.queue, "startup", 1)
            total += len(interrupted)
        return total

    def _gone(self, info: WorkerInfo | None, now: float) -> str | None:
        if info is None:
            return "unknown worker"
        if info.stopped_at is not None:
            return "worker stopped"
        if info.hostname == self.hostname:
            if info.pid == os.getpid():  # a previous life of this process (containers: pid 1)
                return "previous run of this process"
            if not pid_alive(info.pid):
                return f"pid {info.pid} is gone"
        if now - info.heartbeat_at.timestamp() > self.settings.hung_timeout:
            return "heartbeat older than the hung timeout"
        return None

    # -- background activities -------------------------------------------------------------
    async def _every(
        self, activity: str, interval: float | Callable[[], float], step: Callable[[], Any]
    ) -> None:
        """Run `step` every `interval` seconds. While the store is away (a StoreError), log
        each attempt and try again after a backoff; running jobs are left alone meanwhile."""
        failures = 0
        while True:
            try:
                await step()
            except StoreError as exc:
                failures += 1
                delay = backoff(failures)
                self.log.error(
                    "store_unavailable",
                    activity=activity,
                    error=str(exc),
                    consecutive=failures,
                    retry_in=delay,
                )
                await anyio.sleep(delay)
                continue
            if failures:
                self.log.info("store_reachable", activity=activity, after_failures=failures)
                failures = 0
            await anyio.sleep(interval() if callable(interval) else interval)

    async def _heartbeats(self) -> None:
        interval = self.settings.heartbeat_interval
        if self.notifier.watchdog_interval:
            interval = min(interval, self.notifier.watchdog_interval / 2)
        store = self.queue.store

        async def beat() -> None:
            # The watchdog hears from a live event loop even while the store is away: a
            # restart would lose the running jobs that the daemon is keeping.
            self.notifier.watchdog()
            asked_at = time.monotonic()
            runs = [job_id for w in self.workers for job_id in w.runs]
            busy = sum(w.active for w in self.workers)
            owned = await store.heartbeat(self.worker_id, busy, runs)
            await self._drop_lost(owned, asked_at)
            if self.metrics is not None:
                self.metrics.heartbeat()

        await self._every("heartbeat", interval, beat)

    async def _report_busy(self) -> None:
        """Write the daemon's busy slots (`wizd agents`) within a poll interval of a change,
        not only at the next heartbeat (one small write, only when the count changed)."""
        store = self.queue.store
        written = 0  # register_worker's

        async def report() -> None:
            nonlocal written
            busy = sum(w.active for w in self.workers)
            if busy != written:
                await store.heartbeat(self.worker_id, busy, [])
                written = busy

        await self._every("report_busy", self.settings.poll_interval, report)

    async def _check_owned(self) -> None:
        """Notice cancelled or reaped runs within a poll interval, not a heartbeat interval."""
        store = self.queue.store

        async def check() -> None:
            runs = [(r.job.id, r.job.attempt) for w in self.workers for r in w.runs.values()]
            if runs:
                asked_at = time.monotonic()
                await self._drop_lost(await store.owned(self.worker_id, runs), asked_at)

        await anyio.sleep(self.settings.poll_interval)
        await self._every("check_owned", self.settings.poll_interval, check)

    async def _drop_lost(self, owned: set[int], asked_at: float) -> None:
        """Stop the runs this daemon no longer owns (cancelled, killed or reaped)."""
        for worker in self.workers:
            lost = [r for r in worker.owned_runs(asked_at) if r.job.id not in owned]
            for run in lost:
                job_id = run.job.id
                try:
                    job = await self.queue.store.get(job_id)
                except JobNotFound:
                    job = None
                if worker.runs.get(job_id) is not run or run.ended:
                    continue  # it ended meanwhile (its outcome's write is fenced)
                force = job is not None and job.error == KILL_FORCE_REASON
                worker.stop_runs("lost", {job_id}, force=force)
                if job is not None:  # what was done, in the job's log (wizd kill shows it)
                    await self._job_log(job_id, worker.how_stopped(job_id), run.job.attempt)
                self.log.info(
                    "run_stopped",
                    job_id=job_id,
                    queue=worker.name,
                    now=job.status if job else "deleted",
                    force=force,
                )

    async def _job_log(self, job_id: int, message: str, attempt: int) -> None:
        with contextlib.suppress(JobNotFound):  # deleted meanwhile
            await self.queue.store.log(job_id, message, worker_id=self.worker_id, attempt=attempt)

    async def _watch_changes(self) -> None:
        store = self.queue.store
        while True:
            await store.wait_for_change(self.settings.poll_interval)
            for worker in self.workers:
                worker.take_handed()
                worker.wake()

    async def _reaper(self) -> None:
        store = self.queue.store

        async def reap() -> None:
            for item in await store.reap_hung(self.settings.hung_timeout):
                self.log.warning(
                    "hung_job_reaped",
                    job_id=item.job.id,
                    queue=item.job.queue,
                    name=item.job.name,
                    attempt=item.job.attempt,
                    previous_worker=item.job.worker_id,
                    status=item.status,
                )
                self.hooks.recovered(item.job.queue, "hung", 1)
            for job_id in await store.expire():
                self.log.warning("job_expired", job_id=job_id)
            dropped = await store.sweep_feed()  # watchers gone: the feed stops recording
            if dropped:
                self.log.info("watch_leases_expired", leases=dropped)

        await self._every("reaper", self.settings.reaper_interval, reap)

    async def _promoter(self) -> None:
        store = self.queue.store

        async def promote() -> None:
            if await store.promote_due():
                for worker in self.workers:
                    worker.wake()

        await self._every("promoter", self.settings.poll_interval, promote)

    async def _scheduler(self) -> None:
        """Enqueue the due occurrences of schedules (of every queue). Every daemon does this
        at once safely: the store enqueues each occurrence once, whoever fires it first."""
        store = self.queue.store
        poll = self.settings.poll_interval
        wait = 0.0  # till the next look (the soonest occurrence, at most a poll interval)

        async def fire() -> None:
            nonlocal wait
            due = await store.next_schedule_due()
            if due is not None and due <= time.time():
                fired = await store.fire_schedules()
                for item in fired.jobs:
                    self.log.info(
                        "schedule_fired",
                        schedule_id=item.schedule_id,
                        fire_at=datetime.fromtimestamp(item.fire_at, UTC).isoformat(),
                        job_id=item.job.id,
                        queue=item.job.queue,
                        name=item.job.name,
                    )
                if fired.missed or fired.duplicates:
                    self.log.info(
                        "schedule_occurrences_skipped",
                        missed=fired.missed,
                        duplicates=fired.duplicates,
                    )
                for schedule_id, why in fired.errors:
                    self.log.error("schedule_failed", schedule_id=schedule_id, error=why)
                if self.metrics is not None:
                    self.metrics.scheduled(len(fired.jobs), fired.missed, fired.duplicates)
                due = await store.next_schedule_due()
            wait = max(poll if due is None else min(poll, due - time.time()), SCHEDULER_MIN_SLEEP)

        await self._every("scheduler", lambda: wait, fire)

    async def _retention(self) -> None:
        s = self.settings
        store = self.queue.store
        statuses = [parse_status(x) for x in s.retention_statuses]

        async def clean() -> None:
            if s.retention_days > 0:
                removed = await store.cleanup(s.retention_days * 86400, statuses, dry_run=False)
                if removed:
                    self.log.info("retention_cleanup", removed=len(removed), days=s.retention_days)
                await store.prune_schedule_runs(s.retention_days * 86400)
            await store.prune_workers(s.worker_retention)

        await self._every("retention", RETENTION_INTERVAL, clean)
