"""Inline SVG charts computed on the server: a metric's trend across runs (a line with a
point per run) and a metric compared across selected runs (one bar per run).

Only geometry is computed here; the templates draw it, with each point's value and run as
text (a ``<title>``), so the numbers are there for a screen reader and a hover alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

W = 720
H = 220
M_LEFT = 56
M_RIGHT = 16
M_TOP = 14
M_BOTTOM = 28
NONE = "\u2013"  # an en dash: no value


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    value: float
    label: str  # the run (and its date)
    state: str
    href: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class LineChart:
    points: list[Point]
    path: str
    ticks: list[Tick]
    width: int = W
    height: int = H


@dataclass(frozen=True, slots=True)
class BarItem:
    x: float
    y: float
    w: float
    h: float
    value: float
    label: str


@dataclass(frozen=True, slots=True)
class BarChart:
    key: str
    bars: list[BarItem]
    ticks: list[Tick]
    width: int
    height: int = 160


def fmt(v: float) -> str:
    if math.isnan(v):
        return NONE
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.4g}"
    return f"{v:.3e}"


def _range(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, y_of: object, n: int = 4) -> list[Tick]:
    out = []
    for i in range(n + 1):
        v = lo + (hi - lo) * i / n
        out.append(Tick(y_of(v), fmt(v)))  # type: ignore[operator]
    return out


def line_chart(
    values: Sequence[tuple[float, str, str, str]], width: int = W, height: int = H
) -> LineChart:
    """``values``: (value, label, state, href) in run order, oldest first."""
    lo, hi = _range([v for v, *_ in values])
    inner_w = width - M_LEFT - M_RIGHT
    inner_h = height - M_TOP - M_BOTTOM

    def y_of(v: float) -> float:
        return round(M_TOP + inner_h * (1 - (v - lo) / (hi - lo)), 2)

    n = len(values)
    points = []
    for i, (v, label, state, href) in enumerate(values):
        x = M_LEFT + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)
        y = y_of(v) if math.isfinite(v) else float(height - M_BOTTOM)
        points.append(Point(round(x, 2), y, v, label, state, href))
    finite = [p for p in points if math.isfinite(p.value)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{p.x:g},{p.y:g}" for i, p in enumerate(finite))
    return LineChart(points, path, _ticks(lo, hi, y_of), width, height)


def bar_chart(key: str, values: Sequence[tuple[float, str]], height: int = 160) -> BarChart:
    """One bar per run (``values``: (value, run label)); the axis includes zero."""
    finite = [v for v, _ in values if math.isfinite(v)]
    lo = min([0.0, *finite])
    hi = max([0.0, *finite])
    if lo == hi:
        hi = lo + 1.0
    slot = 64
    width = M_LEFT + M_RIGHT + slot * max(1, len(values))
    inner_h = height - M_TOP - M_BOTTOM

    def y_of(v: float) -> float:
        return round(M_TOP + inner_h * (1 - (v - lo) / (hi - lo)), 2)

    zero = y_of(0.0)
    bars = []
    for i, (v, label) in enumerate(values):
        x = M_LEFT + slot * i + 12
        if not math.isfinite(v):
            bars.append(BarItem(x, zero, slot - 24, 0, v, label))
            continue
        y = y_of(v)
        bars.append(BarItem(x, min(y, zero), slot - 24, abs(zero - y), v, label))
    return BarChart(key, bars, _ticks(lo, hi, y_of), width, height)


__all__ = ["BarChart", "LineChart", "bar_chart", "fmt", "line_chart"]
