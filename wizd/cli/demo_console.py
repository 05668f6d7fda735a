"""`wizd demo --console`: after the demo's run, the web console (and the HTTP API) over the
demo's database on 127.0.0.1, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import socket
from typing import Any

import anyio

from wizd.errors import ConfigError
from wizd.logging import get_logger
from wizd.queue import connect

HOST = "127.0.0.1"
TRIES = 20  # ports tried from http_port on before any free one


def free_port(wanted: int) -> int:
    """`wanted`, or the next free port after it (of TRIES), or any free one (0)."""
    if wanted == 0:
        return 0
    for port in range(wanted, min(wanted + TRIES, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    return 0


def console_server() -> Any:
    """wizd.http.server, or one line saying what to install."""
    try:
        from wizd.http import server
    except ImportError as exc:
        raise ConfigError(
            f"the web console needs the http extra: pip install 'wizd[http]' ({exc})"
        ) from None
    return server


async def serve_console(database: str, port: int, say: Any) -> None:
    """Serve the console over `database` (its store holds no token: open on loopback),
    saying its URL through `say` once it listens, until SIGINT or SIGTERM."""
    server = console_server()
    log = get_logger()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                async for signum in received:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    stop.set()

        tg.start_soon(signals)
        async with connect(database, create=False) as q:
            await server.run_api(q, HOST, free_port(port), stop, lambda url: say(f"{url}/"))
        tg.cancel_scope.cancel()
