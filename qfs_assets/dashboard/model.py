"""The plain data of a dashboard panel, as the templates render it.

A panel module (:mod:`qfs_assets.dashboard.panels`) reads the store and returns a :class:`Panel`:
KPI cards, figures (chart specs from :mod:`.svg`), tables and notes, all plain Python values and
text. No markup is written in Python: ``templates/panel.html.j2`` (or the panel's own template
extending it) renders the data with autoescaping.

Table cells are text (``str``; ``None`` shows as an empty cell) or one of the typed cells below,
which a template renders in their own way (a verdict badge, an exact money amount, code, a
number with a tooltip).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

from qfs_assets.dashboard.svg import Chart


@dataclass(frozen=True)
class Badge:
    """A verdict badge: PASSED, FAILED (with the failed criteria) or no evidence (``passed`` None)."""

    passed: bool | None
    failed: tuple[str, ...] = ()
    kind = "badge"

    @classmethod
    def of(cls, passed: bool | None, failed: Sequence[str] | None = None) -> "Badge":
        return cls(None if passed is None else bool(passed), tuple(failed or ()))


@dataclass(frozen=True)
class Money:
    """An integer amount of minor units (``unit``, e.g. atr), shown exactly with the token amount beside it."""

    value: int | None
    unit: str = "atr"
    token: str = "ATR"
    kind = "money"


@dataclass(frozen=True)
class Code:
    text: str
    kind = "code"


@dataclass(frozen=True)
class Num:
    """A numeric cell with a tooltip (e.g. bytes shown as '123.46 MB', exact count on hover)."""

    text: str
    title: str
    kind = "num"


CellValue = Union[str, Badge, Money, Code, Num, None]


@dataclass
class Kpi:
    """One KPI card; ``tone`` is '', 'good' or 'bad'."""

    label: str
    value: str | Badge
    tone: str = ""


@dataclass
class Table:
    tid: str
    headers: Sequence[str]
    rows: Sequence[Sequence[CellValue]]
    numeric: Sequence[int] = ()
    caption: str = ""
    total: int | None = None  # all rows the view has, when only the first ones are shown

    @property
    def more(self) -> bool:
        return self.total is not None and self.total > len(self.rows)


@dataclass
class Figure:
    chart: Chart
    note: str = ""


@dataclass
class NoEvidence:
    """Why a panel is empty: the activity has written no verdict under ``folder`` yet."""

    activity: str
    folder: Path
    metrics: Sequence[str] = ()


@dataclass
class Panel:
    """One ``<section>`` of the page.

    ``template`` renders it (``panel.html.j2`` or a panel's own template extending it); ``data``
    is the panel's own plain data for such a template (e.g. the replay status).
    """

    pid: str
    title: str
    has_data: bool
    subtitle: str = ""
    wide: bool = False
    sources: Sequence[str] = ()
    kpis: list[Kpi] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    no_evidence: NoEvidence | None = None
    template: str = "panel.html.j2"
    data: Any = None

    @property
    def state(self) -> str:
        return "data" if self.has_data else "no-evidence"

    def chart(self, cid: str) -> Chart:
        """The spec of chart ``cid`` (KeyError when the panel has no such chart)."""
        for f in self.figures:
            if f.chart.cid == cid:
                return f.chart
        raise KeyError(cid)
