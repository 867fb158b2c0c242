"""Daily node health: input assets over the day's export partitions, then the assessment.

Runbook: docs/runbooks/node-failure.md
"""


import datetime as dt

import dagster as dg

from qfs_assets.defs import partitions
from qfs_assets.evidence import gx_suite
from qfs_assets.defs.common import (
    bad_input_guard,
    config_guard,
    check_results,
    check_specs,
    evidence_metadata,
    judge_and_publish,
    validated_partitions,
)
from qfs_assets.defs.node_health.metrics import ACTIVITY, NodeHealthParams, assess_node_health, criteria_specs
from qfs_assets.defs.resources import EvidenceResource, ExportResource

GROUP = "node_health"
CHECKS = [s.name for s in criteria_specs(NodeHealthParams())]
RUNBOOK = "docs/runbooks/node-failure.md"


class NodeHealthConfig(dg.Config):
    """Thresholds (evidence-v1 defaults); the evidence records the values used."""

    min_verified_ratio: float = 0.95
    min_proof_success_rate: float = 0.99
    max_utilization_cv: float = 0.25
    max_utilization_max_over_mean: float = 1.5
    heartbeat_max_age_seconds: int = 3600
    min_stake_nod: int = 1000 * 10**8
    min_node_pass_bps: int = 9500

    def params(self) -> NodeHealthParams:
        return NodeHealthParams(**self.model_dump())


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


@dg.asset(partitions_def=partitions.daily, group_name=GROUP, kinds={"parquet"},
          description="The day's node inventory (`nodes/snapshot_date=`), gated: partitions present, files readable with the contract's columns.")
def node_inventory(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "nodes", [_day(context)]))


@dg.asset(partitions_def=partitions.daily, group_name=GROUP, kinds={"parquet"},
          description="The day's object manifest (`objects/snapshot_date=`), gated: partitions present, files readable with the contract's columns.")
def object_manifest(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "objects", [_day(context)]))


@dg.asset(partitions_def=partitions.daily, group_name=GROUP, kinds={"parquet"},
          description="The day's shard placement (`shards/snapshot_date=`): partitions present, files readable with the "
                      "contract's columns; values and key uniqueness are checked by the assessment in the same scan "
                      "as its group-by.")
def shard_map(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "shards", [_day(context)]))


@dg.asset(partitions_def=partitions.daily, group_name=GROUP, kinds={"parquet"},
          description="The day's proof-of-storage challenges (`proofs/date=`), gated: partitions present, files readable with the contract's columns.")
def proof_results(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "proofs", [_day(context)]))


INPUTS = [node_inventory, object_manifest, shard_map, proof_results]


@dg.multi_asset(
    partitions_def=partitions.daily,
    group_name=GROUP,
    specs=[
        dg.AssetSpec("aegis_verification", kinds={"parquet"}, deps=INPUTS,
                     description="Per-node AEGIS verdict for the day (evidence table `node_health_aegis`)."),
        dg.AssetSpec("shard_distribution", kinds={"parquet"}, deps=INPUTS,
                     description="Shard bytes and utilisation per in-service node (evidence table `node_health_distribution`)."),
        dg.AssetSpec(ACTIVITY, kinds={"json", "parquet"},
                     deps=["aegis_verification", "shard_distribution"],
                     description="Daily node health evidence (evidence-v1 `node_health_assessment`). "
                                 f"Runbook: {RUNBOOK}"),
    ],
    check_specs=check_specs(ACTIVITY, CHECKS),
)
def node_health_assessment(context: dg.AssetExecutionContext, config: NodeHealthConfig,
                           export: ExportResource, evidence: EvidenceResource):
    gx_suite.prefetch()  # GX's import overlaps the DuckDB scans
    day = _day(context)
    params = config_guard(config.params)
    result = bad_input_guard(lambda: assess_node_health(export.reader(), day, params))
    criteria, path = judge_and_publish(result, evidence.store(), context)
    m = result.metrics
    yield dg.MaterializeResult(asset_key="aegis_verification", metadata={
        "in_service_nodes": m["in_service_nodes"], "verified_nodes": m["verified_nodes"],
        "verified_ratio": dg.MetadataValue.float(m["verified_ratio"] if m["verified_ratio"] is not None else float("nan")),
        "unverified_node_ids": dg.MetadataValue.json(m["unverified_node_ids"]),
    })
    yield dg.MaterializeResult(asset_key="shard_distribution", metadata={
        "utilization_cv": dg.MetadataValue.float(m["utilization_cv"] if m["utilization_cv"] is not None else float("nan")),
        "utilization_max_over_mean": dg.MetadataValue.float(
            m["utilization_max_over_mean"] if m["utilization_max_over_mean"] is not None else float("nan")),
        "shard_bytes_total": m["shard_bytes_total"],
    })
    yield dg.MaterializeResult(asset_key=ACTIVITY, metadata=evidence_metadata(result, criteria, path),
                               check_results=check_results(ACTIVITY, criteria))


node_health_assessment_job = dg.define_asset_job(
    f"{ACTIVITY}_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Daily node health assessment: validate the day's export partitions and judge them.",
)

defs = dg.Definitions(
    assets=[node_inventory, object_manifest, shard_map, proof_results, node_health_assessment],
    jobs=[node_health_assessment_job],
)
