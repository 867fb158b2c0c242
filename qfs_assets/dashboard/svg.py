"""Charts as plain data: a chart spec (what to plot) is laid out into a :class:`Drawing` (where).

A panel describes a chart with one of the specs below (:class:`LineChart`, :class:`BarChart`,
:class:`HBarChart`, :class:`Timeline`, :class:`EmptyChart`): the values to plot and how to label
them, nothing about pixels. ``spec.draw()`` computes the geometry: a :class:`Drawing` holding
shapes (``line``, ``rect``, ``circle``, ``path``, ``text``) with their attributes, text and
tooltip. No markup is written here: ``templates/chart.svg.j2`` turns a drawing into one inline
``<svg class="chart" id=... data-testid=...>`` with autoescaping, so a label or tooltip taken from
the evidence can never become markup.

Every chart has a title, two axis labels and ``<title>`` tooltips on its marks. Values are
plotted as floats (only the picture); the tables next to a chart carry the exact integers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

GREEN, RED, BLUE, ORANGE, GREY, PURPLE, TEAL = "#2e7d32", "#c62828", "#1f5fa8", "#e07b00", "#9e9e9e", "#6a3d9a", "#00897b"
PALETTE = (BLUE, ORANGE, TEAL, PURPLE, "#8d6e63", "#d81b60")

W, H = 640, 270
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 70, 18, 46, 58

Format = Literal["num", "pct", "g3"]


# ---- number formats of ticks and tooltips --------------------------------------------------------------

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


def fmt_g3(v: float) -> str:
    return f"{v:.3g}"


FORMATS: dict[str, Callable[[float], str]] = {"num": fmt_num, "pct": fmt_pct, "g3": fmt_g3}


# ---- geometry ----------------------------------------------------------------------------------------

@dataclass
class Shape:
    """One SVG element: tag, attributes (in order), text content and an optional tooltip."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    tip: str = ""


@dataclass
class Drawing:
    """A laid-out chart: what ``templates/chart.svg.j2`` renders."""

    cid: str
    title: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    empty: bool = False

    def add(self, tag: str, text: str = "", tip: str = "", **attrs: object) -> None:
        """Append a shape; ``class_`` gives the class attribute, ``_`` in names becomes ``-``."""
        clean = {("class" if k == "class_" else k.replace("_", "-")): str(v) for k, v in attrs.items()}
        self.shapes.append(Shape(tag, clean, text, tip))


def _f(v: float) -> str:
    return f"{v:.1f}"


def _open(cid: str, title: str, width: int = W, height: int = H, empty: bool = False) -> Drawing:
    d = Drawing(cid, title, width, height, empty=empty)
    d.add("rect", class_="bg", x=0, y=0, width=width, height=height, fill="#ffffff")
    d.add("text", title, class_="chart-title", x=M_LEFT, y=20)
    return d


def _axis_labels(d: Drawing, x_label: str, y_label: str) -> None:
    cx = M_LEFT + (d.width - M_LEFT - M_RIGHT) / 2
    cy = M_TOP + (d.height - M_TOP - M_BOTTOM) / 2
    d.add("text", x_label, class_="axis-label x-label", x=_f(cx), y=d.height - 8, text_anchor="middle")
    d.add("text", y_label, class_="axis-label y-label", x=14, y=_f(cy), text_anchor="middle",
          transform=f"rotate(-90 14 {cy:.1f})")


def _legend(d: Drawing, series: Sequence[Series], extra: Sequence[tuple[str, str, str]] = ()) -> None:
    """Right-aligned legend on the title line; ``extra`` adds (label, color, 'line'|'dash') items."""
    items = [(s.name, s.color, "box") for s in series if s.name] + list(extra)
    if len(items) <= 1 and not extra:
        return
    x = d.width - M_RIGHT
    for label, color, kind in reversed(items):
        x -= 6.2 * len(label) + 18
        if kind == "box":
            d.add("rect", x=_f(x), y=30, width=10, height=10, fill=color)
        elif kind == "dash":
            d.add("line", x1=_f(x), y1=35, x2=_f(x + 12), y2=35, stroke=color, stroke_width=2, stroke_dasharray="5 3")
        else:
            d.add("line", x1=_f(x), y1=35, x2=_f(x + 12), y2=35, stroke=color, stroke_width=2)
        d.add("text", label, class_="legend", x=_f(x + 14), y=39)
        x -= 6


