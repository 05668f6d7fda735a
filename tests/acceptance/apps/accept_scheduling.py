"""Python processors for the scheduling acceptance tests, loaded by the daemon with
`--app accept_scheduling:researcher` (this directory is on the daemon's PYTHONPATH)."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from wizd.agent import Agent, JobContext

researcher = Agent("researcher")


@researcher.processor("tick")
async def tick(ctx: JobContext) -> dict[str, Any]:
    """Returns at once, saying which daemon ran it."""
    return {"pid": os.getpid()}


@researcher.processor("span")
async def span(ctx: JobContext) -> dict[str, Any]:
    """Sleeps `seconds` and reports when it ran, for overlap counting."""
    start = time.time()
    await anyio.sleep(ctx.payload["seconds"])
    return {"start": start, "end": time.time(), "pid": os.getpid()}
