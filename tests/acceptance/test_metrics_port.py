"""The metrics port of daemons sharing a host: left unset, a taken port moves to the next free
one (a warning in the log, the address in `wizd agents`); set explicitly, it is that port
or a one-line start-up error. The default port is not used here (it may be taken on this
machine): `metrics_base_port` (not an explicit port) moves the search to a port we hold."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Harness

pytestmark = pytest.mark.slow


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process holds (a listening socket of this test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def port_of(listening: dict[str, Any]) -> int:
    return int(listening["url"].rsplit(":", 1)[1].split("/")[0])


def worker_id_served(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    (line,) = [x for x in text.splitlines() if x.startswith("wizd_info{")]
    return line.split('worker_id="')[1].split('"')[0]


def test_daemons_with_the_port_unset_move_to_free_ports(harness: Harness, held_port: int) -> None:
    env = {"WIZD_METRICS_BASE_PORT": str(held_port)}
    a = harness.start("A", metrics_port=None, env=env).ready()
    b = harness.start("B", metrics_port=None, env=env).ready()
    port_a = port_of(a.wait_for("metrics_listening"))
    port_b = port_of(b.wait_for("metrics_listening"))
    assert len({held_port, port_a, port_b}) == 3
    moved_a = a.wait_for("metrics_port_taken", port=port_a)
    moved_b = b.wait_for("metrics_port_taken", port=port_b)
    assert moved_a["taken"][0] == held_port
    assert moved_b["taken"][0] == held_port
    assert port_a in moved_b["taken"] or port_b < port_a

    answer = harness.run("agents", "--json", "--database", str(harness.db))
    assert answer.returncode == 0, answer.stderr
    shown = {w["pid"]: w["metrics"] for w in json.loads(answer.stdout)}
    assert shown == {a.pid: f"127.0.0.1:{port_a}", b.pid: f"127.0.0.1:{port_b}"}
    table = harness.run("agents", "--database", str(harness.db)).stdout
    assert f"127.0.0.1:{port_a}" in table
    # Each endpoint is its own daemon's.
    (started_a,) = a.logged("daemon_ready")
    assert worker_id_served(port_a) == started_a["worker_id"]
    assert worker_id_served(port_b) == b.logged("daemon_ready")[0]["worker_id"]


@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_an_explicit_port_that_is_taken_stops_start_up(
    harness: Harness, held_port: int, how: str
) -> None:
    args = harness.base_args(metrics_port=None)
    env = {}
    if how == "flag":
        args += ["--metrics-port", str(held_port)]
    elif how == "env":
        env["WIZD_METRICS_PORT"] = str(held_port)
    else:
        config = harness.dir / "wizd.toml"
        config.write_text(f"metrics_port = {held_port}\n")
        args += ["--config", str(config)]
    answer = harness.run(*args, env=env)
    assert answer.returncode != 0
    errors = [line for line in answer.stderr.splitlines() if "metrics_port" in line]
    assert len(errors) == 1, answer.stderr
    assert f"metrics_port: cannot listen on 127.0.0.1:{held_port}: " in errors[0]
    assert "Traceback" not in answer.stderr
