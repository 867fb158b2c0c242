"""EQM payloads: the fields of each event type and the strict reference parser.

Every payload is parsed into a tuple of its fields in the order of ``EVENT_FIELDS`` (never a
dict), or rejected with a reason, by ``parse_payload`` (``json.loads`` and strict validation, one
payload at a time). The columnar engine accepts exactly-canonical payloads in compiled code
(``kernels.parse_payloads``) and hands every other payload (non-canonical key order or spacing,
escapes, non-ASCII, extra fields, bad types, invalid JSON) to ``parse_payload``, so its values
and reasons are this parser's whichever path a payload takes (``test_replay_engine`` and
``test_replay_columnar`` check it on fuzzed and non-canonical payloads). The producer writes
canonical JSON (contract), so the fallback is rare.

Validation: the payload must be a JSON object holding every field of its type (extra fields are
ignored, like extra columns); string fields must be strings that encode to UTF-8 (a lone
surrogate escape such as ``"\\ud800"`` is rejected); integer fields must be JSON integers (not
booleans, not floats such as ``1.0``) within the range of the column's Arrow type (int64, int32
for shard_index, int16 for data_shards/total_shards). The only optional field is fee_charged's
``object_id`` (nullable in the fees table): absent, null or a string.
"""

from __future__ import annotations

import json

from qfs_assets.contract import schema as _schema

EVENT_TYPES = _schema.EVENT_TYPES  # the contract's order: an event's code is its index in it
BAD_EVENT = 8  # the code of an unknown event_type or a payload that does not parse/validate
assert len(EVENT_TYPES) == BAD_EVENT

_STR, _STR_OR_NULL = "str", "str?"
_INT_RANGES = {
    "int64": (-(1 << 63), (1 << 63) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
}

# Fields of each event type, in the order of the parsed tuple, with their kinds.
EVENT_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "node_registered": (("node_id", _STR), ("region", _STR), ("capacity_bytes", "int64"), ("stake_nod", "int64")),
    "node_status_changed": (("node_id", _STR), ("status", _STR)),
    "object_written": (("object_id", _STR), ("version", "int64"), ("content_hash", _STR), ("size_bytes", "int64"),
                       ("data_shards", "int16"), ("total_shards", "int16")),
    "object_deleted": (("object_id", _STR), ("version", "int64")),
    "shard_placed": (("object_id", _STR), ("shard_index", "int32"), ("node_id", _STR), ("shard_hash", _STR),
                     ("shard_bytes", "int64")),
    "shard_moved": (("object_id", _STR), ("shard_index", "int32"), ("from_node_id", _STR), ("to_node_id", _STR)),
    "fee_charged": (("tx_id", _STR), ("account_id", _STR), ("object_id", _STR_OR_NULL), ("operation", _STR),
                    ("amount_atr", "int64")),
    "reward_paid": (("reward_id", _STR), ("epoch", "int64"), ("node_id", _STR), ("kind", _STR),
                    ("amount_nod", "int64")),
}

_loads = json.loads


def parse_payload(event_type: str, payload: str) -> tuple | str:
    """The reference parser: the field tuple of a payload, or the reason it is invalid (a str)."""
    try:
        obj = _loads(payload)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        return f"unparsable payload: {e}"
    if not isinstance(obj, dict):
        return f"payload is not a JSON object (got {type(obj).__name__})"
    out = []
    for name, kind in EVENT_FIELDS[event_type]:
        if kind == _STR_OR_NULL:
            v = obj.get(name)
            if v is None:
                out.append(None)
                continue
        elif name not in obj or obj[name] is None:
            return f"missing payload field {name!r}"
        else:
            v = obj[name]
        if kind in (_STR, _STR_OR_NULL):
            if not isinstance(v, str):
                return f"payload field {name!r} must be a string, got {type(v).__name__}"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return f"payload field {name!r} is not valid Unicode (lone surrogate)"
        else:
            if type(v) is not int:  # bool is an int subclass: rejected too
                return f"payload field {name!r} must be an integer, got {type(v).__name__}"
            lo, hi = _INT_RANGES[kind]
            if not lo <= v <= hi:
                return f"payload field {name!r} out of {kind} range: {v}"
        out.append(v)
    return tuple(out)
