"""The HTTP API from Node.js, as the TypeScript agent apps use it: `node --test
tests/node/api.test.mjs` (plain fetch) against a real `wizd serve` and a real daemon that
runs the `researcher` agent, both on one SQLite file, with an enqueue token for that queue."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import AGENT, Daemon, Harness, daemon_env, open_harness, wizd_command

SCRIPT = Path(__file__).parent / "node" / "api.test.mjs"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with open_harness(tmp_path) as h:
        yield h


def test_node_client(harness: Harness) -> None:
    node = shutil.which("node")
    assert node, "Node.js (`node`, 20 or newer) is needed for this test and is not on PATH"
    harness.start("worker").ready()
    made = harness.run(
        "token", "create", "--database", str(harness.db), "--role", "enqueue",
        "--queue", AGENT, "--name", "node",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1].strip()
    assert token.startswith("wizd_"), made.stdout
    argv = wizd_command("serve", "--database", str(harness.db), "--port", "0")
    server = Daemon("serve", argv, daemon_env({"WIZD_LOG_FORMAT": "json"}), harness.dir)
    harness.daemons.append(server)
    url = server.wait_for("http_api_listening", timeout=20)["url"]
    env = {**os.environ, "WIZD_URL": url, "WIZD_TOKEN": token}
    run = subprocess.run(
        [node, "--test", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, (
        f"node --test failed ({run.returncode}):\n{run.stdout}\n{run.stderr}\n"
        f"wizd serve logged:\n{server.tail()}"
    )
    assert "# fail 0" in run.stdout, run.stdout
