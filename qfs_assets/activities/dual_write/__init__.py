"""Dual-write verification: the Atlas system of record against the StorageEngine manifest."""

from qfs_assets.registry import Activity

_RUNBOOK = "docs/runbooks/dual-write-rollback.md"

SPECS = (
    Activity(
        name="dual_write_diff",
        title="Daily dual-write diff",
        cadence="daily",
        schedule_cron="30 2 * * *",
        runbook=_RUNBOOK,
        group="dual_write_daily",
        writes_evidence=False,
        evidence_table="dual_write_diff_daily",
        uses_system_of_record=True,
        order=30,
        summary="keeps the diff ledger current (first seen / resolved) for the 24-hour rule",
    ),
    Activity(
        name="dual_write_verification",
        title="Monthly dual-write verification",
        cadence="monthly",
        schedule_cron="0 4 1 * *",
        runbook=_RUNBOOK,
        group="dual_write",
        uses_system_of_record=True,
        order=40,
        summary="PostgreSQL system of record vs StorageEngine manifest, 1 % sample vs shard map, "
                "diffs resolved within 24 h",
        metrics=(
            ("sor_objects", "int64"), ("storage_objects", "int64"), ("in_flight", "int64"),
            ("missing_in_storage", "int64"), ("missing_in_sor", "int64"), ("version_mismatch", "int64"),
            ("content_mismatch", "int64"), ("inconsistencies", "int64"), ("sampled_objects", "int64"),
            ("sample_failures", "int64"), ("unresolved_over_24h", "int64"), ("resolved_late", "int64"),
        ),
    ),
)
