"""The CLI's side of signals: `wizd signal ID NAME --data JSON` brings a waiting job back
(or is kept for a later wait), refuses a final job and bad data in one line, and
`wizd jobs --waiting-signal` lists what waits, with the name it waits for."""

from __future__ import annotations

import json

import anyio
import pytest
from cli_runner import cli_db, wizd_cmd

import wizd
from wizd.errors import WaitingForSignal
from wizd.store import Finish

db = cli_db
Q = "signals"


def waiting_job(path: str) -> int:
    """A job whose run waits for signal `approval` (with a timeout an hour away)."""

    async def prepare() -> int:
        async with wizd.connect(path) as q:
            job = await q.enqueue("agent", queue=Q)
            (claimed,) = await q.store.claim(Q, "w1", 1)
            ctx = wizd.JobContext(claimed, q, "w1")
            with pytest.raises(WaitingForSignal):
                await ctx.wait_for_signal("approval", timeout=3600)
            await q.store.finish([Finish(job.id, "w1", 1, "wait_signal", error="approval")])
            return job.id

    return anyio.run(prepare)


def test_jobs_waiting_signal_lists_the_waits_and_signal_brings_one_back(db: str) -> None:
    job_id = waiting_job(db)
    ran = wizd_cmd(db, "jobs", "--waiting-signal")
    assert ran.code == 0, ran
    assert "approval" in ran.out, ran
    assert str(job_id) in ran.out, ran
    listed = json.loads(wizd_cmd(db, "jobs", "--waiting-signal", "--json").out)
    assert [(j["id"], j["status"], j["signal"]) for j in listed] == [
        (job_id, "waiting_signal", "approval")
    ]
    ran = wizd_cmd(db, "jobs", "-s", "waiting_signal", "--json")
    assert [j["id"] for j in json.loads(ran.out)] == [job_id]
    (row,) = json.loads(wizd_cmd(db, "status", "--json").out)
    assert row["counts"]["waiting_signal"] == 1

    ran = wizd_cmd(db, "info", str(job_id))
    assert "approval#1 (signal)" in ran.out, ran
    assert "waiting for a signal" in ran.out, ran
    ran = wizd_cmd(db, "signal", str(job_id), "approval", "--data", '{"ok": true}')
    assert ran.code == 0, ran
    assert f"job {job_id} signal 'approval' sent" in ran.out
    assert "pending" in ran.out
    assert "no job waits for a signal" in wizd_cmd(db, "jobs", "--waiting-signal").out


def test_signal_refuses_bad_data_and_final_jobs_in_one_line(db: str) -> None:
    job_id = waiting_job(db)
    ran = wizd_cmd(db, "signal", str(job_id), "approval", "--data", "{nope")
    assert ran.code != 0
    assert ran.err.count("\n") == 1, ran
    assert "data: is not valid JSON" in ran.err, ran
    assert wizd_cmd(db, "cancel", str(job_id)).code == 0
    ran = wizd_cmd(db, "signal", str(job_id), "approval")
    assert ran.code != 0
    assert ran.err.count("\n") == 1, ran
    assert "cancelled" in ran.err, ran
    ran = wizd_cmd(db, "signal", "999", "approval")
    assert ran.code != 0
    assert "999" in ran.err, ran
