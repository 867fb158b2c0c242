"""The demo's knobs: units, tariffs and reward policy, identifiers, :class:`DemoConfig` and
:class:`DriftSpec`. Pure data; no Dagster, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date

from qfs_assets.activities.dual_write.classify import CATEGORIES, IN_FLIGHT

# --------------------------------------------------------------------------- units

SEC = 1_000_000  # timestamps are integer microseconds since the epoch, UTC
MINUTE = 60 * SEC
HOUR = 60 * MINUTE
DAY = 24 * HOUR
ATR = NOD = 10**8  # minor units per coin
GB = 10**9

REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-southeast")

# Fee schedule, atr units.
PUT_BASE, PUT_PER_GB = 1_000_000, 2_000_000
GET_BASE, GET_PER_GB = 200_000, 500_000
DELETE_FEE = 500_000
RENEW_BASE, RENEW_PER_GB = 1_000_000, 1_000_000

# Reward policy: each epoch (one a day, closing at 23:50 UTC) pays out a pool funded by that
# epoch's fees: pool = fees * ratio; 80% storage (pro rata of bytes held), 20% proof (pro rata
# of passed challenges), to in-service nodes.
REWARD_RATIO = (70, 100)
STORAGE_SHARE_PCT = 80
EPOCH_CLOSE = 23 * HOUR + 50 * MINUTE

#: The categories of the expected dual-write diffs: the four inconsistencies, then in flight.
DIFF_CATEGORIES = (*CATEGORIES, IN_FLIGHT)


# --------------------------------------------------------------------------- identifiers


def node_id(i: int) -> str:
    return f"node-{i:04d}"


def object_id(i: int) -> str:
    return f"obj-{i:07d}"


def account_id(i: int) -> str:
    return f"acct-{i:05d}"


def sha_hex(text: str) -> str:
    """The demo's content hashes: sha256 of a text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DriftSpec:
    """How the system of record is made to differ from the manifest it is compared with."""

    missing_in_storage: int = 2  # SoR rows (not deleted) that the StorageEngine never got
    missing_in_sor: int = 3  # live manifest objects whose SoR row is missing
    version_mismatch: int = 1  # SoR version differs (stale: version-1, or +1 for version 1)
    content_mismatch: int = 1  # same version, different content_hash
    in_flight: int = 3  # SoR rows with updated_at after the snapshot end (update, new, delete)


@dataclass(frozen=True)
class DemoConfig:
    """The knobs of the demo. Same config (seed included) => byte-identical output.

    The incident switches turn the incidents of :data:`qfs_assets.demo.incidents.INCIDENT_PLAN`
    on or off; ``reward_to_failed_node`` only applies together with ``node_failure``.
    """

    nodes: int = 40
    objects: int = 2_000  # written on day one
    days: int = 42
    start: date = date(2026, 3, 2)  # a Monday; 42 days cross the Q1/Q2 boundary (2026-04-01)
    seed: int = 20260302
    writes_per_day: int = 50  # new objects per day (from day one)
    updates_per_day: int = 30  # new versions of live objects
    deletes_per_day: int = 10
    reads_per_day: int = 200  # `get` fees
    renews_per_day: int = 100  # `renew` fees
    accounts: int = 120
    data_shards: int = 4  # k
    total_shards: int = 6  # n
    initial_fill: float = 0.30  # shard bytes of the day-one objects / total capacity
    max_fill: float = 0.95  # a node takes no shard beyond this share of its capacity
    challenges_per_node: int = 24  # one per hour, 00:30 .. 23:30
    normal_bad_proof_rate: float = 0.002  # failed + timeout share on a normal day
    rebalance_moves_per_day: int = 4
    understaked_nodes: int = 1  # the last nodes stake < 1000 NOD (0 to disable)
    # incident switches
    node_failure: bool = True
    reward_to_failed_node: bool = True
    poor_proofs: bool = True
    reward_overrun: bool = True
    maintenance: bool = True
    dual_write_drift: bool = True
    drift: DriftSpec = field(default_factory=DriftSpec)
    # v1.1 and alerting incidents
    storage_errors: bool = True  # publish the storage_errors feed (False: a qfs-export-v1 export)
    storage_corruption: bool = True
    error_burst: bool = True  # applies with node_failure
    delayed_write: bool = True
    missed_run: bool = True  # the demo command skips one partition (not part of the export)

    def validate(self) -> None:
        if self.days < 1 or self.nodes < 1 or self.objects < 0:
            raise ValueError("days and nodes must be >= 1, objects >= 0")
        if not 1 <= self.data_shards <= self.total_shards:
            raise ValueError("need 1 <= data_shards <= total_shards")
        if self.nodes < self.total_shards + (1 if self.node_failure else 0):
            raise ValueError(f"need at least total_shards(+1 with node_failure) nodes, got {self.nodes}")
        if self.understaked_nodes >= self.nodes:
            raise ValueError("understaked_nodes must be < nodes")
        if not 1 <= self.challenges_per_node <= 24:
            raise ValueError("challenges_per_node: 1..24 (at most one an hour)")

    def without_incidents(self) -> "DemoConfig":
        """The same deployment with every incident switched off (and no under-staked node):
        every criterion of every activity should pass."""
        return replace(self, node_failure=False, reward_to_failed_node=False, poor_proofs=False,
                       reward_overrun=False, maintenance=False, dual_write_drift=False, understaked_nodes=0,
                       storage_corruption=False, error_burst=False, delayed_write=False, missed_run=False)
