"""The storage assurance dashboard as a Dagster asset, re-rendered after every activity run.

``storage_assurance_dashboard`` (unpartitioned, group ``dashboard``) renders
``<evidence_root>/dashboard/index.html`` from the evidence store (see
:mod:`qfs_assets.dashboard`: one self-contained HTML page, no network needed to view it).

The run status sensor that re-renders it after every activity run is in ``sensors.py``.
"""

from pathlib import Path

import dagster as dg

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
    from qfs_assets.dashboard import build_dashboard, write_page  # Jinja2 and the panels: only when rendering
    from qfs_assets.storage_uri import is_remote

    if is_remote(evidence.evidence_root):  # the HTML page reads a local folder; Grafana covers S3 evidence
        context.log.info("dashboard: the evidence root is in object storage; use the Grafana dashboard "
                         "(deploy/grafana/qfs-assure.json) over `qfs-assure metrics`")
        return dg.MaterializeResult(metadata={"skipped": "evidence root in object storage"})
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
