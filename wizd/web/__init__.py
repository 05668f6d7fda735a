"""wizd's web console: see and steer the queues in a browser, served with the HTTP API at /.

Server-rendered pages (Jinja2 templates, one per page), htmx and Server-Sent Events for
live parts, charts drawn as SVG on the server; htmx is vendored (static/vendor), nothing
is loaded from elsewhere. Like the API, it is a client of wizd.queue (never the store), on
the same tokens: wizd.web.session says how a browser logs in.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from wizd.web import (
    daemons,
    distributed,
    failures,
    job,
    jobs,
    live,
    login,
    overview,
    queues,
    schedules,
    waiting,
)
from wizd.web.pages import environment
from wizd.web.session import Authenticator

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, access: Authenticator, hung_timeout: float | None = None) -> None:
    """Serve the console from `app` (whose state.queue is the client), authenticating with
    `access`. `hung_timeout`: when a daemon's silence makes it dead (the daemons' setting;
    default, the Python API's)."""
    app.state.access = access
    app.state.console_templates = environment()
    if hung_timeout is not None:
        app.state.hung_timeout = hung_timeout
    for module in (
        login,
        overview,
        jobs,
        job,
        live,
        waiting,
        failures,
        queues,
        daemons,
        schedules,
        distributed,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
