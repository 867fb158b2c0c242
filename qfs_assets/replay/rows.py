"""State rows of qfs-export-v1: field order, Arrow export types, canonical row text, row hashes.

``COMPONENT_FIELDS`` and ``COMPONENT_SCHEMAS`` are the fields and export types of each
component's rows (the columnar engine exports its state with them). ``row_text`` / ``row_hash``
give the canonical JSON text of a row and its hash summand from a (key, value) pair of tuples
(layout below; the columnar engine's kernels write the same texts in compiled code).

``row_text`` formats the text with ``%``-formatting instead of ``json.dumps``: keys are written
in sorted order, strings go through ``json.encoder.encode_basestring`` (the very function
``json.dumps(..., ensure_ascii=False)`` uses for strings), integers through ``%d`` (the same
digits as ``int.__repr__``), booleans as ``true``/``false``. ``test_replay_engine`` proves the
text identical to ``hashing.canonical_json(row)`` on generated rows, escapes and non-ASCII
text included.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring as _enc
from typing import Any

import pyarrow as pa

from qfs_assets.contract.hashing import COMPONENTS

__all__ = [
    "COMPONENTS",
    "COMPONENT_FIELDS",
    "COMPONENT_SCHEMAS",
    "row_text",
    "row_hash",
]

# Row fields, exactly as the contract lists them (and as the exported tables order them).
COMPONENT_FIELDS: dict[str, tuple[str, ...]] = {
    "nodes": ("node_id", "region", "capacity_bytes", "stake_nod", "status"),
    "objects": ("object_id", "version", "content_hash", "size_bytes", "data_shards", "total_shards", "deleted"),
    "shards": ("object_id", "shard_index", "node_id", "shard_hash", "shard_bytes"),
    "ledger": ("party_id", "atr_paid", "nod_earned"),
}

# Arrow types follow the storage export tables (qfs_assets.contract.schema) for the same fields.
COMPONENT_SCHEMAS: dict[str, pa.Schema] = {
    "nodes": pa.schema(
        [
            pa.field("node_id", pa.string(), nullable=False),
            pa.field("region", pa.string(), nullable=False),
            pa.field("capacity_bytes", pa.int64(), nullable=False),
            pa.field("stake_nod", pa.int64(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
        ]
    ),
    "objects": pa.schema(
        [
            pa.field("object_id", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("size_bytes", pa.int64(), nullable=False),
            pa.field("data_shards", pa.int16(), nullable=False),
            pa.field("total_shards", pa.int16(), nullable=False),
            pa.field("deleted", pa.bool_(), nullable=False),
        ]
    ),
    "shards": pa.schema(
        [
            pa.field("object_id", pa.string(), nullable=False),
            pa.field("shard_index", pa.int32(), nullable=False),
            pa.field("node_id", pa.string(), nullable=False),
            pa.field("shard_hash", pa.string(), nullable=False),
            pa.field("shard_bytes", pa.int64(), nullable=False),
        ]
    ),
    "ledger": pa.schema(
        [
            pa.field("party_id", pa.string(), nullable=False),
            pa.field("atr_paid", pa.int64(), nullable=False),
            pa.field("nod_earned", pa.int64(), nullable=False),
        ]
    ),
}

# The (key, value) layout ``row_text`` and ``row_hash`` take (the per-event reference engine's
# in-memory state, qfs_assets_tests/reference_engine.py):
#   nodes   : node_id   -> (region, capacity_bytes, stake_nod, status)
#   objects : object_id -> (version, content_hash, size_bytes, data_shards, total_shards, deleted)
#   shards  : key (object_id, shard_index) -> (node_id, shard_hash, shard_bytes)
#             (stored per object: shards[object_id][shard_index] = value)
#   ledger  : party_id  -> (atr_paid, nod_earned)


def _node_text(k: str, v: tuple) -> str:
    return '{"capacity_bytes":%d,"node_id":%s,"region":%s,"stake_nod":%d,"status":%s}' % (
        v[1], _enc(k), _enc(v[0]), v[2], _enc(v[3]))


def _object_text(k: str, v: tuple) -> str:
    return (
        '{"content_hash":%s,"data_shards":%d,"deleted":%s,"object_id":%s,'
        '"size_bytes":%d,"total_shards":%d,"version":%d}'
        % (_enc(v[1]), v[3], "true" if v[5] else "false", _enc(k), v[2], v[4], v[0])
    )


def _shard_text(k: tuple, v: tuple) -> str:
    return '{"node_id":%s,"object_id":%s,"shard_bytes":%d,"shard_hash":%s,"shard_index":%d}' % (
        _enc(v[0]), _enc(k[0]), v[2], _enc(v[1]), k[1])


def _ledger_text(k: str, v: tuple) -> str:
    return '{"atr_paid":%d,"nod_earned":%d,"party_id":%s}' % (v[0], v[1], _enc(k))


ROW_TEXT = {"nodes": _node_text, "objects": _object_text, "shards": _shard_text, "ledger": _ledger_text}


def row_text(component: str, key: Any, value: tuple) -> str:
    """Canonical JSON text of a state row given as a (key, value) pair (layout above)."""
    return ROW_TEXT[component](key, value)


def row_hash(component: str, key: Any, value: tuple) -> int:
    """The row's hash summand, ``int(sha256(canonical_json(row)), 16)``."""
    return int.from_bytes(hashlib.sha256(ROW_TEXT[component](key, value).encode("utf-8")).digest(), "big")
