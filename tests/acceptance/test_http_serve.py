"""`wizd serve` and a daemon serving the HTTP API itself, as real processes: they listen,
answer, stop on SIGTERM with exit 0, and refuse a bind beyond loopback with no token."""

from __future__ import annotations

import signal

import httpx
import pytest

import wizd
from tests.acceptance.conftest import AGENT, Daemon, Harness, daemon_env, wizd_command

pytestmark = pytest.mark.slow
NARRATE = {"name": "narrate", "queue": AGENT, "payload": {"pieces": ["a"]}}


@pytest.fixture
def h(store_harness: Harness) -> Harness:
    return store_harness


def serve(h: Harness, *args: str) -> Daemon:
    argv = wizd_command("serve", "--database", str(h.db), *args)
    server = Daemon("serve", argv, daemon_env(None), h.dir)
    h.daemons.append(server)
    return server


def test_wizd_serve_answers_and_stops_on_sigterm(h: Harness) -> None:
    h.start().ready()  # a daemon runs the jobs; the server only reads and writes the store
    server = serve(h, "--port", "0")
    url = server.wait_for("http_api_listening")["url"]
    job = httpx.post(f"{url}/v1/jobs", json=NARRATE)
    assert job.status_code == 201, job.text
    done = httpx.post(f"{url}/v1/jobs/{job.json()['id']}/wait", params={"timeout": 30}, timeout=40)
    assert done.json()["status"] == "completed", done.text
    server.signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0, server.tail()


def test_beyond_loopback_needs_a_token(h: Harness) -> None:
    h.start().ready()  # the database exists
    refused = h.run("serve", "--database", str(h.db), "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2, refused
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "beyond loopback" in lines[0]
    with wizd.connect_sync(str(h.db)) as q:
        _, secret = q.create_token("read")
    server = serve(h, "--host", "0.0.0.0", "--port", "0")
    url = server.wait_for("http_api_listening")["url"].replace("0.0.0.0", "127.0.0.1")
    assert httpx.get(f"{url}/v1/jobs").status_code == 401
    ok = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    assert secret not in server.log_text  # no token in logs


def test_a_daemon_serves_the_api_itself(h: Harness) -> None:
    daemon = h.start(env={"WIZD_SERVE_HTTP": "true", "WIZD_HTTP_PORT": "0"}).ready()
    url = daemon.wait_for("http_api_listening")["url"]
    job = httpx.post(f"{url}/v1/jobs", json=NARRATE)
    done = httpx.post(f"{url}/v1/jobs/{job.json()['id']}/wait", params={"timeout": 30}, timeout=40)
    assert done.json()["status"] == "completed", done.text
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0, daemon.tail()
