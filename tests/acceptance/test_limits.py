"""Acceptance test of the size caps (issue 20, item 17) through a real daemon: what its Python
processors write (a result, an error, a log line) is held to the limits in its settings."""

from __future__ import annotations

import pytest

import wizd

from .conftest import Harness, wait_until

pytestmark = pytest.mark.slow

LIMITS = {"WIZD_RESULT_LIMIT": "1000", "WIZD_ERROR_LIMIT": "200", "WIZD_LOG_LIMIT": "100"}


def test_a_daemon_holds_what_its_processors_write_to_its_size_limits(
    harness: Harness, queue: wizd.SyncQueue
) -> None:
    daemon = harness.start(app="accept_limits:writer", agent="writer", env=LIMITS).ready()
    jobs = queue.enqueue_many(
        [
            {"name": "result", "queue": "writer", "payload": {"n": 5_000_000}, "attempts": 3},
            {"name": "result", "queue": "writer", "payload": {"n": 998}},  # 1000 bytes as JSON
            {"name": "fail", "queue": "writer", "payload": {"n": 10_000}, "attempts": 1},
            {"name": "log", "queue": "writer", "payload": {"n": 101}, "attempts": 1},
            {"name": "log", "queue": "writer", "payload": {"n": 100}},
        ]
    )

    def all_final() -> list[wizd.Job] | None:
        found = [queue.get(j.id) for j in jobs]
        return found if all(j.final for j in found) else None

    big, fits, failed, long_line, line = wait_until(all_final, 30, "every job final")

    assert (big.status, big.attempt, big.result) == ("failed", 1, None)  # not retried
    assert big.error == "result: is 5000002 characters as JSON; the limit is 1000 bytes"
    assert (fits.status, fits.result) == ("completed", "r" * 998)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.startswith("ValueError: bad\\x00byte eee")
    assert len(failed.error.encode()) <= 200
    assert failed.error.endswith(" bytes]")
    assert long_line.status == "failed"
    assert long_line.error == "InvalidJob: message: is 101 characters; the limit is 100 bytes"
    assert [e.message for e in queue.events(long_line.id) if e.kind == "log"] == []
    assert (line.status, line.result) == ("completed", "logged")
    assert [e.message for e in queue.events(line.id) if e.kind == "log"] == ["l" * 100]
    assert daemon.proc.poll() is None
