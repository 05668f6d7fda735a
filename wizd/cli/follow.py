"""`wizd logs -f`: a job's history, then its events as they come, until it is final. On a
terminal a progress bar shows the job's last reported progress while it reports any; piped,
every event is one plain line.

The events come from Queue.watch (wizd.cli.watcher: on a writable client of its own, every
read on the command's read-only one); where this user may not write the store, or with
--poll, the job's history is read again every POLL seconds instead. The job's end is read
as the polling does it, so both print the same lines: the watch's final event says when
to look, and the history after the lines printed so far ends the output."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import anyio
import click
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from wizd.cli.render import event_line, make_console, show, symbol
from wizd.cli.watcher import CannotWatch, say_polling, writable_client
from wizd.model import Event, Job
from wizd.queue import Queue
from wizd.settings import Settings

POLL = 0.2  # seconds between two reads of a job that is not final yet
PERCENT = re.compile(r"^(\d+)%\s*(.*)$")  # a progress event's message: "40% downloading"


async def history_as_it_grows(
    q: Queue, job_id: int, seen: int = 0
) -> AsyncIterator[tuple[Event, bool]]:
    """Each line of the job's history after its first `seen` once, oldest first, with
    whether the job was final when it was read; ends after the last line of a final job."""
    while True:
        final = (await q.get(job_id)).final  # before the lines: a final job's are all there
        lines = await q.events(job_id, after=seen)
        for n, line in enumerate(lines, 1):
            seen = line.id
            yield line, final and n == len(lines)
        if final:
            return
        await anyio.sleep(POLL)


async def watched_history(
    q: Queue, s: Settings, job_id: int, poll: bool
) -> AsyncIterator[tuple[Event, bool]]:
    """As history_as_it_grows, from the job's watch (it starts with the history so far)
    while it can: the lines before a final event as they come, then the rest read."""
    seen = 0
    if poll:
        say_polling(POLL, "--poll")
    else:
        try:
            async with writable_client(q, s) as watcher:
                events = watcher.watch(job=job_id)
                try:
                    async for event in events:
                        if event.kind == "stream":  # streamed text: not a line of the history
                            continue
                        if event.final and (await q.get(job_id)).final:
                            break  # this line and any after it: read, as the polling does
                        seen += 1
                        yield event.as_line(seen), False
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
        except CannotWatch as exc:
            say_polling(POLL, str(exc))
    async for line, last in history_as_it_grows(q, job_id, seen):
        yield line, last


async def follow_events(ref: str, as_json: bool, q: Queue, s: Settings, poll: bool) -> Job:
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
    events = watched_history(q, s, job.id, poll)
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
