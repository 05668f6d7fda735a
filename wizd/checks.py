"""Checks of single values before anything is written, and the size caps of what a job holds.

Pure functions below the model: each returns the value it accepts or raises InvalidJob naming
the field, the value (shortened) and the limit. They exist so that both backends refuse the
same input the same way: SQLite stores 64-bit integers and UTF-8 text, PostgreSQL's BIGINT and
text cannot hold more, and PostgreSQL text cannot hold a NUL character at all.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from wizd.errors import InvalidJob

MAX_INT = 2**63 - 1  # the largest id or count either database holds (a signed 64-bit integer)
MAX_JSON_DEPTH = 100  # nesting of a payload, a context or a result
MAX_TAG_LENGTH = 200
TRUNCATED = "… [truncated {n} bytes]"

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """Caps, in bytes of UTF-8 (JSON for structured values), on what one job may hold.

    payload, context, log (one log line or progress message) and tags (how many; each tag
    is at most 200 characters) are refused over the cap with InvalidJob, before anything
    is written. A processor's result over `result` fails its job with an error saying so
    (the result is not stored); an error text over `error` is cut with a marker. A job's
    streamed text (ctx.stream) keeps its last `stream` characters, with a marker."""

    payload: int = 1 * MiB
    context: int = 1 * MiB
    result: int = 16 * MiB
    log: int = 64 * KiB
    tags: int = 100
    error: int = 64 * KiB
    stream: int = 64 * KiB  # characters of a job's ctx.stream text kept (older: dropped)

    def __post_init__(self) -> None:
        for name in ("payload", "context", "result", "log", "tags", "error", "stream"):
            check_int(f"{name}_limit", getattr(self, name), low=1)

    def replace(self, **changes: int | None) -> SizeLimits:
        """These limits with every non-None change applied."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update({k: v for k, v in changes.items() if v is not None})
        return SizeLimits(**values)


def shorten(value: object, limit: int = 80) -> str:
    """repr(value), at most about `limit` characters, for an error message."""
    try:
        text = repr(value)
    except Exception:  # a __repr__ that fails, or recurses too deep, still names the type
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_int(field: str, value: object, *, low: int = 1, high: int = MAX_INT) -> int:
    """An integer (not a bool) in low..high."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(field, f"must be an integer >= {low}, got {shorten(value)}")
    if value < low:
        raise InvalidJob(field, f"must be an integer >= {low}, got {shorten(value)}")
    if value > high:
        shown = value if value < 10**30 else f"a number of {value.bit_length()} bits"
        raise InvalidJob(field, f"must be at most {high}, got {shown}")
    return value


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidJob(field, f"must be True or False, got {shorten(value)}")
    return value


def check_number(field: str, value: object) -> float:
    """A finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(field, f"must be a number, got {shorten(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidJob(field, "is too large a number") from None
    if not math.isfinite(number):
        raise InvalidJob(field, f"must be a finite number, got {value}")
    return number


def storable(field: str, text: str) -> str:
    """`text` if both databases can store it: valid Unicode (no lone surrogate, which UTF-8
    cannot encode) and no NUL character (PostgreSQL text cannot hold one)."""
    if "\x00" in text:
        raise InvalidJob(field, "contains a NUL character, which cannot be stored")
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidJob(
            field, f"is not valid Unicode: {exc.reason} at character {exc.start}"
        ) from None
    return text


def check_text(field: str, value: object, *, limit: int, empty: bool = False) -> str:
    """Storable text of at most `limit` bytes of UTF-8 (non-empty unless `empty`)."""
    if not isinstance(value, str):
        raise InvalidJob(field, f"must be a string, got {shorten(value)}")
    if not empty and not value.strip():
        raise InvalidJob(field, "must be a non-empty string")
    if len(value) > limit:  # a character is at least one byte: refused without encoding
        raise InvalidJob(field, f"is {len(value)} characters; the limit is {limit} bytes")
    storable(field, value)
    size = len(value.encode())
    if size > limit:
        raise InvalidJob(field, f"is {size} bytes; the limit is {limit} bytes")
    return value


def check_depth(field: str, value: object, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse lists and dicts nested deeper than `limit` (json would hit Python's recursion
    limit long before a database minds). Iterative: a deep value cannot overflow it here."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidJob(field, f"is nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_json(field: str, value: object, limit: int | None = None) -> str:
    """`value` as compact JSON text both databases can store, of at most `limit` bytes,
    nested at most MAX_JSON_DEPTH levels deep."""
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(field, f"is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidJob(field, f"is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if text.isascii():  # one byte a character, and no lone surrogate
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            raise InvalidJob(
                field, f"is not valid Unicode: {exc.reason} in a string or key of it"
            ) from None
    if limit is not None and size > limit:
        raise InvalidJob(field, f"is {size} bytes as JSON; the limit is {limit} bytes")
    # Only a text of more brackets than the limit can nest deeper (and 2 per level).
    if len(text) > 2 * MAX_JSON_DEPTH and text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        check_depth(field, value)
    return text


DEFAULT_LIMITS = SizeLimits()


def truncate(text: str, limit: int) -> str:
    """`text` made storable (NUL and lone surrogates replaced) and cut to at most `limit`
    bytes of UTF-8, ending with a marker that says how much was cut."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    data = text.encode(errors="backslashreplace")
    if len(data) <= limit:
        return text if len(data) == len(text) or _valid(text) else data.decode()
    marker = TRUNCATED.format(n=len(data))
    keep = max(limit - len(marker.encode()) - 16, 0)
    cut = data[:keep].decode(errors="ignore")
    return cut + TRUNCATED.format(n=len(data) - len(cut.encode()))


def _valid(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
