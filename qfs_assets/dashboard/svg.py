"""Inline SVG charts generated in Python: no JavaScript library, no network.

Every chart is one ``<svg class="chart" id=... data-testid=...>`` with a title, axis labels and
``<title>`` tooltips on its marks. Values are plotted as floats (only the picture); the tables next
to a chart carry the exact integers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

GREEN, RED, BLUE, ORANGE, GREY, PURPLE, TEAL = "#2e7d32", "#c62828", "#1f5fa8", "#e07b00", "#9e9e9e", "#6a3d9a", "#00897b"
PALETTE = (BLUE, ORANGE, TEAL, PURPLE, "#8d6e63", "#d81b60")

W, H = 640, 270
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 70, 18, 46, 58


def esc(s: object) -> str:
    return escape(str(s), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (whole numbers only when ``integer``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi == lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 12))
    return ticks


def fmt_num(v: float) -> str:
    """A compact tick label: 1.2k, 3.4M, 0.95 ..."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a == int(a):
        return f"{int(v):,}"
    return f"{v:.4g}"


def fmt_pct(v: float) -> str:
    return f"{v * 100:.4g}%"


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str = BLUE
    titles: Sequence[str] | None = None  # tooltip per point/bar


def _open(cid: str, title: str, width: int = W, height: int = H, desc: str = "") -> list[str]:
    return [
        f'<svg class="chart" id="{esc(cid)}" data-testid="{esc(cid)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{esc(title)}" '
        f'preserveAspectRatio="xMidYMid meet">',
        f"<title>{esc(title)}{(' — ' + esc(desc)) if desc else ''}</title>",
        f'<rect class="bg" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text class="chart-title" x="{M_LEFT}" y="20">{esc(title)}</text>',
    ]


def _axis_labels(x_label: str, y_label: str, width: int, height: int) -> list[str]:
    cx = M_LEFT + (width - M_LEFT - M_RIGHT) / 2
    cy = M_TOP + (height - M_TOP - M_BOTTOM) / 2
    return [
        f'<text class="axis-label x-label" x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_label)}</text>',
        f'<text class="axis-label y-label" x="14" y="{cy:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {cy:.1f})">{esc(y_label)}</text>',
    ]


def _legend(series: Sequence[Series], width: int, extra: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    """Right-aligned legend on the title line; ``extra`` adds (label, color, 'line'|'dash') items."""
    items = [(s.name, s.color, "box") for s in series if s.name] + list(extra)
    if len(items) <= 1 and not extra:
        return []
    out, x = [], width - M_RIGHT
    for label, color, kind in reversed(items):
        tw = 6.2 * len(label) + 18
        x -= tw
        if kind == "box":
            out.append(f'<rect x="{x:.1f}" y="30" width="10" height="10" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{x:.1f}" y1="35" x2="{x + 12:.1f}" y2="35" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text class="legend" x="{x + 14:.1f}" y="39">{esc(label)}</text>')
        x -= 6
    return out


class _Scale:
    def __init__(self, lo: float, hi: float, y0: float, y1: float):
        self.lo, self.hi, self.y0, self.y1 = lo, hi, y0, y1

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.y0 + self.y1) / 2
        return self.y0 + (v - self.lo) * (self.y1 - self.y0) / (self.hi - self.lo)


def _y_axis(ys: _Scale, ticks: list[float], width: int, y_fmt: Callable[[float], str]) -> list[str]:
    out = []
    for t in ticks:
        y = ys(t)
        out.append(f'<line class="grid" x1="{M_LEFT}" y1="{y:.1f}" x2="{width - M_RIGHT}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{M_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(y_fmt(t))}</text>')
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: int, max_labels: int = 10, width: int = W) -> list[str]:
    """Category labels under the x axis, thinned so that they never overlap (no rotation)."""
    n = len(labels)
    if not n:
        return []
    longest = max(len(s) for s in labels)
    fit = max(1, int((width - M_LEFT - M_RIGHT) // (longest * 6.8 + 12)))
    step = max(1, math.ceil(n / max(1, min(max_labels, fit))))
    out = []
    base = height - M_BOTTOM
    idx = list(range(0, n, step))
    for i in idx:
        x = xs[i]
        out.append(f'<line class="tick-mark" x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}"/>')
        half = len(labels[i]) * 3.4
        anchor, tx = "middle", x
        if x + half > width - 2:
            anchor, tx = "end", width - 2
        elif x - half < 2:
            anchor, tx = "start", 2
        out.append(f'<text class="tick" x="{tx:.1f}" y="{base + 16}" text-anchor="{anchor}">{esc(labels[i])}</text>')
    return out


def _range(values: Sequence[float], include: Sequence[float] = ()) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)] + list(include)
    if not vals:
        return 0.0, 1.0
    return min(vals), max(vals)


