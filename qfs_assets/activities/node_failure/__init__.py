"""Reaction to node failure: shard redistribution, AEGIS re-verification, reward adjustment."""

from qfs_assets.registry import Activity

SPECS = (
    Activity(
        name="node_failure_response",
        title="Node failure response",
        cadence="event",
        runbook="docs/runbooks/node-failure.md",
        group="node_failure",
        order=60,
        summary="shard redistribution plan, AEGIS re-verification of the receivers, reward claw-back proposal",
    ),
)
