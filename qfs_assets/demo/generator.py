"""Deterministic demo QFS deployment: a contract-conformant storage export plus a system of record.

The generator simulates the network day by day from genesis. Every state change is an EQM
event that is validated and applied to the generator's own in-memory state (plain dicts,
following the effect table of ``qfs-export-v1`` to the letter) before it is logged, so the
log never holds an invalid event. At each day's end the day's tables are built from that state
(columns as Python lists -> Arrow arrays) and written, and a checkpoint is taken at the day's
last event with roots maintained incrementally (:func:`hashing.row_hash_int` sums, i.e. the
``SetHash`` rule), independently of any replay engine. Memory is the state plus one day.

Layout written under ``<out_dir>``::

    export/<table>/<snapshot_date|date>=YYYY-MM-DD/part-0.parquet   (nodes objects shards
                                                                     proofs fees rewards eqm)
    export/checkpoints/part-0.parquet
    sor.sqlite                         (default system of record; any SQLAlchemy URL accepted)
    deployment.json                    (what was generated: days, incidents, expected diffs)

Same :class:`DemoConfig` (seed included) => byte-identical files: fixed timestamps, a seeded
``random.Random``, no wall clock, no iteration over hash-ordered sets.

Incidents are on fixed day offsets from the start (:data:`INCIDENT_PLAN`); with the default
start (Monday 2026-03-02, 42 days) they fall on the dates listed in :data:`DEFAULT_INCIDENT_DATES`.
Benchmark / manual run: ``python -m qfs_assets.demo OUT [--nodes N --objects N --days N ...]``.
No Dagster imports here.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import json
import random
import shutil
from itertools import islice
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from qfs_assets.contract.hashing import (
    GENESIS_PREV_HASH,
    canonical_json,
    event_hash,
    format_root,
    row_hash_int,
    state_root,
)
from qfs_assets.contract.schema import IN_SERVICE_STATUSES, TABLES
from qfs_assets.demo.sor_writer import SOR_ARROW_SCHEMA, normalize_url, read_sor, write_sor

__all__ = [
    "DemoConfig",
    "DriftSpec",
    "DemoDeployment",
    "Incident",
    "INCIDENT_PLAN",
    "DEFAULT_INCIDENT_DATES",
    "DIFF_CATEGORIES",
    "generate",
    "build_sor_table",
    "compare_sor",
    "node_id",
    "object_id",
]

# --------------------------------------------------------------------------- constants

SEC = 1_000_000
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

#: Day offsets (0 = start day) and parameters of the incidents. Node numbers are 1-based
#: indices into ``node-NNNN`` (clamped to the node count).
INCIDENT_PLAN: dict[str, dict[str, Any]] = {
    # node-0007 fails at 10:17 on day 9; its shards are moved to other in-service nodes in 12
    # batches on days 10-12 (02:00/08:00/14:00/20:00); it is back `active` at 06:00 on day 14
    # and the rebalancer moves shards back onto it. On day 9 objects are degraded, none is
    # unrecoverable (every object has its 6 shards on 6 distinct nodes, only one node is down).
    "node_failure": {"day": 9, "node": 7, "fail_at": 10 * HOUR + 17 * MINUTE,
                     "repair_days": (10, 11, 12), "recovery_day": 14, "recover_at": 6 * HOUR},
    # One `storage` reward paid to the failed node at the epoch close of its failure day (a
    # finding: rewards_to_failed_nodes == 1 in that week), clawed back the next day by a
    # negative `adjustment` (adjustments are not findings). Own switch; applies with node_failure.
    "reward_to_failed_node": {"day": 9, "clawback_day": 10},
    # Every in-service node gets exactly one challenge per hour (24 a day). On day 16, ~3% of
    # the day's challenges fail or time out, at most one per node, so the day's proof_success
    # criterion fails while every node still has >= 95% passed (nodes_verified still passes).
    "poor_proofs": {"day": 16, "bad_rate": 0.03},
    # The 4th Monday-Sunday week (the first Monday on or after day 21): the epoch pools pay
    # 115% of the fees, so that week's conservation criterion fails.
    "reward_overrun": {"week_from_day": 21, "ratio": (115, 100)},
    # Not a failing incident: node-0013 reports `degraded` at 11:00 on day 30 and is `active`
    # again at 09:00 on day 31 (in service throughout; every criterion passes).
    "maintenance": {"day": 30, "node": 13, "at": 11 * HOUR, "recovery_day": 31, "recover_at": 9 * HOUR},
    # Not a failing incident: the last `understaked_nodes` nodes stake < 1000 NOD, so they are
    # listed in unverified_node_ids every day (verified_ratio stays > 0.95 with 40 nodes).
    "understaked_node": {},
    # The system of record (written once, the live state after the last day) differs from the
    # final manifest: see DriftSpec.
    "dual_write_drift": {},
}

#: Dates of the incidents for the default configuration (start 2026-03-02, 42 days).
DEFAULT_INCIDENT_DATES = {
    "node_failure": "failed 2026-03-11 (node-0007), repaired 2026-03-12..14, active 2026-03-16",
    "reward_to_failed_node": "storage reward 2026-03-11 (week 2026-03-09), claw-back 2026-03-12",
    "poor_proofs": "2026-03-18",
    "reward_overrun": "week 2026-03-23 .. 2026-03-29",
    "maintenance": "node-0013 degraded 2026-04-01, active 2026-04-02",
    "understaked_node": "node-0040, every day",
    "dual_write_drift": ("system of record (live, after 2026-04-12) vs manifest of 2026-04-12 (month 2026-04); "
                         "against 2026-03-31 (month 2026-03) the April changes are in flight and the drifted "
                         "objects that existed then show up too"),
}

DIFF_CATEGORIES = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch", "in_flight")


def node_id(i: int) -> str:
    return f"node-{i:04d}"


def object_id(i: int) -> str:
    return f"obj-{i:07d}"


def account_id(i: int) -> str:
    return f"acct-{i:05d}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _day_start_us(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY


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

    The incident switches turn the incidents of :data:`INCIDENT_PLAN` on or off;
    ``reward_to_failed_node`` only applies together with ``node_failure``.
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
                       reward_overrun=False, maintenance=False, dual_write_drift=False, understaked_nodes=0)


@dataclass(frozen=True)
class Incident:
    """A deliberate anomaly and where the assurance activities should (or should not) see it."""

    name: str
    activity: str  # the evidence activity that judges it
    days: tuple[date, ...]  # the days it spans
    partitions: tuple[date, ...]  # first days of the partitions whose evidence shows it
    failing_criteria: tuple[str, ...]  # criteria that fail in those partitions (() = none)
    node_ids: tuple[str, ...] = ()
    object_ids: tuple[str, ...] = ()
    expected_metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["days"] = [x.isoformat() for x in self.days]
        d["partitions"] = [x.isoformat() for x in self.partitions]
        return d


@dataclass
class DemoDeployment:
    out_dir: Path
    export_root: Path
    sor_url: str
    sor_schema: str | None
    start: date
    end: date
    days: list[date]
    incidents: list[Incident]
    expected_dual_write_diffs: dict[str, str]  # object_id -> one of DIFF_CATEGORIES
    checkpoint_count: int
    event_count: int
    row_counts: dict[str, int]
    final_state_root: str
    config: DemoConfig

    def incident(self, name: str) -> Incident | None:
        return next((i for i in self.incidents if i.name == name), None)

    def partition_path(self, table: str, day: date | None = None) -> Path:
        spec = TABLES[table]
        if spec.partition_column is None:
            return self.export_root / table / "part-0.parquet"
        return self.export_root / table / f"{spec.partition_column}={day.isoformat()}" / "part-0.parquet"

    def sor_table(self, as_of: date | None = None, drift: bool | None = None) -> tuple[pa.Table, dict[str, str]]:
        """The system of record as it would look at the end of ``as_of`` (default: the last
        day, i.e. exactly what was written), with its expected diffs against that day's manifest."""
        as_of = as_of or self.end
        if drift is None:
            drift = self.config.dual_write_drift
        objs = pq.read_table(self.partition_path("objects", as_of))
        return build_sor_table(objs, as_of, self.config.seed, self.config.drift if drift else None)

    def write_sor_as_of(
        self, url: str, as_of: date, schema: str | None = None, drift: bool | None = None
    ) -> dict[str, str]:
        """Write the system of record as of the end of ``as_of`` to ``url``; returns its expected diffs."""
        tbl, diffs = self.sor_table(as_of, drift)
        write_sor(url, tbl, schema=schema)
        return diffs

    def live_sor_diffs(self, day: date) -> dict[str, str]:
        """What comparing the written (live) system of record with the manifest of ``day``
        shows: {object_id: category}, in-flight rows included (a plain reference comparison,
        for tests of the dual-write activity; for the last day it equals
        ``expected_dual_write_diffs``)."""
        manifest = pq.read_table(self.partition_path("objects", day))
        return compare_sor(read_sor(self.sor_url, self.sor_schema), manifest, day)

    def to_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["start"] = self.config.start.isoformat()
        return {
            "export_root": str(self.export_root),
            "sor_url": sa.engine.make_url(self.sor_url).render_as_string(hide_password=True),
            "sor_schema": self.sor_schema,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": len(self.days),
            "incidents": [i.to_json() for i in self.incidents],
            "expected_dual_write_diffs": self.expected_dual_write_diffs,
            "checkpoint_count": self.checkpoint_count,
            "event_count": self.event_count,
            "row_counts": self.row_counts,
            "final_state_root": self.final_state_root,
            "config": cfg,
        }


