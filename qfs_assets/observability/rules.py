"""Prometheus alerting rules generated from the criteria themselves.

Every activity's criteria are data (:class:`~qfs_assets.evidence.model.CriterionSpec`: rules over
judge-table columns, built from the parameters' defaults). This module turns each criterion
into one alert that fires when any of its rules does not hold on the exported gauges, so the
thresholds in ``deploy/prometheus/qfs-assure-rules.yml`` are the code's defaults by
construction (a test regenerates the file and compares). Beside them:

* ``QfsAssureVerdictFailed``: the latest verdict of an activity failed, whatever thresholds the
  operator configured (the criterion alerts mirror the defaults; this one follows the evidence);
* ``QfsAssureDualWriteDiffUnresolved``: a dual-write difference has stayed open longer than the
  resolution window at the latest daily diff, the day it happens (not at the month's end);
* ``QfsAssureEvidenceStale``: no evidence written for longer than the cadence plus a grace day;
* ``QfsAssureEvidenceUnreadable`` and ``QfsAssureExporterAbsent``.

Regenerate after changing a default: ``python -m qfs_assets.observability.rules > deploy/prometheus/qfs-assure-rules.yml``.
No Dagster here (the criteria modules are pure).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from qfs_assets import registry
from qfs_assets.evidence.model import CriterionSpec, Rule
from qfs_assets.observability.metrics import PREFIX

DAY = 86_400

#: How a judge-table column reads on the exported gauges (a PromQL expression).
COLUMN_EXPR: dict[str, dict[str, str]] = {
    "node_health_assessment": {
        "verified_ratio": "node_health_verified_ratio",
        "proof_success_rate": "node_health_proof_success_ratio",
        "utilization_cv": "node_health_utilization_cv",
        "utilization_max_over_mean": "node_health_utilization_max_over_mean",
        "objects_unrecoverable": "node_health_objects_unrecoverable",
        "corruption_errors": "node_health_corruption_errors",
    },
    "economics_sanity_check": {
        "margin_atr": "economics_margin_atr",
        "duplicate_tx_ids": "economics_duplicate_tx_ids",
        "duplicate_reward_ids": "economics_duplicate_reward_ids",
        "non_positive_amounts": "economics_non_positive_amounts",
        "rewards_to_failed_nodes": "economics_rewards_to_failed_nodes",
        "ledger_vs_log_atr": "economics_ledger_vs_log_atr",
    },
    "dual_write_verification": {
        "objects_count_difference": "(qfs_assure_dual_write_sor_objects - qfs_assure_dual_write_storage_objects)",
        "inconsistencies": "dual_write_inconsistencies",
        "sample_failures": "dual_write_sample_failures",
        "unresolved_over_24h": "dual_write_unresolved_over_24h",
        "resolved_late": "dual_write_resolved_late",
    },
    "storage_replay_drill": {
        "chain_intact": "replay_chain_intact",
        "invalid_events": "replay_invalid_events",
        "checkpoints_compared": "replay_checkpoints_compared",
        "checkpoints_unmatched": "(qfs_assure_replay_checkpoints_compared - qfs_assure_replay_checkpoints_matched)",
    },
    "node_failure_response": {
        "shards_unplaceable": "node_failure_shards_unplaceable",
        "receivers_unverified": "node_failure_receivers_unverified",
        "co_located_objects": "node_failure_co_located_objects",
        "receivers_over_capacity": "node_failure_receivers_over_capacity",
    },
}

#: The longest window of each time cadence, in days (a month 31, a quarter 92).
CADENCE_MAX_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92}

#: How long an activity may go without writing evidence: its cadence's longest window plus one
#: day (every activity of the registry that writes a verdict on a time cadence).
STALE_AFTER_SECONDS = {a.name: (CADENCE_MAX_DAYS[a.cadence] + 1) * DAY
                       for a in registry.with_evidence() if a.cadence in CADENCE_MAX_DAYS}

#: The runbook each alert links: the registry's (one home for an activity's runbook).
RUNBOOKS = registry.runbooks()


def default_criteria() -> dict[str, list[CriterionSpec]]:
    """Each activity's criteria built from its parameters' defaults (the code's single source)."""
    from qfs_assets.activities.dual_write.params import DualWriteParams
    from qfs_assets.activities.dual_write.assess import criteria_specs as dual_write_criteria
    from qfs_assets.activities.economics.assess import CRITERIA as ECONOMICS_CRITERIA
    from qfs_assets.activities.node_failure.assess import criteria_specs as node_failure_criteria
    from qfs_assets.activities.node_health.params import NodeHealthParams
    from qfs_assets.activities.node_health.assess import criteria_specs as node_health_criteria
    from qfs_assets.activities.replay_drill.assess import criteria_specs as replay_criteria

    return {
        "node_health_assessment": list(node_health_criteria(NodeHealthParams())),
        "economics_sanity_check": list(ECONOMICS_CRITERIA),
        "dual_write_verification": list(dual_write_criteria(DualWriteParams())),
        "storage_replay_drill": list(replay_criteria()),
        "node_failure_response": list(node_failure_criteria()),
    }


def default_resolution_hours() -> float:
    from qfs_assets.activities.dual_write.params import DualWriteParams

    return float(DualWriteParams().resolution_hours)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def column_expr(activity: str, column: str) -> str:
    try:
        expr = COLUMN_EXPR[activity][column]
    except KeyError:
        raise KeyError(f"criterion column {activity}.{column} has no exported gauge: add it to "
                       "qfs_assets/observability (metrics.HEADLINES and rules.COLUMN_EXPR)") from None
    return expr if expr.startswith("(") else f"{PREFIX}_{expr}"


def violation(activity: str, rule: Rule) -> list[str]:
    """PromQL conditions, any of which means ``rule`` does not hold."""
    e = column_expr(activity, rule.column)
    if rule.equals is not None:
        return [f"{e} != {_num(rule.equals)}"]
    out = []
    if rule.min_value is not None:
        out.append(f"{e} {'<=' if rule.strict_min else '<'} {_num(rule.min_value)}")
    if rule.max_value is not None:
        out.append(f"{e} {'>=' if rule.strict_max else '>'} {_num(rule.max_value)}")
    return out


def _threshold_text(t: Any) -> str:
    if isinstance(t, dict):
        return ", ".join(f"{k} {v}" for k, v in t.items())
    return str(t)


def _camel(*parts: str) -> str:
    return "".join(w.capitalize() for p in parts for w in p.split("_"))


def criterion_alert(activity: str, spec: CriterionSpec) -> dict:
    conds = [c for r in spec.rules for c in violation(activity, r)]
    expr = " or ".join(f"({c})" for c in conds) if len(conds) > 1 else conds[0]
    return {
        "alert": f"QfsAssure{_camel(activity)}{_camel(spec.name)}",
        "expr": expr,
        "labels": {"severity": "critical" if activity != "node_failure_response" else "warning",
                   "activity": activity, "criterion": spec.name},
        "annotations": {
            # literal: a rule's own labels are not in $labels when its annotations are rendered
            "summary": f"{activity} {spec.name} fails on the latest partition",
            "description": f"Passes when {spec.description or spec.name} (default threshold {_threshold_text(spec.threshold)}).",
            "runbook": RUNBOOKS[activity],
        },
    }


def build_rules() -> dict:
    criteria_rules = [criterion_alert(a, spec) for a, specs in default_criteria().items() for spec in specs]
    window = default_resolution_hours() * 3600
    ops = [
        {
            "alert": "QfsAssureVerdictFailed",
            "expr": f"{PREFIX}_verdict_passed == 0",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.activity }}: the latest verdict failed",
                "description": "At least one criterion of the latest partition failed with the thresholds the "
                               "operator configured (the evidence JSON names them).",
            },
        },
        {
            "alert": "QfsAssureDualWriteDiffUnresolved",
            "expr": f"{PREFIX}_dual_write_oldest_open_diff_age_seconds > {_num(window)}",
            "labels": {"severity": "critical", "activity": "dual_write_diff"},
            "annotations": {
                "summary": "A dual-write difference is open for longer than the resolution window",
                "description": "The diff ledger's oldest open difference was first seen more than "
                               f"{window / 3600:g} h before its latest run.",
                "runbook": RUNBOOKS["dual_write_verification"],
            },
        },
        *[
            {
                "alert": "QfsAssureEvidenceStale",
                "expr": f'time() - {PREFIX}_last_run_timestamp_seconds{{activity="{a}"}} > {seconds}',
                "labels": {"severity": "warning", "activity": a},
                "annotations": {
                    "summary": f"{a}: no evidence written for {seconds // DAY} days",
                    "description": "The schedule may be stopped, or its runs fail before writing evidence "
                                   "(bad input writes none): see the Dagster UI's runs.",
                },
            }
            for a, seconds in STALE_AFTER_SECONDS.items()
        ],
        {
            "alert": "QfsAssureEvidenceUnreadable",
            "expr": f"{PREFIX}_evidence_unreadable_files > 0",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "{{ $labels.activity }}: verdict files that cannot be parsed",
                            "description": "The exporter leaves unreadable verdict files out; look for truncated JSON."},
        },
        {
            "alert": "QfsAssureExporterAbsent",
            "expr": f"absent({PREFIX}_evidence_partitions)",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "No QFS Assure metrics scraped for 10 minutes",
                            "description": "`qfs-assure metrics` is down, or the textfile is not collected."},
        },
    ]
    return {"groups": [
        {"name": "qfs-assure-criteria", "rules": criteria_rules},
        {"name": "qfs-assure-operations", "rules": ops},
    ]}


HEADER = ("# Generated by `python -m qfs_assets.observability.rules` from the criteria's defaults\n"
          "# (qfs_assets/activities/*: CriterionSpec). Do not edit by hand: a test compares this file with the generator.\n")


def render() -> str:
    return HEADER + yaml.safe_dump(build_rules(), sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(render())
