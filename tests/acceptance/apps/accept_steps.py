"""A processor of five durable steps for the acceptance tests (`--app accept_steps:researcher`).

Each step's body appends this process's pid to `dir/stepN.count`, so a test counts how many
times each body ran, across daemons. Step 3 (async) first touches `dir/in_step3` and then
waits for `dir/release`: the test kills the daemon while it waits. The others are sync
bodies, run in threads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from wizd.agent import Agent, JobContext

researcher = Agent("researcher")


def _count(folder: str, n: int) -> None:
    with (Path(folder) / f"step{n}.count").open("a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")


def sync_step(folder: str, n: int) -> int:
    _count(folder, n)
    return n * 10


async def held_step(folder: str, n: int) -> int:
    _count(folder, n)
    await anyio.Path(folder, "in_step3").touch()
    deadline = time.monotonic() + 120
    while not await anyio.Path(folder, "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("release did not appear within 120s")
        await anyio.sleep(0.02)
    return n * 10


@researcher.processor("five_steps")
async def five_steps(ctx: JobContext) -> list[int]:
    folder = ctx.payload["dir"]
    results = []
    for n in range(1, 6):
        body = held_step if n == 3 else sync_step
        results.append(await ctx.step(f"step{n}", body, folder, n))
    return results


async def _value(n: int) -> int:
    return n


@researcher.processor("changes_its_steps")
async def changes_its_steps(ctx: JobContext) -> int:
    """Attempt 1 stores step `a`, then fails; a later attempt calls `b` first: not the
    history it replays, so that attempt fails NonDeterministic."""
    if ctx.attempt == 1:
        await ctx.step("a", _value, 1)
        raise RuntimeError("first attempt fails after step a")
    return int(await ctx.step("b", _value, 2))
