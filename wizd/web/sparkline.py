"""Sparklines as inline SVG, drawn on the server: no chart library, no script."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT = 120, 24


def sparkline(values: Sequence[int], css: str, label: str) -> Markup:
    """A polyline of `values` (oldest first) scaled to the largest, over a baseline; its
    <title> says the total, for a tooltip and for screen readers."""
    top = max(values, default=0) or 1
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - 1 - (v / top) * (HEIGHT - 2):.1f}" for i, v in enumerate(values)
    )
    title = f"{label}: {sum(values)} in the last hour, at most {max(values, default=0)} a minute"
    return Markup(
        f'<svg class="spark {css}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>'
        f'<line x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}" class="base"/>'
        f'<polyline points="{points}" fill="none"/></svg>'
    )
