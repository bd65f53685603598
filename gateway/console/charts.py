"""Chart geometry for the console's inline SVG: plain values (rectangles, labels) computed
here and drawn by the templates, so the pictures need no JavaScript and no charting library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

COLORS = {
    "quiet_hours": "#3b5bdb",
    "scheduled": "#e8590c",
    "sent": "#2b8a3e",
    "failed": "#c92a2a",
    "invalid_token": "#862e9c",
    "pending": "#868e96",
    "active": "#2b8a3e",
    "stale": "#e67700",
    "invalid": "#c92a2a",
}
"""One colour per series, the same on every page; others cycle through :data:`PALETTE`."""
PALETTE = ("#1864ab", "#d9480f", "#5f3dc4", "#087f5b", "#a61e4d", "#495057")


def color_of(series: str, index: int = 0) -> str:
    return COLORS.get(series, PALETTE[index % len(PALETTE)])


@dataclass(frozen=True)
class Segment:
    series: str
    value: int
    x: float
    y: float
    width: float
    height: float
    color: str


@dataclass(frozen=True)
class Column:
    label: str
    total: int
    segments: list[Segment]
    x: float
    width: float
    show_label: bool
    summary: str
    """What the column says in words (its title and the readout on hover)."""


@dataclass(frozen=True)
class StackedColumns:
    """Vertical bars stacked by series; the y axis from 0 to ``top``."""

    width: int
    height: int
    plot_top: int
    plot_bottom: int
    columns: list[Column]
    series: list[tuple[str, str]]  # (name, colour) for the legend
    top: int
    ticks: list[tuple[float, int]]  # (y, value)


def stacked_columns(
    labels: Sequence[str],
    values: Sequence[Mapping[str, int]],
    *,
    series: Sequence[str],
    label_every: int = 1,
    width: int = 760,
    height: int = 260,
) -> StackedColumns:
    """Columns for ``values[i]`` (series → count) labelled ``labels[i]``."""
    left, right, plot_top, plot_bottom = 48, 8, 12, height - 28
    top = max((sum(v.values()) for v in values), default=0)
    top = _nice_ceiling(top)
    step = (width - left - right) / max(len(labels), 1)
    bar = min(step * 0.72, 64.0)  # few columns stay bars, not slabs
    scale = (plot_bottom - plot_top) / top
    columns = []
    for i, (label, counts) in enumerate(zip(labels, values, strict=True)):
        x = left + i * step + (step - bar) / 2
        y = float(plot_bottom)
        segments = []
        for n, name in enumerate(series):
            value = counts.get(name, 0)
            if not value:
                continue
            h = value * scale
            y -= h
            segments.append(Segment(name, value, x, y, bar, h, color_of(name, n)))
        total = sum(counts.get(name, 0) for name in series)
        parts = ", ".join(f"{counts.get(name, 0)} {name}" for name in series)
        columns.append(
            Column(label, total, segments, x, bar, i % label_every == 0, f"{label}: {parts}")
        )
    ticks = [(plot_bottom - (top * k / 4) * scale, round(top * k / 4)) for k in range(5)]
    return StackedColumns(
        width=width,
        height=height,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        columns=columns,
        series=[(name, color_of(name, n)) for n, name in enumerate(series)],
        top=top,
        ticks=ticks,
    )


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    width: float
    y: float
    note: str


@dataclass(frozen=True)
class HorizontalBars:
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: list[Bar]


def horizontal_bars(
    items: Sequence[tuple[str, int, str]], *, width: int = 760, bar_height: int = 26
) -> HorizontalBars:
    """One bar per ``(label, value, note)``, scaled to the largest value."""
    label_width = 190
    room = width - label_width - 150
    largest = max((value for _, value, _ in items), default=0) or 1
    bars = [
        Bar(label, value, value / largest * room, 8 + i * (bar_height + 10), note)
        for i, (label, value, note) in enumerate(items)
    ]
    height = 16 + len(items) * (bar_height + 10)
    return HorizontalBars(width, height, label_width, bar_height, bars)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 4, 6, 8 or 10 times a power of ten that is at least ``value`` (at
    least 4): from 10 up, the four ticks are whole numbers."""
    if value <= 4:
        return 4
    magnitude = 1
    while magnitude * 10 < value:
        magnitude *= 10
    for factor in (1, 2, 4, 6, 8, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude
