"""Python processors for the acceptance tests, loaded by the daemon with
`--app accept_agents:researcher` (this directory is on the daemon's PYTHONPATH).

Processors take their instructions from the payload, so one module serves every test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

from wizd.agent import Agent, JobContext

researcher = Agent("researcher")


async def _wait_for_file(path: str, limit: float = 300.0) -> None:
    """Wait without blocking the event loop until `path` exists (at most `limit` seconds)."""
    deadline = time.monotonic() + limit
    while not await anyio.Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {limit}s")
        await anyio.sleep(0.02)


@researcher.processor("interval")
async def interval(ctx: JobContext) -> dict[str, Any]:
    """Sleeps `seconds` and reports when it ran, for overlap counting."""
    start = time.time()
    await anyio.sleep(ctx.payload["seconds"])
    return {"start": start, "end": time.time(), "pid": os.getpid(), "attempt": ctx.attempt}


@researcher.processor("hold")
async def hold(ctx: JobContext) -> dict[str, Any]:
    """Runs until the file `release` exists (the test decides when it ends)."""
    await _wait_for_file(ctx.payload["release"])
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@researcher.processor("quick")
async def quick(ctx: JobContext) -> dict[str, Any]:
    """Appends `job_id attempt` to a file of this process (append mode: one line per run)."""
    record = Path(ctx.payload["dir"]) / f"{os.getpid()}.log"
    with record.open("a", encoding="utf-8") as f:
        f.write(f"{ctx.id} {ctx.attempt}\n")
    return {"pid": os.getpid()}


@researcher.processor("tick")
async def tick(ctx: JobContext) -> dict[str, Any]:
    """As `quick`, then takes `seconds` (so that a daemon always has runs in flight)."""
    record = Path(ctx.payload["dir"]) / f"{os.getpid()}.log"
    with record.open("a", encoding="utf-8") as f:
        f.write(f"{ctx.id} {ctx.attempt}\n")
    await anyio.sleep(ctx.payload["seconds"])
    return {"pid": os.getpid()}


@researcher.processor("flaky")
async def flaky(ctx: JobContext) -> None:
    """Fails with its own TimeoutError, as a client library's call that timed out does."""
    raise TimeoutError(ctx.payload["message"])


@researcher.processor("blocker")
async def blocker(ctx: JobContext) -> dict[str, Any]:
    """In a daemon started with ACCEPT_BLOCK_LOOP set: once the file `go` exists, blocks
    the whole event loop (time.sleep in an async def) for `block` seconds. Elsewhere it
    returns at once."""
    if os.environ.get("ACCEPT_BLOCK_LOOP"):
        await _wait_for_file(ctx.payload["go"])
        time.sleep(ctx.payload["block"])  # noqa: ASYNC251 - blocking the loop is the point
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@researcher.processor("narrate")
async def narrate(ctx: JobContext) -> dict[str, Any]:
    """Reports progress, logs a line and streams `pieces` (for Queue.watch)."""
    await ctx.progress(0.5, "half")
    await ctx.log("halfway")
    for piece in ctx.payload["pieces"]:
        await ctx.stream(piece)
    return {"pid": os.getpid()}


@researcher.processor("report")
async def report(ctx: JobContext) -> dict[str, Any]:
    """For each of `steps`: reports progress and logs a line; then fails if `fail` (for
    `wizd logs -f`)."""
    steps = ctx.payload["steps"]
    for n, step in enumerate(steps, 1):
        await ctx.progress(n / len(steps), step)
        await ctx.log(f"done {step}")
    if ctx.payload.get("fail"):
        raise RuntimeError("the report failed")
    return {"steps": len(steps)}


@researcher.processor("talk")
async def talk(ctx: JobContext) -> dict[str, Any]:
    """Logs `first`, waits for the file `go`, then reports progress, logs `second` and
    streams `piece` (for the console's live job page)."""
    await ctx.log(ctx.payload["first"])
    await _wait_for_file(ctx.payload["go"])
    await ctx.progress(0.5, "half way")
    await ctx.log(ctx.payload["second"])
    await ctx.stream(ctx.payload["piece"])
    await _wait_for_file(ctx.payload["go"] + ".end")
    return {"said": 2}


@researcher.processor("approval")
async def approval(ctx: JobContext) -> dict[str, Any]:
    """Waits for the signal `approval` (the console's Waiting on people sends it) and
    returns its data."""
    await ctx.log("asking for approval")
    answer = await ctx.wait_for_signal("approval", timeout=ctx.payload.get("timeout"))
    return {"approval": answer, "attempt": ctx.attempt}


@researcher.processor("picky")
async def picky(ctx: JobContext) -> dict[str, Any]:
    """Fails with `message` unless the file `ok` exists (a test fixes it, then retries)."""
    if not await anyio.Path(ctx.payload["ok"]).exists():
        raise RuntimeError(ctx.payload["message"])
    return {"attempt": ctx.attempt}
