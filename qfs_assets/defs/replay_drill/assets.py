"""Quarterly replay drill: replay the EQM log from genesis and compare with the checkpoints.

Runbook: docs/runbooks/replay-from-logs.md
"""

import datetime as dt

import dagster as dg

from qfs_assets.defs import partitions
from qfs_assets.evidence import gx_suite
from qfs_assets.defs.common import (
    bad_input_guard,
    check_results,
    check_specs,
    evidence_metadata,
    judge_and_publish,
    validated_partitions,
)
from qfs_assets.defs.replay_drill.drill import ACTIVITY, DrillParams, assess_replay_drill, criteria_specs
from qfs_assets.defs.resources import EvidenceResource, ExportResource

GROUP = "replay_drill"
RUNBOOK = "docs/runbooks/replay-from-logs.md"
CHECKS = [s.name for s in criteria_specs()]


@dg.asset(partitions_def=partitions.quarterly, group_name=GROUP, kinds={"parquet"},
          description="The production engine's published state roots (`checkpoints/`), validated.")
def published_checkpoints(context: dg.AssetExecutionContext, export: ExportResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=validated_partitions(export, "checkpoints", []))


@dg.asset(
    partitions_def=partitions.quarterly,
    group_name=GROUP,
    kinds={"json", "parquet"},
    deps=[published_checkpoints],
    check_specs=check_specs(ACTIVITY, CHECKS),
    description="Quarterly replay drill evidence (evidence-v1 `storage_replay_drill`): a fresh engine replays the "
                f"EQM log from genesis through the quarter and must reproduce every checkpoint. Runbook: {RUNBOOK}",
)
def storage_replay_drill(context: dg.AssetExecutionContext, export: ExportResource,
                         evidence: EvidenceResource) -> dg.MaterializeResult:
    gx_suite.prefetch()  # GX's import overlaps the DuckDB scans
    quarter = dt.date.fromisoformat(context.partition_key)
    result = bad_input_guard(lambda: assess_replay_drill(export.reader(), quarter, DrillParams()))
    criteria, path = judge_and_publish(result, evidence.store(), context)
    metadata = evidence_metadata(result, criteria, path)
    metadata["events_per_second"] = dg.MetadataValue.float(float(result.extra["timings"]["events_per_second"]))
    metadata["peak_rss_bytes"] = dg.MetadataValue.int(int(result.extra["timings"]["peak_rss_bytes"]))
    if all(c.passed for c in criteria):
        metadata["last_successful_drill"] = dg.MetadataValue.text(result.partition)
    return dg.MaterializeResult(metadata=metadata, check_results=check_results(ACTIVITY, criteria))


storage_replay_drill_job = dg.define_asset_job(
    f"{ACTIVITY}_job", selection=dg.AssetSelection.groups(GROUP),
    description="Quarterly replay drill (Jan/Apr/Jul/Oct 1, UTC).")

defs = dg.Definitions(assets=[published_checkpoints, storage_replay_drill], jobs=[storage_replay_drill_job])
