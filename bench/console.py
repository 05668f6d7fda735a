"""The web console's pages against a store of 1,000,000 jobs: p50 and p95 of each page over
`--runs` requests to a real `wizd serve` (a subprocess, on loopback, no token).

    python -m bench.console [--jobs 1000000] [--path /tmp/wizd-console.db] [--postgres URL]

The store is filled as a month of agents' work leaves it: the jobs go in through
Queue.enqueue_many (bench.paging.fill's batches), then one UPDATE per store spreads their
creation over 30 days and settles them as a daemon would have (95% completed, 2% failed
with one of a few errors, 1% cancelled, 2% left pending), the store's own triggers keeping
its counts; then a real daemon runs a few dozen jobs of an `approvals` agent that log,
take durable steps and wait for a person's signal, so the Waiting page and the Job page's
steps and log have real rows. PostgreSQL (a fresh schema of URL, dropped after) is
ANALYZEd after the fill, as autovacuum would be within a minute.

Every page of the console's nav is measured (the ones this tree has), and /jobs filtered
by queue and by status, a page 10,000 jobs deep reached through the `Next` links, and a
job's page. Prints a table; writes bench/results/console.md and console.json. The goal
(issue 23): every page p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
from psycopg import sql

import wizd
from bench.paging import BATCH
from wizd.agent import Agent, JobContext
from wizd.settings import Settings

QUEUES = ["researcher", "writer", "coder", "support"]
GOAL_MS = 100.0
DEEP = 200  # Next links followed for the deep page (pages of 50: 10,000 jobs deep)
WAITING = 40  # jobs left waiting for a person
RESULTS = Path(__file__).parent / "results"
WIZD = str(Path(sys.executable).parent / "wizd")  # the console script beside this Python
NAV = ("/schedules", "/distributed", "/waiting", "/failures", "/queues", "/daemons")
ERRORS = [
    "ConnectionError: model provider returned 503",
    "TimeoutError: tool call exceeded 30 s",
    "ValueError: the model answered no JSON",
]
# One UPDATE settles the bulk: created over the last 30 days in id order, and by id % 100
# failed (2%), pending (2%), cancelled (1%) or completed.
SETTLE = """
UPDATE jobs SET
  created_at = {now} - ({n} - id) * {span},
  run_at = {now} - ({n} - id) * {span},
  status = CASE WHEN id % 100 < 2 THEN 'failed' WHEN id % 100 < 4 THEN 'pending'
                WHEN id % 100 < 5 THEN 'cancelled' ELSE 'completed' END,
  attempt = CASE WHEN id % 100 BETWEEN 2 AND 3 THEN 0 ELSE 1 END,
  worker_id = CASE WHEN id % 100 BETWEEN 2 AND 3 THEN NULL ELSE 'bench' END,
  started_at = CASE WHEN id % 100 BETWEEN 2 AND 3 THEN NULL
                    ELSE {now} - ({n} - id) * {span} + 1 END,
  finished_at = CASE WHEN id % 100 BETWEEN 2 AND 3 THEN NULL
                     ELSE {now} - ({n} - id) * {span} + 4 END,
  updated_at = {now} - ({n} - id) * {span} + 4,
  result = CASE WHEN id % 100 >= 5 THEN '{{"ok": true}}' END,
  error = CASE WHEN id % 100 < 2 THEN CASE id % 3 WHEN 0 THEN '{e0}' WHEN 1 THEN '{e1}'
               ELSE '{e2}' END END
WHERE id <= {n}
"""


async def fill(q: wizd.Queue, n: int) -> float:
    """n jobs over QUEUES, in batches through Queue.enqueue_many; the seconds it took."""
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        items = [
            {
                "name": ["research", "draft", "review", "reply", "summarize"][i % 5],
                "queue": QUEUES[i % len(QUEUES)],
                "payload": {"i": i, "prompt": f"task {i}"},
                "tags": ["bench"] if i % 10 == 0 else [],
            }
            for i in range(start, min(start + BATCH, n))
        ]
        await q.enqueue_many(items)
    return time.perf_counter() - started


def settle_sql(n: int) -> str:
    now = time.time()
    return SETTLE.format(
        now=now, n=n, span=30 * 86400 / n, e0=ERRORS[0], e1=ERRORS[1], e2=ERRORS[2]
    )


def approvals_agent() -> Agent:
    """Jobs that log, take two durable steps and wait for a person's approval."""
    agent = Agent("approvals")

    async def draft(topic: str) -> str:
        return f"Draft on {topic}"

    @agent.processor("post")
    async def post(ctx: JobContext) -> Any:
        await ctx.log("gathering sources")
        text = await ctx.step("draft", draft, ctx.payload["topic"])
        await ctx.step("check", draft, text)
        await ctx.log("draft ready; waiting for approval")
        decision = await ctx.wait_for_signal("approval", timeout=86400)
        return {"published": bool(decision.get("ok"))}

    return agent


async def run_approvals(url: str, n: int = WAITING) -> None:
    """A real daemon takes n jobs of `approvals` until each waits for its signal."""
    from wizd.cli.daemon import serve
    from wizd.logging import configure_logging

    configure_logging("json", "warning")
    stop = anyio.Event()

    async def ready(q: wizd.Queue) -> None:
        for i in range(n):
            await q.enqueue("post", {"topic": f"topic {i}"}, queue="approvals")
        waiting = {"queue": "approvals", "status": "waiting_signal", "limit": n}
        while len(await q.list(**waiting)) < n:  # noqa: ASYNC110 (a read, not an event)
            await anyio.sleep(0.2)
        stop.set()

    settings = Settings(
        database=url, agent=["approvals"], concurrency=8, poll_interval=0.2, metrics_port=0
    )
    await serve(settings, {"approvals": approvals_agent()}, on_ready=ready, stop=stop)


