"""Node health thresholds (evidence-v1 defaults); the evidence records the values used."""

from __future__ import annotations

from pydantic import Field

from qfs_assets.params import Params

NOD = 10**8


class NodeHealthParams(Params):
    #: nodes_verified: verified_ratio > this
    min_verified_ratio: float = Field(0.95, ge=0, le=1)
    #: proof_success: proof_success_rate > this
    min_proof_success_rate: float = Field(0.99, ge=0, le=1)
    #: shard_balance: utilization_cv <= this
    max_utilization_cv: float = Field(0.25, ge=0)
    #: shard_balance: max/mean <= this
    max_utilization_max_over_mean: float = Field(1.5, ge=1)
    #: AEGIS: last_heartbeat >= end of day - this
    heartbeat_max_age_seconds: int = Field(3600, gt=0)
    #: AEGIS: stake_nod >= this (nod minor units)
    min_stake_nod: int = Field(1000 * NOD, ge=0)
    #: AEGIS: at least this share (basis points) of a node's challenges passed
    min_node_pass_bps: int = Field(9500, ge=0, le=10_000)
