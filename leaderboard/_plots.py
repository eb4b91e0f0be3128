"""Small server-side SVG plots (curves; means with error bars against a swept value): readable
without JavaScript, no external assets.

Every text that reaches the SVG (titles, series names) is XML-escaped here, because series
names can come from agent-chosen method names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def _plot_area(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the plotting area: margins for ticks, axis labels and
    the legend on the right."""
    left, right, top, bottom = 64, 150, 30, 44
    return left, top, width - left - right, height - top - bottom


def _no_data(out: list[str], x: float, y: float) -> str:
    out.append(f'<text x="{x}" y="{y}" class="plot-empty">no data</text></svg>')
    return "".join(out)


def _open_svg(title: str, width: int, height: int, left: int) -> list[str]:
    """The ``<svg>`` element's opening, its accessible title and the visible title."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="plot-title">{escape(title)}</text>',
    ]


def _y_axis(
    out: list[str], y0: float, y1: float, sy: Callable[[float], float], left: int, pw: int
) -> None:
    """Horizontal grid lines and tick labels over [y0, y1]."""
    for t in nice_ticks(y0, y1):
        ty = sy(t)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="plot-grid"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" class="plot-tick" text-anchor="end">{_fmt(t)}</text>'
        )


def _x_tick(out: list[str], x: float, text: str, top: int, ph: int) -> None:
    out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="plot-grid"/>')
    out.append(
        f'<text x="{x:.1f}" y="{top + ph + 16}" class="plot-tick" text-anchor="middle">{escape(text)}</text>'
    )


def _axis_labels(
    out: list[str], x_label: str, y_label: str, left: int, top: int, pw: int, ph: int, height: int
) -> None:
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" class="plot-axis" text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + ph / 2}" class="plot-axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">{escape(y_label)}</text>'
    )


def _legend_entry(
    out: list[str],
    i: int,
    name: str,
    colour: str,
    width: float,
    style: str,
    x: int,
    top: int,
    max_chars: int = 18,
) -> None:
    """Row ``i`` of the legend right of the plot area (``x``): a line sample and the name."""
    ly = top + 12 + 16 * i
    out.append(
        f'<line x1="{x + 10}" x2="{x + 30}" y1="{ly - 4}" y2="{ly - 4}" '
        f'stroke="{colour}" stroke-width="{width}"{style}/>'
    )
    label = name if len(name) <= max_chars else name[: max_chars - 1] + "…"
    out.append(f'<text x="{x + 34}" y="{ly}" class="plot-legend">{escape(label)}</text>')


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
    pts = [(x, y) for s in series for x, y in s.points if y is not None and math.isfinite(y)]
    left, top, pw, ph = _plot_area(width, height)
    out = _open_svg(title, width, height, left)
    if not pts:
        return _no_data(out, left, top + ph / 2)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = _padded(y0, y1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot-frame"/>')
    _y_axis(out, y0, y1, sy, left, pw)
    for t in nice_ticks(x0, x1):
        _x_tick(out, sx(t), _fmt(t), top, ph)
    _axis_labels(out, x_label, y_label, left, top, pw, ph, height)
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
        _legend_entry(out, i, s.name, colour, w, style, left + pw, top)
    out.append("</svg>")
    return "".join(out)


def _padded(y0: float, y1: float) -> tuple[float, float]:
    """[y0, y1] widened by 4 % each side (a flat range by half its magnitude first)."""
    if y1 == y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    pad = 0.04 * (y1 - y0)
    return y0 - pad, y1 + pad


@dataclass(frozen=True)
class ErrorPoint:
    """One plotted mean with its 95 % interval (``low``/``high`` ``None`` with one seed).

    ``label`` is the point's tooltip; ``index`` names it (``data-point``) for readers and tests.
    """

    x: float
    mean: float
    low: float | None = None
    high: float | None = None
    label: str = ""
    index: int | None = None


@dataclass(frozen=True)
class ErrorSeries:
    """Means at several x values, joined by a line in x order."""

    name: str
    points: Sequence[ErrorPoint]


def error_bar_plot(
    series: Sequence[ErrorSeries],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]],
    log_x: bool = False,
    reference: ErrorPoint | None = None,
    reference_name: str = "default",
    width: int = 640,
    height: int = 300,
) -> str:
    """An ``<svg>`` of means with error bars against x (a log axis with ``log_x``): one series
    per line, ticks at ``x_ticks`` (value, text), and ``reference`` (its x ignored) drawn as a
    dashed horizontal line over its interval's band. Each point is a ``<circle>`` carrying its
    numbers as ``data-`` attributes and its ``label`` as a tooltip."""
    # One function, like ``line_plot``: the SVG is emitted top to bottom through ``sx``/``sy``.
    pts = [p for s in series for p in s.points if math.isfinite(p.mean)]
    left, top, pw, ph = _plot_area(width, height)
    out = _open_svg(title, width, height, left)
    if not pts:
        return _no_data(out, left, top + ph / 2)

    def fx(x: float) -> float:
        return math.log10(x) if log_x else x

    xs = [fx(x) for x, _ in x_ticks] + [fx(p.x) for p in pts]
    ref = reference if reference is not None and math.isfinite(reference.mean) else None
    ys = [v for p in [*pts, *([ref] if ref else [])] for v in (p.mean, p.low, p.high)]
    finite = [v for v in ys if v is not None and math.isfinite(v)]
    y0, y1 = _padded(min(finite), max(finite))
    x0, x1 = min(xs), max(xs)
    margin = 0.06 * (x1 - x0) if x1 > x0 else 1.0  # end points' bars clear the frame
    x0, x1 = x0 - margin, x1 + margin

    def sx(x: float) -> float:
        return left + (fx(x) - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot-frame"/>')
    _y_axis(out, y0, y1, sy, left, pw)
    for x, text in x_ticks:
        _x_tick(out, sx(x), text, top, ph)
    _axis_labels(
        out, x_label + (" (log scale)" if log_x else ""), y_label, left, top, pw, ph, height
    )
    legend = 0
    if ref is not None:
        if ref.low is not None and ref.high is not None:
            band_top, band_bottom = sy(ref.high), sy(ref.low)
            out.append(
                f'<rect x="{left}" y="{band_top:.1f}" width="{pw}" '
                f'height="{max(0.0, band_bottom - band_top):.1f}" class="plot-ref-band"/>'
            )
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(ref.mean):.1f}" y2="{sy(ref.mean):.1f}" '
            f'class="plot-ref" stroke="#555" stroke-width="1.3" stroke-dasharray="6 4"'
            f"{_data(ref)}><title>{escape(ref.label)}</title></line>"
        )
        _legend_entry(
            out, 0, reference_name, "#555", 1.3, ' stroke-dasharray="6 4"', left + pw, top
        )
        legend = 1
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        shown = sorted((p for p in s.points if math.isfinite(p.mean)), key=lambda p: p.x)
        if len(shown) > 1:
            line = " ".join(f"{sx(p.x):.1f},{sy(p.mean):.1f}" for p in shown)
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{line}"/>'
            )
        for p in shown:
            cx = sx(p.x)
            if p.low is not None and p.high is not None:
                hi, lo = sy(p.high), sy(p.low)
                out.append(
                    f'<path class="plot-err" stroke="{colour}" stroke-width="1.3" fill="none" '
                    f'd="M{cx - 4:.1f},{hi:.1f}H{cx + 4:.1f}M{cx:.1f},{hi:.1f}V{lo:.1f}'
                    f'M{cx - 4:.1f},{lo:.1f}H{cx + 4:.1f}"/>'
                )
            out.append(
                f'<circle class="plot-point" cx="{cx:.2f}" cy="{sy(p.mean):.2f}" r="4" '
                f'fill="{colour}"{_data(p)}><title>{escape(p.label)}</title></circle>'
            )
        _legend_entry(out, legend + i, s.name, colour, 1.6, "", left + pw, top, max_chars=22)
    out.append("</svg>")
    return "".join(out)


def _data(p: ErrorPoint) -> str:
    """A point's numbers as ``data-`` attributes (full precision, for readers and tests)."""
    attrs = [("x", p.x), ("mean", p.mean), ("ci-low", p.low), ("ci-high", p.high)]
    text = "".join(f' data-{k}="{v!r}"' for k, v in attrs if v is not None)
    return text + ("" if p.index is None else f' data-point="{p.index}"')