# --------------------------------------------------------------------------- helpers


class _IndexedSet:
    """Insertion-ordered set with O(1) add/remove/random choice (deterministic, unlike ``set``)."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list = []
        self.pos: dict = {}

    def add(self, x) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def discard(self, x) -> None:
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, x) -> bool:
        return x in self.pos

    def choice(self, rng: random.Random):
        return self.items[rng.randrange(len(self.items))]


class InvalidEvent(AssertionError):
    """The generator tried to log an event the contract calls invalid (a generator bug)."""


def _week_monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


# --------------------------------------------------------------------------- canonical JSON
#
# The payloads and state rows are canonical JSON (sorted keys, no spaces). Building them with
# json.dumps costs ~10 us each, so they are formatted directly, keys in sorted order. Every
# string the generator puts in them is an identifier, a hex hash or a fixed word ([a-z0-9.-]),
# so no escaping is ever needed; the self-check below and the tests (payload ==
# canonical_json(json.loads(payload)) for every event) keep this honest.


def _jb(b: bool) -> str:
    return "true" if b else "false"


def _node_row(nid: str, region: str, cap: int, stake: int, status: str) -> str:
    return (f'{{"capacity_bytes":{cap},"node_id":"{nid}","region":"{region}",'
            f'"stake_nod":{stake},"status":"{status}"}}')


def _obj_row(oid: str, v: int, ch: str, size: int, k: int, n: int, deleted: bool) -> str:
    return (f'{{"content_hash":"{ch}","data_shards":{k},"deleted":{_jb(deleted)},"object_id":"{oid}",'
            f'"size_bytes":{size},"total_shards":{n},"version":{v}}}')


def _shard_row(oid: str, idx: int, nid: str, shash: str, sb: int) -> str:
    # Also the shard_placed payload: same fields.
    return (f'{{"node_id":"{nid}","object_id":"{oid}","shard_bytes":{sb},'
            f'"shard_hash":"{shash}","shard_index":{idx}}}')


def _ledger_row(pid: str, atr: int, nod: int) -> str:
    return f'{{"atr_paid":{atr},"nod_earned":{nod},"party_id":"{pid}"}}'


def _h(text: str) -> int:
    """row_hash_int of a row given as its canonical JSON text."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big")


def _self_check() -> None:
    samples = [
        (_node_row("node-0001", "eu-west", 2 * GB, 5 * NOD, "active"),
         {"node_id": "node-0001", "region": "eu-west", "capacity_bytes": 2 * GB, "stake_nod": 5 * NOD,
          "status": "active"}),
        (_obj_row("obj-0000001", 3, "ab", 10, 4, 6, True),
         {"object_id": "obj-0000001", "version": 3, "content_hash": "ab", "size_bytes": 10, "data_shards": 4,
          "total_shards": 6, "deleted": True}),
        (_shard_row("obj-0000001", 5, "node-0002", "cd", 7),
         {"object_id": "obj-0000001", "shard_index": 5, "node_id": "node-0002", "shard_hash": "cd",
          "shard_bytes": 7}),
        (_ledger_row("acct-00001", 5, -3), {"party_id": "acct-00001", "atr_paid": 5, "nod_earned": -3}),
    ]
    for text, row in samples:
        assert text == canonical_json(row), text
        assert _h(text) == row_hash_int(row)


_self_check()


# --------------------------------------------------------------------------- Parquet output

FLUSH_ROWS = 131_072  # rows per row group when a day's table is written in pieces


def _arrow_table(name: str, cols: dict[str, list]) -> pa.Table:
    spec = TABLES[name]
    arrays = [pa.array(cols[c.name], type=c.type) for c in spec.columns]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


