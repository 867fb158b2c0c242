"""Dual-write verification: the Atlas gateway's system of record against the StorageEngine.

- `dual_write_diff` (daily): the live `qfs_objects` against the day's manifest; every
  difference is classified and recorded in the persistent diff ledger (first seen, resolved).
- `dual_write_verification` (monthly): the evidence of the month, with the 1% sample checked
  against the shard map, `unresolved_over_24h` from the ledger, and a reconciliation plan
  written beside it as SQL (never applied).

The time a run judges "as of" (for the ledger's 24-hour rule) is the end of the partition's
window, or now if that is earlier: a backfill gives the ledger the schedule would have given.
"""

import datetime as dt

import dagster as dg

from qfs_assets import registry
from qfs_assets.activities.dual_write.assess import (
    ACTIVITY,
    TABLE_INCONSISTENCIES,
    assess_daily_diff,
    assess_dual_write,
    criteria_specs,
    reconciliation_sql_path,
)
from qfs_assets.activities.dual_write.params import DualWriteParams
from qfs_assets.defs import partitions
from qfs_assets.defs.common import (activity_job, bad_input_guard, check_specs, config_class, config_guard,
                                    evidence_result, judge_activity, params_from_config)
from qfs_assets.defs.resources import EvidenceResource, ExportResource, SystemOfRecordResource
from qfs_assets.readers.sor import SystemOfRecord
from qfs_assets.windows import to_utc

SPEC = registry.get(ACTIVITY)
DAILY = registry.get("dual_write_diff")
CHECKS = [s.name for s in criteria_specs(DualWriteParams())]
DAILY_TABLE = DAILY.evidence_table  # "dual_write_diff_daily"
DualWriteConfig = config_class(
    DualWriteParams, "DualWriteConfig", "Parameters (evidence-v1 defaults); the evidence records the values used.",
    as_of=(str, ""),  # ISO 8601 UTC; default: the end of the partition's window, or now if earlier
)


def _as_of(config, window_end: dt.datetime) -> dt.datetime:
    if config.as_of:
        t = dt.datetime.fromisoformat(config.as_of.replace("Z", "+00:00"))
        return to_utc(t)
    return min(window_end, dt.datetime.now(dt.timezone.utc))


def _sor(resource: SystemOfRecordResource, params: DualWriteParams) -> SystemOfRecord:
    return SystemOfRecord(resource.url, batch_rows=params.batch_rows)


@dg.asset(
    partitions_def=partitions.daily,
    group_name=DAILY.group,
    kinds={"postgres", "parquet"},
    deps=["object_manifest"],
    description="Daily dual-write diff: live `qfs_objects` vs the day's manifest, each difference classified, and the "
                f"persistent diff ledger updated (first seen / resolved). Runbook: {DAILY.runbook}",
)
def dual_write_diff(context: dg.AssetExecutionContext, config: DualWriteConfig, export: ExportResource,
                    system_of_record: SystemOfRecordResource, evidence: EvidenceResource) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    _, end = partitions.window(partitions.daily, context.partition_key)
    params = params_from_config(DualWriteParams, config)
    as_of = config_guard(lambda: _as_of(config, end))
    store = evidence.store()
    bad_input_guard(store.prepare)
    daily = bad_input_guard(lambda: assess_daily_diff(export.reader(), _sor(system_of_record, params), day,
                                                      store.root, as_of, params))
    path = bad_input_guard(lambda: store.write_table(DAILY_TABLE, context.partition_key, daily.inconsistencies))
    reached = _alert_on_reached_limit(context, store.root, day, daily, params)
    return dg.MaterializeResult(metadata={
        **{k: dg.MetadataValue.int(int(v)) for k, v in daily.metrics.items()},
        "reached_limit": dg.MetadataValue.int(reached),
        "as_of": as_of.isoformat(),
        "detail_path": dg.MetadataValue.path(str(path)),
    })


def _alert_on_reached_limit(context, evidence_root, day: dt.date, daily, params: DualWriteParams) -> int:
    """``diff_unresolved`` for the differences that reached the resolution limit in this run: the day
    the operator must hear of them (evidence-v1.1). Returns how many reached it; never raises."""
    from qfs_assets.activities.dual_write.ledger import DiffLedger
    from qfs_assets.alerting import events
    from qfs_assets.defs.alerting.sensors import send_event

    try:
        reached = DiffLedger(evidence_root).reached_limit(daily.ledger.run_key, params.resolution_hours).to_pylist()
    except Exception as exc:  # noqa: BLE001 - alerting never fails the asset
        context.log.error(f"24-hour rule alerting failed: {type(exc).__name__}: {exc}")
        return 0
    if reached:
        send_event(context, events.diff_unresolved(day, daily.as_of, params.resolution_hours, reached,
                                                   daily.ledger.unresolved_over_threshold
                                                   + sum(1 for r in reached if r["first_seen"] == daily.as_of
                                                         - dt.timedelta(hours=params.resolution_hours))),
                   evidence_root)
    return len(reached)


@dg.asset(
    partitions_def=partitions.monthly,
    group_name=SPEC.group,
    kinds={"postgres", "json", "parquet"},
    deps=[dual_write_diff],
    check_specs=check_specs(ACTIVITY, CHECKS, partitions_def=partitions.monthly),
    description="Monthly dual-write verification evidence (evidence-v1 `dual_write_verification`): PostgreSQL system "
                "of record vs StorageEngine manifest of the month's last snapshot, 1% sample vs shard map, diffs "
                f"resolved within 24 h; reconciliation SQL written beside it, never applied. Runbook: {SPEC.runbook}",
)
def dual_write_verification(context: dg.AssetExecutionContext, config: DualWriteConfig, export: ExportResource,
                            system_of_record: SystemOfRecordResource,
                            evidence: EvidenceResource) -> dg.MaterializeResult:
    month = dt.date.fromisoformat(context.partition_key)
    _, end = partitions.window(partitions.monthly, context.partition_key)
    params = params_from_config(DualWriteParams, config)
    as_of = config_guard(lambda: _as_of(config, end))
    store = evidence.store()
    judged = judge_activity(context, store, lambda: assess_dual_write(
        export.reader(), _sor(system_of_record, params), month, params, store.root, as_of), params)
    sql_path = reconciliation_sql_path(store.root, judged.result.partition)  # published with the evidence, before it
    return evidence_result(judged, reconciliation_sql=dg.MetadataValue.path(str(sql_path)),
                           inconsistent_objects=dg.MetadataValue.int(judged.result.tables[TABLE_INCONSISTENCIES].num_rows))


dual_write_diff_job = activity_job("dual_write_diff", dg.AssetSelection.assets(dual_write_diff),
                                   "Daily dual-write diff (keeps the diff ledger current).")
dual_write_verification_job = activity_job(ACTIVITY, dg.AssetSelection.assets(dual_write_verification),
                                           "Monthly dual-write verification (calendar month, UTC).")
