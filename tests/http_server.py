"""A real HTTP API server for the tests: uvicorn on a socket of its own, in a thread of this
process with its own event loop (wizd.http.server.run_api), over a store given by URL; and
small helpers to call it with httpx."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
from anyio.from_thread import start_blocking_portal

import wizd
from wizd.http.server import run_api


@contextmanager
def api_server(url: str, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the API over the store at `url` on a free port; yields its base URL."""
    listening = threading.Event()
    where: list[str] = []
    with start_blocking_portal() as portal:
        stop = portal.call(anyio.Event)

        async def main() -> None:
            async with wizd.connect(url) as q:

                def up(base: str) -> None:
                    where.append(base)
                    listening.set()

                await run_api(q, host, 0, stop, up)

        done = portal.start_task_soon(main)
        while not listening.wait(0.05):
            if done.done():
                done.result()  # raises what stopped it
        try:
            yield where[0]
        finally:
            portal.call(stop.set)
            done.result(timeout=30)


def client(base: str, token: str | None = None, **options: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=30, **options)


def is_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem document of this status (naming `field`)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["title"], body
    assert body["detail"], body
    if field is not None:
        assert body.get("field") == field, body
    return body
