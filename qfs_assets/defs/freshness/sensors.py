"""The evidence watchdog: ``evidence_missing`` when a closed partition has no evidence in time.

For every scheduled activity of the registry, every partition of its cadence whose schedule
(the registry's cron) ran more than ``QFS_ALERT_EVIDENCE_GRACE_HOURS`` ago must have evidence
(:mod:`qfs_assets.monitoring.gaps`); partitions whose window ends on or before the export's
first snapshot day are not expected. One alert per activity lists its missing partitions and
the commands that fill them (the dedupe ledger sends the same list once; a grown list again).

Why a sensor over the evidence files rather than Dagster's freshness checks: those judge an
asset's latest materialization, while evidence can go missing in the middle of history (deleted
files, a failed backfill) and must reach our sinks, dedupe and redaction like every alert.
"""

import datetime as dt

import dagster as dg

from qfs_assets.alerting import events
from qfs_assets.alerting.config import load_config
from qfs_assets.defs import partitions
from qfs_assets.defs.alerting.sensors import send_event, sensor_error
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.monitoring import gaps as gaps_
from qfs_assets.readers.base import ExportReader

UTC = dt.timezone.utc


def expected_partitions(now: dt.datetime) -> dict[str, list[tuple[str, dt.datetime, dt.datetime]]]:
    """Every closed partition (key, start, end) of each monitored activity, from the Dagster partitions."""
    out: dict[str, list[tuple[str, dt.datetime, dt.datetime]]] = {}
    for spec in gaps_.monitored():
        pdef = partitions.BY_CADENCE[spec.cadence]
        keys = pdef.get_partition_keys(current_time=now)
        out[spec.name] = [(k, *partitions.window(pdef, k)) for k in keys]
    return out


def export_first_day(export_root: str | None) -> dt.date | None:
    """The export's first ``nodes`` snapshot day (None when it cannot be read)."""
    if not export_root:
        return None
    try:
        days = ExportReader(export_root).available_dates("nodes")
    except Exception:  # noqa: BLE001 - the bound is a convenience; evidence is what is checked
        return None
    return days[0] if days else None


def find(evidence_root: str, export_root: str | None, now: dt.datetime, grace_hours: float) -> list[gaps_.Gap]:
    return gaps_.find_gaps(evidence_root, expected_partitions(now), now, grace_hours, since=export_first_day(export_root))


def alert_gaps(context, gaps: list[gaps_.Gap], evidence_root: str, config=None) -> int:
    config = config or load_config(evidence_root=evidence_root)
    n = 0
    for activity, found in gaps_.by_activity(gaps).items():
        send_event(context, events.evidence_missing(activity, [g.as_dict() for g in found], config.evidence_grace_hours,
                                                    gaps_.fill_commands(activity, found)), config=config)
        n += 1
    return n


@dg.sensor(name="evidence_watchdog", minimum_interval_seconds=900, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts evidence_missing when a closed partition of an activity has no evidence "
                       "QFS_ALERT_EVIDENCE_GRACE_HOURS after its scheduled run (qfs-assure gaps lists them).")
def evidence_watchdog(context: dg.SensorEvaluationContext, export: ExportResource, evidence: EvidenceResource):
    try:
        config = load_config(evidence_root=evidence.evidence_root)
        found = find(evidence.evidence_root, export.export_root, dt.datetime.now(UTC), config.evidence_grace_hours)
        sent = alert_gaps(context, found, evidence.evidence_root, config)
    except Exception as exc:
        sensor_error("evidence_watchdog", exc)
        raise
    return dg.SkipReason(f"{len(found)} partition(s) without evidence in {sent} activity(ies)")
