"""AEGIS verification status: the latest day's nodes by status, why nodes are not verified, and which."""

from __future__ import annotations

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.fmt import fmt_int, fmt_ratio, fmt_ts
from qfs_assets.dashboard.model import Figure, Kpi, Money, Panel, Table
from qfs_assets.dashboard.panels.base import MAX_TABLE_ROWS, empty_panel
from qfs_assets.dashboard.svg import GREEN, GREY, RED, EmptyChart, HBarChart

PID, TITLE = "panel-aegis", "AEGIS verification status"
ACTIVITY = "node_health_assessment"
TABLE = "node_health_aegis"
CHARTS = [("chart-aegis-status", "Nodes by AEGIS status (latest day)"),
          ("chart-aegis-reasons", "Reasons nodes are not verified (latest day)")]
RULE = ("A node is verified when in service, heartbeat ≤ 1 h old, stake ≥ 1,000 NOD, used ≤ capacity and ≥ 95% of "
        "its challenges passed.")


def build(store: Store) -> Panel:
    if not store.has(TABLE):
        return empty_panel(PID, TITLE, store, ACTIVITY, ["verified_nodes", "unverified_node_ids"], CHARTS)
    day = store.rows(f"SELECT max(partition_key) AS d FROM {TABLE}")[0]["d"]
    counts = store.rows("SELECT count(*) FILTER (WHERE in_service AND verified) AS verified, "
                        "count(*) FILTER (WHERE in_service AND NOT verified) AS unverified, "
                        f"count(*) FILTER (WHERE NOT in_service) AS not_in_service FROM {TABLE} WHERE partition_key = ?",
                        [day])[0]
    status = HBarChart(CHARTS[0][0], f"{CHARTS[0][1]}: {day}", "nodes", "status",
                       ["verified", "unverified (in service)", "not in service"],
                       [float(counts["verified"]), float(counts["unverified"]), float(counts["not_in_service"])],
                       colors=[GREEN, RED, GREY])
    reasons = store.rows("SELECT trim(r) AS reason, count(*) AS n FROM (SELECT unnest(string_split(reasons, ', ')) AS r "
                         f"FROM {TABLE} WHERE partition_key = ? AND NOT verified) WHERE trim(r) <> '' "
                         "GROUP BY 1 ORDER BY n DESC, reason", [day])
    if reasons:
        why = HBarChart(CHARTS[1][0], f"{CHARTS[1][1]}: {day}", "nodes", "reason",
                        [r["reason"] for r in reasons], [float(r["n"]) for r in reasons],
                        colors=[GREY if r["reason"].startswith("not in service") else RED for r in reasons])
    else:
        why = EmptyChart(CHARTS[1][0], CHARTS[1][1], "nodes", "reason", f"every node verified on {day}")
    total = store.rows(f"SELECT count(*) AS n FROM {TABLE} WHERE partition_key = ? AND NOT verified", [day])[0]["n"]
    nodes = store.rows("SELECT node_id, region, status, in_service, challenges, passed, stake_nod, last_heartbeat, reasons "
                       f"FROM {TABLE} WHERE partition_key = ? AND NOT verified "
                       "ORDER BY in_service DESC, node_id LIMIT ?", [day, MAX_TABLE_ROWS])
    rows = [[r["node_id"], r["region"], r["status"], fmt_int(r["challenges"]), fmt_int(r["passed"]),
             fmt_ratio(r["passed"] / r["challenges"]) if r["challenges"] else "–",
             Money(r["stake_nod"], "nod", "NOD"), fmt_ts(r["last_heartbeat"]), r["reasons"]] for r in nodes]
    n_in = counts["verified"] + counts["unverified"]
    return Panel(
        PID, TITLE, True, subtitle=RULE, sources=(TABLE,),
        kpis=[Kpi("day", str(day)), Kpi("verified", fmt_int(counts["verified"]), "good"),
              Kpi("unverified (in service)", fmt_int(counts["unverified"]), "bad" if counts["unverified"] else "good"),
              Kpi("not in service", fmt_int(counts["not_in_service"])),
              Kpi("verified ratio", fmt_ratio(counts["verified"] / n_in) if n_in else "–")],
        figures=[Figure(status), Figure(why)],
        tables=[Table("table-aegis-unverified", ["node", "region", "status", "challenges", "passed", "pass rate", "stake",
                                                 "last heartbeat", "reasons"], rows, numeric=(3, 4, 5, 6),
                      caption=f"Nodes not verified on {day}", total=total)] if rows else [],
        notes=[] if rows else [f"Every node was verified on {day}."],
    )
