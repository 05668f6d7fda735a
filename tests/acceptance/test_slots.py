"""What a daemon says is busy: its metrics (wizd_worker_slots) and its row in `wizd agents`
agree with the jobs it runs, while they run and after they end."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wizd

from .conftest import AGENT, Harness, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def slots(port: int) -> dict[str, float]:
    """{state: value} of wizd_worker_slots for the researcher queue, scraped now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "wizd_worker_slots" and sample.labels.get("queue") == AGENT
    }


def agents_busy(harness: Harness) -> list[int]:
    answer = harness.run("agents", "--json", "--database", str(harness.db))
    assert answer.returncode == 0, answer.stderr
    return [w["busy"] for w in json.loads(answer.stdout) if w["state"] == "live"]


def test_metrics_and_agents_agree_with_what_runs(harness: Harness, queue: wizd.SyncQueue) -> None:
    port = free_port()
    # The default heartbeat interval: `wizd agents` must not wait 30 s to see a change.
    harness.start(concurrency=3, metrics_port=port, heartbeat_interval=30).ready()
    release = harness.dir / "release"
    ids = [
        j.id
        for j in queue.enqueue_many(
            [{"name": "hold", "queue": AGENT, "payload": {"release": str(release)}}] * 3
        )
    ]
    wait_until(
        lambda: all(queue.get(i).status.value == "running" for i in ids), 10, "3 jobs running"
    )
    busy = {"busy": 3.0, "idle": 0.0}
    wait_until(lambda: slots(port) == busy, 10, "metrics saying busy 3, idle 0")
    wait_until(lambda: agents_busy(harness) == [3], 10, "wizd agents saying busy 3")
    # Read again: it stays so while they run.
    assert slots(port) == busy
    assert agents_busy(harness) == [3]

    # A killed run frees its slot without an outcome to write: both see that too.
    queue.kill(ids[0])
    busy = {"busy": 2.0, "idle": 1.0}
    wait_until(lambda: slots(port) == busy, 10, "metrics saying busy 2, idle 1")
    wait_until(lambda: agents_busy(harness) == [2], 10, "wizd agents saying busy 2")

    release.touch()
    wait_until(
        lambda: all(queue.get(i).status.value == "completed" for i in ids[1:]), 10, "jobs ended"
    )
    wait_until(lambda: slots(port) == {"busy": 0.0, "idle": 3.0}, 10, "metrics saying busy 0")
    wait_until(lambda: agents_busy(harness) == [0], 10, "wizd agents saying busy 0")