class _Scale:
    def __init__(self, lo: float, hi: float, y0: float, y1: float):
        self.lo, self.hi, self.y0, self.y1 = lo, hi, y0, y1

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.y0 + self.y1) / 2
        return self.y0 + (v - self.lo) * (self.y1 - self.y0) / (self.hi - self.lo)


def _y_axis(d: Drawing, ys: _Scale, ticks: list[float], y_fmt: Callable[[float], str]) -> None:
    for t in ticks:
        y = ys(t)
        d.add("line", class_="grid", x1=M_LEFT, y1=_f(y), x2=d.width - M_RIGHT, y2=_f(y))
        d.add("text", y_fmt(t), class_="tick", x=M_LEFT - 6, y=_f(y + 4), text_anchor="end")


def _x_labels(d: Drawing, labels: Sequence[str], xs: Sequence[float], max_labels: int = 10) -> None:
    """Category labels under the x axis, thinned so that they never overlap (no rotation)."""
    n = len(labels)
    if not n:
        return
    width = d.width
    longest = max(len(s) for s in labels)
    fit = max(1, int((width - M_LEFT - M_RIGHT) // (longest * 6.8 + 12)))
    step = max(1, math.ceil(n / max(1, min(max_labels, fit))))
    base = d.height - M_BOTTOM
    for i in range(0, n, step):
        x = xs[i]
        d.add("line", class_="tick-mark", x1=_f(x), y1=base, x2=_f(x), y2=base + 4)
        half = len(labels[i]) * 3.4
        anchor, tx = "middle", x
        if x + half > width - 2:
            anchor, tx = "end", width - 2
        elif x - half < 2:
            anchor, tx = "start", 2
        d.add("text", labels[i], class_="tick", x=_f(tx), y=base + 16, text_anchor=anchor)


def _range(values: Sequence[float | None], include: Sequence[float] = ()) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)] + list(include)
    if not vals:
        return 0.0, 1.0
    return min(vals), max(vals)


def _rule(d: Drawing, cls: str, y: float, color: str, dash: str, label: str) -> None:
    """A horizontal threshold or mean line across the plot, with its tooltip."""
    d.add("line", tip=label, class_=cls, x1=M_LEFT, y1=_f(y), x2=d.width - M_RIGHT, y2=_f(y), stroke=color,
          stroke_dasharray=dash)


# ---- chart specs ---------------------------------------------------------------------------------------

@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str = BLUE
    titles: Sequence[str] | None = None  # tooltip per point/bar


