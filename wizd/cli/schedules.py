"""`wizd schedule`: recurring jobs. Thin layers over Queue.schedule and friends."""

from __future__ import annotations

from typing import Any

import click

from wizd.cli.options import (
    json_option,
    parse_duration,
    parse_payload,
    unique_arguments,
    unique_options,
)
from wizd.cli.options import store_options as store
from wizd.cli.render import ago, print_json, schedules_table, show, when
from wizd.cli.session import with_queue
from wizd.model import Schedule, ScheduleRun
from wizd.queue import Queue
from wizd.recurrence import CATCH_UP
from wizd.settings import Settings

ref_argument = click.argument("ref", metavar="ID|KEY")


def show_schedule(schedule: Schedule, as_json: bool, what: str) -> None:
    if as_json:
        print_json(schedule.to_dict())
    else:
        show(
            f"schedule {schedule.id} {what}: {when(schedule)}, next {schedule.next_at.isoformat()}"
        )


@click.group(help="Recurring jobs: add, list, rm, pause, resume, runs.")
def schedule() -> None:
    pass


@schedule.command(help="Enqueue a job at every occurrence of a cron expression or interval.")
@store
@json_option
@click.option("-a", "--agent", required=True, help="The agent (queue) to run it.")
@click.option("-t", "--name", required=True, help="The job's name (its processor).")
@click.option("--cron", help="A cron expression: '0 9 * * *' (in --timezone).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of --cron.")
@click.option("--every", help="Or an interval: 15m, 1h, 30s.")
@click.option(
    "--catch-up",
    type=click.Choice(CATCH_UP),
    default="latest",
    show_default=True,
    help="Occurrences missed while no daemon ran: the last one, all, or none.",
)
@click.option("--key", help="A name for it; adding the same key again updates it.")
@click.option("--paused", is_flag=True, help="Add it paused.")
@click.option("-q", "--query", help='Payload {"query": TEXT}.')
@click.option("--payload", help="Payload: a JSON object, or @file.json.")
@click.option("--priority", help="1-5 or low, normal, high, critical.")
@click.option("--attempts", type=int, help="Runs allowed before failing.")
@click.option("--timeout", help="Longest a run may take: 5m.")
@click.option("--ttl", help="Deadline to finish, from enqueue: 10m.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@unique_options
def add(
    as_json: bool,
    agent: str,
    name: str,
    cron: str | None,
    timezone: str,
    every: str | None,
    catch_up: str,
    key: str | None,
    paused: bool,
    query: str | None,
    payload: str | None,
    priority: str | None,
    attempts: int | None,
    timeout: str | None,
    ttl: str | None,
    tags: tuple[str, ...],
    **unique: Any,
) -> None:
    body = parse_payload(query, payload)
    options: dict[str, Any] = {
        "every": parse_duration("every", every) if every is not None else None,
        "timeout": parse_duration("timeout", timeout) if timeout is not None else None,
        "ttl": parse_duration("ttl", ttl) if ttl is not None else None,
        **unique_arguments(**unique),
    }

    async def work(q: Queue, s: Settings) -> Schedule:
        return await q.schedule(
            name,
            body,
            queue=agent,
            cron=cron,
            timezone=timezone,
            catch_up=catch_up,
            key=key,
            paused=paused,
            priority=priority,
            attempts=attempts,
            tags=tags or None,
            **options,
        )

    added = with_queue(work, create=True)
    if as_json:
        print_json(added.to_dict())
    else:
        click.echo(added.id)


@schedule.command("list", help="Every schedule: when it fires, next and last occurrence.")
@store
@json_option
def list_schedules(as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[Schedule]:
        return await q.schedules()

    found = with_queue(work, read_only=True)
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    show(schedules_table(found) if found else "[dim]no schedules[/]")


@schedule.command(help="Remove schedules (the jobs they enqueued stay).")
@store
@json_option
@click.argument("refs", nargs=-1, required=True, metavar="ID|KEY...")
def rm(refs: tuple[str, ...], as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[Schedule]:
        for ref in refs:  # every one must exist before any is removed
            await q.get_schedule(ref)
        return [await q.unschedule(ref) for ref in refs]

    removed = with_queue(work)
    if as_json:
        print_json([s.to_dict() for s in removed])
        return
    for s in removed:
        click.echo(f"schedule {s.id} removed")


@schedule.command(help="Stop a schedule enqueueing (until resumed).")
@store
@json_option
@ref_argument
def pause(ref: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> Schedule:
        return await q.pause_schedule(ref)

    show_schedule(with_queue(work), as_json, "paused")


@schedule.command(help="Resume a schedule from its next occurrence after now.")
@store
@json_option
@ref_argument
def resume(ref: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> Schedule:
        return await q.resume_schedule(ref)

    show_schedule(with_queue(work), as_json, "resumed")


@schedule.command(help="A schedule's latest occurrences and the jobs they enqueued.")
@store
@json_option
@ref_argument
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=20, show_default=True)
def runs(ref: str, count: int, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[ScheduleRun]:
        return await q.schedule_runs(ref, count)

    found = with_queue(work, read_only=True)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    if not found:
        show("[dim]no occurrences enqueued yet[/]")
    for r in found:
        job = f"job {r.job_id}" if r.job_id is not None else "no job (unique key held)"
        show(f"{r.fire_at.isoformat()}  {job}  fired {ago(r.fired_at)}")
