"""Dual-write consistency: dual_write_verification's monthly inconsistencies by category, and the open diffs."""

from __future__ import annotations

import datetime as dt

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.fmt import fmt_int, fmt_ts
from qfs_assets.dashboard.model import Badge, Figure, Kpi, Panel, Table
from qfs_assets.dashboard.panels.base import MAX_TABLE_ROWS, empty_panel, subtitle
from qfs_assets.dashboard.svg import BLUE, GREY, ORANGE, PURPLE, RED, BarChart, EmptyChart, HBarChart, Series

PID, TITLE = "panel-dual-write", "Dual-write consistency"
ACTIVITY = "dual_write_verification"
VIEW = f"{ACTIVITY}_verdicts"
INCONSISTENCIES = "dual_write_inconsistencies"
CATEGORIES = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")
COLORS = dict(zip(CATEGORIES, (RED, ORANGE, PURPLE, BLUE)))
COLUMNS = ["partition", "sor_objects", "storage_objects", "in_flight", *CATEGORIES, "inconsistencies",
           "sampled_objects", "sample_failures", "unresolved_over_24h", "passed", "failed_criteria"]
CHARTS = [("chart-dual-write-categories", "Inconsistencies per month by category"),
          ("chart-dual-write-open", "Open (unresolved) diffs by category")]


def build(store: Store) -> Panel:
    rows = store.select(VIEW, COLUMNS)
    if not rows:
        return empty_panel(PID, TITLE, store, ACTIVITY, ["inconsistencies", *CATEGORIES, "unresolved_over_24h"], CHARTS)
    months = [str(r["partition"])[:7] for r in rows]
    by_category = BarChart(CHARTS[0][0], CHARTS[0][1], "month", "inconsistent objects", months,
                           [Series(cat.replace("_", " "), [float(r[cat] or 0) for r in rows], color,
                                   [f"{m} {cat}: {fmt_int(r[cat])}" for m, r in zip(months, rows)])
                            for cat, color in COLORS.items()], stacked=True, integer=True)
    open_figure, open_tables, open_notes = open_diffs(store, CHARTS[1])
    monthly = Table("table-dual-write-monthly", ["month", "SoR objects", "storage objects", "in flight", *CATEGORIES,
                                                 "sample failures", "unresolved > 24 h", "verdict"],
                    [[m, fmt_int(r["sor_objects"]), fmt_int(r["storage_objects"]), fmt_int(r["in_flight"])]
                     + [fmt_int(r[c]) for c in CATEGORIES]
                     + [fmt_int(r["sample_failures"]), fmt_int(r["unresolved_over_24h"]),
                        Badge.of(r["passed"], r["failed_criteria"])] for m, r in zip(months, rows)][::-1],
                    numeric=tuple(range(1, 10)))
    last = rows[-1]
    return Panel(
        PID, TITLE, True, subtitle=subtitle(ACTIVITY, ": system of record vs storage manifest"),
        sources=(VIEW, *store.tables("dual_write_")),
        kpis=[Kpi("latest month", months[-1]),
              Kpi("inconsistencies", fmt_int(last["inconsistencies"]), "bad" if last["inconsistencies"] else "good"),
              Kpi("sample failures", f'{fmt_int(last["sample_failures"])} of {fmt_int(last["sampled_objects"])}',
                  "bad" if last["sample_failures"] else "good"),
              Kpi("unresolved > 24 h", fmt_int(last["unresolved_over_24h"]),
                  "bad" if last["unresolved_over_24h"] else "good"),
              Kpi("verdict", Badge.of(last["passed"], last["failed_criteria"]))],
        figures=[Figure(by_category), open_figure],
        tables=[monthly, *open_tables],
        notes=open_notes,
    )


def open_diffs(store: Store, chart: tuple[str, str]) -> tuple[Figure, list[Table], list[str]]:
    """Open diffs by category: from the diff ledger when present, else the latest inconsistencies table."""
    cid, title = chart
    ledger = next((t for t in store.tables("dual_write_diff")
                   if {"category", "resolved_at", "first_seen"} <= set(store.cols(t))), None)
    if ledger is not None:
        src, where, params = ledger, "WHERE resolved_at IS NULL", []
        note = f"from the diff ledger ({ledger}), episodes with no resolution yet"
    elif store.has(INCONSISTENCIES) and "category" in store.cols(INCONSISTENCIES):
        key = store.rows(f"SELECT max(partition_key) AS k FROM {INCONSISTENCIES}")[0]["k"]
        src, where, params = INCONSISTENCIES, "WHERE partition_key = ?", [key]
        note = f"inconsistencies of the latest verification ({key})"
    else:
        return Figure(EmptyChart(cid, title, "diffs", "category", "no diff ledger or inconsistencies table yet")), [], []
    counts = store.rows(f'SELECT category, count(*) AS n FROM "{src}" {where} GROUP BY 1 ORDER BY n DESC, category',
                        params)
    if not counts:
        return Figure(EmptyChart(cid, title, "diffs", "category", "no open diff")), [], [f"No open diff ({note})."]
    bars = HBarChart(cid, title, "open diffs", "category", [r["category"] for r in counts],
                     [float(r["n"]) for r in counts], colors=[COLORS.get(r["category"], GREY) for r in counts])
    cols = store.cols(src)
    wanted = [c for c in ("object_id", "category", "differing_fields", "first_seen", "last_seen") if c in cols]
    order = "first_seen, object_id" if "first_seen" in cols else "object_id"
    detail = store.rows(f'SELECT {", ".join(wanted)} FROM "{src}" {where} ORDER BY {order} LIMIT ?',
                        params + [MAX_TABLE_ROWS])
    table = Table("table-dual-write-open", wanted,
                  [[fmt_ts(r[c]) if isinstance(r[c], dt.datetime) else r[c] for c in wanted] for r in detail],
                  caption=f"Open diffs, oldest first ({note})", total=sum(r["n"] for r in counts))
    return Figure(bars), [table], []
