"""Verdict timeline: every JSON verdict of every activity on one time axis, and the latest per activity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.fmt import fmt_int
from qfs_assets.dashboard.model import Badge, Code, Figure, Kpi, Panel, Table
from qfs_assets.dashboard.panels.base import cadence, evidence_activities
from qfs_assets.dashboard.svg import Cell, Timeline
from qfs_assets.windows import day_start

PID, TITLE = "panel-verdicts", "Verdict timeline"
VIEW = "evidence_verdicts"
COLUMNS = ["activity", "partition", "evidence_key", "window_start", "window_end", "passed", "failed_criteria",
           "evidence_file"]


@dataclass
class Latest:
    """The newest verdict of an activity (``passed`` None: no evidence yet)."""

    activity: str
    key: str | None
    passed: bool | None
    failed: tuple[str, ...] = ()


def by_activity(store: Store) -> dict[str, list[dict]]:
    """Verdict rows per activity, oldest window first: the registry's activities, then any other found."""
    rows = store.select(VIEW, COLUMNS, order="activity, window_start, evidence_key")
    out: dict[str, list[dict]] = {a: [] for a in evidence_activities()}
    for r in rows:
        out.setdefault(r["activity"], []).append(r)
    known = evidence_activities()
    return {a: out[a] for a in known + sorted(a for a in out if a not in known)}


def latest(store: Store) -> list[Latest]:
    """The newest verdict of each of the registry's activities (the page's navigation)."""
    groups = by_activity(store)
    out = []
    for a in evidence_activities():
        rs = groups.get(a) or []
        last = rs[-1] if rs else None
        out.append(Latest(a, str(last["evidence_key"]), bool(last["passed"]), tuple(last["failed_criteria"] or ()))
                   if last else Latest(a, None, None))
    return out


def cell(activity: str, r: dict) -> Cell | None:
    """A verdict drawn over its window (a day from its partition when the window is missing)."""
    start, end = r["window_start"], r["window_end"]
    if start is None and r["partition"] is not None:
        p = r["partition"]
        start = day_start(p)
    if start is None:
        return None
    failed = r["failed_criteria"] or []
    key = r["evidence_key"] if r["evidence_key"] != str(r["partition"]) else ""
    tip = (f"{activity} {r['partition']}{' ' + key if key else ''}: {'PASSED' if r['passed'] else 'FAILED'}"
           + (f" ({', '.join(failed)})" if failed else "") + f" — {r['evidence_file']}")
    return Cell(start, end or start + dt.timedelta(days=1), bool(r["passed"]), tip)


def build(store: Store) -> Panel:
    groups = by_activity(store)
    grid, summary = [], []
    for a, rs in groups.items():
        cells = [c for c in (cell(a, r) for r in rs) if c is not None]
        grid.append((f"{a} ({cadence(a, 'other')})", cells))
        last = rs[-1] if rs else None
        npass = sum(1 for r in rs if r["passed"])
        summary.append([Code(a), cadence(a), fmt_int(len(rs)), fmt_int(npass), fmt_int(len(rs) - npass),
                        str(last["evidence_key"]) if last else "–",
                        Badge.of(last["passed"], last["failed_criteria"]) if last else Badge(None)])
    rows = [r for rs in groups.values() for r in rs]
    total = len(rows)
    failed = sum(1 for r in rows if not r["passed"])
    with_evidence = sum(1 for rs in groups.values() if rs)
    chart = Timeline("chart-verdict-timeline", "Verdicts by activity and partition window", "partition window (UTC)",
                     "activity", grid)
    return Panel(
        PID, TITLE, bool(rows), wide=True, sources=(VIEW, "evidence_criteria"), template="panels/verdicts.html.j2",
        kpis=[Kpi("verdicts", fmt_int(total)), Kpi("passed", fmt_int(total - failed), "good"),
              Kpi("failed", fmt_int(failed), "bad" if failed else "good"),
              Kpi("activities with evidence", f"{with_evidence} / {len(evidence_activities())}")],
        figures=[Figure(chart, "Each cell is one partition's JSON verdict, drawn over its window; hover for the "
                               "failed criteria.")],
        tables=[Table("table-verdict-summary", ["activity", "cadence", "partitions", "passed", "failed",
                                                "latest partition", "latest verdict"], summary, numeric=(2, 3, 4))],
    )
