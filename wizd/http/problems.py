"""Errors as RFC 9457 problem documents: every error a client can cause is a 4xx naming
the field at fault; nothing a client sends gives a 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from wizd import errors

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)

# A wizd error's HTTP status, by class (the first that matches, subclasses first).
STATUSES: tuple[tuple[type[errors.WizdError], int], ...] = (
    (errors.DuplicateJob, 409),
    (errors.DependencyError, 422),
    (errors.InvalidJob, 422),
    (errors.JobNotFound, 404),
    (errors.ScheduleNotFound, 404),
    (errors.TokenNotFound, 404),
    (errors.QueueNotFound, 404),
    (errors.IllegalTransition, 409),
    (errors.QueueNotEmpty, 409),
    (errors.CursorExpired, 410),
    (errors.ConfigError, 422),
)


class Problem(BaseModel):
    """An error (RFC 9457). `field` names the request field at fault, when one is."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None


def problem(
    status: int, title: str, detail: str, field: str | None = None, **headers: str
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers or None)


def status_of(exc: errors.WizdError) -> int:
    for cls, status in STATUSES:
        if isinstance(exc, cls):
            return status
    return 503 if isinstance(exc, errors.StoreError) else 400


TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "Store unavailable",
}


# What any operation may answer with a problem document.
DOCUMENTED = (400, 401, 403, 404, 409, 413, 422, 503)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (default: DOCUMENTED), each a problem
    document, so the schema names every status a client can get."""
    schema = Problem.model_json_schema()
    return {
        status: {"description": TITLES[status], "content": {MEDIA_TYPE: {"schema": schema}}}
        for status in statuses or DOCUMENTED
    }


def place(loc: Any) -> str | None:
    """A validation error's location as a field name: `jobs[0].name`, `status[1]`, `job_id`
    (where it came from, body, query, path or header, left out)."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header", "cookie") and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def of_wizd_error(exc: errors.WizdError) -> JSONResponse:
    """The problem document of a wizd error (the app's handler, and the fast path's)."""
    status = status_of(exc)
    return problem(status, TITLES.get(status, "Error"), str(exc), getattr(exc, "field", None))


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A 500 for any other error (the app's handler, and the fast path's)."""
    log.exception("http_unexpected_error path=%s", request.url.path)
    return problem(500, "Internal error", "the server failed; its log says why")


def install(app: FastAPI) -> None:
    """Turn wizd errors, request validation and HTTP errors into problem documents."""

    async def wizd_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.WizdError)
        return of_wizd_error(exc)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        field = place(first.get("loc", ()))
        message = str(first.get("msg", "invalid request"))
        detail = f"{field}: {message}" if field else message
        return problem(422, TITLES[422], detail, field)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        return problem(
            exc.status_code, TITLES.get(exc.status_code, "Error"), str(exc.detail), **headers
        )

    app.add_exception_handler(errors.WizdError, wizd_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
