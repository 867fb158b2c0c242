"""Vectorised verification of the EQM hash chain, one Arrow batch at a time.

Every check compares a row with the row just before it in the log (the last row of the previous
batch for a batch's first row, the genesis values for the log's first row), so a batch is
verified with whole-column operations and needs no per-row Python except the SHA-256 calls
(the hex comparisons are single byte-string comparisons over the whole batch when it is intact):

* seq continuity: ``seq == previous seq + 1`` (the first row must be seq 0);
* ts non-decreasing: ``ts >= previous ts``;
* linkage: ``prev_hash == previous row's (stored) event_hash`` (64 zeros for the first row);
* integrity: ``event_hash == sha256(prev_hash + "|" + str(seq) + "|" + event_type + "|" + payload)``
  (recomputed from the row as stored, so an edited payload breaks exactly that row).

Because each check is relative to the previous row, a single deleted event breaks one row (the
one after the hole: "seq gap: expected 17, got 18" plus its prev_hash), and the rows after it
verify again; a swapped pair breaks the rows around the swap. ``hashlib`` runs in a tight loop
over the ``|``-joined bytes built by Arrow.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.contract.hashing import GENESIS_PREV_HASH

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def ts_to_datetime(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(us))


@dataclass
class ChainCursor:
    """The last verified row: what the next row is compared with."""

    seq: int = -1  # the first row must then be seq 0
    ts: int | None = None
    event_hash: bytes = GENESIS_PREV_HASH.encode("ascii")  # as stored (bytes: any content)
    rows: int = 0  # rows verified so far


@dataclass
class BatchVerdict:
    bad_rows: np.ndarray  # row positions in the batch that fail any check, ascending
    seq_ok: np.ndarray
    ts_ok: np.ndarray
    link_ok: np.ndarray
    hash_ok: np.ndarray
    prev_seq: np.ndarray
    prev_ts: np.ndarray
    first_row_of_log: bool

    def reason(self, i: int, seq: np.ndarray, ts: np.ndarray) -> str:
        """All failed checks of batch row ``i``, the most telling first."""
        out = []
        got, expected = int(seq[i]), int(self.prev_seq[i]) + 1
        if not self.seq_ok[i]:
            word = "seq gap" if got > expected else "seq out of order"
            out.append(f"{word}: expected {expected}, got {got}")
        if not self.link_ok[i]:
            if i == 0 and self.first_row_of_log:
                out.append("prev_hash of the first event is not the genesis hash (64 zeros)")
            elif got == int(self.prev_seq[i]) + 1:
                out.append("prev_hash does not match event_hash of seq-1")
            else:
                out.append(f"prev_hash does not match event_hash of the preceding event (seq {int(self.prev_seq[i])})")
        if not self.hash_ok[i]:
            out.append("event_hash mismatch (payload edited?)")
        if not self.ts_ok[i]:
            out.append(
                f"ts decreases: {ts_to_datetime(ts[i]).isoformat()} < {ts_to_datetime(self.prev_ts[i]).isoformat()}"
            )
        return "; ".join(out)


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, memoryview | bytes]:
    """Offsets (numpy, n+1) and the data buffer of a non-null string array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type == pa.large_string():
        offs = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    else:
        if arr.type != pa.string():
            arr = arr.cast(pa.string())
        offs = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    return offs, (memoryview(data) if data is not None else b"")


def _hex_block(arr: pa.Array) -> bytes | None:
    """The values of a string column back to back, when every value is 64 bytes long; else None."""
    offs, data = _string_parts(arr)
    n = len(offs) - 1
    if n and (int(offs[-1]) - int(offs[0]) != 64 * n or not np.all(np.diff(offs) == 64)):
        return None
    return bytes(data[int(offs[0]): int(offs[-1])]) if n else b""


def chain_texts(seq: pa.Array | np.ndarray, event_type: pa.Array, payload: pa.Array, prev_hash: pa.Array) -> pa.Array:
    """The hashed text of every row, ``prev_hash|seq|event_type|payload`` (a string array)."""
    if not isinstance(seq, (pa.Array, pa.ChunkedArray)):
        seq = pa.array(seq, type=pa.int64())
    return pc.binary_join_element_wise(prev_hash, pc.cast(seq, pa.string()), event_type, payload, "|")


