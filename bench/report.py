"""The results of `python -m bench run`: the machine, and the JSON, Markdown and PNG files.

Every file is written to a .tmp name first and then renamed, so a results folder never holds
half a file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import stores

METHOD = (
    "Workers are real processes started as their documentation says, each system with its "
    "own fresh store. Every job appends one line (job number, start and end time) to a file "
    "of its worker process; the harness reads these files from outside, and a figure is kept "
    "only if every job ran exactly once and the system's own store then holds nothing "
    "unfinished. Throughput is jobs / (from the first job's start until the last job has "
    "ended and the store has confirmed every completion, polled every 2 ms). Steady state "
    "runs on the burn-down's workers: a producer tops the queue up to the target depth, and "
    "the figure is the jobs that ended inside the window / the window. Pickup latency = job "
    "start - the moment its enqueue call returned, so it includes the wait behind the queued "
    "jobs. RSS is the peak of the summed resident memory of the worker processes (children "
    "included) during the burn-down, sampled every 50 ms."
)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    memory = "unknown"
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg, redis = stores.postgres_settings(), stores.redis_settings()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg["server_version"],
        "postgresql_settings": pg,
        "redis": redis["redis_version"],
        "redis_settings": redis,
    }


# -- cells ---------------------------------------------------------------------------------


def cell(figure: dict[str, Any], latency: bool = False) -> str:
    """One figure as table text: the number, or FAILED / n/a with the reason."""
    if "error" in figure:
        return str(figure["error"])
    if "na" in figure:
        return f"n/a ({figure['na']})"
    value = figure["value"]
    text = f"{value:,.1f} {figure['unit']}" if figure["unit"] == "MiB" else f"{value:,.0f}"
    if latency and "latency_p50_ms" in figure:
        text += f" (p50 {figure['latency_p50_ms']:,.1f} ms, p99 {figure['latency_p99_ms']:,.1f} ms)"
    return text


class Notes:
    """Footnotes for FAILED and n/a cells, numbered once per distinct reason."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def cell(self, figure: dict[str, Any], show: Callable[[dict[str, Any]], str]) -> str:
        if "error" in figure:
            return f"FAILED {self.mark(figure['error'])}"
        if "na" in figure:
            return f"n/a {self.mark(figure['na'])}"
        return show(figure)


def number(figure: dict[str, Any]) -> str:
    return f"{figure['value']:,.0f}"


def latency(figure: dict[str, Any]) -> str:
    return (
        f"{figure['latency_p50_ms']:,.0f} / {figure['latency_p99_ms']:,.0f} "
        f"({figure['mean_depth']:,.0f})"
    )


def mib(figure: dict[str, Any]) -> str:
    return f"{figure['value']:,.1f}"


THROUGHPUT = [
    ("enqueue_one", "enqueue 1 by 1", number),
    ("enqueue_bulk", "enqueue bulk", number),
    ("burn_down_1", "burn-down 1 proc", number),
    ("burn_down_2", "burn-down 2 procs", number),
    ("steady_1", "steady 1 proc", number),
    ("steady_2", "steady 2 procs", number),
    ("sleep_1", "1 ms jobs c=1", number),
    ("sleep_10", "1 ms jobs c=10", number),
    ("sleep_100", "1 ms jobs c=100", number),
]
OTHERS = [
    ("steady_1", "pickup p50 / p99 ms (mean depth), 1 proc", latency),
    ("steady_2", "pickup p50 / p99 ms (mean depth), 2 procs", latency),
    ("rss_1", "peak RSS MiB, 1 proc", mib),
    ("rss_2", "peak RSS MiB, 2 procs", mib),
]


