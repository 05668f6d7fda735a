"""Operator commands on queues and daemons: status, pause, resume, peek, stats, hung,
cleanup, agents. Thin layers over the client API, like wizd.cli.ops."""

from __future__ import annotations

import time
from typing import Any

import click

from wizd.cli.ops import show_jobs
from wizd.cli.options import json_option, parse_duration, parse_statuses
from wizd.cli.options import store_options as store
from wizd.cli.render import (
    counts_line,
    jobs_table,
    key_values,
    print_json,
    show,
    span,
    status_table,
    symbol,
    workers_table,
)
from wizd.cli.session import with_queue
from wizd.errors import InvalidJob, WizdError
from wizd.model import Job, JobStatus, QueueStats, WorkerInfo
from wizd.queue import Queue
from wizd.settings import Settings

agent_argument = click.argument("agent")
HEARTBEAT_MARGIN = 2.0  # --kill reaps only heartbeats older than this many intervals


def worker_state(worker: WorkerInfo, hung_timeout: float) -> str:
    """live: not stopped and its heartbeat younger than the hung timeout; stopped: shut down
    cleanly; dead: went silent without stopping (killed, or its host is gone)."""
    if worker.stopped_at is not None:
        return "stopped"
    age = time.time() - worker.heartbeat_at.timestamp()
    return "live" if age < hung_timeout else "dead"


async def queue_rows(q: Queue, s: Settings, window: float = 60.0) -> list[dict[str, Any]]:
    """Per queue: counts, oldest pending age, paused, live workers, completed in `window`."""
    workers = await q.workers()
    live = [w for w in workers if worker_state(w, s.hung_timeout) == "live"]
    names = set(await q.counts_by_queue()) | {name for name, _, _ in await q.queues()}
    names |= {name for w in live for name in w.queues}
    rows = []
    for name in sorted(names):
        stats = await q.stats(name, window)
        rows.append(
            {
                "queue": name,
                "counts": stats.counts,
                "total": sum(stats.counts.values()),
                "paused": stats.paused,
                "oldest_pending_age_seconds": stats.oldest_pending_age_seconds,
                "live_workers": sum(1 for w in live if name in w.queues),
                "completed_per_minute": stats.throughput_per_minute,
            }
        )
    return rows


@click.command(help="Per queue: job counts, oldest pending, paused, live workers.")
@store
@json_option
def status(as_json: bool) -> None:
    rows = with_queue(queue_rows, read_only=True)
    if as_json:
        print_json(rows)
        return
    show(status_table(rows) if rows else "[dim]no queues yet[/]")


async def known_queues(q: Queue) -> set[str]:
    """Queues with jobs, settings or counts, served by a registered daemon, or scheduled into."""
    names = {name for name, _, _ in await q.queues()}
    names |= {name for w in await q.workers() for name in w.queues}
    return names | {s.queue for s in await q.schedules()}


def set_paused(agent: str, paused: bool, create: bool) -> None:
    async def work(q: Queue, s: Settings) -> None:
        if not create and agent not in await known_queues(q):
            raise WizdError(
                f"queue {agent!r} does not exist (no job, daemon or schedule names it); "
                "check the name with `wizd status`, or give --create to make it"
            )
        await (q.pause(agent) if paused else q.resume(agent))

    with_queue(work)
    if paused:
        click.echo(f"queue {agent} paused: nothing is claimed from it; running jobs finish")
    else:
        click.echo(f"queue {agent} resumed")


create_option = click.option(
    "--create", is_flag=True, help="Make the queue if no job, daemon or schedule names it yet."
)


@click.command(help="Stop handing out an agent's jobs (running ones finish).")
@store
@agent_argument
@create_option
def pause(agent: str, create: bool) -> None:
    set_paused(agent, True, create)


@click.command(help="Hand out a paused agent's jobs again.")
@store
@agent_argument
@create_option
def resume(agent: str, create: bool) -> None:
    set_paused(agent, False, create)


@click.command(
    "rm", help="Remove an empty queue (no jobs, no schedules): its pause, defaults, limits."
)
@store
@agent_argument
def remove(agent: str) -> None:
    async def work(q: Queue, s: Settings) -> None:
        await q.remove_queue(agent)

    with_queue(work)
    click.echo(f"queue {agent} removed")


