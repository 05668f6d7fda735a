"""wizd's benchmark agent: `wizd --agent bench --app bench.apps.wizd_app:agent`."""

from __future__ import annotations

import time

import anyio

from bench.jobs import SLEEP, record
from wizd.agent import Agent, JobContext

QUEUE = "bench"

agent = Agent(QUEUE)


@agent.processor("noop")
async def noop(ctx: JobContext) -> None:
    record(ctx.payload["i"], time.time())


@agent.processor("sleep")
async def sleep(ctx: JobContext) -> None:
    started = time.time()
    await anyio.sleep(SLEEP)
    record(ctx.payload["i"], started)
