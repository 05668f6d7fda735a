"""structlog set-up: JSON lines when not on a TTY, readable output on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route wizd's structlog events to `stream` (stderr) as JSON or console lines."""
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if fmt == "json" else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (psycopg's pool, for one): their records
    # become events of the same stream and format, at warning and above.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(max(LEVELS.get(level, logging.INFO), logging.WARNING))


class _ToStructlog(logging.Handler):
    """A standard-library log record as a structlog event named by its logger."""

    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger("wizd").bind(logger=record.name)
        method = getattr(log, record.levelname.lower(), log.warning)
        method("library_log", message=record.getMessage())


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("wizd").bind(**context)
