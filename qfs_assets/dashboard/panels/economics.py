"""Economic flow: economics_sanity_check's weekly fees, rewards and conservation margin, in exact minor units."""

from __future__ import annotations

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.fmt import atr_amount, atr_float, exact_units, fmt_int, fmt_ts
from qfs_assets.dashboard.model import Badge, Figure, Kpi, Money, Panel, Table
from qfs_assets.dashboard.panels.base import MAX_TABLE_ROWS, empty_panel, subtitle
from qfs_assets.dashboard.svg import BLUE, GREEN, ORANGE, RED, TEAL, BarChart, EmptyChart, Series

PID, TITLE = "panel-economics", "Economic flow"
ACTIVITY = "economics_sanity_check"
VIEW = f"{ACTIVITY}_verdicts"
DAILY, FINDINGS = "economics_daily_flow", "economics_findings"
COLUMNS = ["partition", "fees_atr", "rewards_nod", "rewards_in_atr", "buffer_atr", "margin_atr",
           "rewards_to_failed_nodes", "ledger_vs_log_atr", "passed", "failed_criteria"]
CHARTS = [("chart-econ-weekly", "Fees vs rewards per week"),
          ("chart-econ-margin", "Conservation margin per week"),
          ("chart-econ-daily", "Daily flow of the latest week")]


def build(store: Store) -> Panel:
    rows = store.select(VIEW, COLUMNS)
    if not rows:
        return empty_panel(PID, TITLE, store, ACTIVITY, ["fees_atr", "rewards_in_atr", "buffer_atr", "margin_atr"], CHARTS)
    weeks = [str(r["partition"]) for r in rows]
    weekly = BarChart(CHARTS[0][0], CHARTS[0][1], "week (Monday)", "ATR", weeks, [
        Series("fees (ATR)", [atr_float(r["fees_atr"]) for r in rows], BLUE,
               [f"week {w}: fees {exact_units(r['fees_atr'])} ATR" if r["fees_atr"] is not None else w
                for w, r in zip(weeks, rows)]),
        Series("rewards in ATR", [atr_float(r["rewards_in_atr"]) for r in rows], ORANGE,
               [f"week {w}: rewards {exact_units(r['rewards_in_atr'])} ATR ({fmt_int(r['rewards_nod'])} nod)"
                if r["rewards_in_atr"] is not None else w for w, r in zip(weeks, rows)]),
    ])
    margins = [atr_float(r["margin_atr"]) for r in rows]
    margin = BarChart(CHARTS[1][0], CHARTS[1][1], "week (Monday)", "margin = fees − rewards − buffer (ATR)", weeks,
                      [Series("", margins, GREEN,
                              [f"week {w}: margin {exact_units(r['margin_atr'])} ATR (buffer {exact_units(r['buffer_atr'])})"
                               if r["margin_atr"] is not None else w for w, r in zip(weeks, rows)])],
                      bar_colors=[RED if m is not None and m < 0 else GREEN for m in margins])
    ledgers = Table("table-econ-weekly", ["week", "fees", "rewards", "rewards in ATR", "buffer", "margin", "verdict"],
                    [[str(r["partition"]), Money(r["fees_atr"]), Money(r["rewards_nod"], "nod", "NOD"),
                      Money(r["rewards_in_atr"]), Money(r["buffer_atr"]), Money(r["margin_atr"]),
                      Badge.of(r["passed"], r["failed_criteria"])] for r in reversed(rows)],
                    numeric=(1, 2, 3, 4, 5), caption="Weekly ledgers (exact integer minor units; 1 ATR = 10^8 atr)")
    last = rows[-1]
    return Panel(
        PID, TITLE, True, subtitle=subtitle(ACTIVITY, " (Monday to Monday)"), sources=(VIEW, DAILY, FINDINGS),
        kpis=[Kpi("latest week", str(last["partition"])),
              Kpi("fees", atr_amount(last["fees_atr"])),
              Kpi("rewards in ATR", atr_amount(last["rewards_in_atr"])),
              Kpi("margin", atr_amount(last["margin_atr"]), "bad" if (last["margin_atr"] or 0) < 0 else "good"),
              Kpi("weeks failing conservation",
                  fmt_int(sum(1 for r in rows if "conservation" in (r["failed_criteria"] or [])))),
              Kpi("verdict", Badge.of(last["passed"], last["failed_criteria"]))],
        figures=[Figure(weekly),
                 Figure(margin, "Red bars: the week failed conservation (fees < rewards in ATR + buffer)."),
                 Figure(daily_flow(store, CHARTS[2]))],
        tables=[ledgers, *findings(store)],
    )


def daily_flow(store: Store, chart: tuple[str, str]) -> BarChart | EmptyChart:
    """Fees, rewards and margin per day of the latest week."""
    cid, title = chart
    if not store.has(DAILY):
        return EmptyChart(cid, title, "day", "ATR", f"no {DAILY} table yet")
    week = store.rows(f"SELECT max(partition_key) AS w FROM {DAILY}")[0]["w"]
    rows = store.rows(f"SELECT day, fees_atr, rewards_in_atr, margin_atr FROM {DAILY} WHERE partition_key = ? "
                      "ORDER BY day", [week])
    if not rows:
        return EmptyChart(cid, title, "day", "ATR", f"no daily rows for the week of {week}")
    days = [str(r["day"]) for r in rows]
    return BarChart(cid, f"{title} ({week})", "day", "ATR", days, [
        Series(name, [atr_float(r[col]) for r in rows], color,
               [f"{d}: {word} {exact_units(r[col])} ATR" for d, r in zip(days, rows)])
        for name, col, word, color in (("fees", "fees_atr", "fees", BLUE),
                                       ("rewards in ATR", "rewards_in_atr", "rewards", ORANGE),
                                       ("margin", "margin_atr", "margin", TEAL))
    ])


def findings(store: Store) -> list[Table]:
    """The ledger findings (duplicates, rewards to failed nodes, ...), newest week first."""
    if not store.has(FINDINGS):
        return []
    total = store.rows(f"SELECT count(*) AS n FROM {FINDINGS}")[0]["n"]
    rows = store.rows(f"SELECT partition_key, kind, ledger, id, ts, party_id, amount, unit, detail FROM {FINDINGS} "
                      "ORDER BY partition_key DESC, ts DESC LIMIT ?", [MAX_TABLE_ROWS])
    if not rows:
        return []
    return [Table("table-econ-findings", ["week", "finding", "ledger", "id", "ts", "party", "amount", "detail"],
                  [[str(f["partition_key"]), f["kind"], f["ledger"], f["id"], fmt_ts(f["ts"]), f["party_id"],
                    Money(f["amount"], f["unit"] or "", (f["unit"] or "").upper()), f["detail"]] for f in rows],
                  numeric=(6,), caption="Ledger findings", total=total)]
