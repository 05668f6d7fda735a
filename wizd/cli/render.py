"""What operators see: rich tables and trees on a terminal, plain aligned text when piped,
and one JSON document with stable keys for `--json`.

Everything that came from a user or a processor (names, errors, results) is escaped, so a
`[` in it is printed, not read as rich markup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from wizd.model import ALL_STATUSES, Event, Job, QueueLimits, Schedule, WorkerInfo, shown
from wizd.step_model import Step

NAME_WIDTH = 20  # a queue, job or worker name in a terminal's jobs table
NAME_FLOOR = 8  # … cut down to this on a narrow terminal, before the error shrinks
ERROR_MIN_WIDTH = 16
PLAIN_WIDTH = 200  # piped output is not wrapped at 80 columns: lines stay greppable
SYMBOLS = {
    "waiting": "[dim]⧗ waiting[/]",
    "pending": "[white]○ pending[/]",
    "delayed": "[blue]◷ delayed[/]",
    "running": "[yellow]◉ running[/]",
    "waiting_children": "[cyan]⧖ waiting for children[/]",
    "waiting_signal": "[cyan]✉ waiting for a signal[/]",
    "paused": "[magenta]‖ paused[/]",
    "completed": "[green]✓ completed[/]",
    "failed": "[red]✗ failed[/]",
    "cancelled": "[dim red]⊘ cancelled[/]",
}


def make_console() -> Console:
    """Colours, boxes and the terminal's width on a TTY; no ANSI codes when piped."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PLAIN_WIDTH, color_system=None)
    return console


def show(*parts: RenderableType, console: Console | None = None) -> None:
    """Print each part on stdout: rich on a terminal; piped, plain lines without the blanks
    rich pads table rows with."""
    console = console or make_console()
    for part in parts:
        if console.is_terminal:
            console.print(part)
            continue
        with console.capture() as captured:
            console.print(part)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def symbol(status: str) -> str:
    return SYMBOLS.get(str(status), escape(str(status)))


