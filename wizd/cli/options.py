"""Options shared by the operator's commands, and the parsing of what operators type:
durations, absolute times, payloads, statuses.

Every bad value raises InvalidJob naming the option, so `main()` prints one line and exits 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from wizd.errors import InvalidJob
from wizd.model import JobStatus, parse_status

F = TypeVar("F", bound=Callable[..., Any])

HUNG = "hung"
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
UNIT_NAMES = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.ASCII)
NEGATIVE_RE = re.compile(r"^\s*-\s*\d", re.ASCII)
ID_RE = re.compile(r"[0-9]{1,30}")
MAX_ID = 2**63 - 1  # ids are 64-bit integers in either store
MAX_DURATION = 100 * 365 * 86400.0  # a century: beyond it a time is not representable


def parse_duration(field: str, text: str, unit: str = "s") -> float:
    """Seconds in "30s", "10m", "2h", "7d", "1w"; a bare number counts in `unit`."""
    hint = f"use 30s, 10m, 2h, 7d or a plain number of {UNIT_NAMES[unit]}"
    match = DURATION_RE.match(text)
    if match is None:
        if NEGATIVE_RE.match(text):
            raise InvalidJob(field, f"{text!r} is negative; a duration is 0 or more: {hint}")
        raise InvalidJob(field, f"{text!r} is not a duration; {hint}")
    number, suffix = match.groups()
    seconds = float(number) * UNITS[suffix or unit]
    if seconds > MAX_DURATION:
        raise InvalidJob(field, f"{text!r} is longer than 100 years")
    return seconds


def parse_time(field: str, text: str) -> datetime:
    """An ISO 8601 time with Z or an offset: 2026-12-01T09:00Z, 2026-12-01T10:00+01:00."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidJob(
            field, f"{text!r} is not an ISO 8601 time such as 2026-12-01T09:00Z"
        ) from None
    if at.tzinfo is None:
        raise InvalidJob(field, f"{text!r} needs a time zone: end it with Z or +01:00")
    return at


def parse_payload(query: str | None, payload: str | None) -> dict[str, Any] | None:
    """The payload of `-q TEXT` ({"query": TEXT}) or `--payload JSON|@file.json`."""
    if query is not None and payload is not None:
        raise InvalidJob("payload", "give -q/--query or --payload, not both")
    if query is not None:
        return {"query": query}
    if payload is None:
        return None
    text = payload
    if payload.startswith("@"):
        try:
            text = Path(payload[1:]).read_bytes().decode("utf-8")
        except OSError as exc:
            raise InvalidJob("payload", f"cannot read {payload[1:]}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InvalidJob(
                "payload",
                f"{payload[1:]} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                f"{exc.start})",
            ) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidJob("payload", f"is not valid JSON: {exc}") from None
    except RecursionError:  # json's decoder recurses once per level
        raise InvalidJob("payload", "is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise InvalidJob("payload", f"must be a JSON object, got {type(value).__name__}")
    return value


def parse_id(field: str, text: str) -> int:
    """A job id: the positive integer the store gave."""
    if not ID_RE.fullmatch(text.strip()) or not 1 <= int(text) <= MAX_ID:  # isdigit takes '²'
        raise InvalidJob(field, f"must be a job id (a positive integer), got {text!r}")
    return int(text)


def parse_statuses(words: Sequence[str], allow_hung: bool = False) -> tuple[list[JobStatus], bool]:
    """Statuses (aliases accepted) and whether `hung` was asked for."""
    statuses: list[JobStatus] = []
    hung = False
    for word in words:
        if allow_hung and word.strip().lower() == HUNG:
            hung = True
            continue
        try:
            statuses.append(parse_status(word))
        except InvalidJob as exc:
            extra = f", {HUNG}" if allow_hung else ""
            raise InvalidJob("status", str(exc).split(": ", 1)[1] + extra) from None
    return statuses, hung


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a subcommand's --database/--config where the connection helper finds them."""
    if value is not None and param.name is not None:
        ctx.ensure_object(dict).setdefault("command", {})[param.name] = value
    return value


def store_options(command: F) -> F:
    """--database and --config on a subcommand; they win over the group's."""
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_remember,
        help="TOML settings file.",
    )(command)
    return click.option(
        "--database",
        expose_value=False,
        callback=_remember,
        help="SQLite path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://… "
        "[wizd.db]; env WIZD_DATABASE.",
    )(command)


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="One JSON document on stdout (for jq)."
    )(command)


def unique_options(command: F) -> F:
    """--unique-key, --unique-for, --unique-state, --on-conflict and --concurrency-key."""
    for decorator in reversed(
        (
            click.option("--unique-key", help="At most one job with this key (see --on-conflict)."),
            click.option("--unique-for", help="The key holds this long from creation: 1h."),
            click.option(
                "--unique-state",
                "unique_states",
                multiple=True,
                help="A status that holds the key (repeatable) [every unfinished one].",
            ),
            click.option(
                "--on-conflict",
                type=click.Choice(["return", "raise", "replace"]),
                help="When the key is held: return that job, fail, or replace it [return].",
            ),
            click.option("--concurrency-key", help="Share this key's concurrency limit."),
        )
    ):
        command = decorator(command)
    return command


def unique_arguments(
    unique_key: str | None,
    unique_for: str | None,
    unique_states: tuple[str, ...],
    on_conflict: str | None,
    concurrency_key: str | None,
) -> dict[str, Any]:
    """The enqueue options of unique_options' flags (left out when not given)."""
    given: dict[str, Any] = {
        "unique_key": unique_key,
        "unique_for": None if unique_for is None else parse_duration("unique_for", unique_for),
        "unique_states": list(unique_states) or None,
        "on_conflict": on_conflict,
        "concurrency_key": concurrency_key,
    }
    return {k: v for k, v in given.items() if v is not None}