@dataclass
class LineChart:
    """Points joined by lines over categorical x labels (days, weeks); an optional dashed threshold.

    A point is drawn red when its value is above ``bad_above`` or at or below ``bad_at_or_below``."""

    cid: str
    title: str
    x_label: str
    y_label: str
    labels: Sequence[str]
    series: Sequence[Series]
    y_min: float | None = None
    y_max: float | None = None
    threshold: float | None = None
    threshold_label: str = "threshold"
    y_format: Format = "num"
    bad_above: float | None = None
    bad_at_or_below: float | None = None
    integer: bool = False
    width: int = W
    height: int = H

    def bad(self, v: float) -> bool:
        return ((self.bad_above is not None and v > self.bad_above)
                or (self.bad_at_or_below is not None and v <= self.bad_at_or_below))

    def draw(self) -> Drawing:
        y_fmt = FORMATS[self.y_format]
        width, height, labels = self.width, self.height, self.labels
        d = _open(self.cid, self.title, width, height)
        allv = [v for s in self.series for v in s.values if v is not None]
        lo, hi = _range(allv, [self.threshold] if self.threshold is not None else [])
        if self.y_min is not None:
            lo = min(lo, self.y_min) if lo < self.y_min else self.y_min
        if self.y_max is not None:
            hi = max(hi, self.y_max) if hi > self.y_max else self.y_max
        if hi == lo:
            lo, hi = lo - (abs(lo) * 0.05 or 1), hi + (abs(hi) * 0.05 or 1)
        ticks = nice_ticks(lo, hi, integer=self.integer)
        lo, hi = min(ticks[0], lo), max(ticks[-1], hi)
        ys = _Scale(lo, hi, height - M_BOTTOM, M_TOP)
        n = len(labels)
        plot_w = width - M_LEFT - M_RIGHT
        xs = [M_LEFT + plot_w * (i + 0.5) / max(n, 1) for i in range(n)]
        _y_axis(d, ys, ticks, y_fmt)
        d.add("line", class_="axis", x1=M_LEFT, y1=height - M_BOTTOM, x2=width - M_RIGHT, y2=height - M_BOTTOM)
        d.add("line", class_="axis", x1=M_LEFT, y1=M_TOP, x2=M_LEFT, y2=height - M_BOTTOM)
        extra = []
        if self.threshold is not None:
            _rule(d, "threshold", ys(self.threshold), RED, "5 3", f"{self.threshold_label}: {y_fmt(self.threshold)}")
            extra.append((f"{self.threshold_label} {y_fmt(self.threshold)}", RED, "dash"))
        for s in self.series:
            pts = [(xs[i], ys(v), v, i) for i, v in enumerate(s.values) if v is not None and math.isfinite(v)]
            if len(pts) > 1:
                path = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y, _, _) in enumerate(pts))
                d.add("path", class_="series", d=path, fill="none", stroke=s.color, stroke_width=2)
            r = 3.2 if n <= 60 else 2.0
            for x, y, v, i in pts:
                tip = s.titles[i] if s.titles else f"{labels[i]}: {y_fmt(v)}"
                d.add("circle", tip=tip, cx=_f(x), cy=_f(y), r=r, fill=RED if self.bad(v) else s.color)
        _x_labels(d, labels, xs)
        _axis_labels(d, self.x_label, self.y_label)
        _legend(d, self.series, extra)
        return d


