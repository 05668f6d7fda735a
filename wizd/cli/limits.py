"""`wizd queue`: per-queue limits and concurrency keys, across every daemon."""

from __future__ import annotations

from typing import Any

import click

from wizd.cli.options import json_option
from wizd.cli.options import store_options as store
from wizd.cli.queues import remove
from wizd.cli.render import limits_table, print_json, show
from wizd.cli.session import with_queue
from wizd.errors import InvalidJob
from wizd.model import QueueLimits
from wizd.queue import UNSET, Queue, Unset
from wizd.settings import Settings

OFF = ("none", "off")


def number_or_off(field: str, text: str | None) -> int | Unset | None:
    """An integer, None for none/off, or UNSET when the flag was not given."""
    if text is None:
        return UNSET
    if text.strip().lower() in OFF:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidJob(field, f"must be an integer or none, got {text!r}") from None


@click.group(help="Queues: limit, limits, concurrency (across every daemon); rm an empty one.")
def queue() -> None:
    pass


@queue.command(
    help="Show or set an agent's limits: --max-running N, --rate 60/min, --burst N "
    "(none removes a limit). Jobs over a limit stay pending."
)
@store
@json_option
@click.argument("agent")
@click.option("--max-running", help="At most this many of its jobs run at once (or none).")
@click.option("--rate", help="At most this many start: 60/min, 10/s, 5/10s (or none).")
@click.option("--burst", help="Jobs the rate lets start at once [1] (or none).")
def limit(
    agent: str, max_running: str | None, rate: str | None, burst: str | None, as_json: bool
) -> None:
    changes: dict[str, Any] = {}
    for field, value in (("max_running", max_running), ("burst", burst)):
        parsed = number_or_off(field, value)
        if parsed is not UNSET:
            changes[field] = parsed
    if rate is not None:
        changes["rate"] = None if rate.strip().lower() in OFF else rate

    async def work(q: Queue, s: Settings) -> QueueLimits:
        if not changes:
            return await q.queue_limits(agent)
        return await q.set_queue_limits(agent, **changes)

    limits = with_queue(work)
    if as_json:
        print_json(limits.to_dict())
    else:
        show(limits_table([limits], {}))


@queue.command(help="Every queue limit and concurrency-key limit.")
@store
@json_option
def limits(as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> tuple[list[QueueLimits], dict[str, int]]:
        return await q.all_queue_limits(), await q.concurrency_limits()

    queues, keys = with_queue(work, read_only=True)
    if as_json:
        print_json({"queues": [item.to_dict() for item in queues], "concurrency_keys": keys})
        return
    show(limits_table(queues, keys) if queues or keys else "[dim]no limits set[/]")


@queue.command(
    help="At most LIMIT jobs enqueued with --concurrency-key KEY run at once, whatever "
    "their queue (none removes it)."
)
@store
@json_option
@click.argument("key")
@click.argument("limit_value", metavar="LIMIT")
def concurrency(key: str, limit_value: str, as_json: bool) -> None:
    value = number_or_off("limit", limit_value)
    assert not isinstance(value, Unset)

    async def work(q: Queue, s: Settings) -> dict[str, int]:
        await q.set_concurrency_limit(key, value)
        return await q.concurrency_limits()

    keys = with_queue(work)
    if as_json:
        print_json({"key": key, "limit": keys.get(key)})
    elif key in keys:
        click.echo(f"concurrency key {key}: at most {keys[key]} running")
    else:
        click.echo(f"concurrency key {key}: no limit")


queue.add_command(remove)  # `wizd queue rm`: defined with pause and resume (wizd.cli.queues)
