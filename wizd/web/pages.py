"""Rendering the console's pages: the Jinja2 templates, their filters, and the route class
every console route uses, which turns a missing session into the login form and an error
into an HTML page with the right status (the API's problem documents are for programs)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException

from wizd import errors
from wizd.web.session import CSRF_HEADER, NONCE, LoginNeeded, set_cookie

TEMPLATES = Path(__file__).parent / "templates"

# A wizd error's HTTP status, by class (subclasses first), as the API answers it.
STATUSES: tuple[tuple[type[errors.WizdError], int], ...] = (
    (errors.DuplicateJob, 409),
    (errors.InvalidJob, 422),
    (errors.JobNotFound, 404),
    (errors.QueueNotFound, 404),
    (errors.ScheduleNotFound, 404),
    (errors.IllegalTransition, 409),
    (errors.StoreError, 503),
)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, age=age, pretty=pretty, when=when, duration=duration)
    env.globals.update(CSRF_HEADER=CSRF_HEADER, quote=quote)
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(html(request, template, **context), status_code=status)


def html(request: Request, template: str, **context: Any) -> str:
    env: Environment = request.app.state.console_templates
    return env.get_template(template).render(request=request, **context)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def status_of(exc: errors.WizdError) -> int:
    return next((status for cls, status in STATUSES if isinstance(exc, cls)), 400)


class Page(APIRoute):
    """A console route: LoginNeeded sends a page to /login (a fragment or stream: 401);
    wizd errors, HTTP errors and bad parameters become an HTML error page; a new CSRF
    nonce is set as a cookie on the way out."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginNeeded:
                if request.method == "GET" and not request.headers.get("HX-Request"):
                    back = quote(
                        request.url.path + ("?" + request.url.query if request.url.query else "")
                    )
                    return RedirectResponse(f"/login?next={back}", status_code=303)
                return error_page(request, 401, "log in first")
            except errors.WizdError as exc:
                response = error_page(request, status_of(exc), str(exc))
            except HTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())[1:])
                response = error_page(request, 422, f"{where}: {first.get('msg', 'invalid')}")
            nonce = getattr(request.state, "new_nonce", None)
            if nonce is not None:
                set_cookie(request, response, NONCE, nonce)
            return response

        return run


# -- filters -------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    """A span of seconds, short: 42s, 5m, 3h 10m, 2d 4h."""
    if seconds is None:
        return "–"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def ago(at: datetime | None) -> str:
    if at is None:
        return "–"
    delta = time.time() - at.timestamp()
    return f"in {age(-delta)}" if delta < 0 else f"{age(delta)} ago"


def when(at: datetime | None) -> str:
    return "–" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "–"
    stop = end.timestamp() if end is not None else time.time()
    span = stop - start.timestamp()
    return f"{span * 1000:.0f} ms" if span < 1 else age(span)


def pretty(value: Any) -> str:
    """JSON, indented, keys in their order."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
