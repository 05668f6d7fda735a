"""Operator commands on jobs: list, inspect, follow, create, cancel, kill, retry, delete, tree.

Each is a thin layer over the client API (wizd.queue.Queue): parse what was typed, make one
or a few calls through `with_queue`, render the answer.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import anyio
import click

from wizd.cli import signals, waits
from wizd.cli.follow import follow_events
from wizd.cli.options import (
    json_option,
    parse_duration,
    parse_id,
    parse_payload,
    parse_statuses,
    parse_time,
    unique_arguments,
    unique_options,
)
from wizd.cli.options import store_options as store
from wizd.cli.render import (
    brief,
    event_line,
    job_detail,
    jobs_table,
    print_json,
    show,
    steps_table,
    symbol,
    timings,
    tree_view,
)
from wizd.cli.session import with_queue
from wizd.cli.watcher import poll_option
from wizd.errors import JobNotFound
from wizd.model import Event, Job, JobFilter, JobStatus
from wizd.queue import Queue
from wizd.settings import Settings
from wizd.step_model import Step
from wizd.worker import STOP_NOTE

MAX_LIST = 10_000
ids_argument = click.argument("ids", nargs=-1, required=True, metavar="ID...")


def show_jobs(jobs: list[Job], as_json: bool, empty: str = "no jobs") -> None:
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return
    show(jobs_table(jobs) if jobs else f"[dim]{empty}[/]")


def show_changed(jobs: list[Job], as_json: bool, what: str) -> None:
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return
    for job in jobs:
        show(f"job {job.id} {what}: {symbol(job.status)}")


@click.command(help="List jobs (newest first) by status, agent, name, tag or age.")
@store
@json_option
@click.option(
    "-s",
    "--status",
    "statuses",
    multiple=True,
    help="Status (repeatable); aliases active/processing, and hung (stale heartbeat).",
)
@click.option("-a", "--agent", help="Only this agent's queue.")
@click.option(
    "--waiting-signal", is_flag=True, help="Jobs waiting for a signal, with its name (only -a)."
)
@click.option("-n", "--name", help="Only jobs of this name.")
@click.option("--tag", "tags", multiple=True, help="Only jobs with this tag (repeatable).")
@click.option("--since", help="Created within this long: 30m, 2h, 7d.")
@click.option("--limit", type=click.IntRange(1, MAX_LIST), default=50, show_default=True)
@click.option("--sort", type=click.Choice(JobFilter.SORTS), default="created_at", show_default=True)
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
def jobs(
    as_json: bool,
    statuses: tuple[str, ...],
    agent: str | None,
    waiting_signal: bool,
    name: str | None,
    tags: tuple[str, ...],
    since: str | None,
    limit: int,
    sort: str,
    order: Literal["asc", "desc"],
) -> None:
    if waiting_signal:
        return signals.waiting_signal(as_json, agent, limit)
    wanted, hung = parse_statuses(statuses, allow_hung=True)
    after = time.time() - parse_duration("since", since) if since is not None else None

    async def work(q: Queue, s: Settings) -> list[Job]:
        where: dict[str, Any] = {
            "queue": agent,
            "name": name,
            "tags": tags or None,
            "created_after": after,
            "sort": sort,
            "order": order,
        }
        if not hung:
            return await q.list(status=wanted or None, limit=limit, **where)
        # hung = running with a stale heartbeat: the running ones, less those still beating
        stale = {j.id for j in await q.hung(s.hung_timeout)}
        found = await q.list(status=[*wanted, JobStatus.RUNNING], limit=MAX_LIST, **where)
        return [j for j in found if j.status in wanted or j.id in stale][:limit]

    show_jobs(with_queue(work, read_only=True), as_json, "no jobs match")


@click.command(help="Show every field of a job, its timings, links and last error.")
@store
@json_option
@click.argument("id")
def info(id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[Job, dict[str, list[Job]], list[Step]]:
        job = await q.get(id)
        try:
            parent = [await q.get(job.parent_id)] if job.parent_id is not None else []
        except JobNotFound:  # retention removed the parent before this child
            parent = []
        related = {
            "dependencies": await q.dependencies(job),
            "dependents": await q.dependents(job),
            "parent": parent,
            "children": await q.children(job),
        }
        return job, related, await q.steps(job)

    job, related, steps = with_queue(work, read_only=True)
    if as_json:
        doc: dict[str, Any] = {"job": job.to_dict(), "timings": timings(job)}
        doc.update({key: [brief(j) for j in jobs] for key, jobs in related.items()})
        doc["parent"] = doc["parent"][0] if doc["parent"] else None
        doc["steps"] = [step.to_dict() for step in steps]
        print_json(doc)
    else:
        show(job_detail(job, related))
        if steps:
            show(steps_table(steps))


@click.command(
    help="Print a job's events and log lines; -f follows until it is final.\n\n"
    "With -f, --json prints one JSON object per line as the events come, and the exit code "
    "says how the job ended: 0 completed, 1 failed or cancelled.\n\n"
    "-f watches the job (Queue.watch) through a second client that may write the database, "
    "since a watch's lease is a write; where this user may not write it, or with --poll, "
    "it reads the job's history every 0.2s instead and says so on stderr."
)
@store
@json_option
@click.argument("id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job is final.")
@poll_option
def logs(id: str, as_json: bool, follow: bool, poll: bool) -> None:
    if follow:
        final = with_queue(lambda q, s: follow_events(id, as_json, q, s, poll), read_only=True)
        if final.status is not JobStatus.COMPLETED:
            raise click.exceptions.Exit(1)
        return

    async def work(q: Queue, s: Settings) -> list[Event]:
        return await q.events(id)

    events = with_queue(work, read_only=True)
    if as_json:
        print_json([event.to_dict() for event in events])
        return
    for event in events:
        show(event_line(event))


@click.command(help="Add a job to an agent's queue; prints its id (with --wait, its result).")
@store
@json_option
@click.option("-a", "--agent", required=True, help="The agent (queue) to run it.")
@click.option("-t", "--name", required=True, help="The job's name (its processor).")
@click.option("-q", "--query", help='Payload {"query": TEXT}.')
@click.option("--payload", help="Payload: a JSON object, or @file.json.")
@click.option("--priority", help="1-5 or low, normal, high, critical.")
@click.option("--delay", help="Run no sooner than this from now: 30s, 10m.")
@click.option("--at", "at", help="Run no sooner than this time: 2026-12-01T09:00Z.")
@click.option("--depends-on", multiple=True, help="Wait for this job to complete (repeatable).")
@click.option("--parent", help="The job this one is a child of.")
@click.option("--ttl", help="Deadline to finish, from now: 10m.")
@click.option("--timeout", help="Longest a run may take: 5m.")
@click.option("--attempts", type=int, help="Runs allowed before failing.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option(
    "--wait",
    "wait",
    is_flag=True,
    help="Wait until the job is final and print its result (JSON); exit 1 unless it completed.",
)
@click.option("--wait-timeout", metavar="DURATION", help="With --wait: give up after this long.")
@unique_options
def create(
    as_json: bool,
    agent: str,
    name: str,
    query: str | None,
    payload: str | None,
    priority: str | None,
    delay: str | None,
    at: str | None,
    depends_on: tuple[str, ...],
    parent: str | None,
    ttl: str | None,
    timeout: str | None,
    attempts: int | None,
    tags: tuple[str, ...],
    wait: bool,
    wait_timeout: str | None,
    **unique: Any,
) -> None:
    body = parse_payload(query, payload)
    if wait_timeout is not None and not wait:
        raise click.UsageError("--wait-timeout needs --wait")
    limit = parse_duration("wait_timeout", wait_timeout) if wait_timeout is not None else None
    options: dict[str, Any] = {
        "delay": parse_duration("delay", delay) if delay is not None else None,
        "run_at": parse_time("at", at) if at is not None else None,
        "ttl": parse_duration("ttl", ttl) if ttl is not None else None,
        "timeout": parse_duration("timeout", timeout) if timeout is not None else None,
        "depends_on": [parse_id("depends_on", d) for d in depends_on] or None,
        "parent": parse_id("parent", parent) if parent is not None else None,
        **unique_arguments(**unique),
    }

    async def work(q: Queue, s: Settings) -> Job:
        return await q.enqueue(
            name,
            body,
            queue=agent,
            priority=priority,
            attempts=attempts,
            tags=tags or None,
            **options,
        )

    job = with_queue(work, create=True)
    if wait:
        (final,), timed_out = waits.wait_for([job.id], limit)
        waits.print_result(final, timed_out, as_json)
    elif as_json:
        print_json(job.to_dict())
    else:
        click.echo(job.id)


@click.command(help="Cancel jobs (and their unfinished children): all or none.")
@store
@json_option
@ids_argument
def cancel(ids: tuple[str, ...], as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[Job]:
        return await q.cancel(*ids)

    show_changed(with_queue(work), as_json, "cancelled")


@click.command(
    help="Cancel a job and stop its run now: a command gets SIGTERM, then SIGKILL; a Python "
    "processor is cancelled; a synchronous one is asked to stop (a thread cannot be killed). "
    "Says what its daemon did."
)
@store
@json_option
@click.argument("id")
@click.option("--force", is_flag=True, help="A command gets SIGKILL at once, no grace.")
def kill(id: str, force: bool, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[Job, Job, str | None]:
        before = await q.get(id)
        job = await q.kill(id, force=force)
        ran = before.status is JobStatus.RUNNING or job.attempt != before.attempt
        return before, job, (await _stop_note(q, job) if ran and not as_json else None)

    before, job, note = with_queue(work)
    if as_json:
        print_json(job.to_dict())
    elif before.status is not JobStatus.RUNNING and job.attempt == before.attempt:
        when = "before it ran"
        if before.status is JobStatus.WAITING_CHILDREN:
            when = "while waiting for its children"
        elif before.attempt:
            when = "before its next run"
        show(f"job {job.id} {symbol(job.status)} {when} (it was {before.status.value})")
    elif note is not None:
        show(f"job {job.id} {symbol(job.status)}; its daemon: {note}")
    else:
        show(
            f"job {job.id} {symbol(job.status)}; its daemon ({job.worker_id}) has not stopped "
            f"the run yet (within {KILL_NOTE_WAIT:g}s): it does when it notices; "
            f"`wizd logs {job.id}` will say how"
        )


KILL_NOTE_WAIT = 5.0  # seconds `kill` waits for the daemon's note of what it did


async def _stop_note(q: Queue, job: Job) -> str | None:
    """The note the job's daemon logs when it stops the run (worker.how_stopped)."""
    with anyio.move_on_after(KILL_NOTE_WAIT):
        while True:
            for event in await q.events(job):
                if (
                    event.kind == "log"
                    and event.worker_id == job.worker_id
                    and event.attempt == job.attempt
                    and event.message is not None
                    and event.message.startswith(STOP_NOTE)
                ):
                    return event.message.removeprefix(STOP_NOTE)
            await anyio.sleep(0.05)
    return None