def line_chart(cid: str, title: str, x_label: str, y_label: str, labels: Sequence[str], series: Sequence[Series], *,
               y_min: float | None = None, y_max: float | None = None, threshold: float | None = None,
               threshold_label: str = "threshold", y_fmt: Callable[[float], str] = fmt_num,
               bad: Callable[[float], bool] | None = None, integer: bool = False, width: int = W, height: int = H) -> str:
    """Points joined by lines over categorical x labels (days, weeks); an optional dashed threshold.

    ``bad(v)`` marks a point red (e.g. below its threshold)."""
    out = _open(cid, title, width, height)
    allv = [v for s in series for v in s.values if v is not None]
    lo, hi = _range(allv, [threshold] if threshold is not None else [])
    if y_min is not None:
        lo = min(lo, y_min) if lo < y_min else y_min
    if y_max is not None:
        hi = max(hi, y_max) if hi > y_max else y_max
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.05 or 1), hi + (abs(hi) * 0.05 or 1)
    ticks = nice_ticks(lo, hi, integer=integer)
    lo, hi = min(ticks[0], lo), max(ticks[-1], hi)
    ys = _Scale(lo, hi, height - M_BOTTOM, M_TOP)
    n = len(labels)
    plot_w = width - M_LEFT - M_RIGHT
    xs = [M_LEFT + plot_w * (i + 0.5) / max(n, 1) for i in range(n)]
    out += _y_axis(ys, ticks, width, y_fmt)
    out.append(f'<line class="axis" x1="{M_LEFT}" y1="{height - M_BOTTOM}" x2="{width - M_RIGHT}" y2="{height - M_BOTTOM}"/>')
    out.append(f'<line class="axis" x1="{M_LEFT}" y1="{M_TOP}" x2="{M_LEFT}" y2="{height - M_BOTTOM}"/>')
    extra = []
    if threshold is not None:
        y = ys(threshold)
        out.append(f'<line class="threshold" x1="{M_LEFT}" y1="{y:.1f}" x2="{width - M_RIGHT}" y2="{y:.1f}" '
                   f'stroke="{RED}" stroke-dasharray="5 3"><title>{esc(threshold_label)}: {esc(y_fmt(threshold))}</title></line>')
        extra.append((f"{threshold_label} {y_fmt(threshold)}", RED, "dash"))
    for s in series:
        pts = [(xs[i], ys(v), v, i) for i, v in enumerate(s.values) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            d = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y, _, _) in enumerate(pts))
            out.append(f'<path class="series" d="{d}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        r = 3.2 if n <= 60 else 2.0
        for x, y, v, i in pts:
            color = RED if bad is not None and bad(v) else s.color
            tip = s.titles[i] if s.titles else f"{labels[i]}: {y_fmt(v)}"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}"><title>{esc(tip)}</title></circle>')
    out += _x_labels(labels, xs, height, width=width)
    out += _axis_labels(x_label, y_label, width, height)
    out += _legend(series, width, extra)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(cid: str, title: str, x_label: str, y_label: str, labels: Sequence[str], series: Sequence[Series], *,
              stacked: bool = False, y_fmt: Callable[[float], str] = fmt_num, threshold: float | None = None,
              threshold_label: str = "threshold", bar_colors: Sequence[str | None] | None = None,
              mean_line: float | None = None, mean_label: str = "mean", max_labels: int = 10,
              integer: bool = False, width: int = W, height: int = H) -> str:
    """Vertical bars (grouped or stacked) with a zero baseline: negative values go below it.

    ``bar_colors`` overrides the colour of each category (single-series charts: red for a failing week)."""
    out = _open(cid, title, width, height)
    n = len(labels)
    if stacked:
        pos = [sum(max(0.0, s.values[i] or 0.0) for s in series) for i in range(n)]
        neg = [sum(min(0.0, s.values[i] or 0.0) for s in series) for i in range(n)]
        lo, hi = _range(pos + neg, [0.0])
    else:
        lo, hi = _range([v for s in series for v in s.values if v is not None], [0.0])
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if mean_line is not None:
        hi = max(hi, mean_line)
    ticks = nice_ticks(lo, hi, integer=integer)
    lo, hi = min(ticks[0], lo), max(ticks[-1], hi)
    ys = _Scale(lo, hi, height - M_BOTTOM, M_TOP)
    plot_w = width - M_LEFT - M_RIGHT
    band = plot_w / max(n, 1)
    xs = [M_LEFT + band * (i + 0.5) for i in range(n)]
    out += _y_axis(ys, ticks, width, y_fmt)
    y0 = ys(0.0)
    groups = 1 if stacked else max(len(series), 1)
    inner = band * (0.8 if n < 30 else 0.9)
    bw = max(inner / groups, 0.8)
    for i in range(n):
        up, down = 0.0, 0.0
        for k, s in enumerate(series):
            v = s.values[i]
            if v is None or not math.isfinite(v):
                continue
            color = (bar_colors[i] if bar_colors is not None and bar_colors[i] else s.color)
            if stacked:
                base = up if v >= 0 else down
                top = base + v
                if v >= 0:
                    up = top
                else:
                    down = top
                ya, yb = ys(base), ys(top)
                x = xs[i] - inner / 2
            else:
                ya, yb = y0, ys(v)
                x = xs[i] - inner / 2 + k * bw
            y, h = min(ya, yb), max(abs(ya - yb), 0.0)
            tip = s.titles[i] if s.titles else f"{labels[i]} {s.name}: {y_fmt(v)}".strip()
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{max(h, 0.5):.1f}" '
                       f'fill="{color}"><title>{esc(tip)}</title></rect>')
    extra = []
    if threshold is not None:
        y = ys(threshold)
        out.append(f'<line class="threshold" x1="{M_LEFT}" y1="{y:.1f}" x2="{width - M_RIGHT}" y2="{y:.1f}" '
                   f'stroke="{RED}" stroke-dasharray="5 3"><title>{esc(threshold_label)}: {esc(y_fmt(threshold))}</title></line>')
        extra.append((f"{threshold_label} {y_fmt(threshold)}", RED, "dash"))
    if mean_line is not None:
        y = ys(mean_line)
        out.append(f'<line class="mean" x1="{M_LEFT}" y1="{y:.1f}" x2="{width - M_RIGHT}" y2="{y:.1f}" stroke="#333" '
                   f'stroke-dasharray="2 2"><title>{esc(mean_label)}: {esc(y_fmt(mean_line))}</title></line>')
        extra.append((f"{mean_label} {y_fmt(mean_line)}", "#333", "dash"))
    out.append(f'<line class="axis zero" x1="{M_LEFT}" y1="{y0:.1f}" x2="{width - M_RIGHT}" y2="{y0:.1f}"/>')
    out.append(f'<line class="axis" x1="{M_LEFT}" y1="{M_TOP}" x2="{M_LEFT}" y2="{height - M_BOTTOM}"/>')
    out += _x_labels(labels, xs, height, max_labels, width=width)
    out += _axis_labels(x_label, y_label, width, height)
    out += _legend(series, width, extra)
    out.append("</svg>")
    return "\n".join(out)


