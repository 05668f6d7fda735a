"""Distributed jobs: a prompt fanned out to sub-tasks sub_1 … sub_N, one query each, that
any worker of the queue runs; the parent completes with their consolidation."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wizd import arguments as arg
from wizd.arguments import Seconds, job_id
from wizd.building import DEFAULT_QUEUE, JobBuilder
from wizd.checks import storable
from wizd.errors import InvalidJob
from wizd.model import (
    SUBTASK_QUERY_LIMIT,
    Job,
    check_identifier,
    check_subtask_id,
    consolidation,
)


class Distributed(JobBuilder):
    """The client's methods for distributed jobs (a base of wizd.Queue)."""

    async def create_distributed(
        self,
        prompt: str,
        subtasks: Sequence[str],
        *,
        queue: str = DEFAULT_QUEUE,
        ttl: Seconds | None = 60,
        name: str = "distributed",
        subtask_name: str = "subtask",
        dispatch: bool = False,
        priority: int | str | None = None,
        attempts: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> Job:
        """A parent and its sub-tasks sub_1 … sub_N, one query each, in one transaction.

        The sub-tasks are held until dispatch() (or dispatch=True); any worker of the queue
        with a `subtask_name` processor runs them. When every sub-task is final, the parent
        ends with the consolidation as its result: completed if every sub-task completed,
        else failed. At the ttl, unfinished sub-tasks
        fail as expired and the consolidation reports them."""
        arg.check_text("prompt", prompt, limit=self.limits.payload)
        check_identifier("queue", queue)  # before the sub-tasks, which would name it theirs
        arg.flag("dispatch", dispatch)
        if isinstance(subtasks, str) or not isinstance(subtasks, Sequence) or not subtasks:
            raise InvalidJob("subtasks", "must be a non-empty list of query strings")
        for i, query in enumerate(subtasks, start=1):
            if not isinstance(query, str) or not query.strip():
                raise InvalidJob(f"subtasks[sub_{i}]", "must be a non-empty string")
            if len(query) > SUBTASK_QUERY_LIMIT:
                raise InvalidJob(
                    f"subtasks[sub_{i}]",
                    f"is {len(query)} characters; the limit is {SUBTASK_QUERY_LIMIT}",
                )
            storable(f"subtasks[sub_{i}]", query)
        children = [
            {
                "name": subtask_name,
                "payload": {"sub_task_id": f"sub_{i}", "query": query, "prompt": prompt},
                "priority": priority,
                "attempts": attempts,
                "tags": tags,
            }
            for i, query in enumerate(subtasks, start=1)
        ]
        parent = self.build(
            name,
            {"prompt": prompt, "subtasks": list(subtasks)},
            queue=queue,
            ttl=ttl,
            priority=priority,
            tags=tags,
            kind="distributed",
            children=[{k: v for k, v in c.items() if v is not None} for c in children],
        )
        held = tuple(replace(child, start_paused=not dispatch) for child in parent.children)
        return (await self.store.enqueue([replace(parent, children=held)]))[0]

    async def dispatch(self, id: int | str | Job) -> int:
        """Make a distributed job's sub-tasks claimable now; returns how many were released."""
        return await self.store.dispatch(job_id(id))

    async def subtasks(self, id: int | str | Job) -> builtins.list[dict[str, Any]]:
        """Each sub-task: sub_task_id, job_id, query, status, worker_id, result, error."""
        parent = await self._distributed(id)
        return [
            {
                "sub_task_id": child.payload.get("sub_task_id"),
                "job_id": child.id,
                "query": child.payload.get("query"),
                "status": child.status.value,
                "worker_id": child.worker_id,
                "attempt": child.attempt,
                "result": child.result,
                "error": child.error,
            }
            for child in await self.store.children(parent.id)
        ]

    async def subtask(self, id: int | str | Job, sub_task_id: str) -> Job:
        """One sub-task's job by its id (`sub_3`)."""
        number = check_subtask_id(sub_task_id)
        parent = await self._distributed(id)
        for child in await self.store.children(parent.id):
            if child.payload.get("sub_task_id") == f"sub_{number}":
                return child
        raise InvalidJob("sub_task_id", f"job {parent.id} has no sub-task {sub_task_id}")

    async def consolidate(self, id: int | str | Job) -> dict[str, Any]:
        """The consolidation: job_id, total_tasks, completed, failed, pending, results
        (each result shown in at most 200 characters), consolidated_at (None until every
        sub-task is final, when it is stored as the parent's result)."""
        parent = await self._distributed(id)
        if parent.final and isinstance(parent.result, dict):  # consolidated
            return parent.result
        return consolidation(parent, await self.store.children(parent.id), None)

    async def _distributed(self, id: int | str | Job) -> Job:
        parent = await self.store.get(job_id(id))
        if parent.kind != "distributed":
            raise InvalidJob("id", f"job {parent.id} is not a distributed job")
        return parent
