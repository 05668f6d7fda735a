"""Synchronous processors for the acceptance tests of threaded runs (wizd.threads), loaded
with `--app accept_threads:researcher`. Each run records itself in the folder `dir`: a file
per run holding its start time, and its end time once it returns, for overlap checks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from wizd.agent import Agent, JobContext, SyncJobContext

researcher = Agent("researcher")


@researcher.processor("stubborn")
def stubborn(ctx: JobContext) -> dict[str, Any]:
    """Runs until the file `release` exists, whatever it is asked (a thread cannot be
    interrupted); with `cooperative`, it gives up as soon as ctx.should_stop()."""
    dir = Path(ctx.payload["dir"])
    record = dir / f"{ctx.id}-{ctx.attempt}-{os.getpid()}-{threading.get_ident()}.run"
    start = time.time()
    record.write_text(f"{start}\n")
    release = Path(ctx.payload["release"])
    cooperative = bool(ctx.payload.get("cooperative"))
    try:
        while not release.exists():
            if cooperative and ctx.wait_for_stop(0.01):
                raise RuntimeError("asked to stop")
            time.sleep(0.01)
    finally:
        record.write_text(f"{start} {time.time()}\n")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@researcher.processor("gather")
def gather(ctx: JobContext) -> int:
    """Records its start, then waits until `n` runs have started (all at once: each thread
    holds on until the last one arrives) or the file `release` exists."""
    dir = Path(ctx.payload["dir"])
    (dir / f"{ctx.id}.started").touch()
    release = Path(ctx.payload["release"])
    while len(list(dir.glob("*.started"))) < ctx.payload["n"] and not release.exists():
        time.sleep(0.02)
    return ctx.id


@researcher.processor("reports_on_stop")
def reports_on_stop(ctx: SyncJobContext) -> str:
    """Waits until asked to stop, then calls the context (log, progress, a step) while its
    daemon is shutting down, and returns."""
    Path(ctx.payload["dir"], f"{ctx.id}.in").touch()
    ctx.wait_for_stop(60)
    ctx.log(f"stopping: {ctx.should_stop()}")
    ctx.progress(1.0, "stopped")
    return str(ctx.step("last", lambda: "saved"))
