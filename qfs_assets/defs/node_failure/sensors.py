"""The node failure sensor: one response run per node newly `failed`.

It watches the EQM log's `node_status_changed` events and the newest `nodes` snapshots; for
each node newly `failed` it adds one dynamic partition (the failure id `<node_id>_<YYYYMMDD>`)
and requests one run with that run key, so a sensor restart or a re-evaluated tick launches
nothing twice.
"""

import dagster as dg

from qfs_assets.activities.node_failure.detect import FailureCursor, scan_failures
from qfs_assets.defs.common import activity_run_config
from qfs_assets.defs.node_failure import assets
from qfs_assets.defs.resources import ExportResource
from qfs_assets.readers.base import BadInput


@dg.sensor(job=assets.node_failure_response_job, minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches one node failure response per node newly `failed` in the EQM log or the newest snapshot.")
def node_failure_sensor(context: dg.SensorEvaluationContext, export: ExportResource):
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
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=f.failure_id, run_key=f.failure_id,
                                    tags={"qfs/source": "node_failure_sensor", "qfs/node_id": f.node_id},
                                    run_config=activity_run_config(assets.ACTIVITY))
                      for f in failures],
        dynamic_partitions_requests=[assets.node_failures.build_add_request(new_ids)] if new_ids else [],
        cursor=cursor.to_json(),
    )