def span(seconds: float | None) -> str:
    """A duration the way people say it: 850ms, 42s, 3m05s, 2h10m, 3d4h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def ago(at: datetime | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    return span(max((now or time.time()) - at.timestamp(), 0.0)) + " ago"


def table(*columns: str) -> Table:
    """A table with a header: ruled on a terminal, plain aligned columns when piped. On a
    narrow terminal only the last column wraps; the others are cut short with an ellipsis."""
    last = len(columns) - 1
    return Table(
        *(Column(name, no_wrap=i < last) for i, name in enumerate(columns)),
        box=box.SIMPLE_HEAD if make_console().is_terminal else None,
        show_edge=False,
        pad_edge=False,
    )


def jobs_table(jobs: Sequence[Job], heartbeat: bool = False) -> Table:
    now = time.time()
    columns = ["id", "queue", "name", "status", "pri", "attempt", "age", "worker", "error"]
    if heartbeat:
        columns.insert(-1, "heartbeat")
    grid = table(*columns)
    rows = []
    for job in jobs:
        cells = [
            str(job.id),
            escape(job.queue),
            escape(job.name),
            symbol(job.status),
            str(job.priority),
            f"{job.attempt}/{job.max_attempts}",
            span(max(now - job.created_at.timestamp(), 0.0)),
            escape(job.worker_id or ""),
            escape(shown(job.error, 60) or ""),
        ]
        if heartbeat:
            cells.insert(-1, ago(job.heartbeat_at, now))
        rows.append(cells)
    console = make_console()
    if console.is_terminal:
        fit_columns(grid, rows, console.width)
    for cells in rows:
        grid.add_row(*cells)
    return grid


def fit_columns(grid: Table, rows: Sequence[Sequence[str]], width: int) -> None:
    """Widths that fit a terminal `width` wide without dropping a column: names are cut
    short first (to NAME_WIDTH, then down to NAME_FLOOR), the last column (the error) takes
    the rest, at least ERROR_MIN_WIDTH, cut with an ellipsis."""
    names = [i for i, c in enumerate(grid.columns) if c.header in ("queue", "name", "worker")]
    widths = [
        max([len(str(column.header))] + [Text.from_markup(r[i]).cell_len for r in rows])
        for i, column in enumerate(grid.columns)
    ]
    for i in names:
        widths[i] = min(widths[i], NAME_WIDTH)
    grid.padding = (0, 1, 0, 0)  # one space after a cell; the box adds a divider
    gap = 2 if grid.box is not None else 1
    room = width - gap * (len(widths) - 1) - sum(widths[:-1])
    while room < ERROR_MIN_WIDTH and any(widths[i] > NAME_FLOOR for i in names):
        widest = max(names, key=lambda i: widths[i])
        widths[widest] -= 1
        room += 1
    widths[-1] = max(room, ERROR_MIN_WIDTH)
    for column, fixed in zip(grid.columns, widths, strict=True):
        column.width, column.no_wrap, column.overflow = fixed, True, "ellipsis"


def timings(job: Job, now: float | None = None) -> dict[str, float | None]:
    """wait: from creation to the (last) start; run: from that start to the end, or to now."""
    now = now or time.time()
    created = job.created_at.timestamp()
    started = job.started_at.timestamp() if job.started_at else None
    if started is not None:
        wait: float | None = max(started - created, 0.0)
    else:
        wait = None if job.final else max(now - created, 0.0)
    run = None
    if started is not None:
        end = job.finished_at.timestamp() if job.finished_at else now
        run = max(end - started, 0.0)
    return {"wait_seconds": wait, "run_seconds": run}


def brief(job: Job) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "queue": job.queue, "status": job.status.value}


def related_line(jobs: Iterable[Job]) -> str:
    return ", ".join(f"#{j.id} {escape(j.name)} {symbol(j.status)}" for j in jobs) or "-"


def job_detail(job: Job, related: Mapping[str, Sequence[Job]]) -> Table:
    """Every field of the job, its timings, attempts, linked jobs and last error."""
    rows: list[tuple[str, str]] = []
    for key, value in job.to_dict().items():
        if key == "status":
            text = symbol(value)
        elif isinstance(value, dict | list):
            text = escape(json.dumps(value, ensure_ascii=False)) if value else "-"
        else:
            text = "-" if value is None else escape(str(value))
        rows.append((key, text))
    times = timings(job)
    rows += [
        ("attempts", f"{job.attempt} of {job.max_attempts}"),
        ("wait", span(times["wait_seconds"])),
        ("run time", span(times["run_seconds"])),
    ]
    rows += [(key, related_line(jobs)) for key, jobs in related.items()]
    rows.append(("last error", escape(job.error or "-")))
    return key_values(rows)


def steps_table(steps: Sequence[Step]) -> Table:
    """A job's durable steps: name#occurrence, status, attempts, time, result or error."""
    grid = table("step", "status", "attempts", "took", "result / error")
    for step in steps:
        done = step.status == "completed"
        shown_value = json.dumps(step.result, ensure_ascii=False) if done else step.error or ""
        status = {"completed": "completed", "waiting": "waiting_signal"}.get(step.status, "failed")
        grid.add_row(
            escape(step.label if step.kind == "step" else f"{step.label} ({step.kind})"),
            symbol(status),
            str(step.attempts),
            span(step.duration),
            escape(shown_value if len(shown_value) <= 60 else shown_value[:59] + "…"),
        )
    return grid


def event_line(event: Event) -> str:
    parts = [f"[dim]{event.at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}[/]"]
    parts.append(event.kind if event.kind != "log" else "[bold]log[/]")
    if event.status:
        parts.append(symbol(event.status))
    if event.attempt:
        parts.append(f"attempt {event.attempt}")
    if event.message:
        parts.append(escape(event.message))
    return " ".join(parts)


def counts_line(counts: Mapping[str, int]) -> str:
    """The non-zero counts in the order of the state diagram: `○ pending 3, ✓ completed 12`."""
    found = [f"{symbol(s.value)} {counts[s.value]}" for s in ALL_STATUSES if counts.get(s.value)]
    return ", ".join(found) or "[dim]no jobs[/]"


def status_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    grid = table("queue", "state", "live workers", "oldest pending", "total", "jobs")
    for row in rows:
        grid.add_row(
            escape(row["queue"]),
            "[magenta]paused[/]" if row["paused"] else "active",
            str(row["live_workers"]),
            span(row["oldest_pending_age_seconds"]),
            str(row["total"]),
            counts_line(row["counts"]),
        )
    return grid


STATES = {"live": "[green]live[/]", "stopped": "[dim]stopped[/]", "dead": "[red]dead[/]"}


