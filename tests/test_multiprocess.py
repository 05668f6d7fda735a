"""Four OS processes claim from one SQLite file at once: every job is claimed exactly once
and nobody sees "database is locked"."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import wizd

JOBS = 5_000
BATCHES = (5, 10, 20, 40)  # claim sizes, one per process

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    import wizd
    from wizd.store import Finish

    async def main(path, out, batch):
        claimed, errors = [], []
        worker = f"proc-{os.getpid()}"
        async with wizd.connect(path) as q:
            print("ready", flush=True)
            sys.stdin.readline()  # every process starts claiming at once
            try:
                while jobs := await q.store.claim("default", worker, batch):
                    claimed.extend(j.id for j in jobs)
                    finished = [Finish(j.id, worker, j.attempt, "completed") for j in jobs]
                    if not all(await q.store.finish(finished)):
                        errors.append(f"lost a job of {[j.id for j in jobs]}")
            except Exception as exc:
                errors.append(repr(exc))
        with open(out, "w") as f:
            json.dump({"claimed": claimed, "errors": errors}, f)

    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


@pytest.mark.slow
def test_four_processes_claim_every_job_exactly_once(backend_url: str, tmp_path: Path) -> None:
    store_url = backend_url
    with wizd.connect_sync(store_url) as q:
        jobs = q.enqueue_many([{"name": "t", "payload": {"i": i}} for i in range(JOBS)])
    ids = [j.id for j in jobs]
    assert len(set(ids)) == JOBS

    outs = [tmp_path / f"worker-{i}.json" for i in range(len(BATCHES))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, str(out), str(batch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out, batch in zip(outs, BATCHES, strict=True)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", line + proc.communicate(timeout=10)[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        stderr = [proc.communicate(timeout=90)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for proc, err in zip(procs, stderr, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    reports = [json.loads(out.read_text()) for out in outs]
    for report in reports:
        assert report["errors"] == []
        assert report["claimed"], "a process claimed nothing: the test did not run concurrently"

    claims = Counter(job_id for report in reports for job_id in report["claimed"])
    assert sorted(claims) == sorted(ids)
    assert set(claims.values()) == {1}
    with wizd.connect_sync(store_url) as q:
        assert q.counts() == {**{s.value: 0 for s in wizd.JobStatus}, "completed": JOBS}
    with wizd.connect_sync(store_url) as q:
        claimed = Counter(e.kind for i in ids for e in q.events(i) if e.kind == "claimed")
    assert claimed == {"claimed": JOBS}
