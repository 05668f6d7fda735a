"""Processors that sleep and wait for signals, for the acceptance tests
(`--app accept_signals:researcher`). Each step's body appends this process's pid to
`dir/NAME.count`, so a test sees which daemon ran which body, and how many times."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wizd.agent import Agent, JobContext

researcher = Agent("researcher")


def _counted(folder: str, name: str) -> str:
    with (Path(folder) / f"{name}.count").open("a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    return name


@researcher.processor("approval_flow")
async def approval_flow(ctx: JobContext) -> dict[str, Any]:
    """Draft, wait for a person's approval, publish."""
    folder = ctx.payload["dir"]
    draft = await ctx.step("draft", _counted, folder, "draft")
    approval = await ctx.wait_for_signal("approval", timeout=ctx.payload.get("timeout"))
    published = await ctx.step("publish", _counted, folder, "publish")
    return {"draft": draft, "approval": approval, "published": published}


@researcher.processor("timed_wait")
async def timed_wait(ctx: JobContext) -> Any:
    return await ctx.wait_for_signal("approval", timeout=0.3, default="nobody answered")


@researcher.processor("sleeper")
async def sleeper(ctx: JobContext) -> list[str]:
    folder = ctx.payload["dir"]
    before = await ctx.step("before", _counted, folder, "before")
    await ctx.sleep(ctx.payload["seconds"])
    after = await ctx.step("after", _counted, folder, "after")
    return [before, after]


@researcher.processor("quick")
async def quick(ctx: JobContext) -> str:
    return "done"
