"""The metrics endpoint of the real daemon, and the operator's configs that read it.

One daemon (`wizd` as a subprocess, metrics on a free port) serves the module. Before it
starts, a job is left `running` by a worker that does not exist, so the daemon's start-up
recovery shows in wizd_jobs_recovered_total. The test then enqueues a workload from this
process, waits (deadline + polling, no sleeps) until it is final, and compares a scrape
over HTTP with the store. The Grafana dashboard and the alert rules may only use metric
and label names that this daemon exports.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import wizd

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "config" / "grafana" / "wizd.json"
ALERTS = REPO / "config" / "prometheus" / "alerts.yml"

QUEUE = "m"
CONCURRENCY = 4
GHOST = "metrics-ghost-worker"  # never registered: its running job is recovered at start-up
STATUSES = [s.value for s in wizd.JobStatus]
# Labels Prometheus adds to every scraped series; configs may use them on any metric.
TARGET_LABELS = {"job", "instance"}
METRIC_NAME = re.compile(r"\bwizd_[a-z_]+")
T = TypeVar("T")

METRICS_APP = '''
"""Processors of the metrics test: loaded by the daemon with --app metrics_app:agent."""

import anyio

from wizd.agent import Agent, JobContext

agent = Agent("m")


@agent.processor("ok")
async def ok(ctx: JobContext) -> dict:
    return {"id": ctx.id}


@agent.processor("boom")
async def boom(ctx: JobContext) -> None:
    raise RuntimeError("boom")


@agent.processor("slow")
async def slow(ctx: JobContext) -> None:
    await anyio.sleep(ctx.payload.get("seconds", 0.5))
'''


def metrics_wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(0.05)


def metrics_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class HttpAnswer:
    status: int
    content_type: str
    body: str


def metrics_http_get(url: str) -> HttpAnswer:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return HttpAnswer(resp.status, resp.headers["Content-Type"], resp.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, exc.headers["Content-Type"], exc.read().decode())


class MetricsDaemon:
    """`wizd` serving queue m with metrics on a free port; JSON log lines go to a file."""

    def __init__(self, directory: Path, db: Path) -> None:
        self.dir = directory
        self.db = db
        self.log_path = directory / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:]) or "(nothing logged)"

    def start(self) -> None:
        """Start the daemon and wait until /healthz answers 200. A port taken between
        choosing it and the daemon's bind is retried with another one."""
        for _ in range(3):
            self.port = metrics_free_port()
            argv = [
                sys.executable,
                "-c",
                "from wizd.cli import main; main()",
                "--agent", QUEUE,
                "--app", "metrics_app:agent",
                "--database", str(self.db),
                "--concurrency", str(CONCURRENCY),
                "--metrics-port", str(self.port),
                "--poll-interval", "0.2",
                "--heartbeat-interval", "0.5",
                "--log-format", "json",
            ]  # fmt: skip
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("WIZD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
            }
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(self.dir), env.get("PYTHONPATH")])
            )
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.dir
                )
            if self._wait_healthy(20.0):
                return
            if "cannot listen" not in self.log_tail():
                break
        pytest.fail(f"the daemon did not become healthy; its log:\n{self.log_tail()}")

    def _wait_healthy(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # Our daemon's own word that it listens on this port (not some other server's).
            if f':{self.port}/metrics"' in self.log_tail(200):
                try:
                    if metrics_http_get(self.base + "/healthz").status == 200:
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def get(self, path: str) -> HttpAnswer:
        return metrics_http_get(self.base + path)

    def scrape(self) -> Scrape:
        answer = self.get("/metrics")
        assert answer.status == 200, f"/metrics answered {answer.status}: {answer.body}"
        return Scrape(answer.body, answer.content_type)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


class Scrape:
    """One exposition: declared families (# TYPE) and samples by name."""

    def __init__(self, text: str, content_type: str = "") -> None:
        self.text = text
        self.content_type = content_type
        self.types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def wizd_families(self) -> set[str]:
        """Families of wizd (their TYPE-line names), not prometheus_client's *_created."""
        return {n for n in self.types if n.startswith("wizd_") and not n.endswith("_created")}

    def selectable(self) -> set[str]:
        """Series names a PromQL query can select, including those without samples yet."""
        names: set[str] = set()
        for name, kind in self.types.items():
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            else:
                names.add(name)
        return names | set(self.samples)

    def labels_of(self, name: str) -> set[str]:
        return {key for labels, _ in self.samples.get(name, []) for key in labels}

    def values(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """{label values: value} of a sample name, keyed by the given label names."""
        out: dict[tuple[str, ...], float] = {}
        for labels, value in self.samples.get(name, []):
            key = tuple(labels[k] for k in keys)
            out[key] = out.get(key, 0.0) + value
        return out

    def total(self, name: str, **where: str) -> float:
        return sum(
            value
            for labels, value in self.samples.get(name, [])
            if all(labels.get(k) == v for k, v in where.items())
        )


@dataclass
class Workload:
    scrape: Scrape
    counts: dict[str, int]
    counts_by_queue: dict[str, dict[str, int]]
    workers: list[wizd.WorkerInfo]


def metrics_leave_ghost_job(db: Path) -> int:
    """A job left running by a worker that never registered (the daemon must recover it)."""

    async def seed() -> int:
        async with wizd.connect(str(db)) as q:
            job = await q.enqueue("slow", {"seconds": 0}, queue=QUEUE, attempts=1)
            claimed = await q.store.claim(QUEUE, GHOST, 1)
            assert [j.id for j in claimed] == [job.id]
            return job.id

    return anyio.run(seed)


@pytest.fixture(scope="module")
def metrics_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsDaemon]:
    directory = tmp_path_factory.mktemp("metrics")
    (directory / "metrics_app.py").write_text(textwrap.dedent(METRICS_APP), encoding="utf-8")
    db = directory / "wizd.db"
    metrics_leave_ghost_job(db)
    daemon = MetricsDaemon(directory, db)
    try:
        daemon.start()
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, f"the daemon exited {code} on SIGTERM; its log:\n{daemon.log_tail()}"


@pytest.fixture(scope="module")
def metrics_workload(metrics_daemon: MetricsDaemon) -> Workload:
    """20 ok, 3 boom with one attempt, 1 boom with two (one retry), 2 slow delayed an hour;
    waits until all but the delayed ones are final and the daemon has counted every run."""
    with wizd.connect_sync(str(metrics_daemon.db)) as q:
        jobs = q.enqueue_many(
            [{"name": "ok", "queue": QUEUE}] * 20
            + [{"name": "boom", "queue": QUEUE, "attempts": 1}] * 3
            + [{"name": "boom", "queue": QUEUE, "attempts": 2, "backoff": {"delay": 0}}]
            + [{"name": "slow", "queue": QUEUE, "delay": 3600}] * 2
        )
        runnable = [job.id for job in jobs if job.name != "slow"]

        def all_final() -> bool:
            return all(q.get(i).status.final for i in runnable)

        metrics_wait_until(all_final, 30, "the workload to be final")
        runs = 20 + 3 + 2

        def settled() -> Scrape | None:
            # The daemon counts a run just after writing its outcome: wait for the counters.
            scrape = metrics_daemon.scrape()
            counted = scrape.total("wizd_jobs_processed_total", queue=QUEUE)
            busy = scrape.total("wizd_worker_slots", queue=QUEUE, state="busy")
            return scrape if counted == runs and busy == 0 else None

        scrape = metrics_wait_until(settled, 15, f"{runs} runs counted and no busy slot")
        return Workload(scrape, q.counts(), q.counts_by_queue(), q.workers())


def test_scrape_matches_the_store(metrics_workload: Workload) -> None:
    s = metrics_workload.scrape
    assert s.content_type.startswith("text/plain")

    # Per-status counts: every status present (zeros included), equal to the store's.
    jobs = s.values("wizd_jobs", "queue", "status")
    assert sorted(jobs) == sorted((QUEUE, status) for status in STATUSES)
    assert {status: jobs[QUEUE, status] for status in STATUSES} == metrics_workload.counts
    assert metrics_workload.counts_by_queue[QUEUE] == metrics_workload.counts
    # failed: the 3 single-attempt booms, the retried boom, the ghost's job (no attempt left).
    expected = dict.fromkeys(STATUSES, 0) | {"completed": 20, "failed": 3 + 1 + 1, "delayed": 2}
    assert metrics_workload.counts == expected

    # Runs by outcome: 20 completed; 3 single-attempt booms + 2 runs of the retried boom.
    processed = s.values("wizd_jobs_processed_total", "queue", "name", "outcome")
    assert processed == {(QUEUE, "ok", "completed"): 20, (QUEUE, "boom", "failed"): 3 + 2}
    by_outcome = s.values("wizd_jobs_processed_total", "outcome")
    assert by_outcome == {("completed",): 20, ("failed",): 5}
    assert s.values("wizd_job_retries_total", "queue", "name") == {(QUEUE, "boom"): 1}
    assert s.values("wizd_jobs_recovered_total", "queue", "reason") == {(QUEUE, "startup"): 1}

    # Histograms: one run-time observation per run, one wait-time observation per claim.
    run_count = s.values("wizd_job_run_seconds_count", "queue", "name")
    assert run_count == {(QUEUE, "ok"): 20, (QUEUE, "boom"): 5}
    assert sum(run_count.values()) == sum(processed.values())
    run_inf = s.values("wizd_job_run_seconds_bucket", "queue", "name", "le")
    assert run_inf[QUEUE, "ok", "+Inf"] == 20
    assert s.total("wizd_job_run_seconds_sum") >= 0
    assert s.values("wizd_job_wait_seconds_count", "queue") == {(QUEUE,): 25}
    wait_buckets = s.values("wizd_job_wait_seconds_bucket", "le")
    assert wait_buckets[("+Inf",)] == 25
    assert len(wait_buckets) > 2

    # Slots, backlog and the daemon itself.
    slots = s.values("wizd_worker_slots", "queue", "state")
    assert slots == {(QUEUE, "busy"): 0, (QUEUE, "idle"): CONCURRENCY}
    assert s.values("wizd_oldest_pending_age_seconds", "queue") == {(QUEUE,): 0}
    [(info_labels, info_value)] = s.samples["wizd_info"]
    assert info_value == 1
    assert info_labels["version"] == wizd.__version__
    live = [w.id for w in metrics_workload.workers if w.stopped_at is None]
    assert info_labels["worker_id"] in live
    [(_, heartbeat_age)] = s.samples["wizd_heartbeat_age_seconds"]
    assert 0 <= heartbeat_age < 15  # heartbeats every 0.5 s
    [(_, lag)] = s.samples["wizd_event_loop_lag_seconds"]
    assert 0 <= lag < 5


def test_healthz_answers(metrics_daemon: MetricsDaemon) -> None:
    health = metrics_daemon.get("/healthz")
    assert (health.status, health.body) == (200, "ok\n")
    assert metrics_daemon.get("/nothing-here").status == 404


# -- the operator's configs ----------------------------------------------------------------


@dataclass
class Query:
    where: str
    expr: str
    legend: str = ""  # Grafana legendFormat or alert annotations: may use {{label}}


def metrics_walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from metrics_walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from metrics_walk(value)


def metrics_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def metrics_dashboard_queries() -> list[Query]:
    queries = []
    dashboard = metrics_dashboard()
    for panel in metrics_walk(dashboard["panels"]):
        if isinstance(panel, dict) and "targets" in panel:
            for target in panel["targets"]:
                where = f"panel {panel['title']!r} target {target['refId']}"
                queries.append(Query(where, target["expr"], target.get("legendFormat", "")))
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            text = query["query"] if isinstance(query, dict) else query
            queries.append(Query(f"variable {var['name']}", text))
    return queries


def metrics_alert_rules() -> list[dict[str, Any]]:
    """The rules of alerts.yml: alert, expr, for, labels and annotations text, read from
    the YAML's layout (PyYAML is not a dependency; promtool validates the file in CI)."""
    rules: list[dict[str, Any]] = []
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        found = re.match(r"^(\s*)- alert:\s*(\S+)\s*$", line)
        if found:
            indent = len(found.group(1)) + 2
            rule: dict[str, Any] = {"alert": found.group(2), "keys": {}, "text": ""}
            i += 1
            body = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) >= indent
            ):
                body.append(lines[i])
                i += 1
            rule["text"] = "\n".join(body)
            key = None
            for b in body:
                top = re.match(rf"^ {{{indent}}}(\w+):\s*(.*)$", b)
                if top:
                    key = top.group(1)
                    rule["keys"][key] = [top.group(2)]
                elif key is not None:
                    rule["keys"][key].append(b.strip())
            value = rule["keys"].get("expr", [""])
            rule["expr"] = " ".join(value[1:] if value[0] in ("|", ">", "|-", ">-") else value)
            rules.append(rule)
        else:
            i += 1
    return rules


