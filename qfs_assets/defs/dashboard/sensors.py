"""Re-render the dashboard after activity runs.

``dashboard_after_runs`` is a run status sensor: when a run of an activity's job (the
registry's) succeeds, it requests one run of ``storage_assurance_dashboard_job`` with the
triggering run's id as run key, so each activity run refreshes the page exactly once. While a
dashboard run is already queued (not yet started) it requests nothing more: that run will read
the newest evidence anyway.
"""

import dagster as dg

from qfs_assets import registry
from qfs_assets.defs.dashboard import assets

_PENDING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def is_activity_job(job_name: str) -> bool:
    return registry.by_job(job_name) is not None


@dg.run_status_sensor(
    name="dashboard_after_runs",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    request_job=assets.storage_assurance_dashboard_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Re-renders the storage assurance dashboard after each successful activity job run "
                "(run key: the triggering run id).",
)
def dashboard_after_runs(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    if not is_activity_job(run.job_name):
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} is not an activity job run")
    pending = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=assets.JOB, statuses=_PENDING), limit=1) if context.instance else []
    if pending:
        return dg.SkipReason(f"a dashboard run ({pending[0].dagster_run.run_id}) is already queued; "
                             f"it will include the evidence of run {run.run_id}")
    return dg.RunRequest(run_key=run.run_id, tags={"qfs/source": "dashboard_after_runs",
                                                   "qfs/triggered_by_run": run.run_id,
                                                   "qfs/triggered_by_job": run.job_name})
