"""The storage errors sensor: alerts within one tick on new ``storage_errors`` partitions and files.

Each tick reads only the feed's new files (a small cursor of recent partitions and the files
read in them, :class:`qfs_assets.monitoring.storage_errors.ErrorsCursor`) and sends
``storage_corruption`` (critical: any ``checksum_mismatch``, naming node, object and shard) and
``storage_error_burst`` (more than ``QFS_ALERT_BURST_ERRORS_PER_HOUR`` errors of one node in one
UTC hour). Its first tick starts at the newest partition (history is judged by node health's
``no_corruption_errors``). A bad partition fails the tick (``sensor_error`` alert; the cursor
stays, so it is read again once fixed).
"""

import time

import dagster as dg

from qfs_assets.alerting.config import load_config
from qfs_assets.defs.alerting.sensors import send_event, sensor_error
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.monitoring.storage_errors import ErrorsCursor, scan
from qfs_assets.readers.base import BadInput

TICK_BUDGET_SECONDS = 40.0


def process(context, export_root: str, evidence_root: str, cursor_json: str | None,
            cursor: ErrorsCursor | None = None) -> tuple[str, int, int]:
    """Scan and alert; returns (new cursor JSON, partitions read, alerts sent)."""
    config = load_config(evidence_root=evidence_root)
    started = time.monotonic()
    cursor, partitions = scan(ExportResource(export_root=export_root).reader(),
                              cursor or ErrorsCursor.from_json(cursor_json), config.burst_errors_per_hour)
    read = sent = 0
    for part in partitions:
        for alert in part.alerts:
            send_event(context, alert, config=config)
            sent += 1
        cursor.mark(part.day, part.new_files)
        read += 1
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break  # the rest next tick
    return cursor.to_json(), read, sent


@dg.sensor(name="storage_errors_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts within one tick on new storage_errors: any checksum_mismatch (critical: node, object, "
                       "shard) and error bursts (errors per node per hour over QFS_ALERT_BURST_ERRORS_PER_HOUR).")
def storage_errors_sensor(context: dg.SensorEvaluationContext, export: ExportResource, evidence: EvidenceResource):
    try:
        cursor, read, sent = process(context, export.export_root, evidence.evidence_root, context.cursor)
    except BadInput as exc:
        sensor_error("storage_errors_sensor", exc)
        raise dg.DagsterError(str(exc)) from None
    except Exception as exc:
        sensor_error("storage_errors_sensor", exc)
        raise
    context.update_cursor(cursor)
    return dg.SkipReason(f"{read} storage_errors partition(s) with new files read, {sent} alert(s)")