def metrics_alert_queries() -> list[Query]:
    return [Query(f"alert {r['alert']}", r["expr"], r["text"]) for r in metrics_alert_rules()]


def metrics_strip_quoted(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def test_configs_use_only_exported_names(metrics_workload: Workload) -> None:
    """Every wizd_* name in the dashboard and the alerts is exported by the daemon, with the
    labels the queries select, group by and print."""
    scrape = metrics_workload.scrape
    families = scrape.wizd_families()
    selectable = scrape.selectable()
    texts = {
        "config/grafana/wizd.json": DASHBOARD.read_text(encoding="utf-8"),
        "config/prometheus/alerts.yml": ALERTS.read_text(encoding="utf-8"),
    }
    problems = []
    for path, text in texts.items():
        for name in sorted(set(METRIC_NAME.findall(text))):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if base not in families and name not in families:
                problems.append(f"{path}: {name} is not exported (families: {sorted(families)})")
            elif name not in selectable:
                problems.append(f"{path}: {name} selects no series (a histogram needs _bucket/"
                                "_count/_sum, a counter _total)")  # fmt: skip

    queries = metrics_dashboard_queries() + metrics_alert_queries()
    assert len(queries) > 20
    for query in queries:
        expr = metrics_strip_quoted(query.expr)
        names = set(METRIC_NAME.findall(expr))
        known: set[str] = set(TARGET_LABELS)
        for name in names:
            if name in selectable and name not in scrape.samples:
                problems.append(f"{query.where}: {name} has no samples to check labels against")
            known |= scrape.labels_of(name)
        for name, selector in re.findall(r"\b(wizd_[a-z_]+)\s*\{([^}]*)\}", expr):
            for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", selector):
                if label not in scrape.labels_of(name) | TARGET_LABELS:
                    problems.append(f"{query.where}: {name} has no label {label!r}")
        if names:
            for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
                for label in filter(None, (g.strip() for g in group.split(","))):
                    if label not in known:
                        problems.append(f"{query.where}: groups by unknown label {label!r}")
            printed = re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend)
            printed += re.findall(r"\$labels\.(\w+)", query.legend)
            for label in printed:
                if label not in known:
                    problems.append(f"{query.where}: prints unknown label {label!r}")
        for name in re.findall(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", query.expr):
            if name[1] not in scrape.labels_of(name[0]):
                problems.append(f"{query.where}: {name[0]} has no label {name[1]!r}")
    assert not problems, "\n".join(problems)

    # The dashboard shows every metric the daemon exports.
    dashboard_names = set(METRIC_NAME.findall(texts["config/grafana/wizd.json"]))
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in dashboard_names}
    assert families - shown == set(), "exported but on no panel of the dashboard"


