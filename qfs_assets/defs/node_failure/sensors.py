"""The node failure sensor: one response run per node newly `failed`.

It watches the EQM log's `node_status_changed` events and the newest `nodes` snapshots; for
each node newly `failed` it adds one dynamic partition (the failure id `<node_id>_<YYYYMMDD>`)
and requests one run with that run key, so a sensor restart or a re-evaluated tick launches
nothing twice. The same tick sends a ``node_failure`` alert (critical) per failure it sees,
naming where the response writes its evidence (with the response's summary when that evidence
is already written); the dedupe ledger sends each failure once.

`save_cursor` stores a cursor in the instance's state of this sensor, as the daemon would after
a tick: `qfs-assure demo` evaluates one tick itself and saves its cursor, so the daemon's first
tick on that instance continues from there instead of responding to the same failures again.
A failure whose node id is no safe file name (``../x``: the id names the evidence files) is
alerted as bad input and requests nothing.
"""

import json
import time

import dagster as dg

from qfs_assets.activities.node_failure.detect import FailureCursor, FailureEvent, parse_failure_id, scan_failures
from qfs_assets.defs.common import activity_run_config
from qfs_assets.defs.node_failure import assets
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.readers.base import BadInput
from qfs_assets.safenames import NODE_ID_RULE


def _usable(failure: FailureEvent) -> bool:
    """Whether the failure's id can be a partition key; if not (a node id that is no safe file name,
    e.g. ``../x``), alert bad input once and request nothing: the id would name files outside the
    evidence root."""
    try:
        parse_failure_id(failure.failure_id)
        return True
    except ValueError:
        from qfs_assets.alerting.config import load_config
        from qfs_assets.alerting.dispatch import dispatch
        from qfs_assets.alerting.model import alert_for_failure

        table = "eqm" if failure.source == "eqm" else "nodes"
        message = (f"bad input: table '{table}': node {failure.node_id!r} failed at {failure.failed_at.isoformat()}, "
                   f"but its id is not a safe name ({NODE_ID_RULE}): no response is requested, as the failure id "
                   f"{failure.failure_id!r} would name evidence files")
        try:
            dispatch(alert_for_failure("bad_input", assets.ACTIVITY, None, message), load_config())
        except Exception:  # noqa: BLE001 - alerting never breaks the sensor
            pass
        return False

#: the code location's name (pyproject.toml and workspace.yaml) and the repository of a Definitions
LOCATION_NAME = "qfs_assets"
REPOSITORY_NAME = "__repository__"
SENSOR_NAME = "node_failure_sensor"
MIN_INTERVAL_SECONDS = 300

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


@dg.sensor(name=SENSOR_NAME, job=assets.node_failure_response_job, minimum_interval_seconds=MIN_INTERVAL_SECONDS,
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
    failures = [f for f in failures if _usable(f)]
    known = set(context.instance.get_dynamic_partitions(assets.node_failures.name)) if context.instance else set()
    new_ids = [f.failure_id for f in failures if f.failure_id not in known]
    alert_failures(context, failures, evidence.evidence_root)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=f.failure_id, run_key=f.failure_id,
                                    tags={"qfs/source": "node_failure_sensor", "qfs/node_id": f.node_id},
                                    run_config=activity_run_config(assets.ACTIVITY))
                      for f in failures],
        dynamic_partitions_requests=[assets.node_failures.build_add_request(new_ids)] if new_ids else [],
        cursor=cursor.to_json(),
    )


def _origin(working_directory: str):
    import sys

    from dagster._core.remote_origin import (ManagedGrpcPythonEnvCodeLocationOrigin, RemoteInstigatorOrigin,
                                             RemoteRepositoryOrigin)
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(executable_path=sys.executable, module_name="qfs_assets.definitions",
                                  attribute="defs", working_directory=working_directory)
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=LOCATION_NAME)
    return RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), SENSOR_NAME)


def saved_cursor(instance: dg.DagsterInstance) -> str | None:
    """The cursor stored in the instance's state of this sensor (None when it has none)."""
    origin = _origin(".")
    state = instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id())
    data = state.instigator_data if state is not None else None
    return getattr(data, "cursor", None)


def save_cursor(instance: dg.DagsterInstance, cursor: str, working_directory: str = ".") -> None:
    """Store ``cursor`` as this sensor's cursor in ``instance`` (what the daemon keeps between ticks).

    The state is found by the sensor's selector (code location, repository, sensor name), as the
    daemon and the UI look it up. An existing state keeps its status (an operator's STOPPED stays
    stopped); a new one is declared in code, like the daemon's own first state. An instance
    without schedule storage (an ephemeral one: no daemon will ever read it) keeps nothing.
    """
    import os

    if instance.schedule_storage is None:
        return

    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.definitions.sensor_definition import SensorType
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, SensorInstigatorData

    origin = _origin(os.path.abspath(working_directory))
    selector_id = origin.get_selector().get_id()
    state = instance.get_instigator_state(origin.get_id(), selector_id)
    if state is None:
        data = SensorInstigatorData(cursor=cursor, min_interval=MIN_INTERVAL_SECONDS,
                                    last_sensor_start_timestamp=time.time(), sensor_type=SensorType.STANDARD)
        instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE,
                                                      data))
    else:
        data = state.instigator_data
        instance.update_instigator_state(state.with_data(data._replace(cursor=cursor) if data is not None
                                                         else SensorInstigatorData(cursor=cursor)))
