"""`wizd signal`: send a job a signal its processor waits for (ctx.wait_for_signal), and
`wizd jobs --waiting-signal`: the jobs that wait for one, with its name."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.markup import escape

from wizd.cli.options import json_option, parse_id
from wizd.cli.options import store_options as store
from wizd.cli.render import print_json, show, span, symbol, table
from wizd.cli.session import with_queue
from wizd.errors import InvalidJob
from wizd.model import Job
from wizd.queue import Queue
from wizd.settings import Settings


def parse_data(text: str | None) -> Any:
    """The signal's data: any JSON value (None when not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidJob("data", f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJob("data", "is nested too deeply to read") from None


@click.command(
    help="Send a job signal NAME: a processor waiting for it (ctx.wait_for_signal) runs "
    "again and gets DATA; sent before the wait, it is kept until the wait takes it. "
    "Refused for a finished job."
)
@store
@json_option
@click.argument("job_id", metavar="ID")
@click.argument("name")
@click.option("--data", metavar="JSON", help="The signal's data, any JSON value (default null).")
def signal(job_id: str, name: str, data: str | None, as_json: bool) -> None:
    wanted = parse_id("id", job_id)
    value = parse_data(data)

    async def work(q: Queue, s: Settings) -> Job:
        return await q.signal(wanted, name, value)

    job = with_queue(work)
    if as_json:
        print_json(job.to_dict())
    else:
        show(f"job {job.id} signal {name!r} sent: {symbol(job.status)}")


def waiting_signal(as_json: bool, agent: str | None, limit: int) -> None:
    """`wizd jobs --waiting-signal`: each job waiting for a signal, the name it waits for
    and when its wait times out."""

    async def work(q: Queue, s: Settings) -> list[tuple[Job, str, float | None]]:
        found = []
        for job_id, name, until in await q.signal_waits():
            job = await q.get(job_id)
            if agent is None or job.queue == agent:
                found.append((job, name, until))
        return found[-limit:]

    waits = with_queue(work, read_only=True)
    if as_json:
        print_json([{**j.to_dict(), "signal": n, "timeout_at": u} for j, n, u in waits])
        return
    if not waits:
        show("[dim]no job waits for a signal[/]")
        return
    now = time.time()
    grid = table("id", "queue", "name", "waits for", "since", "times out in")
    for job, name, until in waits:
        since = span(max(now - job.updated_at.timestamp(), 0.0))
        left = "never" if until is None else span(max(until - now, 0.0))
        cells = (job.queue, job.name, name)
        grid.add_row(str(job.id), *map(escape, cells), since, left)
    show(grid)
