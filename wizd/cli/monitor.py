"""`wizd monitor`: a live full-screen view of every queue and the latest events."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import anyio
import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape

from wizd.cli.options import store_options
from wizd.cli.queues import queue_rows
from wizd.cli.render import event_line, make_console, show, status_table, table
from wizd.cli.session import with_queue
from wizd.model import Event
from wizd.queue import Queue
from wizd.settings import Settings

RECENT_JOBS = 8  # the most recently changed jobs whose events are shown
EVENTS_SHOWN = 12


async def recent_events(q: Queue) -> list[tuple[str, Event]]:
    """The latest events of the most recently changed jobs, newest last."""
    found: list[tuple[str, Event]] = []
    for job in await q.list(sort="updated_at", order="desc", limit=RECENT_JOBS):
        label = f"{job.queue}/{job.name}"
        found += [(label, e) for e in (await q.events(job))[-EVENTS_SHOWN:]]
    found.sort(key=lambda pair: (pair[1].at, pair[1].id))
    return found[-EVENTS_SHOWN:]


async def snapshot(q: Queue, s: Settings, interval: float | None) -> RenderableType:
    """The view once; `interval` None: a one-off snapshot (no refresh line)."""
    rows = await queue_rows(q, s, window=60.0)
    counts = status_table(rows) if rows else "[dim]no queues yet[/]"
    throughput = table("queue", "completed in the last minute", "live workers")
    for row in rows:
        throughput.add_row(
            escape(row["queue"]), f"{row['completed_per_minute']:.0f}", str(row["live_workers"])
        )
    events = table("job", "event")
    for label, event in await recent_events(q):
        events.add_row(f"#{event.job_id} {escape(label)}", event_line(event))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"[bold]wizd monitor[/]  {escape(s.database)}  {now}"
    if interval is not None:
        head += f"  [dim]every {interval:g}s, Ctrl-C quits[/]"
    return Group(head, "", counts, "", throughput, "", "[bold]recent events[/]", events)


@click.command(
    help="A live full-screen view: queues, throughput, recent events.\n\n"
    "With stdout not a terminal (a pipe, a file, cron), prints one snapshot and exits."
)
@store_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds per refresh.",
)
@click.option("--iterations", type=click.IntRange(min=1), help="Stop after N refreshes.")
def monitor(interval: float, iterations: int | None) -> None:
    if not make_console().is_terminal:
        show(with_queue(lambda q, s: snapshot(q, s, None), read_only=True))
        return

    async def work(q: Queue, s: Settings) -> None:
        with Live(console=make_console(), screen=True, auto_refresh=False) as live:
            done = 0
            while True:
                started = time.monotonic()
                live.update(await snapshot(q, s, interval), refresh=True)
                done += 1
                if iterations is not None and done >= iterations:
                    return
                await anyio.sleep(max(interval - (time.monotonic() - started), 0.0))

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the view is meant to end
        with_queue(work, read_only=True)
