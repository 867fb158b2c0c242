"""Reaction to node failure: a sensor over the export, and one response run per failure.

The sensor `node_failure_sensor` watches the EQM log's `node_status_changed` events and the
newest `nodes` snapshots; for each node newly `failed` it adds one dynamic partition (the
failure id `<node_id>_<YYYYMMDD>`) and requests one run with that run key, so a sensor restart
or a re-evaluated tick launches nothing twice. The response produces the shard
redistribution plan, the AEGIS re-verification of every receiving node, the reward adjustment
proposal and the evidence `node_failure_response/<node>_<YYYYMMDD>.json`.

Runbook: docs/runbooks/node-failure.md
"""

import datetime as dt

import dagster as dg

from qfs_assets.evidence import gx_suite

from qfs_assets.defs.common import (
    bad_input_guard,
    check_results,
    check_specs,
    config_guard,
    evidence_metadata,
    judge_and_publish,
)
from qfs_assets.defs.node_failure.detect import FailureCursor, failure_from_id, scan_failures
from qfs_assets.defs.node_failure.response import ACTIVITY, NodeFailureParams, criteria_specs, respond_to_failure
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.readers.base import BadInput

GROUP = "node_failure"
RUNBOOK = "docs/runbooks/node-failure.md"
node_failures = dg.DynamicPartitionsDefinition(name="node_failures")
CHECKS = [s.name for s in criteria_specs()]


class NodeFailureConfig(dg.Config):
    as_of: str = ""  # YYYY-MM-DD; default: the first nodes snapshot on or after the failure day


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
                     description=f"Node failure response evidence. Runbook: {RUNBOOK}"),
    ],
    check_specs=check_specs(ACTIVITY, CHECKS),
)
def node_failure_response(context: dg.AssetExecutionContext, config: NodeFailureConfig,
                          export: ExportResource, evidence: EvidenceResource):
    gx_suite.prefetch()  # GX's import overlaps the DuckDB scans
    reader = export.reader()

    def run():
        try:
            failure = failure_from_id(reader, context.partition_key)
        except KeyError:
            raise BadInput("eqm", f"no failure {context.partition_key} in the log or the snapshots") from None
        as_of = config_guard(lambda: _as_of(reader, failure.failed_on, config.as_of))
        return respond_to_failure(reader, failure, as_of, NodeFailureParams())

    result = bad_input_guard(run)
    criteria, path = judge_and_publish(result, evidence.store(), context)
    m = result.metrics
    yield dg.MaterializeResult(asset_key="shard_redistribution_plan", metadata={
        k: m[k] for k in ("shards_to_move", "bytes_to_move", "shards_unplaceable") if k in m})
    yield dg.MaterializeResult(asset_key="aegis_reverification", metadata={
        k: m[k] for k in ("receiving_nodes", "receivers_verified") if k in m})
    yield dg.MaterializeResult(asset_key="reward_adjustment", metadata={
        k: m[k] for k in ("clawback_nod", "rewards_clawed_back") if k in m})
    yield dg.MaterializeResult(asset_key=ACTIVITY, metadata=evidence_metadata(result, criteria, path),
                               check_results=check_results(ACTIVITY, criteria))


node_failure_response_job = dg.define_asset_job(
    f"{ACTIVITY}_job", selection=dg.AssetSelection.groups(GROUP),
    description="Respond to one node failure (one dynamic partition per failure).")


@dg.sensor(job=node_failure_response_job, minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches one node failure response per node newly `failed` in the EQM log or the newest snapshot.")
def node_failure_sensor(context: dg.SensorEvaluationContext, export: ExportResource):
    reader = export.reader()
    try:
        failures, cursor = scan_failures(reader, FailureCursor.from_json(context.cursor))
    except BadInput as exc:
        # a sensor error: alerted (sensor_error), shown on the tick, the cursor is not advanced
        from qfs_assets.alerting.dagster_hooks import _sensor_error

        _sensor_error("node_failure_sensor", exc)
        raise dg.DagsterError(str(exc)) from None
    known = set(context.instance.get_dynamic_partitions(node_failures.name)) if context.instance else set()
    new_ids = [f.failure_id for f in failures if f.failure_id not in known]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=f.failure_id, run_key=f.failure_id,
                                    tags={"qfs/source": "node_failure_sensor", "qfs/node_id": f.node_id})
                      for f in failures],
        dynamic_partitions_requests=[node_failures.build_add_request(new_ids)] if new_ids else [],
        cursor=cursor.to_json(),
    )


defs = dg.Definitions(
    assets=[node_failure_response],
    jobs=[node_failure_response_job],
    sensors=[node_failure_sensor],
)
