"""Node failure responses: one node_failure_response verdict per failed node, newest first."""

from __future__ import annotations

from qfs_assets.dashboard.catalog import Store
from qfs_assets.dashboard.fmt import fmt_bytes, fmt_float, fmt_int, fmt_ts
from qfs_assets.dashboard.model import Badge, Kpi, Money, NoEvidence, Num, Panel, Table
from qfs_assets.dashboard.panels.base import MAX_TABLE_ROWS, subtitle

PID, TITLE = "panel-node-failures", "Node failure responses"
ACTIVITY = "node_failure_response"
VIEW = f"{ACTIVITY}_verdicts"
COLUMNS = ["evidence_key", "node_id", "failed_at", "failure_source", "shards_to_move", "shards_placed",
           "shards_unplaceable", "bytes_to_move", "receiving_nodes", "receivers_verified", "clawback_nod",
           "utilization_cv_before", "utilization_cv_after", "passed", "failed_criteria", "evidence_file"]


def build(store: Store) -> Panel:
    rows = store.select(VIEW, COLUMNS, order="partition DESC, evidence_key DESC")
    template = "panels/node_failures.html.j2"
    if not rows:
        return Panel(PID, TITLE, False, sources=(VIEW,), template=template,
                     no_evidence=NoEvidence(ACTIVITY, store.root / ACTIVITY))
    table = Table("table-node-failures", ["failure id", "node", "failed at", "source", "shards to move", "placed",
                                          "unplaceable", "bytes to move", "receivers verified", "claw-back proposed",
                                          "utilisation CV before → after", "verdict"],
                  [[r["evidence_key"], r["node_id"] or "–", fmt_ts(r["failed_at"]), r["failure_source"] or "–",
                    fmt_int(r["shards_to_move"]), fmt_int(r["shards_placed"]), fmt_int(r["shards_unplaceable"]),
                    Num(fmt_bytes(r["bytes_to_move"]), f'{fmt_int(r["bytes_to_move"])} bytes'),
                    f'{fmt_int(r["receivers_verified"])} / {fmt_int(r["receiving_nodes"])}',
                    Money(r["clawback_nod"], "nod", "NOD"),
                    f'{fmt_float(r["utilization_cv_before"])} → {fmt_float(r["utilization_cv_after"])}',
                    Badge.of(r["passed"], r["failed_criteria"])] for r in rows[:MAX_TABLE_ROWS]],
                  numeric=(4, 5, 6, 7, 9), total=len(rows))
    failed = sum(1 for r in rows if not r["passed"])
    return Panel(
        PID, TITLE, True, subtitle=subtitle(ACTIVITY, " (newest first)"), template=template,
        sources=(VIEW, "node_failure_plan", "node_failure_receivers", "node_failure_reward_adjustments"),
        kpis=[Kpi("failures responded to", fmt_int(len(rows))),
              Kpi("responses failing a criterion", fmt_int(failed), "bad" if failed else "good"),
              Kpi("shards to move (all failures)", fmt_int(sum(r["shards_to_move"] or 0 for r in rows))),
              Kpi("unplaceable shards", fmt_int(sum(r["shards_unplaceable"] or 0 for r in rows)),
                  "bad" if any(r["shards_unplaceable"] for r in rows) else "good")],
        tables=[table],
    )
