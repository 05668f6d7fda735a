"""`wizd logs -f`: a job's history, then its events as they come, until it is final. On a
terminal a progress bar shows the job's last reported progress while it reports any; piped,
every event is one plain line.

It reads the job's history again every POLL seconds rather than through Queue.watch: a
watch takes a lease on the store's change feed, which is a write, and `wizd logs` (with
-f too) opens the database read-only, so that it works for a user who may only read it and
never changes the file (issue 20, item 4)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import anyio
import click
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from wizd.cli.render import event_line, make_console, show, symbol
from wizd.model import Event, Job
from wizd.queue import Queue

POLL = 0.2  # seconds between two reads of a job that is not final yet
PERCENT = re.compile(r"^(\d+)%\s*(.*)$")  # a progress event's message: "40% downloading"


async def history_as_it_grows(q: Queue, job_id: int) -> AsyncIterator[tuple[Event, bool]]:
    """Each line of the job's history once, oldest first, with whether the job was final
    when it was read; ends after the last line of a final job."""
    seen = 0
    while True:
        final = (await q.get(job_id)).final  # before the lines: a final job's are all there
        lines = await q.events(job_id, after=seen)
        for n, line in enumerate(lines, 1):
            seen = line.id
            yield line, final and n == len(lines)
        if final:
            return
        await anyio.sleep(POLL)


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
    events = history_as_it_grows(q, job.id)
    try:
        async for event, last in events:
            if as_json:
                click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
            elif bar:
                progress.console.print(event_line(event))
            else:
                show(event_line(event), console=console)
            found = PERCENT.match(event.message or "") if event.kind == "progress" else None
            if bar and found:
                if task is None:
                    progress.start()
                    task = progress.add_task("", total=100)
                progress.update(task, completed=int(found[1]), description=found[2])
            if last:
                break
    finally:
        progress.stop()
        await events.aclose()  # type: ignore[attr-defined]
    job = await q.get(job.id)
    if not as_json:
        show(f"job {job.id} is final: {symbol(job.status)}", console=console)
    return job
