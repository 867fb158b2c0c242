"""The tables of qfs-export-v1 as data: columns, Arrow types, keys, nullability, partitioning.

Readers validate against these specs; the demo generator writes with them, so a generated
export conforms to the contract by construction. The format, in prose: docs/formats/export.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

#: The instants a timestamp may hold: ``TS_MIN <= ts < TS_MAX`` (UTC). Anything else is bad input.
#: A QFS network runs now, so nothing it records precedes the Unix epoch; the upper bound keeps a
#: year of window arithmetic inside what the evidence can hold (ISO 8601 text in the JSON, Python
#: datetimes in the analysts' tools: both end at year 9999, while Parquet's int64 reaches 294247).
TS_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TS_MAX = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
TS_RANGE_TEXT = f"[{TS_MIN:%Y-%m-%d}, {TS_MAX:%Y-%m-%d}) UTC"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_column: str | None  # Hive partition folder name; None for an unpartitioned table
    allowed_values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _spec(name, key, partition_column, cols, allowed=None) -> TableSpec:
    return TableSpec(
        name=name,
        columns=tuple(Column(*c) for c in cols),
        key=tuple(key),
        partition_column=partition_column,
        allowed_values=allowed or {},
    )


NODE_STATUSES = ("active", "degraded", "failed", "decommissioned")
IN_SERVICE_STATUSES = ("active", "degraded")

NODES = _spec(
    "nodes",
    ["node_id"],
    "snapshot_date",
    [
        ("node_id", pa.string()),
        ("region", pa.string()),
        ("status", pa.string()),
        ("capacity_bytes", pa.int64()),
        ("used_bytes", pa.int64()),
        ("stake_nod", pa.int64()),
        ("software_version", pa.string()),
        ("last_heartbeat", TS),
        ("registered_at", TS),
    ],
    {"status": NODE_STATUSES},
)

OBJECTS = _spec(
    "objects",
    ["object_id"],
    "snapshot_date",
    [
        ("object_id", pa.string()),
        ("version", pa.int64()),
        ("content_hash", pa.string()),
        ("size_bytes", pa.int64()),
        ("data_shards", pa.int16()),
        ("total_shards", pa.int16()),
        ("updated_at", TS),
        ("deleted", pa.bool_()),
    ],
)

SHARDS = _spec(
    "shards",
    ["object_id", "shard_index"],
    "snapshot_date",
    [
        ("object_id", pa.string()),
        ("shard_index", pa.int32()),
        ("node_id", pa.string()),
        ("shard_hash", pa.string()),
        ("shard_bytes", pa.int64()),
    ],
)

PROOFS = _spec(
    "proofs",
    ["challenge_id"],
    "date",
    [
        ("challenge_id", pa.string()),
        ("issued_at", TS),
        ("node_id", pa.string()),
        ("object_id", pa.string()),
        ("shard_index", pa.int32()),
        ("outcome", pa.string()),
        ("latency_ms", pa.int32(), True),
    ],
    {"outcome": ("passed", "failed", "timeout")},
)

FEES = _spec(
    "fees",
    ["tx_id"],
    "date",
    [
        ("tx_id", pa.string()),
        ("ts", TS),
        ("account_id", pa.string()),
        ("object_id", pa.string(), True),
        ("operation", pa.string()),
        ("amount_atr", pa.int64()),
    ],
    {"operation": ("put", "get", "delete", "renew")},
)

REWARDS = _spec(
    "rewards",
    ["reward_id"],
    "date",
    [
        ("reward_id", pa.string()),
        ("ts", TS),
        ("epoch", pa.int64()),
        ("node_id", pa.string()),
        ("kind", pa.string()),
        ("amount_nod", pa.int64()),
    ],
    {"kind": ("storage", "proof", "adjustment")},
)

EQM = _spec(
    "eqm",
    ["seq"],
    "date",
    [
        ("seq", pa.int64()),
        ("ts", TS),
        ("event_type", pa.string()),
        ("payload", pa.string()),
        ("prev_hash", pa.string()),
        ("event_hash", pa.string()),
    ],
)

#: storage_errors (v1.1): the StorageEngine's own error feed
STORAGE_ERROR_OPERATIONS = ("put", "get", "delete", "repair", "proof")
STORAGE_ERROR_CLASSES = ("io_error", "timeout", "not_found", "capacity_exceeded", "checksum_mismatch", "internal")
#: the error class that means silent corruption (never transient)
CORRUPTION_CLASS = "checksum_mismatch"

STORAGE_ERRORS = _spec(
    "storage_errors",
    ["error_id"],
    "date",
    [
        ("error_id", pa.string()),
        ("ts", TS),
        ("node_id", pa.string(), True),
        ("object_id", pa.string(), True),
        ("shard_index", pa.int32(), True),
        ("operation", pa.string()),
        ("error_class", pa.string()),
        ("detail", pa.string(), True),
    ],
    {"operation": STORAGE_ERROR_OPERATIONS, "error_class": STORAGE_ERROR_CLASSES},
)

CHECKPOINTS = _spec(
    "checkpoints",
    ["seq"],
    None,
    [
        ("seq", pa.int64()),
        ("ts", TS),
        ("state_root", pa.string()),
        ("nodes_root", pa.string()),
        ("objects_root", pa.string()),
        ("shards_root", pa.string()),
        ("ledger_root", pa.string()),
    ],
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (NODES, OBJECTS, SHARDS, PROOFS, FEES, REWARDS, EQM, STORAGE_ERRORS, CHECKPOINTS)
}

#: Tables with optional feeds (v1.1): a deployment that never published one has no folder at all.
OPTIONAL_TABLES = frozenset({"storage_errors"})

#: Day-partitioned tables (``date=``): complete from their first partition on (v1.1). The
#: snapshot tables (``snapshot_date=``) are read one snapshot at a time.
DAY_PARTITIONED = tuple(t.name for t in TABLES.values() if t.partition_column == "date")

EVENT_TYPES = (
    "node_registered",
    "node_status_changed",
    "object_written",
    "object_deleted",
    "shard_placed",
    "shard_moved",
    "fee_charged",
    "reward_paid",
)

# The system of record, written by the Atlas API gateway.
SOR_TABLE = "qfs_objects"
SOR_COLUMNS = (
    "object_id",
    "version",
    "content_hash",
    "size_bytes",
    "data_shards",
    "total_shards",
    "updated_at",
    "deleted",
)