def test_dashboard_is_importable() -> None:
    dashboard = metrics_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "wizd"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queue = variables["queue"]
    assert queue["type"] == "query"
    assert queue["multi"] is True
    assert queue["includeAll"] is True
    assert queue["query"]["query"] == "label_values(wizd_jobs, queue)"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    assert queue["datasource"] == datasource

    panels = list(metrics_walk(dashboard["panels"]))
    panels = [p for p in panels if isinstance(p, dict) and "gridPos" in p]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            assert target["expr"].strip(), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
    exprs = " ".join(t["expr"] for p in graphs for t in p["targets"])
    # What the operator looks for first (the brief of the dashboard).
    for needle in (
        "wizd_jobs{",
        "rate(wizd_jobs_processed_total",
        "histogram_quantile(0.5, sum by (le) (rate(wizd_job_wait_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(wizd_job_run_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(wizd_job_run_seconds_bucket",
        'state="busy"',
        "wizd_oldest_pending_age_seconds",
        "wizd_jobs_recovered_total",
        "wizd_event_loop_lag_seconds",
        "wizd_heartbeat_age_seconds",
        "count(wizd_info)",
    ):
        assert needle in exprs, needle
    # Queue-labelled metrics follow the queue variable.
    for panel in graphs:
        for target in panel["targets"]:
            for name in METRIC_NAME.findall(target["expr"]):
                if name.startswith(("wizd_job", "wizd_worker", "wizd_oldest")):
                    assert re.search(rf'{name}\{{[^}}]*queue=~"\$queue"', target["expr"]), (
                        f"{panel['title']}: {name} ignores $queue"
                    )


