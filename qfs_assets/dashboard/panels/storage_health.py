"""Storage health: node_health_assessment's daily metrics and the latest day's utilisation per node."""

from __future__ import annotations

from qfs_assets.dashboard.catalog import Store, criterion_threshold
from qfs_assets.dashboard.fmt import fmt_bytes, fmt_float, fmt_int, fmt_ratio
from qfs_assets.dashboard.model import Badge, Figure, Kpi, Panel
from qfs_assets.dashboard.panels.base import empty_panel, subtitle
from qfs_assets.dashboard.svg import BLUE, GREEN, PURPLE, RED, TEAL, BarChart, EmptyChart, LineChart, Series

PID, TITLE = "panel-storage-health", "Storage health"
ACTIVITY = "node_health_assessment"
VIEW = f"{ACTIVITY}_verdicts"
DISTRIBUTION = "node_health_distribution"
COLUMNS = ["partition", "in_service_nodes", "verified_nodes", "verified_ratio", "proof_challenges",
           "proof_success_rate", "utilization_cv", "utilization_max_over_mean", "objects_degraded",
           "objects_unrecoverable", "passed", "failed_criteria"]
CHARTS = [("chart-in-service-nodes", "In-service and verified nodes per day"),
          ("chart-verified-ratio", "Verified ratio per day"),
          ("chart-proof-success", "Proof success rate per day"),
          ("chart-utilisation-latest", "Utilisation per node (latest day)"),
          ("chart-utilisation-cv", "Utilisation coefficient of variation per day")]
#: More in-service nodes than this: the utilisation chart is a histogram instead of one bar per node.
MAX_NODE_BARS = 120
HISTOGRAM_BINS = 20


def build(store: Store) -> Panel:
    rows = store.select(VIEW, COLUMNS)
    if not rows:
        return empty_panel(PID, TITLE, store, ACTIVITY,
                           ["in_service_nodes", "verified_ratio", "proof_success_rate", "utilization_cv"], CHARTS)
    doc = store.latest_doc(ACTIVITY)
    t_ratio = criterion_threshold(doc, "nodes_verified", default=0.95)
    t_proof = criterion_threshold(doc, "proof_success", default=0.99)
    t_cv = criterion_threshold(doc, "shard_balance", "utilization_cv", 0.25)
    t_mom = criterion_threshold(doc, "shard_balance", "utilization_max_over_mean", 1.5)
    days = [str(r["partition"]) for r in rows]
    nodes = LineChart(CHARTS[0][0], CHARTS[0][1], "day", "nodes", days,
                      [Series("in service", [r["in_service_nodes"] for r in rows], BLUE),
                       Series("verified", [r["verified_nodes"] for r in rows], GREEN)], y_min=0, integer=True)
    ratio = LineChart(CHARTS[1][0], CHARTS[1][1], "day", "verified / in-service nodes", days,
                      [Series("verified ratio", [r["verified_ratio"] for r in rows], BLUE,
                              [f"{d}: {fmt_ratio(r['verified_ratio'])} ({fmt_int(r['verified_nodes'])} of "
                               f"{fmt_int(r['in_service_nodes'])})" for d, r in zip(days, rows)])],
                      y_max=1.0, threshold=t_ratio, threshold_label="must be >", y_format="pct",
                      bad_at_or_below=t_ratio)
    proof = LineChart(CHARTS[2][0], CHARTS[2][1], "day", "passed / issued challenges", days,
                      [Series("proof success", [r["proof_success_rate"] for r in rows], TEAL,
                              [f"{d}: {fmt_ratio(r['proof_success_rate'])} of {fmt_int(r['proof_challenges'])} "
                               "challenges" for d, r in zip(days, rows)])],
                      y_max=1.0, threshold=t_proof, threshold_label="must be >", y_format="pct",
                      bad_at_or_below=t_proof)
    cv = LineChart(CHARTS[4][0], CHARTS[4][1], "day", "CV of utilisation", days,
                   [Series("CV", [r["utilization_cv"] for r in rows], PURPLE,
                           [f"{d}: CV {fmt_float(r['utilization_cv'])}, max/mean "
                            f"{fmt_float(r['utilization_max_over_mean'])}" for d, r in zip(days, rows)])],
                   y_min=0, threshold=t_cv, threshold_label="max", y_format="g3", bad_above=t_cv)
    last = rows[-1]

    def below(v, t):
        return "bad" if v is not None and t is not None and v <= t else "good"

    return Panel(
        PID, TITLE, True, subtitle=subtitle(ACTIVITY), sources=(VIEW, DISTRIBUTION),
        kpis=[Kpi("latest day", str(last["partition"])),
              Kpi("in-service nodes", fmt_int(last["in_service_nodes"])),
              Kpi("verified ratio", fmt_ratio(last["verified_ratio"]), below(last["verified_ratio"], t_ratio)),
              Kpi("proof success", fmt_ratio(last["proof_success_rate"]), below(last["proof_success_rate"], t_proof)),
              Kpi("utilisation CV", fmt_float(last["utilization_cv"])),
              Kpi("degraded / unrecoverable objects",
                  f'{fmt_int(last["objects_degraded"])} / {fmt_int(last["objects_unrecoverable"])}',
                  "bad" if last["objects_unrecoverable"] else ""),
              Kpi("verdict", Badge.of(last["passed"], last["failed_criteria"]))],
        figures=[Figure(nodes), Figure(ratio), Figure(proof), utilisation_latest(store, CHARTS[3], t_mom), Figure(cv)],
    )


