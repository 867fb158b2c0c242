"""The node failure sensor: one response run per node newly `failed`.

It watches the EQM log's `node_status_changed` events and the newest `nodes` snapshots; for
each node newly `failed` it adds one dynamic partition (the failure id `<node_id>_<YYYYMMDD>`)
and requests one run with that run key, so a sensor restart or a re-evaluated tick launches
nothing twice. The same tick sends a ``node_failure`` alert (critical) per failure it sees,
naming where the response writes its evidence (with the response's summary when that evidence
is already written); the dedupe ledger sends each failure once.
"""

import json

import dagster as dg

from qfs_assets.activities.node_failure.detect import FailureCursor, scan_failures
from qfs_assets.defs.node_failure import assets
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.readers.base import BadInput

#: response metrics quoted in the alert when its evidence is already written
RESPONSE_SUMMARY = ("shards_to_move", "bytes_to_move", "shards_unplaceable", "receiving_nodes", "receivers_unverified",
                    "clawback_nod", "clawback_gross_nod", "existing_adjustments_nod")


def alert_failures(context, failures, evidence_root: str) -> None:
    """One ``node_failure`` alert per failure (never raises)."""
    from qfs_assets.alerting import events
    from qfs_assets.defs.alerting.sensors import send_event
    from qfs_assets.evidence.store import EvidenceStore

    store = EvidenceStore(evidence_root)
    for f in failures:
        path = store.json_path(assets.ACTIVITY, f.failed_on.isoformat(), key=f.failure_id)
        response = None
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                response = {k: doc["metrics"].get(k) for k in RESPONSE_SUMMARY} | {"passed": doc.get("passed")}
            except (OSError, ValueError, KeyError):
                response = None
        send_event(context, events.node_failure(f.to_dict(), str(path), evidence_written=response is not None,
                                                response=response), evidence_root)


@dg.sensor(job=assets.node_failure_response_job, minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches one node failure response per node newly `failed` in the EQM log or the newest snapshot.")
def node_failure_sensor(context: dg.SensorEvaluationContext, export: ExportResource, evidence: EvidenceResource):
    reader = export.reader()
    try:
        failures, cursor = scan_failures(reader, FailureCursor.from_json(context.cursor))
    except BadInput as exc:
        # a sensor error: alerted (sensor_error), shown on the tick, the cursor is not advanced
        from qfs_assets.defs.alerting.sensors import sensor_error

        sensor_error("node_failure_sensor", exc)
        raise dg.DagsterError(str(exc)) from None
    known = set(context.instance.get_dynamic_partitions(assets.node_failures.name)) if context.instance else set()
    new_ids = [f.failure_id for f in failures if f.failure_id not in known]
    alert_failures(context, failures, evidence.evidence_root)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=f.failure_id, run_key=f.failure_id,
                                    tags={"qfs/source": "node_failure_sensor", "qfs/node_id": f.node_id})
                      for f in failures],
        dynamic_partitions_requests=[assets.node_failures.build_add_request(new_ids)] if new_ids else [],
        cursor=cursor.to_json(),
    )
