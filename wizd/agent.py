"""Agent: the processors of one queue, by job name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from wizd.context import JobContext, WaitForChildren
from wizd.errors import InvalidJob
from wizd.model import check_identifier
from wizd.sync_context import SyncJobContext

__all__ = ["Agent", "JobContext", "Processor", "SyncJobContext", "WaitForChildren"]

# An async processor gets a JobContext; a synchronous one (run in a thread) a SyncJobContext.
Processor: TypeAlias = (
    Callable[[JobContext], Awaitable[Any] | Any] | Callable[[SyncJobContext], Any]
)


class Agent:
    """The processors of one agent's queue. `@agent.processor("summarize")` registers one."""

    def __init__(self, name: str) -> None:
        self.name = check_identifier("agent", name)
        self.processors: dict[str, Processor] = {}
        self._async: dict[str, bool] = {}  # decided once per processor, read once per job

    def processor(self, name: str | None = None) -> Callable[[Processor], Processor]:
        def register(fn: Processor) -> Processor:
            self.add(name or fn.__name__, fn)
            return fn

        return register

    def add(self, name: str, fn: Processor) -> None:
        check_identifier("processor", name)
        if name in self.processors:
            raise InvalidJob("processor", f"{self.name} already has a processor named {name!r}")
        if not callable(fn):
            raise InvalidJob("processor", f"{name!r} is not callable")
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise InvalidJob(
                "processor", f"{name!r} is a generator function: a processor returns its result"
            )
        self.processors[name] = fn
        self._async[name] = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
        )

    def is_async(self, name: str) -> bool:
        return self._async[name]

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, processors={sorted(self.processors)})"
