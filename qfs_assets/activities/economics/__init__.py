"""Weekly economics sanity: ATR fees >= NOD rewards + buffer, ledger integrity."""

from qfs_assets.registry import Activity

SPECS = (
    Activity(
        name="economics_sanity_check",
        title="Weekly economics sanity",
        cadence="weekly",
        schedule_cron="0 3 * * 1",
        runbook="docs/runbooks/conservation-violation.md",
        group="economics",
        order=20,
        summary="ATR fees >= NOD rewards (in ATR) + buffer, ledger integrity, no rewards to failed nodes, "
                "ledger matches the EQM log",
        metrics=(
            ("fees_atr", "int64"), ("rewards_nod", "int64"), ("rewards_in_atr", "int64"), ("buffer_atr", "int64"),
            ("margin_atr", "int64"), ("duplicate_tx_ids", "int64"), ("duplicate_reward_ids", "int64"),
            ("rewards_to_failed_nodes", "int64"), ("ledger_vs_log_atr", "int64"),
        ),
    ),
)