@click.command(help="The next jobs an agent's queue would hand out, in order.")
@store
@json_option
@agent_argument
@click.option("-n", "count", type=int, default=10, show_default=True, help="How many.")
def peek(agent: str, count: int, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[Job]:
        return await q.peek(agent, count)

    show_jobs(with_queue(work, read_only=True), as_json, f"nothing pending in queue {agent}")


@click.command(help="An agent's counts, wait and run times and throughput.")
@store
@json_option
@agent_argument
@click.option("--window", default="1h", show_default=True, help="Look back this long.")
def stats(agent: str, window: str, as_json: bool) -> None:
    seconds = parse_duration("window", window)

    async def work(q: Queue, s: Settings) -> QueueStats:
        return await q.stats(agent, seconds)

    result = with_queue(work, read_only=True)
    if as_json:
        print_json(result.to_dict())
        return
    show(
        key_values(
            [
                ("queue", result.queue),
                ("paused", "yes" if result.paused else "no"),
                ("jobs", counts_line(result.counts)),
                ("window", span(result.window_seconds)),
                ("average wait", span(result.avg_wait_seconds)),
                ("average run", span(result.avg_run_seconds)),
                ("throughput", f"{result.throughput_per_minute:.2f} completed/min"),
                ("oldest pending", span(result.oldest_pending_age_seconds)),
            ]
        )
    )


def shortest_reap_age(settings: Settings) -> float:
    """The youngest heartbeat age --kill may reap without --force: a healthy daemon's running
    job has a heartbeat up to one interval old, and one more interval is the margin for a late
    beat (a slow commit, a busy host)."""
    return HEARTBEAT_MARGIN * settings.heartbeat_interval


def check_reap_age(age: float, settings: Settings) -> None:
    shortest = shortest_reap_age(settings)
    if age < shortest:
        raise InvalidJob(
            "older_than",
            f"{span(age)} is under {HEARTBEAT_MARGIN:g} x the heartbeat interval "
            f"({span(settings.heartbeat_interval)}, setting heartbeat_interval): a healthy "
            f"daemon's running job can be that silent, and reaping it runs it twice at once; "
            f"give --older-than {shortest:g}s or more, or --force",
        )


@click.command(
    help="Running jobs with stale heartbeats; --kill reaps them now.\n\n"
    "--kill refuses an --older-than under twice the heartbeat interval (the heartbeat_interval "
    "setting: --heartbeat-interval, WIZD_HEARTBEAT_INTERVAL or the file) unless --force."
)
@store
@json_option
@click.option("--older-than", help="Heartbeat age that makes a job hung [hung_timeout].")
@click.option("--kill", "reap", is_flag=True, help="Retry them (or fail them) now.")
@click.option("--force", is_flag=True, help="With --kill: reap even under the heartbeat margin.")
def hung(older_than: str | None, reap: bool, force: bool, as_json: bool) -> None:
    age = parse_duration("older_than", older_than) if older_than is not None else None

    async def work(q: Queue, s: Settings) -> list[Job]:
        limit = s.hung_timeout if age is None else age
        if reap and not force:
            check_reap_age(limit, s)
        if not reap:
            return await q.hung(limit)
        # reap_hung returns the jobs as they were when found; show where each went
        return [await q.get(job) for job in await q.reap_hung(limit)]

    found = with_queue(work, read_only=not reap)
    if as_json:
        print_json([job.to_dict() for job in found])
        return
    if not found or not reap:
        show(jobs_table(found, heartbeat=True) if found else "no hung jobs")
        return
    for job in found:
        outcome = "failed: no attempts left" if job.status is JobStatus.FAILED else "retried"
        show(
            f"job {job.id} {job.queue}/{job.name} was hung: {outcome} {symbol(job.status)} "
            f"(attempt {job.attempt}/{job.max_attempts})"
        )


@click.command(help="Delete old final jobs (default: completed, older than 30 days).")
@store
@json_option
@click.option("-d", "--days", default="30", show_default=True, help="Age: days, or 12h, 2w.")
@click.option("-s", "--status", "statuses", multiple=True, help="Final status (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
def cleanup(days: str, statuses: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    older_than = parse_duration("days", days, unit="d")
    chosen = parse_statuses(statuses or ("completed",))[0]

    async def work(q: Queue, s: Settings) -> list[int]:
        return await q.cleanup(older_than, chosen, dry_run=dry_run)

    ids = with_queue(work, read_only=dry_run)
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "older_than_seconds": older_than,
                "statuses": [str(s) for s in chosen],
                "ids": ids,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    listed = f": {', '.join(map(str, ids))}" if ids else ""
    click.echo(f"{verb} {len(ids)} job(s){listed}")


def forgotten(worker: WorkerInfo, retention: float, now: float) -> bool:
    """Stopped, or silent, for longer than the worker_retention setting (the daemons prune
    such rows hourly; until then they are not shown)."""
    last = worker.stopped_at or worker.heartbeat_at
    return now - last.timestamp() > retention


@click.command(
    help="Daemons: host, pid, queues, slots, heartbeat, live/stopped/dead. Stopped and dead "
    "ones are listed for worker_retention seconds (a setting) [1 day]."
)
@store
@json_option
def agents(as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[tuple[WorkerInfo, str]]:
        now = time.time()
        return [
            (w, worker_state(w, s.hung_timeout))
            for w in await q.workers()
            if not forgotten(w, s.worker_retention, now)
        ]

    rows = with_queue(work, read_only=True)
    if as_json:
        print_json([{**w.to_dict(), "state": state} for w, state in rows])
        return
    show(workers_table(rows) if rows else "[dim]no daemons registered[/]")
