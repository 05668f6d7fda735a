"""A run's outcome made storable before it is written: the caps on a result and an error.

A processor's result is written by the daemon, not through the client API, so it is capped
here, on the way into the store: a result over SizeLimits.result (or nested too deep, or not
valid Unicode) fails the job, not retried, with an error that says why; the result is not
stored; so does a result that JSON cannot hold (an object, NaN). An error text is
made storable (a NUL or a lone surrogate escaped) and cut to SizeLimits.error with a marker.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wizd.checks import MAX_JSON_DEPTH, SizeLimits, check_depth, truncate
from wizd.errors import InvalidJob
from wizd.model import compact_json
from wizd.store.base import Finish

KEEPS_RESULT = ("completed", "wait_children")


class ResultJSON(str):
    """A result already encoded as JSON text (rows.result_json stores it as it is)."""

    __slots__ = ()


def storable(f: Finish, limits: SizeLimits) -> Finish:
    """`f` within the limits (the same object when nothing had to change)."""
    error = f.error
    if error is not None:
        error = truncate(error if isinstance(error, str) else str(error), limits.error)
    if f.outcome in KEEPS_RESULT and f.result is not None:
        try:
            encoded = encode_result(f.result, limits.result)
        except InvalidJob as exc:
            return replace(f, outcome="failed", result=None, error=str(exc), retry=False)
        # Built directly: dataclasses.replace costs more than the encoding (hot path).
        return Finish(f.job_id, f.worker_id, f.attempt, f.outcome, encoded, error, f.retry, f.delay)
    return f if error is f.error else replace(f, error=error)


def encode_result(result: Any, limit: int) -> ResultJSON:
    """The result as JSON text within `limit` bytes, or InvalidJob naming `result`."""
    try:
        text = compact_json(result)
    except RecursionError:
        raise InvalidJob("result", f"is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (TypeError, ValueError) as exc:  # an object, NaN: stored as a repr it would be lost
        raise InvalidJob("result", f"is not JSON-serialisable: {exc}") from None
    if len(text) > limit:  # a character is at least one byte: too big without encoding
        raise InvalidJob("result", f"is {len(text)} characters as JSON; the limit is {limit} bytes")
    if not text.isascii():  # else one byte a character, and no lone surrogate
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            raise InvalidJob("result", f"is not valid Unicode: {exc.reason}") from None
        if size > limit:
            raise InvalidJob("result", f"is {size} bytes as JSON; the limit is {limit} bytes")
    if len(text) > 2 * MAX_JSON_DEPTH and text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        check_depth("result", result)
    return ResultJSON(text)
