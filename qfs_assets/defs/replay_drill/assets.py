"""Quarterly replay drill: replay the EQM log from genesis and compare with the checkpoints."""

import datetime as dt
import os

import dagster as dg

from qfs_assets import registry
from qfs_assets.activities.replay_drill.assess import ACTIVITY, assess_replay_drill, criteria_specs
from qfs_assets.activities.replay_drill.params import DrillParams
from qfs_assets.defs import partitions
from qfs_assets.defs.common import (activity_job, check_specs, config_class, evidence_result, input_asset,
                                    judge_activity, params_from_config)
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.storage_uri import local_state_dir

SPEC = registry.get(ACTIVITY)
GROUP = SPEC.group
CHECKS = [s.name for s in criteria_specs()]
DrillConfig = config_class(DrillParams, "DrillConfig", "Execution knobs of the drill (it has no thresholds).")

published_checkpoints = input_asset(
    "checkpoints", name="published_checkpoints", partitions_def=partitions.quarterly, group=GROUP,
    days=lambda key: [], description="The production engine's published state roots (`checkpoints/`), validated.")


@dg.asset(
    partitions_def=partitions.quarterly,
    group_name=GROUP,
    kinds={"json", "parquet"},
    deps=[published_checkpoints],
    check_specs=check_specs(ACTIVITY, CHECKS, partitions_def=partitions.quarterly),
    description="Quarterly replay drill evidence (evidence-v1 `storage_replay_drill`): a fresh engine replays the "
                f"EQM log from genesis through the quarter and must reproduce every checkpoint. Runbook: {SPEC.runbook}",
)
def storage_replay_drill(context: dg.AssetExecutionContext, config: DrillConfig, export: ExportResource,
                         evidence: EvidenceResource) -> dg.MaterializeResult:
    # QFS_REPLAY_START_FROM (set by `qfs-assure run ... --start-from`) changes the default start
    env_start = os.environ.get("QFS_REPLAY_START_FROM")
    overrides = {"start_from": env_start} if env_start and config.start_from == "genesis" else {}
    params = params_from_config(DrillParams, config, **overrides)
    quarter = dt.date.fromisoformat(context.partition_key)
    store = evidence.store()
    judged = judge_activity(context, store, lambda: assess_replay_drill(export.reader(), quarter, params,
                                                                        state_root=local_state_dir(store.root)), params)
    timings = judged.result.extra["timings"]
    extra = {"events_per_second": dg.MetadataValue.float(float(timings["events_per_second"])),
             "peak_rss_bytes": dg.MetadataValue.int(int(timings["peak_rss_bytes"]))}
    if judged.passed:
        extra["last_successful_drill"] = dg.MetadataValue.text(judged.result.partition)
    return evidence_result(judged, **extra)


storage_replay_drill_job = activity_job(ACTIVITY)
