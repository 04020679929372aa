"""Small charts drawn on the server as inline SVG: no script, no library, nothing to load.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>``
that says in words what the bars or the line show (screen readers read that, not the
shapes). Colours and strokes come from classes styled in ``static/pages.css``, since the
console's Content-Security-Policy allows no inline styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 180
#: Room for the axis labels: left of the plot and below it.
LEFT = 96
BOTTOM = 22
TOP = 8


@dataclass(frozen=True, slots=True)
class Axis:
    """The chart's captions: the first and last x label, and how a y value is written."""

    start: str
    end: str
    unit: str = ""


def nice_top(value: float) -> float:
    """The round number at or above ``value`` the y axis ends at (1, 2, 2.5, 5 × 10ⁿ)."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _frame(chart_id: str, title: str, desc: str, top: float, axis: Axis) -> list[str]:
    plot_h = HEIGHT - BOTTOM - TOP
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH}" y2="{TOP}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP + plot_h / 2:.1f}" x2="{WIDTH}"'
        f' y2="{TOP + plot_h / 2:.1f}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}"/>',
        f'<text class="label" x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">'
        f"{escape(_number(top))}{escape(axis.unit)}</text>",
        f'<text class="label" x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
        f'<text class="label" x="{LEFT}" y="{HEIGHT - 6}">{escape(axis.start)}</text>',
        f'<text class="label" x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end">'
        f"{escape(axis.end)}</text>",
    ]


def bars(
    chart_id: str, title: str, desc: str, values: Sequence[float | None], axis: Axis
) -> Markup:
    """One bar per value, oldest on the left; None is a gap (no measurement then)."""
    top = nice_top(max((v for v in values if v is not None), default=0.0))
    parts = _frame(chart_id, title, desc, top, axis)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(values), 1)
    gap = min(2.0, step / 4)
    parts.append('<g class="bars">')
    for index, value in enumerate(values):
        if not value:
            continue
        h = max(plot_h * value / top, 1.0)
        x = LEFT + index * step + gap / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{step - gap:.1f}"'
            f' height="{h:.1f}"/>'
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))


def line(
    chart_id: str, title: str, desc: str, points: Sequence[tuple[float, float]], axis: Axis
) -> Markup:
    """A line through ``points`` (x from 0 to 1 across the chart, y ≥ 0), with the area
    under it shaded."""
    top = nice_top(max((y for _, y in points), default=0.0))
    parts = _frame(chart_id, title, desc, top, axis)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    if points:
        coords = [
            (LEFT + plot_w * min(max(x, 0.0), 1.0), TOP + plot_h - plot_h * y / top)
            for x, y in points
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        base = TOP + plot_h
        area = f"{coords[0][0]:.1f},{base:.1f} {path} {coords[-1][0]:.1f},{base:.1f}"
        parts.append(f'<polygon class="area" points="{area}"/>')
        parts.append(f'<polyline class="line" points="{path}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
