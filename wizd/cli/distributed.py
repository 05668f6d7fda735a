"""`wizd job …`: distributed jobs, a prompt fanned out to sub-tasks sub_1 … sub_N that any
worker of the queue runs, then consolidated into the parent's result."""

from __future__ import annotations

from typing import Any

import click

from wizd.cli.options import json_option, parse_duration
from wizd.cli.options import store_options as store
from wizd.cli.render import consolidation_view, print_json, show, subtasks_view
from wizd.cli.session import with_queue
from wizd.model import Job
from wizd.queue import DEFAULT_QUEUE, Queue
from wizd.settings import Settings

id_argument = click.argument("id")


@click.group(help="Distributed jobs: create, dispatch, subtasks, consolidate.")
def job() -> None:
    pass


@job.command("create", help="Create a distributed job with its sub-tasks; prints its id.")
@store
@json_option
@click.option("--distributed", is_flag=True, help="Required: this creates distributed jobs.")
@click.option("--prompt", required=True, help="The question the sub-tasks serve.")
@click.option("--subtask", "subtasks", multiple=True, help="A sub-task's query (repeatable).")
@click.option("-a", "--agent", default=DEFAULT_QUEUE, show_default=True, help="The queue.")
@click.option("--ttl", default="60", show_default=True, help="Deadline for every sub-task.")
@click.option("--dispatch", is_flag=True, help="Make the sub-tasks claimable at once.")
@click.option("--priority", help="1-5 or low, normal, high, critical.")
def create(
    as_json: bool,
    distributed: bool,
    prompt: str,
    subtasks: tuple[str, ...],
    agent: str,
    ttl: str,
    dispatch: bool,
    priority: str | None,
) -> None:
    if not distributed:
        raise click.UsageError("job create makes distributed jobs: add --distributed")
    deadline = parse_duration("ttl", ttl)

    async def work(q: Queue, s: Settings) -> Job:
        return await q.create_distributed(
            prompt,
            list(subtasks),
            queue=agent,
            ttl=deadline,
            dispatch=dispatch,
            priority=priority,
        )

    parent = with_queue(work, create=True)
    if as_json:
        print_json(parent.to_dict())
    else:
        click.echo(parent.id)


@job.command(help="Each sub-task's status, worker and result.")
@store
@json_option
@id_argument
def subtasks(id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[int, list[dict[str, Any]]]:
        parent = await q.get(id)
        return parent.id, await q.subtasks(parent)

    parent_id, found = with_queue(work, read_only=True)
    if as_json:
        print_json(found)
    else:
        show(subtasks_view(parent_id, found))


@job.command(help="Make the sub-tasks claimable now; returns at once.")
@store
@json_option
@id_argument
def dispatch(id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[int, int]:
        parent = await q.get(id)
        return parent.id, await q.dispatch(parent)

    parent_id, released = with_queue(work)
    if as_json:
        print_json({"job_id": parent_id, "dispatched": released})
    else:
        click.echo(f"job {parent_id}: {released} sub-task(s) dispatched")


@job.command(help="The consolidated results of a distributed job's sub-tasks.")
@store
@json_option
@id_argument
def consolidate(id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> dict[str, Any]:
        return await q.consolidate(id)

    doc = with_queue(work, read_only=True)
    if as_json:
        print_json(doc)
        return
    show(*consolidation_view(doc))
