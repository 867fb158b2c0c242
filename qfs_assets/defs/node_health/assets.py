"""Daily node health: input assets over the day's export partitions, then the assessment."""

import datetime as dt

import dagster as dg

from qfs_assets import registry
from qfs_assets.activities.node_health.assess import ACTIVITY, assess_node_health, criteria_specs
from qfs_assets.activities.node_health.params import NodeHealthParams
from qfs_assets.defs import partitions
from qfs_assets.defs.common import (activity_job, check_specs, config_class, evidence_result, input_asset,
                                    judge_activity, params_from_config)
from qfs_assets.defs.resources import EvidenceResource, ExportResource

SPEC = registry.get(ACTIVITY)
GROUP = SPEC.group
CHECKS = [s.name for s in criteria_specs(NodeHealthParams())]
NodeHealthConfig = config_class(NodeHealthParams, "NodeHealthConfig",
                                "Thresholds (evidence-v1 defaults); the evidence records the values used.")


def _day(key: str) -> list[dt.date]:
    return [dt.date.fromisoformat(key)]


def _input(name: str, table: str, description: str) -> dg.AssetsDefinition:
    return input_asset(table, name=name, partitions_def=partitions.daily, group=GROUP, days=_day,
                       description=description)


node_inventory = _input("node_inventory", "nodes", "The day's node inventory (`nodes/snapshot_date=`), gated: "
                        "partitions present, files readable with the contract's columns.")
object_manifest = _input("object_manifest", "objects", "The day's object manifest (`objects/snapshot_date=`), gated: "
                         "partitions present, files readable with the contract's columns.")
shard_map = _input("shard_map", "shards", "The day's shard placement (`shards/snapshot_date=`): partitions present, files "
                   "readable with the contract's columns; values and key uniqueness are checked by the assessment in "
                   "the same scan as its group-by.")
proof_results = _input("proof_results", "proofs", "The day's proof-of-storage challenges (`proofs/date=`), gated: "
                       "partitions present, files readable with the contract's columns.")
INPUTS = [node_inventory, object_manifest, shard_map, proof_results]


def _nan(value):
    return dg.MetadataValue.float(value if value is not None else float("nan"))


@dg.multi_asset(
    partitions_def=partitions.daily,
    group_name=GROUP,
    specs=[
        dg.AssetSpec("aegis_verification", kinds={"parquet"}, deps=INPUTS,
                     description="Per-node AEGIS verdict for the day (evidence table `node_health_aegis`)."),
        dg.AssetSpec("shard_distribution", kinds={"parquet"}, deps=INPUTS,
                     description="Shard bytes and utilisation per in-service node (evidence table `node_health_distribution`)."),
        dg.AssetSpec(ACTIVITY, kinds={"json", "parquet"}, deps=["aegis_verification", "shard_distribution"],
                     description=f"Daily node health evidence (evidence-v1 `{ACTIVITY}`). Runbook: {SPEC.runbook}"),
    ],
    check_specs=check_specs(ACTIVITY, CHECKS, partitions_def=partitions.daily),
    # a check may be left out: no_corruption_errors is not judged where the storage_errors feed is
    # absent (a v1 export), so it is reported SKIPPED rather than passed
    can_subset=True,
)
def node_health_assessment(context: dg.AssetExecutionContext, config: NodeHealthConfig,
                           export: ExportResource, evidence: EvidenceResource):
    params = params_from_config(NodeHealthParams, config)
    day = dt.date.fromisoformat(context.partition_key)
    store = evidence.store()
    judged = judge_activity(context, store, lambda: assess_node_health(export.reader(), day, params), params)
    m = judged.metrics
    _alert_on_lost_redundancy(context, store.root, day, judged)
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    if "aegis_verification" in selected:
        yield dg.MaterializeResult(asset_key="aegis_verification", metadata={
            "in_service_nodes": m["in_service_nodes"], "verified_nodes": m["verified_nodes"],
            "verified_ratio": _nan(m["verified_ratio"]),
            "unverified_node_ids": dg.MetadataValue.text(", ".join(m["unverified_node_ids"]) or "—"),
        })
    if "shard_distribution" in selected:
        yield dg.MaterializeResult(asset_key="shard_distribution", metadata={
            "utilization_cv": _nan(m["utilization_cv"]),
            "utilization_max_over_mean": _nan(m["utilization_max_over_mean"]),
            "shard_bytes_total": m["shard_bytes_total"],
        })
    if ACTIVITY in selected:
        yield evidence_result(judged)


def _alert_on_lost_redundancy(context, evidence_root, day: dt.date, judged) -> None:
    """``redundancy_lost`` when more objects than the threshold are degraded, some newly (never raises)."""
    from qfs_assets.alerting.config import load_config
    from qfs_assets.defs.alerting.sensors import send_event
    from qfs_assets.monitoring.redundancy import TABLE, previous_degraded, redundancy_alert

    try:
        config = load_config(evidence_root=evidence_root)
        alert = redundancy_alert(day, judged.result.tables[TABLE], previous_degraded(evidence_root, day),
                                 config.degraded_objects_over, str(judged.path))
    except Exception as exc:  # noqa: BLE001 - alerting never fails the asset
        context.log.error(f"redundancy alerting failed: {type(exc).__name__}: {exc}")
        return
    if alert is not None:
        send_event(context, alert, config=config)


node_health_assessment_job = activity_job(ACTIVITY)
