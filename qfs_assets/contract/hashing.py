"""Hashing rules of qfs-export-v1: canonical JSON, the EQM hash chain, set-hash roots, sampling.

Pure Python, no Dagster. Everything that must agree byte for byte between the demo
generator, the replay engine and an external auditor lives here. The rules, in prose:
docs/formats/export.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

GENESIS_PREV_HASH = "0" * 64
EMPTY_ROOT = "0" * 64
_MOD = 1 << 256

COMPONENTS = ("nodes", "objects", "shards", "ledger")


def canonical_json(value: Any) -> str:
    """The contract's canonical JSON text of ``value``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_hash(prev_hash: str, seq: int, event_type: str, payload: str) -> str:
    """``sha256(prev_hash + "|" + str(seq) + "|" + event_type + "|" + payload)`` over UTF-8."""
    return sha256_hex(f"{prev_hash}|{seq}|{event_type}|{payload}")


def row_hash_int(row: Mapping[str, Any]) -> int:
    """The integer value of a state row's hash, the summand of a component root."""
    return int.from_bytes(hashlib.sha256(canonical_json(row).encode("utf-8")).digest(), "big")


def format_root(acc: int) -> str:
    return format(acc % _MOD, "064x")


def component_root(rows: Iterable[Mapping[str, Any]]) -> str:
    """Order-independent set hash of a component (64 zeros when empty)."""
    return format_root(sum(row_hash_int(r) for r in rows))


def state_root(nodes_root: str, objects_root: str, shards_root: str, ledger_root: str) -> str:
    return sha256_hex(nodes_root + objects_root + shards_root + ledger_root)


class SetHash:
    """An incrementally maintained component root: add and remove rows in any order."""

    __slots__ = ("acc",)

    def __init__(self) -> None:
        self.acc = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.acc += row_hash_int(row)

    def remove(self, row: Mapping[str, Any]) -> None:
        self.acc -= row_hash_int(row)

    def hex(self) -> str:
        return format_root(self.acc)


def in_sample(object_id: str, sample_bps: int) -> bool:
    """The contract's reproducible sample: ``int(sha256(object_id)[:8], 16) % 10000 < sample_bps``."""
    return int(sha256_hex(object_id)[:8], 16) % 10000 < sample_bps
