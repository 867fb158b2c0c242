"""The state rows and payloads as canonical JSON text, formatted directly.

The payloads and state rows are canonical JSON (sorted keys, no spaces). Building them with
json.dumps costs ~10 us each, so they are formatted directly, keys in sorted order. Every
string the generator puts in them is an identifier, a hex hash or a fixed word ([a-z0-9.-]),
so no escaping is ever needed; the self-check below (run at import) and the tests
(payload == canonical_json(json.loads(payload)) for every event) keep this honest.
"""

from __future__ import annotations

import hashlib

from qfs_assets.contract.hashing import canonical_json, row_hash_int
from qfs_assets.demo.config import GB, NOD


def jbool(b: bool) -> str:
    return "true" if b else "false"


def node_row(nid: str, region: str, cap: int, stake: int, status: str) -> str:
    return (f'{{"capacity_bytes":{cap},"node_id":"{nid}","region":"{region}",'
            f'"stake_nod":{stake},"status":"{status}"}}')


def obj_row(oid: str, v: int, ch: str, size: int, k: int, n: int, deleted: bool) -> str:
    return (f'{{"content_hash":"{ch}","data_shards":{k},"deleted":{jbool(deleted)},"object_id":"{oid}",'
            f'"size_bytes":{size},"total_shards":{n},"version":{v}}}')


def shard_row(oid: str, idx: int, nid: str, shash: str, sb: int) -> str:
    # Also the shard_placed payload: same fields.
    return (f'{{"node_id":"{nid}","object_id":"{oid}","shard_bytes":{sb},'
            f'"shard_hash":"{shash}","shard_index":{idx}}}')


def ledger_row(pid: str, atr: int, nod: int) -> str:
    return f'{{"atr_paid":{atr},"nod_earned":{nod},"party_id":"{pid}"}}'


def row_hash(text: str) -> int:
    """row_hash_int of a row given as its canonical JSON text."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big")


def _self_check() -> None:
    samples = [
        (node_row("node-0001", "eu-west", 2 * GB, 5 * NOD, "active"),
         {"node_id": "node-0001", "region": "eu-west", "capacity_bytes": 2 * GB, "stake_nod": 5 * NOD,
          "status": "active"}),
        (obj_row("obj-0000001", 3, "ab", 10, 4, 6, True),
         {"object_id": "obj-0000001", "version": 3, "content_hash": "ab", "size_bytes": 10, "data_shards": 4,
          "total_shards": 6, "deleted": True}),
        (shard_row("obj-0000001", 5, "node-0002", "cd", 7),
         {"object_id": "obj-0000001", "shard_index": 5, "node_id": "node-0002", "shard_hash": "cd",
          "shard_bytes": 7}),
        (ledger_row("acct-00001", 5, -3), {"party_id": "acct-00001", "atr_paid": 5, "nod_earned": -3}),
    ]
    for text, row in samples:
        assert text == canonical_json(row), text
        assert row_hash(text) == row_hash_int(row)


_self_check()