def settle(url: str, n: int, schema: str | None) -> None:
    if schema is None:
        import sqlite3

        with sqlite3.connect(url) as c:
            c.execute(settle_sql(n))
        return
    with psycopg.connect(url.split("?")[0], autocommit=True) as c:
        c.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        c.execute(settle_sql(n).encode())


async def prepare(url: str, n: int, schema: str | None) -> None:
    async with wizd.connect(url) as q:
        if await q.list(limit=1):
            print("  store already filled")
            return
        print(f"  filled {n:,} jobs in {await fill(q, n):.1f} s")
    started = time.perf_counter()
    settle(url, n, schema)
    print(f"  settled their statuses in {time.perf_counter() - started:.1f} s")
    await run_approvals(url)
    print(f"  {WAITING} jobs of a real daemon wait for a person")
    if schema is not None:
        with psycopg.connect(url.split("?")[0], autocommit=True) as c:
            c.execute(sql.SQL("ANALYZE {}.jobs").format(sql.Identifier(schema)))


def serve(url: str) -> tuple[subprocess.Popen[str], str]:
    """`wizd serve --port 0` on the store; (process, base URL)."""
    env = {**os.environ, "WIZD_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [WIZD, "--database", url, "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r'"url": "(http://[^"]+)"', line) or re.search(r"url=(\S+)", line)
        if "http_api_listening" in line and found:
            return proc, found.group(1)
    proc.wait()
    raise SystemExit(f"wizd serve ended: {proc.returncode}")


def pages(client: httpx.Client, n: int) -> dict[str, str]:
    """Label: path of every page measured."""
    home = client.get("/").text
    nav = [p for p in NAV if f'href="{p}"' in home]
    job = client.get("/jobs?queue=approvals").text
    waiting = re.search(r'href="/jobs/(\d+)"', job)
    assert waiting, "no job of the approvals queue listed"
    found = {
        "/": "/",
        "/jobs": "/jobs",
        "/jobs?queue=researcher": "/jobs?queue=researcher",
        "/jobs?status=failed": "/jobs?status=failed",
        "/jobs?queue=coder&status=pending": "/jobs?queue=coder&status=pending",
        "/jobs 10,000 deep": deep(client),
        "/jobs/ID (steps, log)": f"/jobs/{waiting.group(1)}",
        "/jobs/ID (completed)": f"/jobs/{n // 2 // 100 * 100 + 50}",
    }
    return found | {p: p for p in nav}


def deep(client: httpx.Client) -> str:
    """The /jobs page DEEP `Next` links on."""
    path = "/jobs"
    for _ in range(DEEP):
        found = re.search(r'id="next-page" href="([^"]+)"', client.get(path).text)
        assert found, f"no Next link on {path}"
        path = found.group(1).replace("&amp;", "&")
    return path


def timed(client: httpx.Client, path: str, runs: int) -> tuple[float, float]:
    """p50 and p95 of `runs` GETs of path, in milliseconds."""
    assert client.get(path).status_code == 200, path  # warm
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(took), statistics.quantiles(took, n=20)[18]


def measure(url: str, n: int, runs: int) -> dict[str, dict[str, float]]:
    proc, base = serve(url)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            figures = {}
            for label, path in pages(client, n).items():
                p50, p95 = timed(client, path, runs)
                figures[label] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
                mark = "" if p95 <= GOAL_MS else "  > goal"
                print(f"  {label:<34} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms{mark}", flush=True)
            return figures
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def report(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "console.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Console pages",
        "",
        f"{results['jobs']:,} jobs, {results['runs']} requests a page, one client in sequence, "
        "`wizd serve` on loopback. `python -m bench.console`. Goal: p95 <= 100 ms.",
        "",
    ]
    for store, figures in results["stores"].items():
        lines += [f"## {store}", "", "| page | p50 ms | p95 ms |", "|---|---:|---:|"]
        for label, f in figures.items():
            lines.append(f"| `{label}` | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} |")
        lines.append("")
    (RESULTS / "console.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--path", default="/tmp/wizd-console.db", help="SQLite file (kept)")
    parser.add_argument("--fresh", action="store_true", help="delete the SQLite file first")
    parser.add_argument("--postgres", metavar="URL", help="also a PostgreSQL database")
    parser.add_argument("--schema", help="PostgreSQL schema to fill once and keep (reused)")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()
    if args.fresh and os.path.exists(args.path):
        os.remove(args.path)
    results: dict[str, Any] = {"jobs": args.jobs, "runs": args.runs, "stores": {}}
    print(f"SQLite {args.path}")
    asyncio.run(prepare(args.path, args.jobs, None))
    results["stores"]["SQLite"] = measure(args.path, args.jobs, args.runs)
    if args.postgres:
        schema = args.schema or f"console_{uuid.uuid4().hex[:8]}"
        url = f"{args.postgres}?schema={schema}"
        print(f"PostgreSQL {args.postgres} schema {schema}")
        try:
            asyncio.run(prepare(url, args.jobs, schema))
            results["stores"]["PostgreSQL"] = measure(url, args.jobs, args.runs)
        finally:
            if not args.schema:
                with psycopg.connect(args.postgres, autocommit=True) as c:
                    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                    c.execute(drop.format(sql.Identifier(schema)))
    if not args.no_report:
        report(results)


if __name__ == "__main__":
    main()