def _hex_rows(arr: pa.Array) -> np.ndarray | None:
    """The values of a string column as an (n, 8) uint64 view (no copy) when every value is
    64 bytes long; else None."""
    offs, data = _string_parts(arr)
    n = len(offs) - 1
    if n and (int(offs[-1]) - int(offs[0]) != 64 * n or not np.all(np.diff(offs) == 64)):
        return None
    if not n:
        return np.empty((0, 8), dtype=np.uint64)
    return np.frombuffer(data, dtype=np.uint8, count=64 * n, offset=int(offs[0])).view(np.uint64).reshape(n, 8)


def recompute_digests(seq: pa.Array, event_type: pa.Array, payload: pa.Array, prev_hash: pa.Array) -> bytes:
    """The n recomputed event hashes as raw digests, concatenated (32 bytes each)."""
    offs, data = _string_parts(chain_texts(seq, event_type, payload, prev_hash))
    o = offs.tolist()
    sha = hashlib.sha256
    return b"".join([sha(data[a:b]).digest() for a, b in zip(o, o[1:])])


def _rows_equal(a: bytes, b: bytes, n: int) -> np.ndarray:
    """Row-wise equality of two blocks of n 64-byte rows."""
    return np.all(np.frombuffer(a, dtype=np.uint8).reshape(n, 64) == np.frombuffer(b, dtype=np.uint8).reshape(n, 64),
                  axis=1)


def verify_batch(cursor: ChainCursor, seq: np.ndarray, ts: np.ndarray, event_type: pa.Array,
                 payload: pa.Array, prev_hash: pa.Array, event_hash: pa.Array,
                 computed: bytes | None = None, checks: tuple[np.ndarray, np.ndarray] | None = None) -> BatchVerdict:
    """Verify one batch against ``cursor`` and advance the cursor to its last row.

    ``computed``: the batch's recomputed digests (``recompute_digests``) if already at hand;
    ``checks``: instead, the integrity and linkage checks of every row (``hash_ok``, ``link_ok``:
    boolean arrays, as computed here) if already at hand."""
    n = len(seq)
    first_row_of_log = cursor.rows == 0
    prev_seq = np.empty(n, dtype=np.int64)
    prev_seq[0] = cursor.seq
    prev_seq[1:] = seq[:-1]
    seq_ok = seq == prev_seq + 1
    prev_ts = np.empty(n, dtype=np.int64)
    prev_ts[0] = ts[0] if cursor.ts is None else cursor.ts
    prev_ts[1:] = ts[:-1]
    ts_ok = ts >= prev_ts

    # Whole-batch comparisons first (one memcmp each when the chain is intact), rows only on failure.
    if checks is not None:
        hash_ok, link_ok = checks
    else:
        if computed is None:
            computed = recompute_digests(pa.array(seq, type=pa.int64()), event_type, payload, prev_hash)
        hash_ok, link_ok = _compare(cursor, n, binascii.hexlify(computed), event_hash, prev_hash)
    bad = np.flatnonzero(~(seq_ok & ts_ok & link_ok & hash_ok))
    cursor.seq = int(seq[-1])
    cursor.ts = int(ts[-1])
    cursor.event_hash = event_hash.slice(n - 1).cast(pa.binary())[0].as_py()
    cursor.rows += n
    return BatchVerdict(bad, seq_ok, ts_ok, link_ok, hash_ok, prev_seq, prev_ts, first_row_of_log)


def _compare(cursor: ChainCursor, n: int, computed: bytes, event_hash: pa.Array, prev_hash: pa.Array):
    """(hash_ok, link_ok) of a batch from its recomputed hex digests (n * 64 bytes)."""
    ev = _hex_rows(event_hash)
    pv = _hex_rows(prev_hash)
    last = cursor.event_hash
    if ev is not None and pv is not None and len(last) == 64:
        # (n, 8) uint64 views of the hex texts, no copy: a row is equal iff its 8 words are
        hash_ok = (np.frombuffer(computed, dtype=np.uint64).reshape(n, 8) == ev).all(axis=1)
        link_ok = np.empty(n, dtype=bool)
        link_ok[0] = pv[0].tobytes() == last
        link_ok[1:] = (pv[1:] == ev[:-1]).all(axis=1)
    else:  # some hash is not 64 bytes long: compare as Python bytes (a broken log only)
        evl = event_hash.cast(pa.binary()).to_pylist()
        pvl = prev_hash.cast(pa.binary()).to_pylist()
        comp = [computed[64 * i: 64 * i + 64] for i in range(n)]
        hash_ok = np.array([a == b for a, b in zip(evl, comp)], dtype=bool)
        link_ok = np.array([a == b for a, b in zip(pvl, [cursor.event_hash] + evl[:-1])], dtype=bool)
    return hash_ok, link_ok
