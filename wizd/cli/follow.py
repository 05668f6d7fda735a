"""`wizd logs -f`: a job's history, then its events as they come (Queue.watch), until it
is final. On a terminal a progress bar shows the job's last reported progress while it
reports any; piped, every event is one plain line."""

from __future__ import annotations

import json
import re

import click
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from wizd.cli.render import event_line, make_console, show, symbol
from wizd.model import Event, Job
from wizd.queue import Queue
from wizd.store.feed import WatchEvent

PERCENT = re.compile(r"^(\d+)%\s*(.*)$")  # a progress event's message: "40% downloading"


def as_event(e: WatchEvent) -> Event:
    """The watch event as a history line, numbered by its cursor."""
    return Event(
        id=e.cursor,
        job_id=e.job_id,
        at=e.at,
        kind=e.kind,
        status=e.status,
        attempt=e.attempt,
        worker_id=e.worker_id,
        message=e.message,
    )


async def follow_events(ref: str, as_json: bool, q: Queue) -> Job:
    """Print the job's events as they come (JSON lines with as_json) until it is final; the
    final job."""
    job = await q.get(ref)
    console = make_console()
    bar = console.is_terminal and not as_json
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=console,
        transient=True,
    )
    task: TaskID | None = None
    events = q.watch(job=job)
    try:
        async for event in events:
            if as_json:
                click.echo(json.dumps(as_event(event).to_dict(), ensure_ascii=False))
            elif bar:
                progress.console.print(event_line(as_event(event)))
            else:
                show(event_line(as_event(event)), console=console)
            found = PERCENT.match(event.message or "") if event.kind == "progress" else None
            if bar and found:
                if task is None:
                    progress.start()
                    task = progress.add_task("", total=100)
                progress.update(task, completed=int(found[1]), description=found[2])
            if event.final:
                break
    finally:
        progress.stop()
        await events.aclose()  # type: ignore[attr-defined]
    job = await q.get(job.id)
    if not as_json:
        show(f"job {job.id} is final: {symbol(job.status)}", console=console)
    return job
