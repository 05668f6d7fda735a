"""`wizd serve`: the HTTP API (wizd.http) over the configured store."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import click

from wizd.cli.options import store_options
from wizd.cli.session import current_settings
from wizd.errors import ConfigError
from wizd.logging import configure_logging, get_logger
from wizd.queue import connect
from wizd.settings import Settings

EXTRA = "the HTTP API needs its extra: pip install 'wizd[http]'"


def api_server() -> Any:
    """wizd.http.server, or one line saying what to install."""
    try:
        from wizd.http import server
    except ImportError as exc:
        raise ConfigError(f"{EXTRA} ({exc})") from None
    return server


async def serve_api(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests under way."""
    server = api_server()
    log = get_logger()
    stop = anyio.Event()
    options = {**settings.store_options(), "create": False}
    queue = connect(settings.database, limits=settings.size_limits(), **options)
    async with queue as q, anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                async for signum in received:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    stop.set()

        tg.start_soon(signals)

        def listening(url: str) -> None:
            log.info("http_api_listening", url=url, openapi=f"{url}/v1/openapi.json")

        await server.run_api(q, settings.http_host, settings.http_port, stop, listening)
        tg.cancel_scope.cancel()


@click.command(
    help="Serve the HTTP API (JSON under /v1, OpenAPI at /v1/openapi.json, Server-Sent "
    "Events at /v1/events) over the configured database, until SIGTERM or Ctrl-C.\n\n"
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
    anyio.run(serve_api, settings)
