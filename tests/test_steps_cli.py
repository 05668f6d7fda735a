"""The CLI's view of durable steps: `wizd info` lists them, `wizd logs` has a line per
finished step, `wizd retry ID --from-step NAME` keeps the steps before NAME."""

from __future__ import annotations

import json

import anyio
from cli_runner import cli_db, wizd_cmd

import wizd
from wizd.store import Finish

db = cli_db
Q = "steps"


def failed_job_with_steps(path: str) -> int:
    """A job whose run stored plan#1, search#1, search#2 and then failed."""

    async def prepare() -> int:
        async with wizd.connect(path) as q:
            job = await q.enqueue("agent", queue=Q, attempts=1)
            (claimed,) = await q.store.claim(Q, "w1", 1)
            ctx = wizd.JobContext(claimed, q, "w1")
            await ctx.step("plan", lambda: {"topics": 2})
            await ctx.step("search", lambda: "first")
            await ctx.step("search", lambda: "second")
            await q.store.finish([Finish(job.id, "w1", 1, "failed", error="bad draft")])
            return job.id

    return anyio.run(prepare)


def test_info_lists_the_steps(db: str) -> None:
    job_id = failed_job_with_steps(db)
    ran = wizd_cmd(db, "info", str(job_id))
    assert ran.code == 0, ran
    for text in ("plan#1", "search#1", "search#2", '{"topics": 2}', '"second"'):
        assert text in ran.out, ran
    ran = wizd_cmd(db, "info", str(job_id), "--json")
    assert ran.code == 0, ran
    steps = json.loads(ran.out)["steps"]
    assert [(s["label"], s["status"], s["attempts"]) for s in steps] == [
        ("plan#1", "completed", 1),
        ("search#1", "completed", 1),
        ("search#2", "completed", 1),
    ]
    assert steps[0]["result"] == {"topics": 2}


def test_logs_show_a_line_per_finished_step(db: str) -> None:
    job_id = failed_job_with_steps(db)
    ran = wizd_cmd(db, "logs", str(job_id))
    assert ran.code == 0, ran
    lines = [line for line in ran.out.splitlines() if " step " in line]
    assert len(lines) == 3, ran
    assert "search#2 completed in" in lines[2]


def test_retry_from_step_keeps_the_steps_before_it(db: str) -> None:
    job_id = failed_job_with_steps(db)
    ran = wizd_cmd(db, "retry", str(job_id), "--from-step", "search")
    assert ran.code == 0, ran
    assert f"job {job_id} retried" in ran.out

    async def stored() -> list[str]:
        async with wizd.connect(db) as q:
            return [s.label for s in await q.steps(job_id)]

    assert anyio.run(stored) == ["plan#1"]


def test_retry_from_step_refusals_are_one_line(db: str) -> None:
    job_id = failed_job_with_steps(db)
    ran = wizd_cmd(db, "retry", str(job_id), "--from-step", "nope")
    assert ran.code != 0
    assert ran.error is None
    assert "has no step named 'nope' (its steps: plan, search)" in ran.err
    ran = wizd_cmd(db, "retry", str(job_id), "7", "--from-step", "plan")
    assert ran.code != 0
    assert "--from-step retries one job" in ran.err
