"""Recurring jobs: the client's methods to declare, read, pause and fire schedules."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from typing_extensions import Unpack

from wizd import arguments as arg
from wizd.arguments import Seconds, schedule_ref, seconds
from wizd.building import DEFAULT_QUEUE, JobBuilder
from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.model import (
    Backoff,
    Job,
    JobStatus,
    NewSchedule,
    Schedule,
    ScheduleRun,
    check_identifier,
    job_template,
)
from wizd.recurrence import CATCH_UP, Timing
from wizd.store.base import Fired


class ScheduleJobOptions(TypedDict, total=False):
    """The options of the job a schedule enqueues (Queue.schedule's keyword arguments)."""

    priority: int | str | None
    attempts: int | None
    backoff: Backoff | Mapping[str, Any] | None
    timeout: Seconds | None
    ttl: Seconds | None
    tags: Sequence[str] | None
    context: Mapping[str, Any] | None
    unique_key: str | None
    unique_for: Seconds | None
    unique_states: Iterable[str | JobStatus] | None
    on_conflict: str | None
    concurrency_key: str | None


SCHEDULE_JOB_KEYS = tuple(ScheduleJobOptions.__annotations__)


class Scheduling(JobBuilder):
    """The client's methods for schedules (a base of wizd.Queue)."""

    async def schedule(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        cron: str | None = None,
        every: Seconds | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
        key: str | None = None,
        paused: bool = False,
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Enqueue `name` with `payload` at every occurrence of a cron expression in
        `timezone` ("0 9 * * *", "Europe/Lisbon"), or every `every` seconds from now.

        The daemons enqueue each due occurrence once, however many run. Occurrences missed
        while no daemon ran follow catch_up: latest (enqueue the last one), all, or none.
        options are the job's (priority, attempts, backoff, timeout, ttl, tags, context,
        unique_key, unique_for, unique_states, on_conflict, concurrency_key). With a `key`,
        a schedule that exists is updated instead, so a program may declare its schedules
        at every start."""
        unknown = set(options) - set(SCHEDULE_JOB_KEYS)
        if unknown:
            raise InvalidJob(
                sorted(unknown)[0],
                f"unknown schedule option; known: {', '.join(SCHEDULE_JOB_KEYS)}",
            )
        arg.text("cron", cron, 1000)
        arg.check_text("timezone", timezone, limit=1000)
        timing = Timing(cron, None if every is None else seconds("every", every), timezone)
        if catch_up not in CATCH_UP:
            raise InvalidJob(
                "catch_up", f"must be one of {', '.join(CATCH_UP)}, got {shorten(catch_up)}"
            )
        if key is not None:
            check_identifier("key", key)
            if key.isdigit():
                raise InvalidJob("key", f"{shorten(key)} would read as a schedule id; use a name")
        new = self.build(name, payload, queue=queue, **options)
        spec = NewSchedule(
            key=key,
            queue=new.queue,
            name=new.name,
            payload=new.payload,
            options=json.dumps(job_template(new), separators=(",", ":")),
            cron=timing.cron,
            every=timing.every,
            timezone=timing.timezone,
            catch_up=catch_up,
            paused=arg.flag("paused", paused),
        )
        return await self.store.create_schedule(spec)

    async def schedules(self) -> builtins.list[Schedule]:
        return await self.store.schedules()

    async def get_schedule(self, ref: int | str | Schedule) -> Schedule:
        """A schedule by id or key."""
        return await self.store.get_schedule(schedule_ref(ref))

    async def unschedule(self, ref: int | str | Schedule) -> Schedule:
        """Remove a schedule (jobs it enqueued stay); returns it as it was."""
        return await self.store.delete_schedule(schedule_ref(ref))

    async def pause_schedule(self, ref: int | str | Schedule) -> Schedule:
        return await self.store.set_schedule_paused(schedule_ref(ref), True)

    async def resume_schedule(self, ref: int | str | Schedule) -> Schedule:
        """Fire again from the next occurrence after now (the pause is not caught up)."""
        return await self.store.set_schedule_paused(schedule_ref(ref), False)

    async def run_schedule(self, ref: int | str | Schedule) -> Job:
        """Enqueue the schedule's job once, now, from its template (name, payload, options),
        whether or not it is paused; its occurrences stay as they were (this is not one)."""
        found = await self.get_schedule(ref)
        new = self.build(found.name, found.payload, queue=found.queue, **found.options)
        return (await self.store.enqueue([new]))[0]

    async def schedule_runs(
        self, ref: int | str | Schedule, limit: int = 20
    ) -> builtins.list[ScheduleRun]:
        """The schedule's latest enqueued occurrences (fire time, job id), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidJob("limit", f"must be between 1 and 10000, got {shorten(limit)}")
        return await self.store.schedule_runs(schedule_ref(ref), limit)

    async def fire_schedules(self) -> Fired:
        """Enqueue every due occurrence now, as the daemons do (each occurrence once)."""
        return await self.store.fire_schedules()