@dataclass
class BarChart:
    """Vertical bars (grouped or stacked) with a zero baseline: negative values go below it.

    ``bar_colors`` overrides the colour of each category (single-series charts: red for a failing week)."""

    cid: str
    title: str
    x_label: str
    y_label: str
    labels: Sequence[str]
    series: Sequence[Series]
    stacked: bool = False
    y_format: Format = "num"
    threshold: float | None = None
    threshold_label: str = "threshold"
    bar_colors: Sequence[str | None] | None = None
    mean_line: float | None = None
    mean_label: str = "mean"
    max_labels: int = 10
    integer: bool = False
    width: int = W
    height: int = H

    def draw(self) -> Drawing:
        y_fmt = FORMATS[self.y_format]
        width, height, labels, series = self.width, self.height, self.labels, self.series
        d = _open(self.cid, self.title, width, height)
        n = len(labels)
        if self.stacked:
            pos = [sum(max(0.0, s.values[i] or 0.0) for s in series) for i in range(n)]
            neg = [sum(min(0.0, s.values[i] or 0.0) for s in series) for i in range(n)]
            lo, hi = _range(pos + neg, [0.0])
        else:
            lo, hi = _range([v for s in series for v in s.values if v is not None], [0.0])
        if self.threshold is not None:
            lo, hi = min(lo, self.threshold), max(hi, self.threshold)
        if self.mean_line is not None:
            hi = max(hi, self.mean_line)
        ticks = nice_ticks(lo, hi, integer=self.integer)
        lo, hi = min(ticks[0], lo), max(ticks[-1], hi)
        ys = _Scale(lo, hi, height - M_BOTTOM, M_TOP)
        plot_w = width - M_LEFT - M_RIGHT
        band = plot_w / max(n, 1)
        xs = [M_LEFT + band * (i + 0.5) for i in range(n)]
        _y_axis(d, ys, ticks, y_fmt)
        y0 = ys(0.0)
        groups = 1 if self.stacked else max(len(series), 1)
        inner = band * (0.8 if n < 30 else 0.9)
        bw = max(inner / groups, 0.8)
        for i in range(n):
            up, down = 0.0, 0.0
            for k, s in enumerate(series):
                v = s.values[i]
                if v is None or not math.isfinite(v):
                    continue
                color = self.bar_colors[i] if self.bar_colors is not None and self.bar_colors[i] else s.color
                if self.stacked:
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
                d.add("rect", tip=tip, class_="bar", x=_f(x), y=_f(y), width=_f(bw), height=_f(max(h, 0.5)), fill=color)
        extra = []
        if self.threshold is not None:
            _rule(d, "threshold", ys(self.threshold), RED, "5 3", f"{self.threshold_label}: {y_fmt(self.threshold)}")
            extra.append((f"{self.threshold_label} {y_fmt(self.threshold)}", RED, "dash"))
        if self.mean_line is not None:
            _rule(d, "mean", ys(self.mean_line), "#333", "2 2", f"{self.mean_label}: {y_fmt(self.mean_line)}")
            extra.append((f"{self.mean_label} {y_fmt(self.mean_line)}", "#333", "dash"))
        d.add("line", class_="axis zero", x1=M_LEFT, y1=_f(y0), x2=width - M_RIGHT, y2=_f(y0))
        d.add("line", class_="axis", x1=M_LEFT, y1=M_TOP, x2=M_LEFT, y2=height - M_BOTTOM)
        _x_labels(d, labels, xs, self.max_labels)
        _axis_labels(d, self.x_label, self.y_label)
        _legend(d, series, extra)
        return d


@dataclass
class HBarChart:
    """Horizontal bars, one per labelled category (long labels such as failure reasons)."""

    cid: str
    title: str
    x_label: str
    y_label: str
    labels: Sequence[str]
    values: Sequence[float]
    colors: Sequence[str] | None = None
    x_format: Format = "num"
    width: int = W
    left: int = 190
    integer: bool = True

    def draw(self) -> Drawing:
        x_fmt = FORMATS[self.x_format]
        width, left = self.width, self.left
        row = 26
        height = M_TOP + row * max(len(self.labels), 1) + M_BOTTOM
        d = _open(self.cid, self.title, width, height)
        hi = max([v for v in self.values if v is not None] + [1.0])
        ticks = nice_ticks(0.0, hi, 4, integer=self.integer)
        xs = _Scale(0.0, ticks[-1], left, width - M_RIGHT - 40)
        for t in ticks:
            x = xs(t)
            d.add("line", class_="grid", x1=_f(x), y1=M_TOP, x2=_f(x), y2=height - M_BOTTOM)
            d.add("text", x_fmt(t), class_="tick", x=_f(x), y=height - M_BOTTOM + 16, text_anchor="middle")
        for i, (label, v) in enumerate(zip(self.labels, self.values)):
            y = M_TOP + row * i + 4
            w = max(xs(v or 0) - left, 0.5)
            short = label if len(label) <= 30 else label[:29] + "…"
            d.add("text", short, class_="tick", x=left - 6, y=y + 13, text_anchor="end")
            d.add("rect", tip=f"{label}: {x_fmt(v or 0)}", class_="bar", x=left, y=y, width=_f(w), height=row - 8,
                  fill=self.colors[i] if self.colors else BLUE)
            d.add("text", x_fmt(v or 0), class_="value", x=_f(left + w + 4), y=y + 13)
        d.add("line", class_="axis", x1=left, y1=M_TOP, x2=left, y2=height - M_BOTTOM)
        cx = left + (width - M_RIGHT - left) / 2
        d.add("text", self.x_label, class_="axis-label x-label", x=_f(cx), y=height - 8, text_anchor="middle")
        d.add("text", self.y_label, class_="axis-label y-label", x=M_LEFT - 56, y=M_TOP - 6, text_anchor="start")
        return d


