"""Smoke test of the comparison benchmark: `python -m bench run` at tiny sizes.

It asserts only that the run did all its work: every system is in the results, every
workload of every system verified (every job ran once and the store agrees) or is one of
the few that are declared meaningless for that system, and the JSON, Markdown and PNG
files were written. The figures themselves are not checked.

It needs the bench extra (`pip install -e '.[bench]'`, which .ci/run installs) and the Redis
and PostgreSQL servers on 127.0.0.1; without them it fails, naming what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PEERS = ["huey", "rq", "arq", "celery", "procrastinate", "pgqueuer", "matplotlib", "psutil"]
SYSTEMS = [
    "floor",
    "wizd-sqlite",
    "wizd-postgres",
    "huey-sqlite",
    "huey-redis",
    "rq",
    "arq",
    "celery",
    "procrastinate",
    "pgqueuer",
]
NOT_APPLICABLE = {  # workloads that mean nothing for a system (reported as n/a with why)
    "floor": {"burn_down_2", "steady_1", "steady_2", "rss_1", "rss_2"}
    | {"sleep_1", "sleep_10", "sleep_100"},
    "huey-sqlite": {"enqueue_bulk"},
    "huey-redis": {"enqueue_bulk"},
    "arq": {"enqueue_bulk"},
    "celery": {"enqueue_bulk"},
}


def require(packages: list[str], servers: dict[str, int]) -> None:
    """Fail (never skip) naming what the benchmark needs and this machine lacks."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"the bench extra is not installed (no {', '.join(missing)})")
    down = [f"{name} on 127.0.0.1:{port}" for name, port in servers.items() if not listening(port)]
    if down:
        pytest.fail(f"needs {' and '.join(down)}")


def run_bench(
    args: list[str], stem: Path, timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`python -m ARGS --out FOLDER`, and the results it wrote to STEM.json."""
    command = [sys.executable, "-m", *args, "--out", str(stem.parent)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    written = stem.with_suffix(".json")
    assert written.is_file(), run.stdout[-2000:] + run.stderr[-2000:]
    return run, json.loads(written.read_text())


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_run_verifies_every_workload_of_every_system(tmp_path: Path) -> None:
    require(PEERS, {"Redis": 6379, "PostgreSQL": 5432})
    out = tmp_path / "results"
    run, results = run_bench(["bench", "run", "--quick", "--jobs", "200", "--steady", "1",
                              "--depth", "100", "--burn-down-of", "wizd-sqlite=500"],
                             out / "quick", 280)  # fmt: skip
    assert (out / "quick.md").read_text().startswith("# Job queues compared")
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(results["systems"]) == SYSTEMS
    assert results["burn_down_of"] == {"wizd-sqlite": 500}
    for key, system in results["systems"].items():
        assert "error" not in system, f"{key}: {system['error']}"
        burned = system["workloads"]["burn_down_1"]
        assert burned["jobs"] == (500 if key == "wizd-sqlite" else 200), (key, burned)
        assert set(system["workloads"]) == set(results["workloads"]), key
        not_applicable = set()
        for workload, figure in system["workloads"].items():
            assert "error" not in figure, f"{key} {workload}: {figure['error']}"
            if "na" in figure:
                not_applicable.add(workload)
            else:
                assert figure["value"] > 0, f"{key} {workload}: {figure}"
        assert not_applicable == NOT_APPLICABLE.get(key, set()), key
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_bench_scaling_verifies_each_postgresql_queue_at_each_process_count(
    tmp_path: Path,
) -> None:
    """`python -m bench.scaling` (issue 6's side-by-side of the PostgreSQL queues): every
    system's burn-down verified at each process count, with pickup latencies and memory,
    and a system given fewer jobs by --jobs-of runs that many."""
    require(["procrastinate", "pgqueuer", "psutil"], {"PostgreSQL": 5432})
    out = tmp_path / "results"
    run, results = run_bench(["bench.scaling", "--quick", "--jobs", "300", "--jobs-of",
                              "procrastinate=100", "--processes", "1,2", "--seconds", "1"],
                             out / "scaling-quick", 190)  # fmt: skip
    assert (out / "scaling-quick.md").read_text().startswith("# PostgreSQL queues")
    assert list(results["systems"]) == ["wizd-postgres", "pgqueuer", "procrastinate"]
    assert results["sizes"] == {"wizd-postgres": 300, "pgqueuer": 300, "procrastinate": 100}
    for key, system in results["systems"].items():
        assert list(system["runs"]) == ["1", "2"], key
        for p, parts in system["runs"].items():
            burn, pickup, rss = parts["burn_down"], parts["steady"], parts["rss"]
            assert "error" not in burn, (key, p, burn)
            assert "error" not in pickup, (key, p, pickup)
            assert burn["jobs"] == system["jobs"], (key, p)
            assert burn["value"] > 0, (key, p)
            assert 0 < pickup["latency_p50_ms"] <= pickup["latency_p99_ms"], (key, p)
            assert rss["processes"] == int(p), (key, p)
            assert rss["value"] > 0, (key, p)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_durable_prints_every_figure_of_wizd_and_dbos(tmp_path: Path) -> None:
    """`python -m bench.durable --quick` (issue 21's side-by-side with DBOS) at tiny sizes on
    SQLite: both systems ran every figure, including a run recovered after a SIGKILL, and
    the table and the results files were written."""
    require(["dbos"], {})
    out = tmp_path / "results"
    run, results = run_bench(["bench.durable", "--quick", "--jobs", "20", "--awaits", "5"],
                             out / "durable", 110)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(results["results"]) == ["SQLite"]
    figures = results["results"]["SQLite"]
    assert set(figures) == {"wizd", "dbos"}
    keys = {"steps_per_s", "jobs_per_s", "await_p50_ms", "await_p99_ms", "recovery_s"}
    for system, found in figures.items():
        assert keys <= set(found), system
        assert all(found[key] > 0 for key in keys), (system, found)
        assert found["await_p50_ms"] <= found["await_p99_ms"], (system, found)
    for kind in ("wizd", "dbos"):
        assert f"SQLite {kind:>5}: restart -> recovered" in run.stdout, run.stdout
    assert "| SQLite | 10-step job: steps/s |" in run.stdout
    assert (out / "durable.md").read_text().startswith("wizd ")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_http_measures_every_method_against_the_python_api(tmp_path: Path) -> None:
    """`python -m bench.http` (issue 22's HTTP API beside the Python API) at tiny sizes on
    SQLite, a real `wizd serve` in another process: every method enqueued its jobs (each
    answer checked by the bench) and every wait was measured; the results files were
    written."""
    require(["fastapi", "uvicorn", "httpx"], {})
    out = tmp_path / "results"
    run, results = run_bench(["bench.http", "--jobs", "40", "--waits", "3", "--rounds", "2"],
                             out / "http", 110)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(results["results"]) == ["SQLite"]
    found = results["results"]["SQLite"]
    methods = {"api", "this httpx", "this raw", "api batch", "this httpx batch"}
    assert set(found["rates"]) == set(found["cpu_us"]) == methods
    assert all(rate > 0 for rate in found["rates"].values()), found
    assert set(found["waits"]) == {"api", "this"}
    for method, wait in found["waits"].items():
        assert 0 < wait["p50_ms"] <= wait["p99_ms"], (method, wait)
    assert "| SQLite | enqueue one at a time (httpx), jobs/s |" in run.stdout
    assert (out / "http.md").read_text().startswith("wizd's HTTP API")