def hbar_chart(cid: str, title: str, x_label: str, y_label: str, labels: Sequence[str], values: Sequence[float], *,
               colors: Sequence[str] | None = None, x_fmt: Callable[[float], str] = fmt_num, width: int = W,
               left: int = 190, integer: bool = True) -> str:
    """Horizontal bars, one per labelled category (long labels such as failure reasons)."""
    n = max(len(labels), 1)
    row = 26
    height = M_TOP + row * n + M_BOTTOM
    out = _open(cid, title, width, height)
    hi = max([v for v in values if v is not None] + [1.0])
    ticks = nice_ticks(0.0, hi, 4, integer=integer)
    hi = ticks[-1]
    xs = _Scale(0.0, hi, left, width - M_RIGHT - 40)
    for t in ticks:
        x = xs(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{M_TOP}" x2="{x:.1f}" y2="{height - M_BOTTOM}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{height - M_BOTTOM + 16}" text-anchor="middle">{esc(x_fmt(t))}</text>')
    for i, (label, v) in enumerate(zip(labels, values)):
        y = M_TOP + row * i + 4
        color = colors[i] if colors else BLUE
        w = max(xs(v or 0) - left, 0.5)
        short = label if len(label) <= 30 else label[:29] + "…"
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 13}" text-anchor="end">{esc(short)}</text>')
        out.append(f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{color}">'
                   f'<title>{esc(label)}: {esc(x_fmt(v or 0))}</title></rect>')
        out.append(f'<text class="value" x="{left + w + 4:.1f}" y="{y + 13}">{esc(x_fmt(v or 0))}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{M_TOP}" x2="{left}" y2="{height - M_BOTTOM}"/>')
    cx = left + (width - M_RIGHT - left) / 2
    out.append(f'<text class="axis-label x-label" x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text class="axis-label y-label" x="{M_LEFT - 56}" y="{M_TOP - 6}" text-anchor="start">{esc(y_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


@dataclass
class Cell:
    start: dt.datetime
    end: dt.datetime
    passed: bool
    tip: str


def timeline_grid(cid: str, title: str, x_label: str, y_label: str, rows: Sequence[tuple[str, Sequence[Cell]]], *,
                  width: int = 1280, left: int = 200) -> str:
    """Verdicts on a time axis: one row per activity, one cell per partition window (green/red)."""
    row_h = 30
    height = M_TOP + row_h * max(len(rows), 1) + M_BOTTOM
    out = _open(cid, title, width, height)
    cells = [c for _, cs in rows for c in cs]
    right = width - M_RIGHT
    if cells:
        t0 = min(c.start for c in cells)
        t1 = max(c.end for c in cells)
    else:
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        t1 = t0 + dt.timedelta(days=30)
    span = max((t1 - t0).total_seconds(), 1.0)

    def x_of(t: dt.datetime) -> float:
        return left + (right - left) * (t - t0).total_seconds() / span

    # ticks: Mondays, every other Monday, month starts, quarter starts or years: at most one per ~95 px
    days = (t1 - t0).days + 1
    day0 = t0.date()
    max_ticks = max(2, int((right - left) // 95))
    rules = [
        (7, lambda d: d.weekday() == 0),
        (14, lambda d: d.weekday() == 0 and d.isocalendar()[1] % 2 == 0),
        (30, lambda d: d.day == 1),
        (91, lambda d: d.day == 1 and d.month in (1, 4, 7, 10)),
        (365, lambda d: d.day == 1 and d.month == 1),
    ]
    keep = next((rule for every, rule in rules if days / every <= max_ticks), rules[-1][1])
    ticks = [d for d in (day0 + dt.timedelta(days=k) for k in range(days + 1)) if keep(d)]
    base = height - M_BOTTOM
    last_label = -1e9
    for d in ticks:
        t = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
        if t < t0 or t > t1:
            continue
        x = x_of(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{M_TOP}" x2="{x:.1f}" y2="{base}"/>')
        if x - last_label < 80 or x > width - 36:
            continue
        last_label = x
        out.append(f'<text class="tick" x="{x:.1f}" y="{base + 16}" text-anchor="middle">{esc(d.isoformat())}</text>')
    for r, (name, cs) in enumerate(rows):
        y = M_TOP + row_h * r
        out.append(f'<text class="row-label" x="{left - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{esc(name)}</text>')
        out.append(f'<line class="grid" x1="{left}" y1="{y + row_h:.1f}" x2="{right}" y2="{y + row_h:.1f}"/>')
        if not cs:
            out.append(f'<text class="muted" x="{left + 8}" y="{y + row_h / 2 + 4:.1f}">no evidence yet</text>')
        for c in cs:
            xa, xb = x_of(c.start), x_of(max(c.end, c.start))
            w = max(xb - xa - 1.0, 2.5)
            color = GREEN if c.passed else RED
            out.append(f'<rect class="cell {"pass" if c.passed else "fail"}" x="{xa:.1f}" y="{y + 5}" width="{w:.1f}" '
                       f'height="{row_h - 10}" rx="2" fill="{color}"><title>{esc(c.tip)}</title></rect>')
    out.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>')
    cx = left + (right - left) / 2
    out.append(f'<text class="axis-label x-label" x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_label)}</text>')
    out.append(f'<text class="axis-label y-label" x="{left - 8}" y="{M_TOP - 8}" text-anchor="end">{esc(y_label)}</text>')
    out += _legend([], width, [("passed", GREEN, "line"), ("failed", RED, "line")])
    out.append("</svg>")
    return "\n".join(out)
