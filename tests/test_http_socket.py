"""The HTTP API's listening socket (wizd.http.server.bind): its connections send at once."""

from __future__ import annotations

import asyncio
import socket

from wizd.http.server import bind


async def test_accepted_connections_have_nagle_off() -> None:
    """asyncio sets TCP_NODELAY on a connection only if its socket says IPPROTO_TCP; with
    Nagle's algorithm on, a keep-alive client waited ~40 ms a request for its delayed ACK."""
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    listening = bind("127.0.0.1", 0)
    server = await asyncio.start_server(accepted, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        assert await asyncio.wait_for(nodelay, 10) != 0
        writer.close()
