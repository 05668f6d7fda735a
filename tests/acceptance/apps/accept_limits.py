"""Python processors that write more than the daemon's size limits allow, loaded with
`--app accept_limits:writer` (this directory is on the daemon's PYTHONPATH)."""

from __future__ import annotations

from wizd.agent import Agent, JobContext

writer = Agent("writer")


@writer.processor("result")
async def result(ctx: JobContext) -> str:
    return "r" * ctx.payload["n"]


@writer.processor("fail")
async def fail(ctx: JobContext) -> None:
    raise ValueError("bad\x00byte " + "e" * ctx.payload["n"])


@writer.processor("log")
async def log(ctx: JobContext) -> str:
    await ctx.log("l" * ctx.payload["n"])
    return "logged"
