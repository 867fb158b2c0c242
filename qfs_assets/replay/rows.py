"""State rows of qfs-export-v1: field order, canonical row text, row hashes, Arrow export.

The replay engine keeps each component in plain dicts of tuples (see ``engine``); this module
turns a (key, value) pair back into the contract's row, into its canonical JSON text and into
its hash summand.

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
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from qfs_assets.contract.hashing import COMPONENTS

__all__ = [
    "COMPONENTS",
    "COMPONENT_FIELDS",
    "COMPONENT_SCHEMAS",
    "row_dict",
    "row_text",
    "row_hash",
    "sum_digests",
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

# In-memory layout (engine.py):
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
    """Canonical JSON text of a state row given as the engine's (key, value) pair."""
    return ROW_TEXT[component](key, value)


def row_hash(component: str, key: Any, value: tuple) -> int:
    """The row's hash summand, ``int(sha256(canonical_json(row)), 16)``."""
    return int.from_bytes(hashlib.sha256(ROW_TEXT[component](key, value).encode("utf-8")).digest(), "big")


def row_dict(component: str, key: Any, value: tuple) -> dict:
    """The contract's row (a dict with exactly the component's fields)."""
    if component == "nodes":
        return {"node_id": key, "region": value[0], "capacity_bytes": value[1], "stake_nod": value[2],
                "status": value[3]}
    if component == "objects":
        return {"object_id": key, "version": value[0], "content_hash": value[1], "size_bytes": value[2],
                "data_shards": value[3], "total_shards": value[4], "deleted": value[5]}
    if component == "shards":
        return {"object_id": key[0], "shard_index": key[1], "node_id": value[0], "shard_hash": value[1],
                "shard_bytes": value[2]}
    if component == "ledger":
        return {"party_id": key, "atr_paid": value[0], "nod_earned": value[1]}
    raise KeyError(component)


def hash_sum_texts(texts: Iterable[str]) -> int:
    """Sum of the row hashes of canonical row texts (not reduced mod 2**256)."""
    sha = hashlib.sha256
    return sum_digests(b"".join([sha(t.encode("utf-8")).digest() for t in texts]))


def sum_digests(digests: bytes | np.ndarray, select: np.ndarray | list[int] | None = None) -> int:
    """Sum of SHA-256 digests read as big-endian 256-bit integers, vectorised.

    ``digests`` holds n digests back to back (bytes) or as a uint8 ``(n, 32)`` array; ``select``
    optionally picks rows (repeats allowed). The sum is not reduced mod 2**256.
    """
    arr = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32) if isinstance(digests, bytes) else digests
    if select is not None:
        arr = arr[np.asarray(select, dtype=np.int64)]
    if arr.shape[0] == 0:
        return 0
    limbs = np.ascontiguousarray(arr).view(">u4").astype(np.uint64)  # (k, 8) 32-bit limbs
    # Each limb is < 2**32, so a uint64 column sum is exact for fewer than 2**32 rows.
    total = 0
    for s in limbs.sum(axis=0, dtype=np.uint64).tolist():
        total = (total << 32) + int(s)
    return total


def component_table(component: str, items: Iterator[tuple[Any, tuple]]) -> pa.Table:
    """Arrow table (contract row fields, export types) of (key, value) pairs, in the given order."""
    fields = COMPONENT_FIELDS[component]
    cols: list[list] = [[] for _ in fields]
    if component == "shards":
        a, b, c, d, e = cols
        for (oid, idx), v in items:
            a.append(oid); b.append(idx); c.append(v[0]); d.append(v[1]); e.append(v[2])  # noqa: E702
    else:
        head, rest = cols[0], cols[1:]
        for k, v in items:
            head.append(k)
            for col, x in zip(rest, v):
                col.append(x)
    schema = COMPONENT_SCHEMAS[component]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)
