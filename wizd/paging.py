"""Pages of a job list: a Page (its jobs and the cursor of the next one) and that cursor.

A cursor holds the place of a page's last job in the list's order, its sort value and its
id (ties on the sort value go by id), so the next page starts right after it, however many
jobs were added or removed meanwhile; the store seeks that place in an index, where an
offset would walk every row before it. The text is opaque to callers: urlsafe base64 (no
padding) of the JSON list [version, sort, order, value, id]."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from wizd.checks import MAX_INT
from wizd.errors import InvalidJob
from wizd.jobs import Job

VERSION = 1
MAX_CURSOR = 2000  # characters of a cursor: a name or a queue is at most a few hundred
TIME_SORTS = frozenset({"created_at", "updated_at", "run_at"})
TEXT_SORTS = frozenset({"status", "name", "queue"})
Position = tuple[Any, int]  # a job's sort value and its id


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its jobs, and `next`, the cursor of the page after it (pass it
    as `after`), or None when no job follows the last one."""

    jobs: list[Job]
    next: str | None


def cursor(sort: str, order: str, value: Any, job_id: int) -> str:
    """The cursor of the place right after a job with this sort value and id."""
    text = json.dumps([VERSION, sort, order, value, job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def position(after: object, sort: str, order: str) -> Position:
    """The (sort value, id) a cursor given by `cursor` holds, for a list in this sort and
    order; InvalidJob("after") for anything else."""
    if not isinstance(after, str) or not after or len(after) > MAX_CURSOR:
        raise _not_a_cursor()
    try:
        raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
        decoded = json.loads(raw.decode(), parse_constant=_no_constant)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _not_a_cursor() from None
    if not isinstance(decoded, list) or len(decoded) != 5 or decoded[0] != VERSION:
        raise _not_a_cursor()
    _, made_sort, made_order, value, job_id = decoded
    if (made_sort, made_order) != (sort, order):
        raise InvalidJob(
            "after",
            f"this cursor continues a list sorted by {_shown(made_sort)} {_shown(made_order)}, "
            f"not by {sort} {order}: list again without `after`",
        )
    if not _is_int(job_id) or not 1 <= job_id <= MAX_INT or not _fits(sort, value, job_id):
        raise _not_a_cursor()
    return (float(value) if sort in TIME_SORTS else value), job_id


def _fits(sort: str, value: object, job_id: int) -> bool:
    """Whether `value` is a value of the `sort` column (for id: the job's own id)."""
    if sort == "id":
        return value == job_id and _is_int(value)
    if sort == "priority":
        return _is_int(value) and abs(value) <= MAX_INT  # type: ignore[arg-type]
    if sort in TIME_SORTS:
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]
    return sort in TEXT_SORTS and isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity: no column holds them


def _shown(value: object) -> str:
    return value if isinstance(value, str) and value.isidentifier() else "something else"


def _not_a_cursor() -> InvalidJob:
    return InvalidJob("after", "is not a page cursor wizd gave (the `next` of a page)")
