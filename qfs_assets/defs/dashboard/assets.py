"""The storage assurance dashboard as a Dagster asset, re-rendered after every activity run.

``storage_assurance_dashboard`` (unpartitioned, group ``dashboard``) renders
``<evidence_root>/dashboard/index.html`` from the evidence store (see
:mod:`qfs_assets.dashboard.render`: one self-contained HTML page, no network needed to view it).

``dashboard_after_runs`` is a run status sensor: when a run of an activity job (any job named
``*_job`` of this code location other than the dashboard's own) succeeds, it requests one run of
``storage_assurance_dashboard_job`` with the triggering run's id as run key, so each activity run
refreshes the page exactly once. While a dashboard run is already queued (not yet started) it
requests nothing more: that run will read the newest evidence anyway.
"""

from pathlib import Path

import dagster as dg

from qfs_assets.dashboard.render import build_dashboard, write_page
from qfs_assets.defs.resources import EvidenceResource

GROUP = "dashboard"
ASSET = "storage_assurance_dashboard"
JOB = f"{ASSET}_job"
DASHBOARD_DIR = "dashboard"
PAGE = "index.html"


def dashboard_path(evidence_root: str) -> Path:
    return Path(evidence_root) / DASHBOARD_DIR / PAGE


@dg.asset(
    name=ASSET,
    group_name=GROUP,
    kinds={"html"},
    description="One self-contained HTML page (inline SVG charts, no network) over every activity's evidence: "
                "storage health, AEGIS verification, economic flow, dual-write consistency, replay drills, node "
                "failure responses and the verdict timeline. Written to <evidence_root>/dashboard/index.html.",
)
def storage_assurance_dashboard(context: dg.AssetExecutionContext, evidence: EvidenceResource) -> dg.MaterializeResult:
    out = dashboard_path(evidence.evidence_root)
    page = build_dashboard(evidence.evidence_root)
    write_page(page, out)
    for problem in page.problems:
        context.log.warning(f"dashboard: {problem}")
    covered = sum(page.partitions.values())
    context.log.info(f"dashboard written to {out}: {len(page.panels)} panels, {covered} verdicts")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out.resolve())),
        "panels": dg.MetadataValue.int(len(page.panels)),
        "panels_with_data": dg.MetadataValue.int(len(page.panels_with_data)),
        "panels_without_evidence": dg.MetadataValue.json(sorted(set(page.panels) - set(page.panels_with_data))),
        "charts": dg.MetadataValue.int(len(page.charts)),
        "partitions_covered": dg.MetadataValue.int(covered),
        "partitions_by_activity": dg.MetadataValue.json(page.partitions),
        "first_partition": dg.MetadataValue.text(page.first_partition or ""),
        "last_partition": dg.MetadataValue.text(page.last_partition or ""),
        "unreadable_evidence_files": dg.MetadataValue.int(len(page.problems)),
        "bytes": dg.MetadataValue.int(len(page.html.encode("utf-8"))),
    })


storage_assurance_dashboard_job = dg.define_asset_job(
    JOB, selection=dg.AssetSelection.assets(storage_assurance_dashboard),
    description="Re-render the storage assurance dashboard from the evidence store.",
)

_PENDING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def is_activity_job(job_name: str) -> bool:
    return job_name.endswith("_job") and job_name != JOB and not job_name.startswith("__")


@dg.run_status_sensor(
    name="dashboard_after_runs",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    request_job=storage_assurance_dashboard_job,
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
        filters=dg.RunsFilter(job_name=JOB, statuses=_PENDING), limit=1) if context.instance else []
    if pending:
        return dg.SkipReason(f"a dashboard run ({pending[0].dagster_run.run_id}) is already queued; "
                             f"it will include the evidence of run {run.run_id}")
    return dg.RunRequest(run_key=run.run_id, tags={"qfs/source": "dashboard_after_runs",
                                                   "qfs/triggered_by_run": run.run_id,
                                                   "qfs/triggered_by_job": run.job_name})


defs = dg.Definitions(
    assets=[storage_assurance_dashboard],
    jobs=[storage_assurance_dashboard_job],
    sensors=[dashboard_after_runs],
)
