"""Serving the API with uvicorn: `wizd serve`, or a daemon beside its workers
(`serve_http = true`). The socket is bound here, so a taken port or a bad address is one
clear error, and a bind beyond loopback with no token in the store is refused."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn

from wizd.errors import ConfigError
from wizd.http.app import create_app
from wizd.queue import Queue

DEFAULT_PORT = 8464


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is IPPROTO_TCP, not 0 (socket.create_server's):
    asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections of such a socket,
    and with it on, a keep-alive client waited for its delayed ACK, ~40 ms a request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve the HTTP API on {host}:{port}: {why}") from None
    return sock


class Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers (signals stay at wizd's edge),
    saying when it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


async def run_api(
    queue: Queue,
    host: str,
    port: int,
    stop: anyio.Event,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the API over `queue` (open already) until `stop` is set, then finish the
    requests under way. ConfigError if it may not or cannot listen there."""
    loopback = is_loopback(host)
    if not loopback and not any(t.revoked_at is None for t in await queue.tokens()):
        raise ConfigError(
            f"refusing to serve the HTTP API on {host}, beyond loopback, while the store "
            "holds no token: create one (`wizd token create --role admin`) or listen on "
            "127.0.0.1"
        )
    sock = bind(host, port)
    app = create_app(queue, open_on_no_token=loopback, owns_queue=False)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    shown = sock.getsockname()
    where = f"[{shown[0]}]" if ":" in shown[0] else shown[0]
    url = f"http://{where}:{shown[1]}"
    server = Server(config, lambda: on_listening(url) if on_listening else None)

    app.state.closing = anyio.Event()  # ends the console's live streams (wizd.web.live)

    async def until_stopped() -> None:
        await stop.wait()
        server.should_exit = True
        app.state.closing.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(until_stopped)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()
    finally:
        sock.close()
