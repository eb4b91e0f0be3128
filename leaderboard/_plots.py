"""A small server-side SVG line plot: readable without JavaScript, no external assets.

Every text that reaches the SVG (titles, series names) is XML-escaped here, because series
names can come from agent-chosen method names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# A colour-blind-friendly palette (Okabe–Ito), the first series drawn boldest.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999", "#000000")


@dataclass(frozen=True)
class Series:
    """One named line: ``points`` are (x, y); ``None`` or non-finite y values break the line."""

    name: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False
    emphasis: bool = False


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10_000 or a < 1e-3:
        return f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def line_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 300,
    y_range: tuple[float, float] | None = None,
) -> str:
    """An ``<svg>`` element (as text) plotting ``series``; an empty-state note if nothing to plot."""
    # One function on purpose (95 lines): the SVG is emitted top to bottom — frame, ticks,
    # lines, legend — through the two scale closures ``sx``/``sy``; split, each part would
    # need the whole geometry passed in.
    pts = [(x, y) for s in series for x, y in s.points if y is not None and math.isfinite(y)]
    left, right, top, bottom = 64, 150, 30, 44
    pw, ph = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="plot-title">{escape(title)}</text>',
    ]
    if not pts:
        out.append(f'<text x="{left}" y="{top + ph / 2}" class="plot-empty">no data</text></svg>')
        return "".join(out)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    pad = 0.04 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot-frame"/>')
    for t in nice_ticks(y0, y1):
        ty = sy(t)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="plot-grid"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" class="plot-tick" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in nice_ticks(x0, x1):
        x = sx(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="plot-grid"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + ph + 16}" class="plot-tick" text-anchor="middle">{_fmt(t)}</text>'
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" class="plot-axis" text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + ph / 2}" class="plot-axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        segments: list[list[str]] = [[]]
        for x, y in s.points:
            if y is None or not math.isfinite(y):
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
        style = ' stroke-dasharray="5 3"' if s.dashed else ""
        w = 2.2 if s.emphasis else 1.3
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif seg:
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="{w}"{style} '
                    f'points="{" ".join(seg)}"/>'
                )
        ly = top + 12 + 16 * i
        out.append(
            f'<line x1="{left + pw + 10}" x2="{left + pw + 30}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="{w}"{style}/>'
        )
        label = s.name if len(s.name) <= 18 else s.name[:17] + "…"
        out.append(
            f'<text x="{left + pw + 34}" y="{ly}" class="plot-legend">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
