"""`wizd demo`: the real supervisor on a fresh SQLite file with a small built-in agent."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.tree import Tree

from wizd.agent import Agent, JobContext
from wizd.cli.daemon import serve
from wizd.cli.demo_console import serve_console
from wizd.cli.render import SYMBOLS
from wizd.cli.serve import api_server
from wizd.cli.session import current_settings
from wizd.logging import configure_logging
from wizd.model import FINAL, Backoff, Job, JobStatus
from wizd.queue import Queue
from wizd.settings import Settings

QUESTION = "How do heat pumps perform in cold climates?"
APPROVED = (
    "job {id} waits for a person's approval; the demo approves it itself after a moment, as "
    "`wizd signal {id} approval --data '{{\"ok\": true}}'` would"
)
BRANDS = ["Daikin Altherma 3", "Mitsubishi Zubadan", "Nibe S2125"]
SUBTASKS = [
    "heat pump efficiency below -15 C field studies",
    "cold-climate heat pump models and their COP curves",
    "installation costs of heat pumps in Scandinavia",
]


def demo_agent(pace: float) -> Agent:
    """A researcher that fans out, waits for its sub-tasks, and consolidates their answers."""
    agent = Agent("researcher")
    failed_once: set[int] = set()

    @agent.processor("research")
    async def research(ctx: JobContext) -> Any:
        children = await ctx.children()
        if not children:
            for query in ctx.payload["subtasks"]:
                await ctx.spawn("search", {"query": query})
            await ctx.log(f"dispatched {len(ctx.payload['subtasks'])} sub-tasks")
            return ctx.wait_for_children()
        await ctx.progress(0.9, "consolidating")
        return {
            "question": ctx.payload["question"],
            "findings": [c.result for c in children if c.status is JobStatus.COMPLETED],
            "failed": [c.id for c in children if c.status is JobStatus.FAILED],
        }

    @agent.processor("search")
    async def search(ctx: JobContext) -> Any:
        for step in range(1, 4):
            await anyio.sleep(pace)
            await ctx.progress(step / 3, f"reading source {step}")
        return f"3 sources on '{ctx.payload['query']}'"

    @agent.processor("fetch")
    async def fetch(ctx: JobContext) -> Any:
        await anyio.sleep(pace)
        return {"pages": 12}

    @agent.processor("extract")
    async def extract(ctx: JobContext) -> Any:
        await anyio.sleep(pace)
        return {"facts": 31}

    @agent.processor("summarize")
    async def summarize(ctx: JobContext) -> Any:
        await anyio.sleep(pace)
        return {"summary": "cold-climate models keep a COP above 2 at -15 C"}

    @agent.processor("flaky")
    async def flaky(ctx: JobContext) -> Any:
        await anyio.sleep(pace)
        if ctx.job.id not in failed_once:
            failed_once.add(ctx.job.id)
            raise ConnectionError("model provider returned 503")
        return {"ok": True, "attempt": ctx.attempt}

    @agent.processor("subtask")
    async def subtask(ctx: JobContext) -> Any:
        await anyio.sleep(pace)
        return f"answer to '{ctx.payload['query']}'"

    @agent.processor("reminder")
    async def reminder(ctx: JobContext) -> Any:
        return {"reminded": ctx.payload["text"]}

    async def write_draft(topic: str) -> str:
        await anyio.sleep(pace)
        return f"Draft: {topic}, in 300 words"

    async def publish(draft: str) -> str:
        await anyio.sleep(pace)
        return f"https://blog.example.org/{abs(hash(draft)) % 10_000}"

    @agent.processor("post")
    async def post(ctx: JobContext) -> Any:
        """Drafts (a durable step), waits for a person's approval without holding a slot,
        then publishes (a step): the draft is not written again when the job comes back."""
        draft = await ctx.step("draft", write_draft, ctx.payload["topic"])
        await ctx.log("draft ready; waiting for approval")
        decision = await ctx.wait_for_signal("approval", timeout=600)
        if not decision.get("ok"):
            return {"published": False, "draft": draft}
        url = await ctx.step("publish", publish, draft)
        return {"published": True, "url": url, "approved_by": decision.get("by")}

    return agent


async def enqueue_demo(q: Queue) -> list[int]:
    research = await q.enqueue(
        "research",
        {"question": QUESTION, "subtasks": SUBTASKS},
        queue="researcher",
        priority="high",
        tags=["demo"],
    )
    fetch = await q.enqueue("fetch", {"url": "https://example.org/report"}, queue="researcher")
    extract = await q.enqueue("extract", {}, queue="researcher", depends_on=[fetch])
    summary = await q.enqueue("summarize", {}, queue="researcher", depends_on=[extract])
    flaky = await q.enqueue("flaky", {}, queue="researcher", attempts=3, backoff=Backoff.fixed(0.5))
    later = await q.enqueue(
        "reminder", {"text": "review the findings"}, queue="researcher", delay=2
    )
    brain = await q.create_distributed(
        prompt="Compare three heat pump brands", subtasks=BRANDS, queue="researcher", ttl=60
    )
    await q.dispatch(brain)
    post = await q.enqueue("post", {"topic": "heat pumps in the cold"}, queue="researcher")
    return [j.id for j in (research, fetch, extract, summary, flaky, later, post, brain)]


APPROVAL = {"ok": True, "by": "the demo"}


async def approve_waiting(q: Queue, jobs: list[Job], seen: dict[int, float], after: float) -> None:
    """Play the person in the loop: approve a job once it has waited `after` seconds."""
    now = time.monotonic()
    for job in jobs:
        if job.status is JobStatus.WAITING_SIGNAL:
            since = seen.setdefault(job.id, now)
            if now - since >= after:
                await q.signal(job.id, "approval", APPROVAL)
                seen[job.id] = float("inf")  # sent once


def render(jobs: list[Job]) -> Table:
    table = Table(title="wizd demo: queue 'researcher'", expand=False)
    for column in ("id", "job", "status", "attempt", "progress", "depends on / parent"):
        table.add_column(column)
    for job in sorted(jobs, key=lambda j: j.id):
        link = (
            f"parent {job.parent_id}"
            if job.parent_id
            else ", ".join(str(d) for d in job.depends_on)
        )
        progress = f"{job.progress:.0%}" if job.progress is not None else ""
        table.add_row(
            str(job.id),
            job.name,
            SYMBOLS[job.status],
            f"{job.attempt}/{job.max_attempts}",
            progress,
            link,
        )
    return table


def tree_of(root: Job, jobs: list[Job]) -> Tree:
    tree = Tree(f"{root.id} {root.name} {SYMBOLS[root.status]}")
    for child in sorted((j for j in jobs if j.parent_id == root.id), key=lambda j: j.id):
        tree.add(f"{child.id} {child.name} {SYMBOLS[child.status]}: {child.result}")
    return tree


@click.command(help="Run the daemon on a fresh SQLite file with a built-in demo agent.")
@click.option(
    "--database", type=click.Path(dir_okay=False), help="Where to keep the demo database."
)
@click.option("--pace", type=float, default=0.4, show_default=True, help="Seconds per demo step.")
@click.option(
    "--console",
    "web",
    is_flag=True,
    help="Then serve the web console on 127.0.0.1 (port http_port, or the next free one) "
    "until Ctrl-C. Needs pip install 'wizd[http]'.",
)
def demo(database: str | None, pace: float, web: bool) -> None:
    if web:
        api_server()  # the missing extra is one line before the demo runs
    folder = Path(tempfile.mkdtemp(prefix="wizd-demo-"))
    path = Path(database).resolve() if database else folder / "wizd.db"
    log_path = folder / "daemon.log"
    console = Console()
    settings = Settings(
        database=str(path),
        agent=["researcher"],
        concurrency=4,
        poll_interval=0.5,
        heartbeat_interval=5,
        metrics_port=0,
    )
    with log_path.open("w") as log_file:
        configure_logging("json", "info", stream=log_file)
        console.print(f"[bold]wizd demo[/]: database {path}, daemon log {log_path}")
        result: dict[str, Any] = {}

        async def watch(q: Queue) -> None:
            started = time.monotonic()
            ids = await enqueue_demo(q)
            waited: dict[int, float] = {}
            with Live(console=console, refresh_per_second=8) as live:
                while True:
                    jobs = await q.list(sort="id", order="asc", limit=1000)
                    await approve_waiting(q, jobs, waited, after=max(1.0, 3 * pace))
                    table = render(jobs)
                    if waited:
                        table.caption = APPROVED.format(id=next(iter(waited)))
                    live.update(table)
                    if jobs and all(j.status in FINAL for j in jobs):
                        break
                    await anyio.sleep(0.1)
            result["jobs"] = jobs
            result["ids"] = ids
            result["seconds"] = time.monotonic() - started
            stop.set()

        stop = anyio.Event()

        async def main() -> None:
            await serve(settings, {"researcher": demo_agent(pace)}, on_ready=watch, stop=stop)

        anyio.run(main)
    jobs: list[Job] = result["jobs"]
    root = next(j for j in jobs if j.id == result["ids"][0])
    console.print()
    console.print(Group("[bold]Delegation tree[/]", tree_of(root, jobs)))
    console.print("\n[bold]Consolidated result[/] (research job, consolidated by its processor)")
    console.print_json(json.dumps(root.result))
    brain = next(j for j in jobs if j.id == result["ids"][-1])
    console.print(
        Group(
            "\n[bold]Distributed job[/] (sub-tasks run in parallel, consolidated by wizd)",
            tree_of(brain, jobs),
        )
    )
    console.print_json(json.dumps(brain.result))
    post = next(j for j in jobs if j.id == result["ids"][-2])
    console.print(
        f"\n[bold]Waiting on a person[/]: job {post.id} drafted, waited for approval without "
        f"holding a slot, and published ({SYMBOLS[post.status]}). The demo approved it "
        f"itself; with a real person it is `wizd signal {post.id} approval --data "
        f"'{{\"ok\": true}}'`."
    )
    console.print_json(json.dumps(post.result))
    done = sum(1 for j in jobs if j.status is JobStatus.COMPLETED)
    console.print(
        f"\n{done} of {len(jobs)} jobs completed in {result['seconds']:.1f}s.\n"
        f"Database: [bold]{path}[/]\n"
        f"Look around: wizd --database {path} status   (or: jobs, tree {root.id}, logs {root.id})"
    )
    if not web:
        console.print("See it all in a browser: wizd demo --console")
        return
    port = current_settings().http_port
    with log_path.open("a") as log_file:
        configure_logging("json", "info", stream=log_file)
        console.print("\n[bold]The web console[/] (Ctrl-C stops it):")

        def say(url: str) -> None:
            print(url, flush=True)

        anyio.run(serve_console, str(path), port, say)
