"""Vectorised verification of the EQM hash chain, one Arrow batch at a time.

Every check compares a row with the row just before it in the log (the last row of the previous
batch for a batch's first row, the genesis values for the log's first row), so a batch is
verified with whole-column operations:

* seq continuity: ``seq == previous seq + 1`` (the first row must be seq 0);
* ts non-decreasing: ``ts >= previous ts``;
* linkage: ``prev_hash == previous row's (stored) event_hash`` (64 zeros for the first row);
* integrity: ``event_hash == sha256(prev_hash + "|" + str(seq) + "|" + event_type + "|" + payload)``
  (recomputed from the row as stored, so an edited payload breaks exactly that row).

Because each check is relative to the previous row, a single deleted event breaks one row (the
one after the hole: "seq gap: expected 17, got 18" plus its prev_hash), and the rows after it
verify again; a swapped pair breaks the rows around the swap.

``verify_batch`` takes the integrity and linkage checks of every row from its caller (the
columnar engine computes the digests and compares them in compiled code: ``kernels.chain_digests``,
``kernels.chain_checks``), adds the seq and ts checks, advances the cursor and words the reasons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

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


def verify_batch(cursor: ChainCursor, seq: np.ndarray, ts: np.ndarray, event_hash: pa.Array, *,
                 checks: tuple[np.ndarray, np.ndarray]) -> BatchVerdict:
    """Verify one batch against ``cursor`` and advance the cursor to its last row.

    ``checks``: the integrity and linkage checks of every row (``hash_ok``, ``link_ok``: boolean
    arrays; row 0 linked to ``cursor.event_hash``), computed by the caller before this call from
    the rows' event types, payloads and hashes."""
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

    hash_ok, link_ok = checks
    bad = np.flatnonzero(~(seq_ok & ts_ok & link_ok & hash_ok))
    cursor.seq = int(seq[-1])
    cursor.ts = int(ts[-1])
    cursor.event_hash = event_hash.slice(n - 1).cast(pa.binary())[0].as_py()
    cursor.rows += n
    return BatchVerdict(bad, seq_ok, ts_ok, link_ok, hash_ok, prev_seq, prev_ts, first_row_of_log)
