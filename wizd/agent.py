"""Agent: the processors of one queue, by job name; JobContext: what a processor is given."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from wizd import arguments
from wizd.errors import InvalidJob, LostJob
from wizd.model import Job, check_identifier
from wizd.queue import Queue

Processor: TypeAlias = Callable[["JobContext"], Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True)
class WaitForChildren:
    """Returned by a processor: free my slot; run me again once every child is final."""

    note: Any = None


class JobContext:
    """Given to a processor: the job, and ways to report on it while it runs."""

    def __init__(self, job: Job, queue: Queue, worker_id: str) -> None:
        self.job = job
        self.queue = queue
        self.worker_id = worker_id
        # Set by the daemon before it cancels a run that an operator force-killed:
        # processors holding external resources (subprocesses) should not wait politely.
        self.force_kill = False

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def id(self) -> int:
        return self.job.id

    async def progress(self, value: float | None, message: str | None = None) -> None:
        """Record progress (0.0-1.0) and an optional message. Raises LostJob if the run was
        reaped or cancelled meanwhile."""
        value = arguments.progress(value)
        limit = self.queue.limits.log
        message = None if message is None else arguments.log_line(message, limit)
        owned = await self.queue.store.progress(
            self.job.id, self.worker_id, self.job.attempt, value, message
        )
        if not owned:
            raise LostJob(f"job {self.job.id} attempt {self.job.attempt} is no longer ours")

    async def log(self, message: str) -> None:
        """Append a line to the job's log (wizd logs ID)."""
        line = arguments.log_line(message, self.queue.limits.log)
        await self.queue.store.log(
            self.job.id, line, worker_id=self.worker_id, attempt=self.job.attempt
        )

    async def spawn(
        self, name: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> Job:
        """Enqueue a child job (in this job's queue unless `queue=` says otherwise)."""
        if "parent" in options:
            raise InvalidJob("parent", "spawn makes a child of this job: leave parent out")
        options.setdefault("queue", self.job.queue)
        return await self.queue.enqueue(name, payload, parent=self.job.id, **options)

    async def children(self) -> list[Job]:
        """This job's children with their status, result and error."""
        return await self.queue.list(parent=self.job.id, sort="id", order="asc", limit=10_000)

    def wait_for_children(self, note: Any = None) -> WaitForChildren:
        """`return ctx.wait_for_children()`: run again when all children are final."""
        return WaitForChildren(note)


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
        self.processors[name] = fn
        self._async[name] = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
        )

    def is_async(self, name: str) -> bool:
        return self._async[name]

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, processors={sorted(self.processors)})"
