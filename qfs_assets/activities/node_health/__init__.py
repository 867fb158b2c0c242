"""Daily node health: AEGIS verification, shard balance, proof success, redundancy."""

from qfs_assets.registry import Activity

SPECS = (
    Activity(
        name="node_health_assessment",
        title="Daily node health",
        cadence="daily",
        schedule_cron="0 2 * * *",
        runbook="docs/runbooks/node-failure.md",
        group="node_health",
        order=10,
        summary="AEGIS verification > 95 % of in-service nodes, balanced shards, > 99 % proof success, "
                "no unrecoverable object, no silent corruption (storage errors)",
        metrics=(
            ("in_service_nodes", "int64"), ("verified_nodes", "int64"), ("verified_ratio", "float64"),
            ("unverified_node_ids", "list<string>"), ("proof_challenges", "int64"),
            ("proof_success_rate", "float64"), ("utilization_cv", "float64"),
            ("utilization_max_over_mean", "float64"), ("objects_degraded", "int64"),
            ("objects_unrecoverable", "int64"), ("storage_errors", "int64"), ("storage_errors_by_class", "json"),
            ("corruption_errors", "int64"), ("storage_error_nodes", "list<string>"),
        ),
    ),
)