@click.command(help="Requeue failed/cancelled jobs, or all failed jobs of an agent.")
@store
@json_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--failed", is_flag=True, help="Retry every failed job of -a AGENT.")
@click.option("-a", "--agent", help="The agent whose failed jobs --failed retries.")
@click.option(
    "--from-step",
    metavar="NAME",
    help="One job (failed, cancelled or completed): keep its durable steps before step NAME's "
    "first call; run the rest again.",
)
def retry(
    ids: tuple[str, ...], failed: bool, agent: str | None, from_step: str | None, as_json: bool
) -> None:
    if failed == bool(ids) or (failed and not agent):
        raise click.UsageError("give job ids, or --failed -a AGENT")
    if from_step is not None and (failed or len(ids) != 1):
        raise click.UsageError("--from-step retries one job: give its id")

    async def work(q: Queue, s: Settings) -> list[Job]:
        chosen: list[str | Job] = list(ids)
        if failed:
            chosen = list(await q.list(queue=agent, status="failed", limit=MAX_LIST))
            if not chosen:
                return []
        return await q.retry(*chosen, from_step=from_step)

    retried = with_queue(work)
    if not retried and not as_json:
        show(f"no failed jobs in queue {agent}")
    show_changed(retried, as_json, "retried")


@click.command(help="Delete jobs and their history (not running ones): all or none.")
@store
@json_option
@ids_argument
def delete(ids: tuple[str, ...], as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[int]:
        return await q.delete(*ids)

    deleted = with_queue(work)
    if as_json:
        print_json({"deleted": deleted})
    else:
        click.echo(f"deleted {len(deleted)} job(s): {', '.join(map(str, deleted))}")


@click.command(help="Show a job's delegation tree: children and dependencies.")
@store
@json_option
@click.argument("id")
def tree(id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[dict[str, Any], dict[int, str]]:
        root = await q.tree(id)
        statuses: dict[int, str] = {}
        wanted: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            statuses[node["id"]] = node["status"]
            wanted.update(node["depends_on"])
            stack.extend(node["children"])
        for dep in sorted(wanted - set(statuses)):
            try:
                statuses[dep] = (await q.get(dep)).status.value
            except JobNotFound:
                statuses[dep] = "deleted"
        return root, statuses

    root, statuses = with_queue(work, read_only=True)
    if as_json:
        print_json(root)
    else:
        show(tree_view(root, statuses))