def utilisation_latest(store: Store, chart: tuple[str, str], t_mom: float | None) -> Figure:
    """Utilisation per in-service node on the latest day (a histogram when there are many nodes)."""
    cid, title = chart
    if not store.has(DISTRIBUTION):
        return Figure(EmptyChart(cid, title, "node", "utilisation", f"no {DISTRIBUTION} table yet"))
    day = store.rows(f"SELECT max(partition_key) AS d FROM {DISTRIBUTION}")[0]["d"]
    rows = store.rows("SELECT node_id, utilization, shard_bytes, capacity_bytes, shard_count "
                      f"FROM {DISTRIBUTION} WHERE partition_key = ? AND utilization IS NOT NULL ORDER BY node_id", [day])
    if not rows:
        return Figure(EmptyChart(cid, title, "node", "utilisation", f"no utilisation on {day}"))
    utils = [float(r["utilization"]) for r in rows]
    mean = sum(utils) / len(utils)
    limit = mean * t_mom if t_mom is not None else None
    title = f"{title}: {day}"
    if len(rows) <= MAX_NODE_BARS:
        tips = [f"{r['node_id']}: {u * 100:.2f}% ({fmt_bytes(r['shard_bytes'])} of {fmt_bytes(r['capacity_bytes'])}, "
                f"{fmt_int(r['shard_count'])} shards)" for r, u in zip(rows, utils)]
        bars = BarChart(cid, title, "node", "shard bytes / capacity", [r["node_id"] for r in rows],
                        [Series("", utils, BLUE, tips)],
                        bar_colors=[RED if limit is not None and u > limit else BLUE for u in utils],
                        y_format="pct", mean_line=mean, mean_label="mean", max_labels=12)
        note = f"{len(rows)} in-service nodes; max/mean {max(utils) / mean:.3f}" if mean else ""
        if limit is not None:
            note += f" (limit {t_mom:g}; bars above {limit * 100:.1f}% would be red)."
        return Figure(bars, note)
    width = (max(utils) or 1.0) / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for u in utils:
        counts[min(int(u / width), HISTOGRAM_BINS - 1)] += 1
    labels = [f"{i * width * 100:.0f}–{(i + 1) * width * 100:.0f}%" for i in range(HISTOGRAM_BINS)]
    colors = [RED if limit is not None and (i * width) > limit else BLUE for i in range(HISTOGRAM_BINS)]
    bars = BarChart(cid, title, "utilisation (shard bytes / capacity)", "nodes", labels,
                    [Series("", [float(x) for x in counts], BLUE)], bar_colors=colors, max_labels=10, integer=True)
    return Figure(bars, f"{len(rows):,} in-service nodes (histogram: more than {MAX_NODE_BARS} nodes); mean "
                        f"{mean * 100:.2f}%, max/mean {max(utils) / mean:.3f}.")