def table(
    systems: dict[str, Any],
    columns: Sequence[tuple[str, str, Callable[[dict[str, Any]], str]]],
    notes: Notes,
) -> list[str]:
    lines = [
        "| system | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for key, system in systems.items():
        cells = [notes.cell(system["workloads"][w], show) for w, _, show in columns]
        lines.append(f"| {name(key, system)} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    m, s, systems = results["machine"], results["sizes"], results["systems"]
    pg, rd = m["postgresql_settings"], m["redis_settings"]
    notes = Notes()
    longer = ", ".join(
        f"{name(k, systems[k])} {n:,}" for k, n in (results.get("burn_down_of") or {}).items()
    )
    if longer:
        longer = f" ({longer}: fast enough that a shorter burn-down would last under a second)"
    lines = [
        f"# Job queues compared on one machine ({results['mode']} run)",
        "",
        f"Run on {results['date']} with `{results['command']}` in {results['seconds']:.0f} s. "
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}; "
        f"Python {m['python']}; SQLite {m['sqlite']}; PostgreSQL {m['postgresql']}, "
        f"fsync={pg.get('fsync', '?')}, synchronous_commit={pg.get('synchronous_commit', '?')};"
        f" Redis {m['redis']}, appendonly={rd.get('appendonly', '?')}, "
        f"save='{rd.get('save', '?')}' (without persistence a Redis restart loses every job "
        "it holds, unlike a committed SQLite or PostgreSQL row).",
        "",
        f"Sizes: enqueue {s['enqueue']:,} jobs; burn-down {s['burn_down']:,} jobs{longer}; steady "
        f"state {s['steady_seconds']:g} s at a depth of {s['depth']:,}; 1 ms jobs "
        + ", ".join(f"{n:,} at concurrency {c}" for c, n in s["sleep"].items())
        + ". One run each on a shared machine: compare systems within a run, not across runs.",
        "",
        "Throughput, jobs/s (higher is better):",
        "",
        *table(systems, THROUGHPUT, notes),
        "",
        "Pickup latency in the steady state (enqueue call returned -> job started) includes the "
        "wait behind the jobs queued before it; their mean number is in brackets. Where it is "
        "far below the target depth, the one producer process (one call per job where there "
        "is no bulk enqueue, sharing the two cores with the workers) was the bottleneck, not "
        "the workers. Memory is that of the worker processes:",
        "",
        *table(systems, OTHERS, notes),
    ]
    if notes.texts:
        lines += ["", "Notes:", ""]
        lines += [f"{n}. {text}" for n, text in enumerate(notes.texts, 1)]
    lines += ["", "How it is measured: " + results["method"], "", "Settings per system:", ""]
    for key, system in systems.items():
        lines.append(f"- **{name(key, system)}** {system.get('version', '')}:")
        for setting, value in system.get("settings", {}).items():
            lines.append(f"  - {setting}: {value}")
    return "\n".join(lines) + "\n"


def name(key: str, system: dict[str, Any]) -> str:
    return str(system.get("label") or key)


# -- chart ---------------------------------------------------------------------------------

PANELS = [
    *[(w, title + ", jobs/s") for w, title, _ in THROUGHPUT],
    ("steady_1", "pickup latency p99 ms, 1 proc (lower is better)"),
    ("rss_1", "peak RSS MiB, 1 proc (lower is better)"),
    ("rss_2", "peak RSS MiB, 2 procs (lower is better)"),
]


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = results["systems"]
    labels = [name(key, s) for key, s in systems.items()]
    fig, axes = plt.subplots(4, 3, figsize=(18, 20))
    for ax, (workload, title) in zip(axes.flat, PANELS, strict=True):
        values, texts = [], []
        for system in systems.values():
            figure = system["workloads"][workload]
            if "value" not in figure:
                values.append(0.0)
                texts.append("FAILED" if "error" in figure else "n/a")
                continue
            value = figure["latency_p99_ms"] if title.startswith("pickup") else figure["value"]
            values.append(value)
            texts.append(f"{value:,.0f}" if value >= 10 else f"{value:,.1f}")
        bars = ax.barh(range(len(labels)), values, color="#4C72B0")
        for bar, label, key in zip(bars, texts, systems, strict=True):
            if key.startswith("wizd"):
                bar.set_color("#DD8452")
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {label}",
                    va="center", fontsize=8)  # fmt: skip
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.25)
    m = results["machine"]
    fig.suptitle(
        f"Job queues on one machine, {results['mode']} run {results['date']}: "
        f"{m['cores']} cores, {m['memory']}, Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


# -- files ---------------------------------------------------------------------------------


def write(results: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.md", folder / f"{stem}.png"]
    tmp = [p.with_name(p.name + ".tmp") for p in paths]
    tmp[0].write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp[1].write_text(markdown(results))
    chart(results, tmp[2])
    for t, p in zip(tmp, paths, strict=True):
        os.replace(t, p)
    return paths