def test_alert_rules_are_complete() -> None:
    rules = {r["alert"]: r for r in metrics_alert_rules()}
    assert set(rules) == {
        "WizdDaemonDown",
        "WizdHeartbeatStale",
        "WizdHungJobsRecovered",
        "WizdOldestPendingTooOld",
        "WizdFailureRatioHigh",
        "WizdRecoveriesSpiking",
        "WizdEventLoopLagHigh",
    }
    for name, rule in rules.items():
        keys = rule["keys"]
        assert re.search(r"^\s+severity: (critical|warning)$", rule["text"], re.M), name
        assert re.search(r"^\s+summary: \S", rule["text"], re.M), name
        assert re.search(r"^\s+description: \S", rule["text"], re.M), name
        assert {"expr", "labels", "annotations"} <= set(keys), name
    assert rules["WizdDaemonDown"]["expr"] == 'up{job="wizd"} == 0'
    assert rules["WizdDaemonDown"]["keys"]["for"] == ["2m"]
    assert rules["WizdHeartbeatStale"]["expr"] == "wizd_heartbeat_age_seconds > 120"
    assert 'reason="hung"' in rules["WizdHungJobsRecovered"]["expr"]
    assert rules["WizdOldestPendingTooOld"]["keys"]["for"] == ["10m"]
    failure = rules["WizdFailureRatioHigh"]["expr"]
    assert 'outcome="failed"' in failure
    assert "> 0.2" in failure
    assert (
        "increase(wizd_jobs_recovered_total[10m])) > 10" in (rules["WizdRecoveriesSpiking"]["expr"])
    )