@dataclass
class Cell:
    """One verdict on the timeline: its partition window and outcome."""

    start: dt.datetime
    end: dt.datetime
    passed: bool
    tip: str


@dataclass
class Timeline:
    """Verdicts on a time axis: one row per activity, one cell per partition window (green/red)."""

    cid: str
    title: str
    x_label: str
    y_label: str
    rows: Sequence[tuple[str, Sequence[Cell]]]
    width: int = 1280
    left: int = 200

    def draw(self) -> Drawing:
        width, left, rows = self.width, self.left, self.rows
        row_h = 30
        height = M_TOP + row_h * max(len(rows), 1) + M_BOTTOM
        d = _open(self.cid, self.title, width, height)
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
            (7, lambda day: day.weekday() == 0),
            (14, lambda day: day.weekday() == 0 and day.isocalendar()[1] % 2 == 0),
            (30, lambda day: day.day == 1),
            (91, lambda day: day.day == 1 and day.month in (1, 4, 7, 10)),
            (365, lambda day: day.day == 1 and day.month == 1),
        ]
        keep = next((rule for every, rule in rules if days / every <= max_ticks), rules[-1][1])
        ticks = [day for day in (day0 + dt.timedelta(days=k) for k in range(days + 1)) if keep(day)]
        base = height - M_BOTTOM
        last_label = -1e9
        for day in ticks:
            t = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
            if t < t0 or t > t1:
                continue
            x = x_of(t)
            d.add("line", class_="grid", x1=_f(x), y1=M_TOP, x2=_f(x), y2=base)
            if x - last_label < 80 or x > width - 36:
                continue
            last_label = x
            d.add("text", day.isoformat(), class_="tick", x=_f(x), y=base + 16, text_anchor="middle")
        for r, (name, cs) in enumerate(rows):
            y = M_TOP + row_h * r
            d.add("text", name, class_="row-label", x=left - 8, y=_f(y + row_h / 2 + 4), text_anchor="end")
            d.add("line", class_="grid", x1=left, y1=_f(y + row_h), x2=right, y2=_f(y + row_h))
            if not cs:
                d.add("text", "no evidence yet", class_="muted", x=left + 8, y=_f(y + row_h / 2 + 4))
            for c in cs:
                xa, xb = x_of(c.start), x_of(max(c.end, c.start))
                d.add("rect", tip=c.tip, class_=f"cell {'pass' if c.passed else 'fail'}", x=_f(xa), y=y + 5,
                      width=_f(max(xb - xa - 1.0, 2.5)), height=row_h - 10, rx=2, fill=GREEN if c.passed else RED)
        d.add("line", class_="axis", x1=left, y1=base, x2=right, y2=base)
        cx = left + (right - left) / 2
        d.add("text", self.x_label, class_="axis-label x-label", x=_f(cx), y=height - 8, text_anchor="middle")
        d.add("text", self.y_label, class_="axis-label y-label", x=left - 8, y=M_TOP - 8, text_anchor="end")
        _legend(d, [], [("passed", GREEN, "line"), ("failed", RED, "line")])
        return d


@dataclass
class EmptyChart:
    """A chart frame with a message instead of marks (kept so that every chart id is always present)."""

    cid: str
    title: str
    x_label: str
    y_label: str
    message: str

    def draw(self) -> Drawing:
        w, h = W, 120
        d = _open(self.cid, self.title, w, h, empty=True)
        d.add("text", self.message, class_="muted", x=w / 2, y=66, text_anchor="middle")
        d.add("text", self.x_label, class_="axis-label x-label", x=w / 2, y=h - 8, text_anchor="middle")
        d.add("text", self.y_label, class_="axis-label y-label", x=14, y=66, text_anchor="middle",
              transform="rotate(-90 14 66)")
        return d


Chart = LineChart | BarChart | HBarChart | Timeline | EmptyChart
