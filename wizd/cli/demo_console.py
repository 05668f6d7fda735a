"""`wizd demo --console`: after the demo's run, the web console (and the HTTP API) over the
demo's database on 127.0.0.1, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import socket
from typing import Any

import anyio

from wizd.cli.serve import api_server, until_signalled
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


async def serve_console(database: str, port: int, say: Any) -> None:
    """Serve the console over `database` (its store holds no token: open on loopback),
    saying its URL through `say` once it listens, until SIGINT or SIGTERM."""
    server = api_server()

    async def work(stop: anyio.Event, log: Any) -> None:
        async with connect(database, create=False) as q:
            await server.run_api(q, HOST, free_port(port), stop, lambda url: say(f"{url}/"))

    await until_signalled(work)
