"""`wizd wait`: block until jobs are final, whichever daemon runs them (and `create --wait`).

The database is opened read-only: waiting writes nothing. The exit code says how the jobs
ended, so that a shell script can chain on it.
"""

from __future__ import annotations

import json

import click

from wizd.cli.options import json_option, parse_duration, parse_id
from wizd.cli.options import store_options as store
from wizd.cli.render import print_json, show, symbol
from wizd.cli.session import with_queue
from wizd.errors import WaitTimeout
from wizd.model import Job, JobStatus
from wizd.queue import Queue
from wizd.settings import Settings


def wait_for(ids: list[int], timeout: float | None) -> tuple[list[Job], str | None]:
    """The jobs once all are final, or as they are when `timeout` ran out (and why)."""

    async def work(q: Queue, s: Settings) -> tuple[list[Job], str | None]:
        try:
            return await q.wait_many(ids, timeout), None
        except WaitTimeout as exc:  # not a refusal: say how far the jobs got
            return [await q.get(i) for i in ids], str(exc)

    return with_queue(work, read_only=True)


def job_line(job: Job) -> str:
    """One line: the id, the status, and the error of a job that did not complete."""
    line = f"job {job.id} {symbol(job.status)}"
    if job.status is not JobStatus.COMPLETED and job.error:
        line += f": {job.error}"
    return line


def report(jobs: list[Job], timed_out: str | None, as_json: bool) -> None:
    """Print the jobs (one line each, or a JSON list); exit 1 unless all completed."""
    if as_json:
        print_json([job.to_dict() for job in jobs])
    else:
        show(*map(job_line, jobs))
    if timed_out:
        click.echo(f"wizd: timed out: {timed_out}", err=True)
    if any(job.status is not JobStatus.COMPLETED for job in jobs):
        raise click.exceptions.Exit(1)


def print_result(job: Job, timed_out: str | None, as_json: bool) -> None:
    """`create --wait`: the result as JSON (or the whole job with --json); exit 1 and say
    why on stderr unless it completed."""
    if as_json:
        print_json(job.to_dict())
    elif job.status is JobStatus.COMPLETED:
        click.echo(json.dumps(job.result, ensure_ascii=False, default=str))
    if job.status is not JobStatus.COMPLETED:
        if timed_out:
            click.echo(f"wizd: timed out: {timed_out}", err=True)
        elif not as_json:
            why = f": {job.error}" if job.error else ""
            click.echo(f"wizd: job {job.id} {job.status}{why}", err=True)
        raise click.exceptions.Exit(1)


@click.command(
    help="Wait until jobs are final; exit 0 only if all completed.\n\n"
    "Final: completed, failed or cancelled, whichever process ran them. Prints one line per "
    "job (or a JSON list with --json).\n\n"
    "Exit code: 0 if every job completed; 1 if any failed or was cancelled, if --timeout "
    "ran out first, or on an error."
)
@store
@json_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--timeout", metavar="DURATION", help="Give up after this long: 30s, 10m.")
def wait(ids: tuple[str, ...], as_json: bool, timeout: str | None) -> None:
    wanted = list(dict.fromkeys(parse_id("id", i) for i in ids))
    limit = parse_duration("timeout", timeout) if timeout is not None else None
    report(*wait_for(wanted, limit), as_json)
