"""Which port a daemon's metrics endpoint listens on.

A port set explicitly (flag, environment or file: `metrics_port`) is that port or a start-up
error. Left unset, the daemon takes `metrics_base_port` (9464), or, when another process
holds it (a second daemon on the host), the next free port of the PORT_SEARCH after it, with
a warning; `wizd agents` shows which.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

from wizd.errors import ConfigError

PORT_SEARCH = 20  # ports tried after the base port when metrics_port is not set
T = TypeVar("T")


def listen(bind: Callable[[int], T], host: str, port: int | None, base: int) -> tuple[T, list[int]]:
    """`bind(port)` on the explicit `port`, or on the first free port from `base`; returns
    what bind returned and the ports found taken. Raises ConfigError (one line) when the
    explicit port cannot be bound, or no port of the search is free."""
    if port is not None:
        try:
            return bind(port), []
        except OSError as exc:
            raise ConfigError(
                f"metrics_port: cannot listen on {host}:{port}: {reason(exc)} (set explicitly; "
                "leave metrics_port unset to take the next free port, or 0 to turn metrics off)"
            ) from None
    taken: list[int] = []
    last = min(base + PORT_SEARCH, 65535)
    for candidate in range(base, last + 1):
        try:
            return bind(candidate), taken
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(
                    f"metrics_host: cannot listen on {host}:{candidate}: {reason(exc)}"
                ) from None
            taken.append(candidate)
    raise ConfigError(
        f"metrics_port: ports {base}-{last} on {host} are all in use; "
        "set metrics_port to a free one, or 0 to turn metrics off"
    )


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
