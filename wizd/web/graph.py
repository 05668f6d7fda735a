"""A job's relations as an SVG graph drawn on the server: the jobs it depends on to the
left, the job in the middle, the jobs depending on it to the right, its children below.

Every node is a link to its job's page, coloured by status (a CSS class); each group
shows at most `limit` nodes, the last one saying "+N more" when there are more. Every
label is escaped, so a job's name cannot break out of the SVG."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from wizd.model import Job

W, H = 170, 38  # a node's size
GAP = 12  # between two nodes of a column
COLUMN = W + 70  # from one column to the next
ROW = H + GAP
TOP = 26  # room for the column headings
LIMIT = 8  # nodes a group shows at most
LABEL = 22  # characters of a job's name shown


def label(job: Job) -> str:
    name = job.name if len(job.name) <= LABEL else job.name[: LABEL - 1] + "…"
    return f"#{job.id} {name}"


def node(job: Job, x: float, y: float, css: str = "") -> str:
    title = escape(f"#{job.id} {job.name} · {job.queue} · {job.status}")
    return (
        f'<a href="/jobs/{job.id}" class="node {escape(job.status)}{css}" '
        f'data-job="{job.id}"><title>{title}</title>'
        f'<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6"/>'
        f'<text x="{x + 8}" y="{y + 15}">{escape(label(job))}</text>'
        f'<text x="{x + 8}" y="{y + 30}" class="sub">{escape(job.status)}</text></a>'
    )


def more(count: int, x: float, y: float) -> str:
    return (
        f'<g class="node more"><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6"/>'
        f'<text x="{x + 8}" y="{y + 23}">+{count} more</text></g>'
    )


def edge(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" marker-end="url(#arrow)"/>'


def shown(jobs: Sequence[Job], limit: int) -> tuple[Sequence[Job], int]:
    """The jobs drawn, and how many are left out (the last slot says so)."""
    if len(jobs) <= limit:
        return jobs, 0
    return jobs[: limit - 1], len(jobs) - (limit - 1)


def relations(
    job: Job,
    children: Sequence[Job],
    dependencies: Sequence[Job],
    dependents: Sequence[Job],
    limit: int = LIMIT,
) -> Markup:
    """The graph, as an inline <svg> (empty when the job has no relation)."""
    if not (children or dependencies or dependents):
        return Markup("")
    limit = max(limit, 2)
    deps, deps_more = shown(dependencies, limit)
    after, after_more = shown(dependents, limit)
    kids, kids_more = shown(children, limit)
    rows = max(len(deps) + bool(deps_more), len(after) + bool(after_more), 1)
    height = TOP + rows * ROW
    cx, cy = 10 + COLUMN, TOP + (rows * ROW - GAP - H) / 2
    parts = [node(job, cx, cy, " self")]
    headings = [(10, "depends on", deps), (10 + 2 * COLUMN, "dependents", after)]
    for x, heading, group in headings:
        if group:
            parts.append(f'<text x="{x}" y="14" class="heading">{heading}</text>')
    for i, dep in enumerate(deps):
        y = TOP + i * ROW
        parts += [edge(10 + W, y + H / 2, cx, cy + H / 2), node(dep, 10, y)]
    if deps_more:
        parts.append(more(deps_more, 10, TOP + len(deps) * ROW))
    rx = 10 + 2 * COLUMN
    for i, dependent in enumerate(after):
        y = TOP + i * ROW
        parts += [edge(cx + W, cy + H / 2, rx, y + H / 2), node(dependent, rx, y)]
    if after_more:
        parts.append(more(after_more, rx, TOP + len(after) * ROW))
    if kids or kids_more:
        top = height + 40
        parts.append(f'<text x="10" y="{top - 12}" class="heading">children</text>')
        slots = [*kids, None] if kids_more else list(kids)
        for i, child in enumerate(slots):
            x, y = 10 + (i % 3) * COLUMN, top + (i // 3) * ROW
            if child is None:
                parts.append(more(kids_more, x, y))
            else:
                parts += [edge(cx + W / 2, cy + H, x + W / 2, y), node(child, x, y)]
        height = top + ((len(slots) + 2) // 3) * ROW
    width = 20 + 2 * COLUMN + W
    return Markup(
        f'<svg class="graph" id="graph" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="relations of job {job.id}"><defs><marker id="arrow" viewBox="0 0 8 8" '
        f'refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto">'
        f'<path d="M0,0 L8,4 L0,8 z"/></marker></defs>{"".join(parts)}</svg>'
    )
