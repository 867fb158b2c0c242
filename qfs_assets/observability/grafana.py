"""The Grafana dashboard over the exporter's metrics (``deploy/grafana/qfs-assure.json``).

The plan's five panels (storage health, AEGIS verification, economic flow, dual-write
consistency, replay status) plus the latest verdicts at a glance. Generated, so every query
names only metrics the exporter exposes (a test checks that, and that each query answers in a
real Prometheus); regenerate with ``python -m qfs_assets.observability.grafana > deploy/grafana/qfs-assure.json``.
Import it in Grafana (Dashboards > New > Import) and pick the Prometheus data source. No Dagster here.
"""

from __future__ import annotations

import json
import sys

P = "qfs_assure_"
DS = {"type": "prometheus", "uid": "${datasource}"}


def _target(ref: str, expr: str, legend: str) -> dict:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}


def _panel(pid: int, title: str, description: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int],
           unit: str = "short", kind: str = "timeseries", overrides: list | None = None, extra: dict | None = None) -> dict:
    x, y, w, h = grid
    panel = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides or []},
        "targets": [_target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(targets)],
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]}},
    }
    if extra:
        panel.update(extra)
    return panel


def _unit(name: str, unit: str) -> dict:
    return {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}


#: Panel titles (the plan's five panels first).
PLAN_PANELS = ("Storage health", "AEGIS verification", "Economic flow", "Dual-write consistency", "Replay status")


def build_dashboard() -> dict:
    panels = [
        _panel(1, "Latest verdicts", "1 = the latest partition of the activity passed every criterion; 0 = a criterion failed.",
               [(f"{P}verdict_passed", "{{activity}}")], (0, 0, 16, 5), kind="stat",
               extra={"options": {"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
                      "fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {
                          "0": {"text": "FAILED", "color": "red"}, "1": {"text": "passed", "color": "green"}}}],
                          "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                         {"color": "green", "value": 1}]}},
                          "overrides": []}}),
        _panel(2, "Evidence age", "Time since each activity last wrote evidence (bad input writes none).",
               [(f"time() - {P}last_run_timestamp_seconds", "{{activity}}")], (16, 0, 8, 5), unit="s", kind="stat",
               extra={"options": {"graphMode": "none", "textMode": "value_and_name",
                                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}),
        _panel(3, PLAN_PANELS[0], "Objects degraded and unrecoverable, storage and corruption errors (none plotted when the "
               "export has no storage_errors feed), and the spread of node utilisation, day by day.",
               [(f"{P}node_health_objects_degraded", "objects degraded"),
                (f"{P}node_health_objects_unrecoverable", "objects unrecoverable"),
                (f"{P}node_health_storage_errors", "storage errors"),
                (f"{P}node_health_corruption_errors", "corruption errors"),
                (f"{P}node_health_utilization_cv", "utilisation CV"),
                (f"{P}node_health_utilization_max_over_mean", "utilisation max / mean")],
               (0, 5, 12, 9),
               overrides=[_unit("utilisation CV", "percentunit"), _unit("utilisation max / mean", "none")]),
        _panel(4, PLAN_PANELS[1], "Share of in-service nodes passing AEGIS and of proof challenges passed, latest day.",
               [(f"{P}node_health_verified_ratio", "verified ratio"),
                (f"{P}node_health_proof_success_ratio", "proof success"),
                (f"{P}node_health_verified_nodes", "verified nodes"),
                (f"{P}node_health_in_service_nodes", "in-service nodes")],
               (12, 5, 12, 9), unit="percentunit",
               overrides=[_unit("verified nodes", "none"), _unit("in-service nodes", "none")]),
        _panel(5, PLAN_PANELS[2], "Fees, rewards (in ATR), buffer and margin of the latest week, ATR minor units. "
               "Conservation holds while the margin is >= 0.",
               [(f"{P}economics_fees_atr", "fees"), (f"{P}economics_rewards_in_atr", "rewards in ATR"),
                (f"{P}economics_buffer_atr", "buffer"), (f"{P}economics_margin_atr", "margin")],
               (0, 14, 12, 9), unit="none"),
        _panel(6, PLAN_PANELS[3], "Inconsistencies of the latest monthly verification by category, differences open in the "
               "diff ledger, and the age of the oldest open one (alert above the resolution window).",
               [(f"{P}dual_write_inconsistencies_by_category", "{{category}}"),
                (f"{P}dual_write_open_diffs", "open diffs"),
                (f"{P}dual_write_open_diffs_over_resolution_window", "open past the window"),
                (f"{P}dual_write_oldest_open_diff_age_seconds / 3600", "oldest open diff (hours)"),
                (f"{P}dual_write_sor_objects - {P}dual_write_storage_objects", "SoR - storage objects")],
               (12, 14, 12, 9), unit="none"),
        _panel(7, PLAN_PANELS[4], "The latest quarterly replay drill: checkpoints compared and matched, chain integrity "
               "and invalid events.",
               [(f"{P}replay_checkpoints_compared", "checkpoints compared"),
                (f"{P}replay_checkpoints_matched", "checkpoints matched"),
                (f"{P}replay_chain_intact", "chain intact"),
                (f"{P}replay_invalid_events", "invalid events"),
                (f"{P}replay_events_replayed", "events replayed")],
               (0, 23, 24, 8), unit="none"),
    ]
    return {
        "uid": "qfs-assure",
        "title": "QFS Assure",
        "description": "Storage assurance of the QFS V13.5 deployment, from the evidence store (qfs-assure metrics).",
        "tags": ["qfs", "assurance"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-90d", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                                 "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
