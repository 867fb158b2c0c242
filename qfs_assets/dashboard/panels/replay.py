"""Replay status: storage_replay_drill's quarterly drills and the last successful one.

The panel's data is :func:`replay_status`: one :class:`Drill` per verdict, built by :func:`drill`
from the verdict view's row and the verdict's JSON document. To show one more fact about a drill
(say when it ran, or the last event it reached), add a field to :class:`Drill`, fill it in
:func:`drill` and show it in ``templates/panels/replay.html.j2``; the charts, the table and the
KPIs need no change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from qfs_assets.dashboard.catalog import Store, find_key
from qfs_assets.dashboard.fmt import DASH, fmt_int, fmt_ts, quarter_label
from qfs_assets.dashboard.model import Badge, Figure, Kpi, Panel, Table
from qfs_assets.dashboard.panels.base import empty_panel, subtitle
from qfs_assets.dashboard.svg import BLUE, GREEN, GREY, RED, TEAL, BarChart, EmptyChart, Series

PID, TITLE = "panel-replay", "Replay status"
ACTIVITY = "storage_replay_drill"
VIEW = f"{ACTIVITY}_verdicts"
COLUMNS = ["partition", "evidence_key", "events_replayed", "chain_intact", "first_broken_seq", "invalid_events",
           "checkpoints_compared", "checkpoints_matched", "first_mismatch_seq", "mismatched_components",
           "final_state_root", "passed", "failed_criteria", "window_end", "evidence_file"]
CHARTS = [("chart-replay-events", "Events replayed per drill"),
          ("chart-replay-rate", "Replay throughput per drill"),
          ("chart-replay-checkpoints", "Checkpoints matched / compared per drill")]


@dataclass
class Drill:
    """One replay drill (one quarter's verdict) as the panel shows it."""

    quarter: str  # 2026-Q1
    partition: str  # 2026-01-01
    passed: bool
    failed_criteria: tuple[str, ...]
    evidence_file: str
    events_replayed: int | None
    events_per_second: float | None
    chain_intact: bool | None
    invalid_events: int | None
    checkpoints_compared: int | None
    checkpoints_matched: int | None
    mismatched_components: tuple[str, ...]
    final_state_root: str | None
    ran_at: str = DASH  # when the drill was judged (the evidence's judged_at)
    last_event: str = DASH  # ts of the last event it replayed (evidence-v1.1 metrics.last_event_ts)

    @property
    def all_checkpoints_matched(self) -> bool:
        return bool(self.checkpoints_compared) and self.checkpoints_matched == self.checkpoints_compared


@dataclass
class ReplayStatus:
    drills: list[Drill]  # oldest quarter first

    @property
    def last(self) -> Drill | None:
        return self.drills[-1] if self.drills else None

    @property
    def last_success(self) -> Drill | None:
        """The newest drill that passed every criterion."""
        return next((d for d in reversed(self.drills) if d.passed), None)


def replay_rate(doc: dict, events: Any) -> float | None:
    """events/s of a drill: a recorded ``events_per_second``, else events over a recorded duration."""
    v = find_key(doc.get("metrics") or {}, "events_per_second") or find_key(doc, "events_per_second")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    for key in ("replay_seconds", "elapsed_seconds", "duration_seconds", "seconds"):
        s = find_key(doc, key)
        if isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 and events:
            return float(events) / float(s)
    return None


def _when(value: Any) -> str:
    """An ISO 8601 time of the evidence as the page prints times; a dash when absent."""
    if isinstance(value, str) and value:
        try:
            return fmt_ts(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return DASH


def drill(row: dict, doc: dict) -> Drill:
    """A drill from its row of the verdict view and its JSON verdict (``{}`` when unreadable)."""
    return Drill(
        quarter=quarter_label(row["partition"]),
        partition=str(row["partition"]),
        passed=bool(row["passed"]),
        failed_criteria=tuple(row["failed_criteria"] or ()),
        evidence_file=str(row["evidence_file"]),
        events_replayed=row["events_replayed"],
        events_per_second=replay_rate(doc, row["events_replayed"]),
        chain_intact=row["chain_intact"],
        invalid_events=row["invalid_events"],
        checkpoints_compared=row["checkpoints_compared"],
        checkpoints_matched=row["checkpoints_matched"],
        mismatched_components=tuple(row["mismatched_components"] or ()),
        final_state_root=row["final_state_root"],
        ran_at=_when(doc.get("judged_at")),
        last_event=_when((doc.get("metrics") or {}).get("last_event_ts")),
    )


def replay_status(store: Store) -> ReplayStatus:
    docs = {d.get("partition"): d for d in store.docs(ACTIVITY)}
    return ReplayStatus([drill(r, docs.get(str(r["partition"]), {})) for r in store.select(VIEW, COLUMNS)])


def build(store: Store) -> Panel:
    status = replay_status(store)
    drills, last = status.drills, status.last
    if last is None:
        return empty_panel(PID, TITLE, store, ACTIVITY,
                           ["events_replayed", "checkpoints_compared", "checkpoints_matched", "chain_intact"], CHARTS)
    quarters = [d.quarter for d in drills]
    events = BarChart(CHARTS[0][0], CHARTS[0][1], "drill (quarter)", "events replayed", quarters,
                      [Series("", [float(d.events_replayed or 0) for d in drills], BLUE,
                              [f"{d.quarter}: {fmt_int(d.events_replayed)} events" for d in drills])],
                      bar_colors=[BLUE if d.passed else RED for d in drills], integer=True)
    rates = [d.events_per_second for d in drills]
    if any(v is not None for v in rates):
        rate = BarChart(CHARTS[1][0], CHARTS[1][1], "drill (quarter)", "events / s", quarters,
                        [Series("", rates, TEAL, [f"{d.quarter}: {d.events_per_second:,.0f} events/s"
                                                  if d.events_per_second is not None else f"{d.quarter}: not recorded"
                                                  for d in drills])])
    else:
        rate = EmptyChart(CHARTS[1][0], CHARTS[1][1], "drill (quarter)", "events / s",
                          "events/s not recorded in the evidence")
    checkpoints = BarChart(CHARTS[2][0], CHARTS[2][1], "drill (quarter)", "checkpoints", quarters, [
        Series("compared", [float(d.checkpoints_compared or 0) for d in drills], GREY),
        Series("matched", [float(d.checkpoints_matched or 0) for d in drills], GREEN),
    ], integer=True)
    table = Table("table-replay-drills", ["drill", "events", "events/s", "checkpoints matched", "chain intact",
                                          "invalid events", "mismatched components", "verdict"],
                  [[d.quarter, fmt_int(d.events_replayed),
                    f"{d.events_per_second:,.0f}" if d.events_per_second is not None else "–",
                    f"{fmt_int(d.checkpoints_matched)} / {fmt_int(d.checkpoints_compared)}",
                    "yes" if d.chain_intact else ("no" if d.chain_intact is not None else "–"),
                    fmt_int(d.invalid_events), ", ".join(d.mismatched_components) or "–",
                    Badge.of(d.passed, d.failed_criteria)] for d in reversed(drills)],
                  numeric=(1, 2, 5))
    return Panel(
        PID, TITLE, True, subtitle=subtitle(ACTIVITY, ": replay from genesis vs checkpoints"),
        sources=(VIEW, *store.tables("replay_")), template="panels/replay.html.j2", data=status,
        kpis=[Kpi("latest drill", last.quarter), Kpi("events replayed", fmt_int(last.events_replayed)),
              Kpi("checkpoints", f"{fmt_int(last.checkpoints_matched)} / {fmt_int(last.checkpoints_compared)}",
                  "good" if last.all_checkpoints_matched else "bad"),
              Kpi("verdict", Badge.of(last.passed, last.failed_criteria))],
        figures=[Figure(events), Figure(rate), Figure(checkpoints)],
        tables=[table],
    )