def workers_table(rows: Sequence[tuple[WorkerInfo, str]]) -> Table:
    now = time.time()
    grid = table(
        "worker", "host", "pid", "queues", "concurrency", "busy", "metrics", "heartbeat", "state"
    )
    for worker, state in rows:
        grid.add_row(
            escape(worker.id),
            escape(worker.hostname),
            str(worker.pid),
            escape(", ".join(worker.queues)),
            str(worker.concurrency),
            str(worker.busy),
            escape(worker.metrics or "-"),
            ago(worker.heartbeat_at, now),
            STATES[state],
        )
    return grid


def when(schedule: Schedule) -> str:
    """`cron 0 9 * * * Europe/Lisbon` or `every 15m`."""
    if schedule.cron is not None:
        return f"cron {escape(schedule.cron)} {escape(schedule.timezone)}"
    return f"every {span(schedule.every)}"


def schedules_table(schedules: Sequence[Schedule]) -> Table:
    now = time.time()
    grid = table("id", "key", "queue", "name", "when", "catch-up", "next", "last", "state")
    for s in schedules:
        next_in = s.next_at.timestamp() - now
        grid.add_row(
            str(s.id),
            escape(s.key or "-"),
            escape(s.queue),
            escape(s.name),
            when(s),
            s.catch_up,
            "-" if s.paused else (f"in {span(next_in)}" if next_in > 0 else "due"),
            ago(s.last_at, now),
            "[magenta]paused[/]" if s.paused else "active",
        )
    return grid


def limits_table(limits: Sequence[QueueLimits], keys: Mapping[str, int]) -> RenderableType:
    grid = table("limit", "max running", "rate", "burst")
    for item in limits:
        grid.add_row(
            f"queue {escape(item.queue)}",
            "-" if item.max_running is None else str(item.max_running),
            "-" if item.rate is None else str(item.rate),
            "-" if item.burst is None else str(item.burst),
        )
    for key, limit in keys.items():
        grid.add_row(f"concurrency key {escape(key)}", str(limit), "-", "-")
    return grid


def key_values(pairs: Iterable[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in pairs:
        grid.add_row(key, value)
    return grid


def tree_view(node: Mapping[str, Any], statuses: Mapping[int, str]) -> Tree:
    """The delegation tree of `Queue.tree`; each node names the jobs it waits for."""

    def label(n: Mapping[str, Any]) -> str:
        text = (
            f"#{n['id']} {escape(n['name'])} {symbol(n['status'])} "
            f"[dim]attempt {n['attempt']}/{n['max_attempts']}, {span(n['age_seconds'])} old[/]"
        )
        if n["depends_on"]:
            deps = ", ".join(f"#{d} {symbol(statuses.get(d, '?'))}" for d in n["depends_on"])
            text += f"  after {deps}"
        if n["error"]:
            text += f"  [red]{escape(shown(n['error'], 80) or '')}[/]"
        return text

    def grow(branch: Tree, n: Mapping[str, Any]) -> None:
        for child in n["children"]:
            grow(branch.add(label(child)), child)

    root = Tree(label(node))
    grow(root, node)
    return root


def subtasks_view(parent_id: int, subtasks: Sequence[Mapping[str, Any]]) -> Tree:
    """Each sub-task with its status and worker, and its result (or error) under it."""
    root = Tree(f"job {parent_id}: {len(subtasks)} sub-tasks")
    for sub in subtasks:
        worker = f" [dim]worker {escape(sub['worker_id'])}[/]" if sub["worker_id"] else ""
        branch = root.add(
            f"{symbol(sub['status'])} {escape(str(sub['sub_task_id']))} "
            f"[dim](job {sub['job_id']})[/] {escape(str(sub['query']))}{worker}"
        )
        if sub["error"]:
            branch.add(f"[red]error: {escape(sub['error'])}[/]")
        elif sub["result"] is not None:
            branch.add(f"result: {escape(shown(sub['result']) or '')}")
        else:
            branch.add("[dim]no result yet[/]")
    return root


def consolidation_view(doc: Mapping[str, Any]) -> list[RenderableType]:
    head = (
        f"job {doc['job_id']}: {doc['completed']} of {doc['total_tasks']} completed, "
        f"{doc['failed']} failed, {doc['pending']} pending; consolidated "
        + (escape(str(doc["consolidated_at"])) if doc["consolidated_at"] else "not yet")
    )
    grid = table("sub-task", "status", "query", "result / error")
    for item in doc["results"]:
        outcome = item["error"] if item["error"] else item["result"]
        grid.add_row(
            escape(str(item["sub_task_id"])),
            symbol(item["status"]),
            escape(str(item["query"])),
            escape("-" if outcome is None else str(outcome)),
        )
    return [head, grid]
