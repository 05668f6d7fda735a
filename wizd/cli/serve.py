"""`wizd serve`: the HTTP API (wizd.http) and the web console (wizd.web) over the
configured store."""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import click

from wizd.cli.daemon import single_error
from wizd.cli.options import store_options
from wizd.cli.session import current_settings
from wizd.errors import ConfigError
from wizd.logging import configure_logging, get_logger
from wizd.queue import connect
from wizd.settings import Settings

EXTRA = "the HTTP API and the web console need the http extra: pip install 'wizd[http]'"


def api_server() -> Any:
    """wizd.http.server, or one line saying what to install."""
    try:
        from wizd.http import server
    except ImportError as exc:
        raise ConfigError(f"{EXTRA} ({exc})") from None
    return server


def event_loop() -> dict[str, Any]:
    """uvloop where the http extra installed it (not on Windows): about an eighth less CPU
    per request than asyncio's own loop (bench/http.py)."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


async def serve_api(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests under way."""
    await until_signalled(lambda stop, log: serve_api_on(settings, stop, log))


async def until_signalled(work: Callable[[anyio.Event, Any], Awaitable[None]]) -> None:
    """Run `work(stop, log)`; SIGTERM or SIGINT sets `stop` (signals at the edge)."""
    log = get_logger()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                async for signum in received:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    stop.set()

        tg.start_soon(signals)
        await work(stop, log)
        tg.cancel_scope.cancel()


async def serve_api_on(settings: Settings, stop: anyio.Event, log: Any) -> None:
    """Serve the API on a client of its own until `stop` (also a daemon's, with
    serve_http = true)."""
    server = api_server()
    options = {**settings.store_options(), "create": False}
    async with connect(settings.database, limits=settings.size_limits(), **options) as q:

        def listening(url: str) -> None:
            log.info("http_api_listening", url=url, openapi=f"{url}/v1/openapi.json")

        await server.run_api(q, settings.http_host, settings.http_port, stop, listening)


@click.command(
    help="Serve the HTTP API (JSON under /v1, OpenAPI at /v1/openapi.json, Server-Sent "
    "Events at /v1/events) and the web console (at /) over the configured database, "
    "until SIGTERM or Ctrl-C.\n\n"
    "Callers send `Authorization: Bearer <token>` (`wizd token create`). While the database "
    "holds no token, a server on loopback lets every local caller in; on any other address "
    "it refuses to start. Needs `pip install 'wizd[http]'`."
)
@store_options
@click.option("--host", help="Address to listen on [http_host: 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port, 0: any free one [http_port: 8464]."
)
def serve(host: str | None, port: int | None) -> None:
    settings = current_settings()
    given = {k: v for k, v in (("http_host", host), ("http_port", port)) if v is not None}
    settings = settings.model_copy(update=given)
    configure_logging(settings.log_format, settings.log_level)
    api_server()  # the missing extra is one line before anything starts
    try:
        anyio.run(serve_api, settings, backend_options=event_loop())
    except BaseExceptionGroup as group:
        raise single_error(group) from None
