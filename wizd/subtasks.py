"""A distributed job's sub-tasks: their ids (sub_1, sub_2, …) and the consolidation of
their results into the parent's document."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from wizd.checks import shorten
from wizd.errors import InvalidJob
from wizd.job_fields import JSON
from wizd.jobs import Job
from wizd.states import FINAL, S

SUBTASK_QUERY_LIMIT = 500
SUBTASK_RESULT_SHOWN = 200
SUBTASK_ID_RE = re.compile(r"^sub_[1-9][0-9]{0,5}$")


def check_subtask_id(value: object) -> int:
    """`sub_<n>` (n >= 1) to its 1-based index."""
    if not isinstance(value, str) or not SUBTASK_ID_RE.match(value):
        raise InvalidJob("sub_task_id", f"must look like sub_1, sub_2, …; got {shorten(value)}")
    return int(value[4:])


def shown(result: JSON, limit: int = SUBTASK_RESULT_SHOWN) -> str | None:
    """A result as text of at most `limit` characters (the full result stays on the job)."""
    if result is None:
        return None
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def consolidation(parent: Job, children: Sequence[Job], at: datetime | None) -> dict[str, Any]:
    """The `brain job consolidate` document of a distributed job and its sub-tasks."""
    subtasks = sorted(children, key=lambda j: j.id)
    return {
        "job_id": parent.id,
        "prompt": parent.payload.get("prompt"),
        "total_tasks": len(subtasks),
        "completed": sum(1 for j in subtasks if j.status is S.COMPLETED),
        "failed": sum(1 for j in subtasks if j.status in (S.FAILED, S.CANCELLED)),
        "pending": sum(1 for j in subtasks if j.status not in FINAL),
        "results": [
            {
                "sub_task_id": j.payload.get("sub_task_id"),
                "query": j.payload.get("query"),
                "status": j.status.value,
                "result": shown(j.result),
                "error": j.error,
            }
            for j in subtasks
        ],
        "consolidated_at": at.isoformat() if at else None,
    }
