"""Reaction to node failure: one response run per failure (a dynamic partition per failure id).

The response produces the shard redistribution plan, the AEGIS re-verification of every
receiving node, the reward adjustment proposal and the evidence
`node_failure_response/<node>_<YYYYMMDD>.json`. The sensor that launches it is in `sensors.py`.
"""

import datetime as dt

import dagster as dg

from qfs_assets import registry
from qfs_assets.activities.node_failure.assess import ACTIVITY, criteria_specs, respond_to_failure
from qfs_assets.activities.node_failure.detect import failure_from_id
from qfs_assets.activities.node_failure.params import NodeFailureParams
from qfs_assets.defs.common import (activity_job, check_specs, config_class, config_guard, evidence_result,
                                    judge_activity, params_from_config)
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.readers.base import BadInput

SPEC = registry.get(ACTIVITY)
GROUP = SPEC.group
node_failures = dg.DynamicPartitionsDefinition(name="node_failures")
CHECKS = [s.name for s in criteria_specs()]


NodeFailureConfig = config_class(
    NodeFailureParams, "NodeFailureConfig",
    "Parameters of the response; `aegis` are node health's AEGIS thresholds (the deployment's [node_health] "
    "section by default), so the receivers are re-verified as node health judges nodes.",
    as_of=(str, ""),  # YYYY-MM-DD; default: the first nodes snapshot on or after the failure day
)


def _as_of(reader, failed_on: dt.date, override: str) -> dt.date:
    if override:
        return dt.date.fromisoformat(override)
    days = [d for d in reader.available_dates("nodes") if d >= failed_on]
    if not days:
        raise BadInput("nodes", f"no snapshot on or after the failure day {failed_on.isoformat()}", file=reader.table_dir("nodes"))
    return days[0]


@dg.multi_asset(
    partitions_def=node_failures,
    group_name=GROUP,
    specs=[
        dg.AssetSpec("shard_redistribution_plan", kinds={"parquet"},
                     description="Every shard of the failed node with a deterministic target (weighted rendezvous "
                                 "hashing over free capacity; never co-located, never unverified or full nodes)."),
        dg.AssetSpec("aegis_reverification", kinds={"parquet"}, deps=["shard_redistribution_plan"],
                     description="AEGIS re-verification of every receiving node as of the newest data."),
        dg.AssetSpec("reward_adjustment", kinds={"parquet"},
                     description="Proposed claw-back of rewards paid to the node after its failure, and its exclusion "
                                 "from reward runs until it is active again (never applied automatically)."),
        dg.AssetSpec(ACTIVITY, kinds={"json", "parquet"},
                     deps=["shard_redistribution_plan", "aegis_reverification", "reward_adjustment"],
                     description=f"Node failure response evidence. Runbook: {SPEC.runbook}"),
    ],
    check_specs=check_specs(ACTIVITY, CHECKS, partitions_def=node_failures),
)
def node_failure_response(context: dg.AssetExecutionContext, config: NodeFailureConfig,
                          export: ExportResource, evidence: EvidenceResource):
    reader = export.reader()
    params = params_from_config(NodeFailureParams, config)

    def assess():
        try:
            failure = failure_from_id(reader, context.partition_key)
        except ValueError as exc:  # not a failure id (a hostile node id would name files outside the root)
            raise BadInput(ACTIVITY, f"partition key: {exc}") from None
        except KeyError:
            raise BadInput("eqm", f"no failure {context.partition_key} in the log or the snapshots") from None
        as_of = config_guard(lambda: _as_of(reader, failure.failed_on, config.as_of))
        return respond_to_failure(reader, failure, as_of, params)

    judged = judge_activity(context, evidence.store(), assess, params)
    m = judged.metrics
    yield dg.MaterializeResult(asset_key="shard_redistribution_plan", metadata={
        k: m[k] for k in ("shards_to_move", "bytes_to_move", "shards_unplaceable") if k in m})
    yield dg.MaterializeResult(asset_key="aegis_reverification", metadata={
        k: m[k] for k in ("receiving_nodes", "receivers_verified") if k in m})
    yield dg.MaterializeResult(asset_key="reward_adjustment", metadata={
        k: m[k] for k in ("clawback_nod", "rewards_clawed_back") if k in m})
    yield evidence_result(judged)


node_failure_response_job = activity_job(ACTIVITY, description="Respond to one node failure (one dynamic partition per failure).")
