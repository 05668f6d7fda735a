"""`wizd monitor`: a live full-screen view of every queue and the latest events.

The "recent events" pane starts with the latest lines of the most recently changed jobs'
histories, then shows the events of all queues as Queue.watch delivers them (through a
writable client of its own: wizd.cli.watcher); streamed text is left out, as the
histories leave it. Where this user may not write the store, or with --poll, the pane is
read again from the histories at every refresh instead. Counts and throughput are read
(read-only) at every refresh, every --interval."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from contextlib import AsyncExitStack
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
from wizd.cli.watcher import CannotWatch, denied, poll_option, say_polling, writable_client
from wizd.errors import JobNotFound, StoreError
from wizd.model import Event
from wizd.queue import Queue
from wizd.settings import Settings
from wizd.store.feed import WatchEvent

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


class RecentEvents:
    """The "recent events" pane: the last EVENTS_SHOWN events, newest last, each with its
    job's `queue/name` (looked up through the read-only client when first shown)."""

    def __init__(self, reader: Queue) -> None:
        self.reader = reader
        self.shown: deque[tuple[Event, str]] = deque(maxlen=EVENTS_SHOWN)  # event, its queue
        self.labels: dict[int, str] = {}
        self.polling = False

    async def read(self) -> None:
        """Fill the pane from the histories of the most recently changed jobs."""
        self.shown.clear()
        for label, event in await recent_events(self.reader):
            self.labels[event.job_id] = label
            self.shown.append((event, label.split("/", 1)[0]))

    def add(self, event: WatchEvent) -> None:
        if event.kind == "stream":  # streamed text is not a line of the history
            return
        self.shown.append((event.as_line(event.cursor), event.queue))

    async def follow(self, watcher: Queue, every: float) -> None:
        """Add the events of all queues as they come; where the watch may not renew its
        lease (a privilege revoked), say so and read the histories again instead."""
        events = watcher.watch()
        try:
            async for event in events:
                self.add(event)
        except StoreError as exc:
            if not denied(exc):
                raise
            self.polling = True
            say_polling(every, str(exc).splitlines()[0])
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def rows(self) -> list[tuple[str, Event]]:
        """The events shown, each with its job's label."""
        shown = list(self.shown)
        for event, queue in shown:
            if event.job_id not in self.labels:
                try:
                    job = await self.reader.get(event.job_id)
                    self.labels[event.job_id] = f"{job.queue}/{job.name}"
                except JobNotFound:  # deleted since: its queue is all there is to say
                    self.labels[event.job_id] = f"{queue}/?"
        wanted = {event.job_id for event, _ in shown}
        self.labels = {k: v for k, v in self.labels.items() if k in wanted}
        return [(self.labels[event.job_id], event) for event, _ in shown]


async def snapshot(
    q: Queue, s: Settings, interval: float | None, recent: list[tuple[str, Event]], mode: str = ""
) -> RenderableType:
    """The view once; `interval` None: a one-off snapshot (no refresh line)."""
    rows = await queue_rows(q, s, window=60.0)
    counts = status_table(rows) if rows else "[dim]no queues yet[/]"
    throughput = table("queue", "completed in the last minute", "live workers")
    for row in rows:
        throughput.add_row(
            escape(row["queue"]), f"{row['completed_per_minute']:.0f}", str(row["live_workers"])
        )
    events = table("job", "event")
    for label, event in recent:
        events.add_row(f"#{event.job_id} {escape(label)}", event_line(event))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"[bold]wizd monitor[/]  {escape(s.database)}  {now}"
    if interval is not None:
        head += f"  [dim]every {interval:g}s, {mode}, Ctrl-C quits[/]"
    return Group(head, "", counts, "", throughput, "", "[bold]recent events[/]", events)


async def one_snapshot(q: Queue, s: Settings) -> RenderableType:
    return await snapshot(q, s, None, await recent_events(q))


async def live_view(
    q: Queue, s: Settings, interval: float, iterations: int | None, poll: bool
) -> None:
    """Redraw the view every `interval` seconds (`iterations` times, or until Ctrl-C)."""
    pane = RecentEvents(q)
    await pane.read()
    async with AsyncExitStack() as stack:
        watcher: Queue | None = None
        if poll:
            say_polling(interval, "--poll")
        else:
            try:
                watcher = await stack.enter_async_context(writable_client(q, s))
            except CannotWatch as exc:
                say_polling(interval, str(exc))
        pane.polling = watcher is None
        async with anyio.create_task_group() as tg:
            if watcher is not None:
                tg.start_soon(pane.follow, watcher, interval)
            with Live(console=make_console(), screen=True, auto_refresh=False) as live:
                done = 0
                while iterations is None or done < iterations:
                    started = time.monotonic()
                    if pane.polling and done:
                        await pane.read()
                    mode = "polling" if pane.polling else "watching"
                    view = await snapshot(q, s, interval, await pane.rows(), mode)
                    live.update(view, refresh=True)
                    done += 1
                    if iterations is None or done < iterations:
                        await anyio.sleep(max(interval - (time.monotonic() - started), 0.0))
            tg.cancel_scope.cancel()


@click.command(
    help="A live full-screen view: queues, throughput, recent events.\n\n"
    "The recent events come from a watch of all queues (Queue.watch) through a second "
    "client that may write the database, since a watch's lease is a write; where this "
    "user may not write it, or with --poll, they are read again from the histories of the "
    "most recently changed jobs at every refresh, and the command says so on stderr. "
    "While a watch lasts, the daemons record every event for it (see the README).\n\n"
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
@poll_option
def monitor(interval: float, iterations: int | None, poll: bool) -> None:
    if not make_console().is_terminal:
        show(with_queue(one_snapshot, read_only=True))
        return

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the view is meant to end
        with_queue(lambda q, s: live_view(q, s, interval, iterations, poll), read_only=True)