class _Sink:
    """One Parquet file of one table, written in row groups of at most FLUSH_ROWS rows as the
    columns fill up (so a big day never sits in memory twice). Deterministic: same rows, same
    row groups, same bytes."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.names = TABLES[name].column_names
        self.cols: dict[str, list] = {c: [] for c in self.names}
        self._first = self.cols[self.names[0]]
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def full(self) -> bool:
        return len(self._first) >= FLUSH_ROWS

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, TABLES[self.name].schema, compression="snappy")
        return self.writer

    def flush(self) -> None:
        if not len(self._first):
            return
        tbl = _arrow_table(self.name, self.cols)
        self._open().write_table(tbl)
        self.rows += tbl.num_rows
        self.cols = {c: [] for c in self.names}
        self._first = self.cols[self.names[0]]

    def write(self, cols: dict[str, Any]) -> None:
        """Write a chunk of whole columns (sequences) as one row group."""
        self.flush()
        self.cols = cols
        self._first = cols[self.names[0]]
        self.flush()

    def close(self) -> int:
        self.flush()
        self._open().close()  # a table with no rows that day is still written (zero row groups)
        return self.rows


# --------------------------------------------------------------------------- the simulator


class _Sim:
    """The network: state (what the roots cover) + indexes + facts outside the state.

    The eight ``ev_*`` methods are the only way the state changes: each validates the event
    against the contract's invalid-event rules (raising :class:`InvalidEvent`), applies the
    effect table to the state, keeps the four component roots up to date (subtract the hashes
    of the rows replaced, add those of the rows written) and appends the event to the log.
    """

    def __init__(self, cfg: DemoConfig, export_root: Path) -> None:
        self.cfg = cfg
        self.root = export_root
        self.rng = random.Random(cfg.seed)
        self.days = [cfg.start + timedelta(days=i) for i in range(cfg.days)]

        # ---- the state of the contract, compact (rows are rebuilt as text to hash them)
        self.nodes: dict[str, list] = {}  # node_id -> [region, capacity, stake, status, hash]
        self.objs: dict[str, list] = {}  # object_id -> [version, content_hash, size, k, n, deleted, hash]
        self.shards: dict[tuple[str, int], list] = {}  # (object_id, idx) -> [node_id, shard_hash, bytes, hash]
        self.ledger: dict[str, list] = {}  # party_id -> [atr_paid, nod_earned, hash]
        self.acc_nodes = self.acc_objects = self.acc_shards = self.acc_ledger = 0
        self.tx_ids: set[str] = set()  # membership only, never iterated
        self.reward_ids: set[str] = set()

        # ---- indexes derived from the state (maintained by the ev_* methods)
        self.obj_nodes: dict[str, list] = {}  # object_id -> [node_id or None] * total_shards
        self.node_shards: dict[str, _IndexedSet] = {}  # node_id -> {(object_id, idx)}
        self.used: dict[str, int] = {}  # node_id -> sum(shard_bytes)
        self.cap: dict[str, int] = {}
        self.wcap: dict[str, float] = {}  # capacity * target-fill weight (balancer only)
        self.live = _IndexedSet()  # objects not deleted
        self.node_order: list[str] = []  # registration order (= sorted ids)

        # ---- balancer: lazy min-heap of in-service nodes by weighted utilisation
        self.heap: list[tuple[float, str, int]] = []
        self.hver: dict[str, int] = {}

        # ---- facts outside the state (snapshots only)
        self.weight: dict[str, float] = {}
        self.registered_at: dict[str, int] = {}
        self.heartbeat: dict[str, int] = {}
        self.software: dict[str, str] = {}
        self.updated_at: dict[str, int] = {}
        self.owner: dict[str, str] = {}

        # ---- log
        self.seq = 0
        self.prev_hash = GENESIS_PREV_HASH
        self.last_ts = 0
        self.next_object = 1
        self.counts: dict[str, int] = {t: 0 for t in TABLES}
        self.checkpoints: dict[str, list] = {c: [] for c in TABLES["checkpoints"].column_names}

        # ---- plan
        self.accounts = [account_id(i) for i in range(1, cfg.accounts + 1)]
        total_cap_guess = cfg.nodes * 2_500 * GB
        self.mean_size = max(
            1 << 20,
            int(total_cap_guess * cfg.initial_fill * cfg.data_shards / (cfg.total_shards * max(cfg.objects, 1))),
        )
        plan = INCIDENT_PLAN
        self.fail_node = node_id(min(plan["node_failure"]["node"], cfg.nodes)) if cfg.node_failure else None
        self.blip_node = node_id(min(plan["maintenance"]["node"], cfg.nodes)) if cfg.maintenance else None
        if self.blip_node is not None and self.blip_node == self.fail_node:
            self.blip_node = node_id(1 if self.fail_node != node_id(1) else 2)
        self.understaked = [node_id(i) for i in range(cfg.nodes - cfg.understaked_nodes + 1, cfg.nodes + 1)]
        overrun_from = cfg.start + timedelta(days=plan["reward_overrun"]["week_from_day"])
        self.overrun_monday = overrun_from + timedelta(days=(7 - overrun_from.weekday()) % 7)
        self.failed_reward_amount = 0

    # ------------------------------------------------------------------ the day's sinks

    def _open_day(self, d: date) -> None:
        def sink(name: str) -> _Sink:
            pc = TABLES[name].partition_column
            return _Sink(name, self.root / name / f"{pc}={d.isoformat()}" / "part-0.parquet")

        self.s_eqm = sink("eqm")
        self.s_fees = sink("fees")
        self.s_rewards = sink("rewards")
        self.s_proofs = sink("proofs")
        self.ev = self.s_eqm.cols
        self.day_events = 0
        self.day_fees = 0
        self.tx_n = 0
        self.ch_n = 0
        self.passed_today: dict[str, int] = {}
        self.bad_today: dict[tuple[str, int], None] = {}

    # ------------------------------------------------------------------ balancer

    def in_service(self, n: str) -> bool:
        return self.nodes[n][3] in IN_SERVICE_STATUSES

    def util(self, n: str) -> float:
        """The balancer's key: utilisation relative to the node's target fill (weight ~0.85-1.15,
        an operator setting), so that utilisation is balanced but not unrealistically uniform."""
        return self.used[n] / self.wcap[n]

    def _touch(self, n: str) -> None:
        v = self.hver.get(n, 0) + 1
        self.hver[n] = v
        if self.nodes[n][3] in IN_SERVICE_STATUSES:
            heapq.heappush(self.heap, (self.used[n] / self.wcap[n], n, v))
        if len(self.heap) > 4 * len(self.hver) + 64:
            self.heap = [(self.util(x), x, self.hver[x]) for x in self.node_order if self.in_service(x)]
            heapq.heapify(self.heap)

    def _pick(self, count: int, ok: Callable[[str], bool]) -> list[str]:
        """Up to ``count`` distinct in-service nodes, least utilised first, satisfying ``ok``."""
        taken: list[tuple] = []
        aside: list[tuple] = []
        heap, hver = self.heap, self.hver
        while heap and len(taken) < count:
            e = heapq.heappop(heap)
            if hver.get(e[1]) != e[2]:
                continue  # stale
            (taken if ok(e[1]) else aside).append(e)
        for e in taken:
            heapq.heappush(heap, e)
        for e in aside:
            heapq.heappush(heap, e)
        return [e[1] for e in taken]

    def _fits(self, n: str, nbytes: int) -> bool:
        return self.used[n] + nbytes <= self.cap[n] * self.cfg.max_fill

    # ------------------------------------------------------------------ the log

    def _log(self, ts: int, et: str, pj: str) -> None:
        if ts < self.last_ts:
            ts = self.last_ts
        h = event_hash(self.prev_hash, self.seq, et, pj)
        ev = self.ev
        ev["seq"].append(self.seq)
        ev["ts"].append(ts)
        ev["event_type"].append(et)
        ev["payload"].append(pj)
        ev["prev_hash"].append(self.prev_hash)
        ev["event_hash"].append(h)
        self.prev_hash = h
        self.seq += 1
        self.last_ts = ts
        self.day_events += 1
        if self.s_eqm.full():
            self.s_eqm.flush()
            self.ev = self.s_eqm.cols

    # ------------------------------------------------------------------ the eight event types

    def ev_node_registered(self, ts: int, nid: str, region: str, cap: int, stake: int) -> None:
        if nid in self.nodes:
            raise InvalidEvent(f"node {nid} exists")
        h = _h(_node_row(nid, region, cap, stake, "active"))
        self.nodes[nid] = [region, cap, stake, "active", h]
        self.acc_nodes += h
        self.node_shards[nid] = _IndexedSet()
        self.used[nid] = 0
        self.cap[nid] = cap
        self.wcap[nid] = cap * self.weight.get(nid, 1.0)
        self.node_order.append(nid)
        self._touch(nid)
        self._log(ts, "node_registered",
                  f'{{"capacity_bytes":{cap},"node_id":"{nid}","region":"{region}","stake_nod":{stake}}}')

    def ev_node_status_changed(self, ts: int, nid: str, status: str) -> None:
        e = self.nodes.get(nid)
        if e is None:
            raise InvalidEvent(f"status of unknown node {nid}")
        h = _h(_node_row(nid, e[0], e[1], e[2], status))
        self.acc_nodes += h - e[4]
        e[3], e[4] = status, h
        self._touch(nid)
        self._log(ts, "node_status_changed", f'{{"node_id":"{nid}","status":"{status}"}}')

    def ev_object_written(self, ts: int, oid: str, v: int, ch: str, size: int, k: int, n: int) -> None:
        e = self.objs.get(oid)
        if e is not None and v <= e[0]:
            raise InvalidEvent(f"{oid}: version {v} <= {e[0]}")
        h = _h(_obj_row(oid, v, ch, size, k, n, False))
        if e is not None:
            self.acc_objects -= e[6]
        self.objs[oid] = [v, ch, size, k, n, False, h]
        self.acc_objects += h
        nodes = self.obj_nodes.get(oid)
        if nodes is None or len(nodes) < n:
            self.obj_nodes[oid] = (nodes or []) + [None] * (n - len(nodes or []))
        self.live.add(oid)
        self._log(ts, "object_written",
                  f'{{"content_hash":"{ch}","data_shards":{k},"object_id":"{oid}","size_bytes":{size},'
                  f'"total_shards":{n},"version":{v}}}')

    def ev_object_deleted(self, ts: int, oid: str, v: int) -> None:
        e = self.objs.get(oid)
        if e is None:
            raise InvalidEvent(f"delete of unknown object {oid}")
        h = _h(_obj_row(oid, v, e[1], e[2], e[3], e[4], True))
        self.acc_objects += h - e[6]
        e[0], e[5], e[6] = v, True, h
        nodes = self.obj_nodes[oid]
        for idx, nid in enumerate(nodes):
            if nid is not None:
                self._drop_shard((oid, idx))
                nodes[idx] = None
        self.live.discard(oid)
        self._log(ts, "object_deleted", f'{{"object_id":"{oid}","version":{v}}}')

    def _drop_shard(self, key: tuple[str, int]) -> None:
        nid, _shash, sb, h = self.shards.pop(key)
        self.acc_shards -= h
        self.node_shards[nid].discard(key)
        self.used[nid] -= sb
        self._touch(nid)

    def ev_shard_placed(self, ts: int, oid: str, idx: int, nid: str, shash: str, sb: int) -> None:
        e = self.objs.get(oid)
        if e is None:
            raise InvalidEvent(f"shard of unknown object {oid}")
        if nid not in self.nodes:
            raise InvalidEvent(f"shard on unknown node {nid}")
        if e[5]:
            raise InvalidEvent(f"shard of deleted object {oid}")  # stricter than the contract
        key = (oid, idx)
        if key in self.shards:
            self._drop_shard(key)
        pj = _shard_row(oid, idx, nid, shash, sb)  # the payload has exactly the row's fields
        h = _h(pj)
        self.shards[key] = [nid, shash, sb, h]
        self.acc_shards += h
        self.obj_nodes[oid][idx] = nid
        self.node_shards[nid].add(key)
        self.used[nid] += sb
        self._touch(nid)
        self._log(ts, "shard_placed", pj)

    def ev_shard_moved(self, ts: int, key: tuple[str, int], src: str, dst: str) -> None:
        oid, idx = key
        if oid not in self.objs:
            raise InvalidEvent(f"move of unknown object {oid}")
        if dst not in self.nodes:
            raise InvalidEvent(f"move to unknown node {dst}")
        e = self.shards.get(key)
        if e is None or e[0] != src:
            raise InvalidEvent(f"move of {key} from {src}, not its node")
        h = _h(_shard_row(oid, idx, dst, e[1], e[2]))
        self.acc_shards += h - e[3]
        e[0], e[3] = dst, h
        self.obj_nodes[oid][idx] = dst
        self.node_shards[src].discard(key)
        self.node_shards[dst].add(key)
        self.used[src] -= e[2]
        self.used[dst] += e[2]
        self._touch(src)
        self._touch(dst)
        self._log(ts, "shard_moved",
                  f'{{"from_node_id":"{src}","object_id":"{oid}","shard_index":{idx},"to_node_id":"{dst}"}}')

    def _credit(self, party: str, atr: int, nod: int) -> None:
        e = self.ledger.get(party)
        if e is None:
            e = self.ledger[party] = [0, 0, 0]
        e[0] += atr
        e[1] += nod
        h = _h(_ledger_row(party, e[0], e[1]))
        self.acc_ledger += h - e[2]
        e[2] = h

    def ev_fee_charged(self, ts: int, tx: str, acct: str, oid: str | None, op: str, amount: int) -> None:
        if tx in self.tx_ids:
            raise InvalidEvent(f"duplicate tx_id {tx}")
        self.tx_ids.add(tx)
        self._credit(acct, amount, 0)
        o = "null" if oid is None else f'"{oid}"'
        self._log(ts, "fee_charged",
                  f'{{"account_id":"{acct}","amount_atr":{amount},"object_id":{o},"operation":"{op}","tx_id":"{tx}"}}')

    def ev_reward_paid(self, ts: int, rid: str, epoch: int, nid: str, kind: str, amount: int) -> None:
        if nid not in self.nodes:
            raise InvalidEvent(f"reward to unknown node {nid}")
        if rid in self.reward_ids:
            raise InvalidEvent(f"duplicate reward_id {rid}")
        self.reward_ids.add(rid)
        self._credit(nid, 0, amount)
        self._log(ts, "reward_paid",
                  f'{{"amount_nod":{amount},"epoch":{epoch},"kind":"{kind}","node_id":"{nid}","reward_id":"{rid}"}}')

    # ------------------------------------------------------------------ ledgers

    def fee(self, ts: int, account: str, oid: str | None, op: str, amount: int, d: date) -> None:
        self.tx_n += 1
        tx = f"tx-{d:%Y%m%d}-{self.tx_n:07d}"
        self.ev_fee_charged(ts, tx, account, oid, op, amount)
        s = self.s_fees
        f = s.cols
        f["tx_id"].append(tx)
        f["ts"].append(self.last_ts)
        f["account_id"].append(account)
        f["object_id"].append(oid)
        f["operation"].append(op)
        f["amount_atr"].append(amount)
        self.day_fees += amount
        if s.full():
            s.flush()

    def reward(self, ts: int, epoch: int, nid: str, kind: str, amount: int) -> None:
        rid = f"rw-{epoch:05d}-{nid}-{kind}"
        self.ev_reward_paid(ts, rid, epoch, nid, kind, amount)
        s = self.s_rewards
        r = s.cols
        r["reward_id"].append(rid)
        r["ts"].append(self.last_ts)
        r["epoch"].append(epoch)
        r["node_id"].append(nid)
        r["kind"].append(kind)
        r["amount_nod"].append(amount)
        if s.full():
            s.flush()

    # ------------------------------------------------------------------ operations

    def _draw_size(self) -> int:
        s = int(self.mean_size * self.rng.lognormvariate(-0.32, 0.8))
        return max(1 << 20, min(s, 12 * self.mean_size))

    def op_register(self, ts: int) -> None:
        rng, cfg = self.rng, self.cfg
        for i in range(1, cfg.nodes + 1):
            nid = node_id(i)
            stake = rng.randint(1_000, 6_000) * NOD
            if nid in self.understaked:
                stake = rng.randint(500, 950) * NOD
            cap = rng.randint(1_000, 4_000) * GB
            self.weight[nid] = rng.uniform(0.85, 1.15)
            self.ev_node_registered(ts + i * 1000, nid, REGIONS[(i - 1) % len(REGIONS)], cap, stake)
            self.registered_at[nid] = self.last_ts
            self.heartbeat[nid] = self.last_ts
            self.software[nid] = "13.5.0"

    def op_write(self, ts: int, d: date) -> None:
        cfg, rng = self.cfg, self.rng
        size = self._draw_size()
        k, n = cfg.data_shards, cfg.total_shards
        sb = -(-size // k)
        targets = self._pick(n, lambda x: self._fits(x, sb))
        if len(targets) < n:
            return  # no room: the write is rejected, nothing is logged
        oid = object_id(self.next_object)
        self.next_object += 1
        ch = _sha(f"{cfg.seed}:{oid}:1")
        self.ev_object_written(ts, oid, 1, ch, size, k, n)
        for idx, nid in enumerate(targets):
            self.ev_shard_placed(ts, oid, idx, nid, _sha(f"{ch}:{idx}"), sb)
        owner = self.accounts[rng.randrange(len(self.accounts))]
        self.owner[oid] = owner
        self.updated_at[oid] = self.last_ts
        self.fee(ts, owner, oid, "put", PUT_BASE + size * PUT_PER_GB // GB, d)

    def op_update(self, ts: int, d: date) -> None:
        if not len(self.live):
            return
        rng, cfg = self.rng, self.cfg
        oid = self.live.choice(rng)
        e = self.objs[oid]
        version = e[0] + 1
        size = max(1 << 20, int(e[2] * rng.uniform(0.9, 1.15)))
        k, n = e[3], e[4]
        sb = -(-size // k)
        placement = list(self.obj_nodes[oid])
        # Keep each shard where it is when its node is in service and has room; else re-place it.
        for idx in range(n):
            cur = placement[idx]
            if cur is not None and self.in_service(cur):
                old = self.shards[(oid, idx)][2]
                if self.used[cur] - old + sb <= self.cap[cur] * cfg.max_fill:
                    continue
            others = {v for i, v in enumerate(placement) if i != idx}
            got = self._pick(1, lambda x: x not in others and self._fits(x, sb))
            if not got:
                return  # no room: rejected
            placement[idx] = got[0]
        ch = _sha(f"{cfg.seed}:{oid}:{version}")
        self.ev_object_written(ts, oid, version, ch, size, k, n)
        for idx in range(n):
            self.ev_shard_placed(ts, oid, idx, placement[idx], _sha(f"{ch}:{idx}"), sb)
        self.updated_at[oid] = self.last_ts
        self.fee(ts, self.owner[oid], oid, "put", PUT_BASE + size * PUT_PER_GB // GB, d)

    def op_delete(self, ts: int, d: date) -> None:
        if not len(self.live):
            return
        oid = self.live.choice(self.rng)
        self.ev_object_deleted(ts, oid, self.objs[oid][0] + 1)
        self.updated_at[oid] = self.last_ts
        self.fee(ts, self.owner[oid], oid, "delete", DELETE_FEE, d)

    def op_read(self, ts: int, d: date) -> None:
        if not len(self.live):
            return
        oid = self.live.choice(self.rng)
        acct = self.accounts[self.rng.randrange(len(self.accounts))]
        self.fee(ts, acct, oid, "get", GET_BASE + self.objs[oid][2] * GET_PER_GB // GB, d)

    def op_renew(self, ts: int, d: date) -> None:
        if not len(self.live):
            return
        oid = self.live.choice(self.rng)
        self.fee(ts, self.owner[oid], oid, "renew", RENEW_BASE + self.objs[oid][2] * RENEW_PER_GB // GB, d)

    def move(self, ts: int, key: tuple[str, int], dst: str) -> None:
        self.ev_shard_moved(ts, key, self.shards[key][0], dst)

    def _move_target(self, key: tuple[str, int], exclude: str | None = None) -> str | None:
        sb = self.shards[key][2]
        holders = set(self.obj_nodes[key[0]])
        got = self._pick(1, lambda x: x not in holders and x != exclude and self._fits(x, sb))
        return got[0] if got else None

    def op_rebalance(self, ts: int) -> None:
        """The daily rebalancer: a few moves from the fullest to the emptiest in-service node."""
        for _ in range(self.cfg.rebalance_moves_per_day):
            serving = [x for x in self.node_order if self.in_service(x) and len(self.node_shards[x])]
            if len(serving) < 2:
                return
            src = max(serving, key=lambda x: (self.util(x), x))
            for _try in range(8):
                key = self.node_shards[src].choice(self.rng)
                dst = self._move_target(key, exclude=src)
                if dst is not None and self.util(src) - self.util(dst) > 0.01:
                    self.move(ts, key, dst)
                    break

    def op_status(self, ts: int, nid: str, status: str) -> None:
        self.ev_node_status_changed(ts, nid, status)
        if status not in IN_SERVICE_STATUSES:
            self.heartbeat[nid] = self.last_ts - 2 * MINUTE  # heartbeats stop

    def op_repair(self, ts: int, nid: str, batches_left: int) -> None:
        """Re-create the failed node's shards elsewhere (shard_moved), a share per batch."""
        held = self.node_shards[nid]
        todo = -(-len(held) // batches_left)
        for key in sorted(held.items)[:todo]:
            dst = self._move_target(key)
            if dst is not None:
                self.move(ts, key, dst)

    def op_recover(self, ts: int, nid: str) -> None:
        self.op_status(ts, nid, "active")
        # The rebalancer refills the empty node up to the mean (weighted) utilisation.
        for _ in range(len(self.shards)):
            serving = [x for x in self.node_order if self.in_service(x)]
            mean = sum(self.util(x) for x in serving) / len(serving)
            if self.util(nid) >= 0.98 * mean:
                break
            src = max((x for x in serving if x != nid), key=lambda x: (self.util(x), x))
            moved = False
            for _try in range(20):
                key = self.node_shards[src].choice(self.rng)
                if nid not in self.obj_nodes[key[0]] and self._fits(nid, self.shards[key][2]):
                    self.move(ts, key, nid)
                    moved = True
                    break
            if not moved:
                break

    def op_proofs(self, ts: int, hour: int) -> None:
        rng = self.rng
        p = self.s_proofs.cols
        day = f"{self._day:%Y%m%d}"
        for nid in self.node_order:
            if not self.in_service(nid):
                continue
            held = self.node_shards[nid]
            if not len(held):
                continue
            oid, idx = held.choice(rng)
            self.ch_n += 1
            issued = ts + rng.randrange(0, 50 * SEC)
            if (nid, hour) in self.bad_today:
                outcome = "timeout" if self.ch_n % 2 else "failed"
            else:
                outcome = "passed"
                self.passed_today[nid] = self.passed_today.get(nid, 0) + 1
            if outcome == "timeout":
                latency = None
            elif outcome == "failed":
                latency = rng.randint(40, 2_500)
            else:
                latency = max(5, min(4_000, int(rng.lognormvariate(4.787, 0.45))))  # median ~120 ms
            p["challenge_id"].append(f"ch-{day}-{self.ch_n:07d}")
            p["issued_at"].append(issued)
            p["node_id"].append(nid)
            p["object_id"].append(oid)
            p["shard_index"].append(idx)
            p["outcome"].append(outcome)
            p["latency_ms"].append(latency)
        if self.s_proofs.full():
            self.s_proofs.flush()

    def op_epoch(self, ts: int, i: int, d: date) -> None:
        cfg = self.cfg
        epoch = i + 1
        num, den = REWARD_RATIO
        if cfg.reward_overrun and self.overrun_monday <= d < self.overrun_monday + timedelta(days=7):
            num, den = INCIDENT_PLAN["reward_overrun"]["ratio"]
        pool = self.day_fees * num // den
        storage_pool = pool * STORAGE_SHARE_PCT // 100
        proof_pool = pool - storage_pool
        serving = [x for x in self.node_order if self.in_service(x)]
        total_used = sum(self.used[x] for x in serving)
        total_passed = sum(self.passed_today.get(x, 0) for x in serving)
        for nid in serving:
            if total_used:
                amt = storage_pool * self.used[nid] // total_used
                if amt > 0:
                    self.reward(ts, epoch, nid, "storage", amt)
            if total_passed:
                amt = proof_pool * self.passed_today.get(nid, 0) // total_passed
                if amt > 0:
                    self.reward(ts, epoch, nid, "proof", amt)
        if cfg.reward_to_failed_node and cfg.node_failure:
            plan = INCIDENT_PLAN["reward_to_failed_node"]
            if i == plan["day"] and serving:
                self.failed_reward_amount = max(1, storage_pool // len(serving))
                self.reward(ts, epoch, self.fail_node, "storage", self.failed_reward_amount)
            elif i == plan["clawback_day"] and self.failed_reward_amount:
                self.reward(ts, epoch, self.fail_node, "adjustment", -self.failed_reward_amount)

    # ------------------------------------------------------------------ the day

    def run_day(self, i: int, d: date) -> None:
        cfg, rng = self.cfg, self.rng
        self._open_day(d)
        self._day = d
        day0 = _day_start_us(d)
        ops: list[tuple] = []
        n = 0

        def at(t: int, prio: int, kind: str, *args) -> None:
            nonlocal n
            ops.append((day0 + t, prio, n, kind, args))
            n += 1

        def spread(count: int, kind: str, lo: int = MINUTE, hi: int = EPOCH_CLOSE - 10 * MINUTE) -> None:
            for _ in range(count):
                at(rng.randrange(lo, hi), 5, kind)

        if i == 0:
            at(0, 0, "register")
            spread(cfg.objects, "write", 10 * MINUTE, 20 * HOUR)
        spread(cfg.writes_per_day, "write")
        spread(cfg.updates_per_day, "update")
        spread(cfg.deletes_per_day, "delete")
        spread(cfg.reads_per_day, "read")
        spread(cfg.renews_per_day, "renew")
        if i > 0:
            at(4 * HOUR, 3, "rebalance")
        hours = list(range(24))[: cfg.challenges_per_node]
        for h in hours:
            at(h * HOUR + 30 * MINUTE, 6, "proofs", h)
        at(EPOCH_CLOSE, 9, "epoch")

        plan = INCIDENT_PLAN
        if cfg.node_failure:
            nf = plan["node_failure"]
            if i == nf["day"]:
                at(nf["fail_at"], 1, "status", self.fail_node, "failed")
            if i in nf["repair_days"]:
                per_day = 4
                for b in range(per_day):
                    left = (nf["repair_days"][-1] - i) * per_day + (per_day - b)
                    at(2 * HOUR + b * 6 * HOUR, 2, "repair", self.fail_node, left)
            if i == nf["recovery_day"]:
                at(nf["recover_at"], 1, "recover", self.fail_node)
        if cfg.maintenance:
            m = plan["maintenance"]
            if i == m["day"]:
                at(m["at"], 1, "status", self.blip_node, "degraded")
            if i == m["recovery_day"]:
                at(m["recover_at"], 1, "status", self.blip_node, "active")

        # Bad proof outcomes of the day: at most one per node, at a random hour.
        if i == 0:
            candidates = [node_id(j) for j in range(1, cfg.nodes + 1)]
        else:
            candidates = list(self.node_order)
        expected = (cfg.nodes if i == 0 else sum(1 for x in candidates if self.in_service(x))) * len(hours)
        if cfg.poor_proofs and i == plan["poor_proofs"]["day"]:
            bad = round(expected * plan["poor_proofs"]["bad_rate"])
        else:
            bad = round(expected * cfg.normal_bad_proof_rate * rng.uniform(0.5, 1.5))
        for nid in rng.sample(candidates, min(bad, len(candidates))):
            self.bad_today[(nid, hours[rng.randrange(len(hours))])] = None

        ops.sort(key=lambda o: (o[0], o[1], o[2]))
        handlers = {
            "write": lambda ts, a: self.op_write(ts, d),
            "update": lambda ts, a: self.op_update(ts, d),
            "delete": lambda ts, a: self.op_delete(ts, d),
            "read": lambda ts, a: self.op_read(ts, d),
            "renew": lambda ts, a: self.op_renew(ts, d),
            "proofs": lambda ts, a: self.op_proofs(ts, *a),
            "epoch": lambda ts, a: self.op_epoch(ts, i, d),
            "rebalance": lambda ts, a: self.op_rebalance(ts),
            "status": lambda ts, a: self.op_status(ts, *a),
            "repair": lambda ts, a: self.op_repair(ts, *a),
            "recover": lambda ts, a: self.op_recover(ts, *a),
            "register": lambda ts, a: self.op_register(ts),
        }
        for ts, _prio, _n, kind, args in ops:
            handlers[kind](ts, args)
        del ops
        if self.last_ts >= day0 + DAY:  # pragma: no cover
            raise AssertionError("an event spilled into the next day")
        self._end_of_day(i, d, day0)

    def _end_of_day(self, i: int, d: date, day0: int) -> None:
        rng = self.rng
        end = day0 + DAY
        for j, nid in enumerate(self.node_order, start=1):
            if self.in_service(nid):
                self.heartbeat[nid] = end - rng.randrange(5 * SEC, 30 * MINUTE)
            if i >= 24 + (j % 4):
                self.software[nid] = "13.5.1"

        for s in (self.s_eqm, self.s_fees, self.s_rewards, self.s_proofs):
            self.counts[s.name] += s.close()
        self.ev = None

        def snap(name: str) -> _Sink:
            return _Sink(name, self.root / name / f"snapshot_date={d.isoformat()}" / "part-0.parquet")

        s = snap("nodes")
        c = s.cols
        for nid in self.node_order:
            region, cap, stake, status, _h_ = self.nodes[nid]
            c["node_id"].append(nid)
            c["region"].append(region)
            c["status"].append(status)
            c["capacity_bytes"].append(cap)
            c["used_bytes"].append(self.used[nid])
            c["stake_nod"].append(stake)
            c["software_version"].append(self.software[nid])
            c["last_heartbeat"].append(self.heartbeat[nid])
            c["registered_at"].append(self.registered_at[nid])
        self.counts["nodes"] += s.close()

        s = snap("objects")
        upd = self.updated_at
        items = iter(self.objs.items())
        while chunk := list(islice(items, FLUSH_ROWS)):
            oids, vals = zip(*chunk)
            v, ch, size, k, n, deleted, _hs = zip(*vals)
            s.write({"object_id": oids, "version": v, "content_hash": ch, "size_bytes": size, "data_shards": k,
                     "total_shards": n, "updated_at": [upd[o] for o in oids], "deleted": deleted})
        self.counts["objects"] += s.close()
        self.last_objects_path = s.path

        s = snap("shards")
        items = iter(self.shards.items())
        while chunk := list(islice(items, FLUSH_ROWS)):
            keys, vals = zip(*chunk)
            oids, idxs = zip(*keys)
            nids, shashes, sbs, _hs = zip(*vals)
            s.write({"object_id": oids, "shard_index": idxs, "node_id": nids, "shard_hash": shashes,
                     "shard_bytes": sbs})
        del chunk, items
        self.counts["shards"] += s.close()

        if self.day_events:
            roots = [format_root(a) for a in (self.acc_nodes, self.acc_objects, self.acc_shards, self.acc_ledger)]
            cp = self.checkpoints
            cp["seq"].append(self.seq - 1)
            cp["ts"].append(self.last_ts)
            cp["state_root"].append(state_root(*roots))
            for name, r in zip(("nodes", "objects", "shards", "ledger"), roots):
                cp[f"{name}_root"].append(r)

    def roots(self) -> list[str]:
        return [format_root(a) for a in (self.acc_nodes, self.acc_objects, self.acc_shards, self.acc_ledger)]

    def finish(self) -> None:
        s = _Sink("checkpoints", self.root / "checkpoints" / "part-0.parquet")
        s.cols = self.checkpoints
        s._first = s.cols["seq"]
        self.counts["checkpoints"] = s.close()

    # ------------------------------------------------------------------ incidents

    def incidents(self) -> list[Incident]:
        cfg, plan, days = self.cfg, INCIDENT_PLAN, self.days
        last = len(days) - 1
        out: list[Incident] = []

        def day(k: int) -> date:
            return days[k]

        nf = plan["node_failure"]
        if cfg.node_failure and nf["day"] <= last:
            span = tuple(days[nf["day"]: min(nf["recovery_day"], last) + 1])
            out.append(Incident(
                name="node_failure", activity="node_health_assessment", days=span,
                partitions=(day(nf["day"]),), failing_criteria=(), node_ids=(self.fail_node,),
                expected_metrics={"objects_unrecoverable": 0, "objects_degraded": ">0"},
                description=(f"{self.fail_node} goes failed at 10:17 on {day(nf['day'])}; its shards are moved "
                             f"to other in-service nodes (shard_moved, never onto a node holding a shard of the "
                             f"same object) in 12 batches over the next three days; it is active again at 06:00 "
                             f"on {days[nf['recovery_day']] if nf['recovery_day'] <= last else 'n/a'} and shards "
                             f"are rebalanced back onto it. On the failure day objects are degraded, none "
                             f"unrecoverable; the node is out of service, so no node-health criterion fails."),
            ))
        rf = plan["reward_to_failed_node"]
        if cfg.reward_to_failed_node and cfg.node_failure and rf["day"] <= last:
            d0 = day(rf["day"])
            out.append(Incident(
                name="reward_to_failed_node", activity="economics_sanity_check",
                days=tuple(days[rf["day"]: min(rf["clawback_day"], last) + 1]),
                partitions=(_week_monday(d0),), failing_criteria=("no_rewards_to_failed_nodes",),
                node_ids=(self.fail_node,),
                expected_metrics={"rewards_to_failed_nodes": 1},
                description=(f"a storage reward (epoch {rf['day'] + 1}) is paid to {self.fail_node} on {d0}, the day "
                             f"its snapshot shows it failed; a negative adjustment claws it back the next day "
                             f"(adjustments are not findings)."),
            ))
        pp = plan["poor_proofs"]
        if cfg.poor_proofs and pp["day"] <= last:
            out.append(Incident(
                name="poor_proofs", activity="node_health_assessment", days=(day(pp["day"]),),
                partitions=(day(pp["day"]),), failing_criteria=("proof_success",),
                expected_metrics={"proof_success_rate": "~0.97 (< 0.99)"},
                description=("~3% of the day's challenges fail or time out (at most one per node, so "
                             "nodes_verified still passes)."),
            ))
        if cfg.reward_overrun and self.overrun_monday <= days[-1]:
            week = tuple(x for x in days if self.overrun_monday <= x < self.overrun_monday + timedelta(days=7))
            out.append(Incident(
                name="reward_overrun", activity="economics_sanity_check", days=week,
                partitions=(self.overrun_monday,), failing_criteria=("conservation",),
                expected_metrics={"margin_atr": "<0"},
                description="each epoch of the week pays 115% of its fees in rewards (normally 70%).",
            ))
        m = plan["maintenance"]
        if cfg.maintenance and m["day"] <= last:
            out.append(Incident(
                name="maintenance", activity="node_health_assessment",
                days=tuple(days[m["day"]: min(m["recovery_day"], last) + 1]),
                partitions=(day(m["day"]),), failing_criteria=(), node_ids=(self.blip_node,),
                description=f"{self.blip_node} is degraded (still in service) for a day; nothing fails.",
            ))
        if self.understaked:
            out.append(Incident(
                name="understaked_node", activity="node_health_assessment", days=tuple(days),
                partitions=tuple(days), failing_criteria=(), node_ids=tuple(self.understaked),
                expected_metrics={"unverified_node_ids": "contains " + ", ".join(self.understaked)},
                description="stake below 1000 NOD: unverified every day; verified_ratio stays above 0.95.",
            ))
        return out


# --------------------------------------------------------------------------- system of record


def build_sor_table(
    objects: pa.Table, as_of: date, seed: int, drift: DriftSpec | None = DriftSpec()
) -> tuple[pa.Table, dict[str, str]]:
    """The system of record mirroring a manifest snapshot (``objects`` of day ``as_of``),
    with ``drift`` injected. Returns (table of SOR_ARROW_SCHEMA, {object_id: category}).

    Deterministic in (manifest, as_of, seed, drift). Drift rows (not in flight) carry an
    ``updated_at`` at or before the snapshot's end; in-flight rows carry one after it.
    """
    cols = {c: objects.column(c).to_pylist() for c in SOR_ARROW_SCHEMA.names if c != "updated_at"}
    cols["updated_at"] = objects.column("updated_at").cast(pa.int64()).to_pylist()
    n = objects.num_rows
    diffs: dict[str, str] = {}
    keep = [True] * n
    extra: list[tuple] = []
    end = _day_start_us(as_of) + DAY
    if drift is not None and n:
        rng = random.Random(seed * 1_000_003 + as_of.toordinal())
        live = [i for i in range(n) if not cols["deleted"][i]]
        n_inflight_existing = sum(1 for j in range(drift.in_flight) if j % 3 != 1)
        want = drift.missing_in_sor + drift.version_mismatch + drift.content_mismatch + n_inflight_existing
        picks = rng.sample(live, min(want, len(live)))
        it = iter(picks)

        def take(count: int) -> list[int]:
            return [x for x in (next(it, None) for _ in range(count)) if x is not None]

        for i in take(drift.missing_in_sor):
            keep[i] = False
            diffs[cols["object_id"][i]] = "missing_in_sor"
        for i in take(drift.version_mismatch):
            v = cols["version"][i]
            nv = v - 1 if v > 1 else v + 1
            cols["version"][i] = nv
            cols["content_hash"][i] = _sha(f"{seed}:{cols['object_id'][i]}:{nv}")
            if nv < v:  # a stale row: written before the manifest's last write
                cols["updated_at"][i] = min(cols["updated_at"][i] - MINUTE, end - MINUTE)
            diffs[cols["object_id"][i]] = "version_mismatch"
        for i in take(drift.content_mismatch):
            cols["content_hash"][i] = _sha(f"sor-drift:{seed}:{cols['object_id'][i]}")
            diffs[cols["object_id"][i]] = "content_mismatch"
        k_default = cols["data_shards"][live[0]] if live else 4
        n_default = cols["total_shards"][live[0]] if live else 6
        sizes = sorted(cols["size_bytes"][i] for i in live) or [1 << 30]
        median = sizes[len(sizes) // 2]
        for j in range(drift.in_flight):
            t = end + (4 + 7 * j) * MINUTE
            if j % 3 == 1:  # a new object the StorageEngine had not written by the snapshot
                oid = f"obj-inflight-{j // 3 + 1:04d}"
                extra.append((oid, 1, _sha(f"{seed}:{oid}:1"), median, k_default, n_default, t, False))
                diffs[oid] = "in_flight"
                continue
            got = take(1)
            if not got:
                continue
            i = got[0]
            cols["version"][i] += 1
            cols["updated_at"][i] = t
            if j % 3 == 0:  # an update after the snapshot
                cols["content_hash"][i] = _sha(f"{seed}:{cols['object_id'][i]}:{cols['version'][i]}")
            else:  # a delete after the snapshot
                cols["deleted"][i] = True
            diffs[cols["object_id"][i]] = "in_flight"
        for j in range(drift.missing_in_storage):
            oid = f"obj-ghost-{j + 1:04d}"
            extra.append((oid, 1, _sha(f"{seed}:{oid}:1"), median, k_default, n_default,
                          end - (37 + 53 * j) * MINUTE, False))
            diffs[oid] = "missing_in_storage"

    out = {c: [v for v, k in zip(cols[c], keep) if k] for c in SOR_ARROW_SCHEMA.names}
    for row in extra:
        for c, v in zip(SOR_ARROW_SCHEMA.names, row):
            out[c].append(v)
    arrays = [
        pa.array(out[f.name], type=pa.int64()).cast(f.type)
        if f.name == "updated_at"
        else pa.array(out[f.name], type=f.type)
        for f in SOR_ARROW_SCHEMA
    ]
    tbl = pa.Table.from_arrays(arrays, schema=SOR_ARROW_SCHEMA).sort_by("object_id")
    return tbl, dict(sorted(diffs.items()))


def compare_sor(sor: pa.Table, manifest: pa.Table, day: date) -> dict[str, str]:
    """Reference dual-write comparison of a system of record with the objects snapshot of
    ``day``: {object_id: category} (DIFF_CATEGORIES), rows in flight (updated_at on either side
    at or after the day's end) reported as ``in_flight`` and not judged."""
    end = _day_start_us(day) + DAY

    def rows(t: pa.Table) -> dict[str, dict]:
        t = t.select(list(SOR_ARROW_SCHEMA.names))
        t = t.set_column(6, "updated_at", t.column("updated_at").cast(pa.int64()))
        return {r["object_id"]: r for r in t.to_pylist()}

    s, m = rows(sor), rows(manifest)
    out: dict[str, str] = {}
    for oid in sorted(s.keys() | m.keys()):
        a, b = s.get(oid), m.get(oid)
        if (a is not None and a["updated_at"] >= end) or (b is not None and b["updated_at"] >= end):
            out[oid] = "in_flight"
        elif b is None:
            if not a["deleted"]:
                out[oid] = "missing_in_storage"
        elif a is None:
            if not b["deleted"]:
                out[oid] = "missing_in_sor"
        elif a["version"] != b["version"]:
            out[oid] = "version_mismatch"
        elif any(a[k] != b[k] for k in ("content_hash", "size_bytes", "data_shards", "total_shards", "deleted")):
            out[oid] = "content_mismatch"
    return out


# --------------------------------------------------------------------------- entry point


def generate(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    sor_url: str | None = None,
    *,
    sor_schema: str | None = None,
    overwrite: bool = True,
) -> DemoDeployment:
    """Generate the demo deployment under ``out_dir``: ``export/`` (the storage export),
    ``deployment.json`` (this function's result), and the system of record at ``sor_url``
    (default ``sqlite:///<out_dir>/sor.sqlite``; ``sor_schema``: a PostgreSQL schema, created
    when absent). An existing ``out_dir/export`` is replaced when ``overwrite`` (the default),
    else an error."""
    config.validate()
    out = Path(out_dir).resolve()
    export_root = out / "export"
    if export_root.exists():
        if not overwrite:
            raise FileExistsError(export_root)
        shutil.rmtree(export_root)
    export_root.mkdir(parents=True)

    # The state is millions of small containers without cycles: the cyclic GC would only
    # rescan them over and over (it roughly doubled the run time), so it is paused meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        sim = _Sim(config, export_root)
        for i, d in enumerate(sim.days):
            sim.run_day(i, d)
        sim.finish()
        days, counts, roots = list(sim.days), dict(sim.counts), sim.roots()
        incidents, last_objects_path = sim.incidents(), sim.last_objects_path
        del sim  # free the state before the collector runs again
    finally:
        if gc_was_enabled:
            gc.enable()

    url = normalize_url(sor_url) if sor_url else f"sqlite:///{out / 'sor.sqlite'}"
    end = days[-1]
    final_manifest = pq.read_table(last_objects_path)
    drift = config.drift if config.dual_write_drift else None
    sor_tbl, diffs = build_sor_table(final_manifest, end, config.seed, drift)
    if compare_sor(sor_tbl, final_manifest, end) != diffs:  # pragma: no cover - a generator bug
        raise AssertionError("the system of record's drift differs from the expected diffs")
    del final_manifest
    write_sor(url, sor_tbl, schema=sor_schema)

    if config.dual_write_drift:
        incidents.append(Incident(
            name="dual_write_drift", activity="dual_write_verification", days=(end,),
            partitions=(end.replace(day=1),),
            failing_criteria=("zero_inconsistencies",) + (
                ("counts_match",) if config.drift.missing_in_storage != config.drift.missing_in_sor else ()),
            object_ids=tuple(diffs),
            expected_metrics={c: sum(1 for v in diffs.values() if v == c) for c in DIFF_CATEGORIES},
            description=("the system of record (the live state after the last day) differs from the last "
                         "manifest: see DemoDeployment.expected_dual_write_diffs (object_id -> category). "
                         "Compared with an earlier month's last manifest, everything changed since is in "
                         "flight and the drifted objects that already existed then show up too: see "
                         "DemoDeployment.live_sor_diffs(day)."),
        ))
    dep = DemoDeployment(
        out_dir=out, export_root=export_root, sor_url=url, sor_schema=sor_schema, start=days[0], end=end, days=days,
        incidents=incidents, expected_dual_write_diffs=diffs, checkpoint_count=counts["checkpoints"],
        event_count=counts["eqm"], row_counts=counts, final_state_root=state_root(*roots), config=config,
    )
    (out / "deployment.json").write_text(json.dumps(dep.to_json(), indent=2, sort_keys=True) + "\n")
    return dep

