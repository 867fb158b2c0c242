"""Replay of the EQM event log: hash-chain verification, state rebuild, state roots.

No Dagster. ``replay`` / ``ReplayEngine`` are the columnar engine (``columnar``, compiled kernels
in ``kernels``), which the drill uses. This docstring is the replay's semantics, every choice
(the engine's design and measurements are in ``columnar``'s). The per-event engine that the drill
used before gives the same results field by field; it is frozen outside the package, in
``qfs_assets_tests/reference_engine.py``, as the tests' oracle and the benchmark's "today's
engine".

    from qfs_assets.replay import replay, compare_checkpoints
    result = replay(batches, before_ts=quarter_end, expected_checkpoints=checkpoints_table)
    result.chain_intact, result.invalid_events, result.final_roots.state
    result.checkpoint_comparison.first_mismatch_seq, result.snapshots

Entry points: ``replay(batches, ...) -> ReplayResult`` for a whole log in one call;
``ReplayEngine`` to drive a replay batch by batch (``feed`` / ``roots`` / ``table`` / ``finish``).

Input
-----
An iterable of ``pa.RecordBatch`` / ``pa.Table`` with the EQM columns (seq, ts, event_type,
payload, prev_hash, event_hash; extra columns ignored) in log order, typically streamed one date
partition at a time. The log is held a few batches at a time; only the state grows. Events are
applied in the order given: the engine never re-sorts. A missing column, a null, or a value that
cannot be cast losslessly (e.g. a ts with nanoseconds) raises ``ReplayInputError``.

Limits: ``through_seq`` (inclusive), ``through_ts`` (inclusive) and ``before_ts`` (exclusive; the
drill passes the quarter's end). Replay stops at the first row beyond any limit (rows are in
seq order, so everything after it is beyond the limit too); the rest of the input is not read
(``replay`` stops iterating; ``feed`` returns False).

Hash chain (see ``chain.py``)
-----------------------------
seq continuity from 0, non-decreasing ts, prev_hash linkage and the recomputed event_hash are
checked row by row, each relative to the preceding row of the log. After a break the engine
**keeps replaying**: every event is still applied (if valid), so the state, the roots and the
invalid-event list are computed over the whole log as stored. The result records the first
broken row (``first_broken_seq`` is that row's seq, ``chain_break`` its reasons, all failed
checks of that row joined by "; ", the most telling first) and counts every broken row
(``chain_breaks``). A deleted event breaks the row after the hole ("seq gap: expected 17, got
18; prev_hash does not match ..."), an edited payload breaks its own row ("event_hash mismatch
(payload edited?)"), swapped rows break the rows around the swap.

Events and invalid events
-------------------------
The eight event types apply exactly per the contract's effect table. An invalid event is
recorded (seq, event_type, reason) and applies nothing (in particular an invalid fee or reward
does not register its tx_id / reward_id). Invalid are:

* an unknown event_type; a payload that does not parse, is not a JSON object, lacks a field, or
  has a field of the wrong type or out of its column's range (see ``payloads.py``);
* node_registered for a node that exists;
* node_status_changed for an unknown node, or to a status outside active / degraded / failed /
  decommissioned (the status enters the nodes state, whose allowed values the contract fixes);
* object_written whose version is not greater than the stored one (a tombstone's version counts);
* object_deleted for an unknown object, or whose version is not greater than the stored one
  (versions increase with every write *or delete*; the delete is a write of a tombstone);
* shard_placed for an unknown object, for a deleted object (a tombstone has no shards: the
  delete dropped them; re-placing one would resurrect data of a deleted object), or onto an
  unknown node;
* shard_moved for an unknown object, for a deleted object, of a shard that does not exist, whose
  from_node_id is not the shard's node, or to an unknown to_node_id (checked in that order);
* fee_charged with a tx_id already applied; reward_paid to an unknown node, or with a reward_id
  already applied (checked in that order).

Choices where the contract is silent:

* object_written on a deleted object with a greater version is valid: an upsert with
  ``deleted=false`` (the object is live again, without shards until new shard_placed events).
* object_written on a live object (greater version) replaces the object row only; its shards
  stay until they are re-placed, moved or the object is deleted (the effect table says "upsert
  object" and nothing about shards).
* object_deleted on an already deleted object with a greater version is valid: the tombstone's
  version is updated (it has no shards left to drop).
* shard_placed on an existing (object_id, shard_index) replaces the shard (upsert), on any node.
* shard_moved with from_node_id == to_node_id is valid and changes nothing.
* A node's status does not gate anything: shards may be placed on, moved to, and rewards paid to
  a node in any status (health and economics judge that on the snapshots and ledgers).
* Values are not range-checked beyond their column types: negative bytes/amounts, shard_index
  >= total_shards, data_shards > total_shards are applied as logged (fee and reward amounts
  are judged by economics_sanity_check; adjustments may be negative). fee_charged's object_id,
  operation and reward_paid's epoch and kind do not enter the state and are type-checked only.
* Ledger: one row per party_id, the same namespace for account_id (fees) and node_id (rewards);
  a party seen only in rewards has atr_paid 0, one seen only in fees nod_earned 0. Sums are not
  bounded by int64 (the columnar engine keeps 128 bits, the reference engine Python integers): a
  sum beyond int64 still hashes per the contract; only exporting it with ``table("ledger")``
  (int64 columns) fails.

Roots
-----
Each component root is a ``SetHash`` (``hashing.py``) of its rows' hashes (the SHA-256 of each
row's canonical JSON text, ``rows.py``), kept incrementally: the hash of the row an event
replaces is subtracted, the hash of the row it writes added. The engines flush changed rows at
every checkpoint and at the end rather than hashing every intermediate version of a row, so
the root at any checkpoint is exactly ``component_root`` of the state at that point
(``test_replay_engine`` checks it against a naive eager model on fuzzed logs).

Checkpoints
-----------
``checkpoint_seqs``: the roots at S are those after applying the row whose seq is S. If the log
jumps over S (a gap) the roots are taken just before the first row with a greater seq. A seq
after the last replayed row is reported in ``unreached_checkpoints``. ``on_checkpoint(roots,
engine)`` is called at each checkpoint and may call ``engine.table(component)`` to export the
state at that point; ``snapshot_at={seq: components}`` does that for you.
``expected_checkpoints`` (the published checkpoint rows): their seqs are added to the
checkpoints, the comparison is returned in ``ReplayResult.checkpoint_comparison`` (rules in
``compare.py``), and with ``snapshot_first_mismatch`` the mismatched components at the first
mismatching checkpoint are exported into ``ReplayResult.snapshots`` while the replay is at that
seq.

Options (``replay`` and ``ReplayEngine``)
-----------------------------------------
* ``checkpoint_seqs``: seqs at which to record the roots (``ReplayResult.checkpoint_roots``).
* ``expected_checkpoints``: the published ``checkpoints`` rows (Arrow table or dicts); adds
  their seqs, and ``finish`` compares (``ReplayResult.checkpoint_comparison``).
* ``snapshot_first_mismatch``: export the mismatched components at the first checkpoint whose
  roots differ from ``expected_checkpoints`` (``ReplayResult.snapshots[seq][component]``).
* ``snapshot_at``: ``{seq: components}`` to export at those seqs regardless.
* ``on_checkpoint(roots, engine)``: called at every checkpoint; may call ``engine.table(c)``.
* ``through_seq`` / ``through_ts`` (inclusive), ``before_ts`` (exclusive): where to stop.
* ``batch_rows``: the most rows verified and applied in one step.
* ``fast_path``: the reference engine's payload parser choice; the columnar engine accepts it
  and ignores it (canonical payloads always take its compiled path). Same result either way.
* The columnar engine's own: ``start_state`` (start from a verified saved state, ``snapshot.py``),
  ``expected_events`` (the log's row count, to size its tables), ``engine_out`` (``replay``).

Use: ``feed(batch)`` repeatedly (False once a limit is reached), then ``finish()``.
``roots()``, ``table(component)``, ``rows(component)`` read the state of the rows processed so
far.
"""

from .compare import CheckpointCheck, CheckpointComparison, compare_checkpoints
from .result import EQM_COLUMNS, ChainBreak, InvalidEvent, ReplayInputError, ReplayResult, Roots
from .payloads import EVENT_FIELDS, EVENT_TYPES, parse_payload
from .rows import COMPONENT_FIELDS, COMPONENT_SCHEMAS, row_text

#: loaded on first use (PEP 562): the columnar engine imports numba and compiles its kernels, which
#: every process that imports the definitions (and so this package, through the drill's module)
#: would otherwise pay for; only a drill run needs them
_LAZY = {"replay": ("columnar", "replay"), "ReplayEngine": ("columnar", "ColumnarEngine")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "replay",
    "ReplayEngine",
    "ReplayResult",
    "Roots",
    "ChainBreak",
    "InvalidEvent",
    "ReplayInputError",
    "compare_checkpoints",
    "CheckpointComparison",
    "CheckpointCheck",
    "EQM_COLUMNS",
    "EVENT_TYPES",
    "EVENT_FIELDS",
    "COMPONENT_FIELDS",
    "COMPONENT_SCHEMAS",
    "parse_payload",
    "row_text",
]
