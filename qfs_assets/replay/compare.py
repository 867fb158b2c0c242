"""Compare replayed roots with the checkpoints the production engine published.

``compare_checkpoints(roots_at, checkpoints)`` takes the roots the replay recorded (a mapping
seq -> ``Roots``, e.g. ``ReplayResult.checkpoint_roots``) and the checkpoint rows (an Arrow table
with the ``checkpoints`` columns, or an iterable of dicts with those keys) and returns one
``CheckpointCheck`` per checkpoint, in seq order, plus the first mismatch.

Choices:

* A checkpoint matches when all five roots (nodes, objects, shards, ledger, state) are equal.
  The checkpoint's ``ts`` is compared too (``ts_matched``: the ts of the replayed event at that
  seq) but does not decide ``matched``: the roots are what the drill judges.
* A checkpoint the replay never reached (its seq is after the last replayed event) is a
  mismatch with ``reached=False`` and every component listed as mismatched.
* ``mismatched_components`` lists the four state components whose roots differ; "state" is
  listed only when no component differs but ``state_root`` does (a checkpoint row whose
  state_root is not the hash of its own component roots).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pyarrow as pa

from qfs_assets.contract.hashing import COMPONENTS

ROOT_NAMES = COMPONENTS + ("state",)  # nodes, objects, shards, ledger, state


@dataclass(frozen=True)
class CheckpointCheck:
    seq: int
    ts: dt.datetime | None  # the checkpoint's ts
    replay_ts: dt.datetime | None  # ts of the last replayed event at that checkpoint
    reached: bool
    expected: dict[str, str]  # root name -> hex, names from ROOT_NAMES
    actual: dict[str, str | None]
    matched: bool
    ts_matched: bool
    mismatched_components: tuple[str, ...]

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"seq": self.seq, "ts": self.ts, "replay_ts": self.replay_ts, "reached": self.reached}
        for name in ROOT_NAMES:
            row[f"expected_{name}_root"] = self.expected[name]
            row[f"actual_{name}_root"] = self.actual[name]
        row["matched"] = self.matched
        row["ts_matched"] = self.ts_matched
        row["mismatched_components"] = list(self.mismatched_components)
        return row


@dataclass
class CheckpointComparison:
    checks: list[CheckpointCheck] = field(default_factory=list)

    @property
    def compared(self) -> int:
        return len(self.checks)

    @property
    def matched(self) -> int:
        return sum(1 for c in self.checks if c.matched)

    @property
    def first_mismatch(self) -> CheckpointCheck | None:
        return next((c for c in self.checks if not c.matched), None)

    @property
    def first_mismatch_seq(self) -> int | None:
        m = self.first_mismatch
        return None if m is None else m.seq

    @property
    def mismatched_components(self) -> list[str]:
        m = self.first_mismatch
        return [] if m is None else list(m.mismatched_components)

    def rows(self) -> list[dict[str, Any]]:
        return [c.as_row() for c in self.checks]

    def to_table(self) -> pa.Table:
        ts_type = pa.timestamp("us", tz="UTC")
        fields = [pa.field("seq", pa.int64()), pa.field("ts", ts_type), pa.field("replay_ts", ts_type),
                  pa.field("reached", pa.bool_())]
        for name in ROOT_NAMES:
            fields += [pa.field(f"expected_{name}_root", pa.string()), pa.field(f"actual_{name}_root", pa.string())]
        fields += [pa.field("matched", pa.bool_()), pa.field("ts_matched", pa.bool_()),
                   pa.field("mismatched_components", pa.list_(pa.string()))]
        return pa.Table.from_pylist(self.rows(), schema=pa.schema(fields))


def _checkpoint_rows(checkpoints: pa.Table | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(checkpoints, (pa.Table, pa.RecordBatch)):
        return checkpoints.to_pylist()
    return list(checkpoints)


def diff_roots(expected: Mapping[str, str], actual: Mapping[str, str | None]) -> tuple[str, ...]:
    """Mismatched component names (see module doc); empty when everything matches."""
    comps = tuple(c for c in COMPONENTS if expected[c] != actual[c])
    if comps:
        return comps
    return ("state",) if expected["state"] != actual["state"] else ()


def expected_roots(row: Mapping[str, Any]) -> dict[str, str]:
    """Root name -> hex of one checkpoint row (columns ``<name>_root``)."""
    return {name: row[f"{name}_root"] for name in ROOT_NAMES}


def compare_checkpoints(roots_at: Mapping[int, Any], checkpoints: pa.Table | Iterable[Mapping[str, Any]]
                        ) -> CheckpointComparison:
    """Compare every checkpoint row with the replayed ``Roots`` at its seq (see module doc)."""
    out = CheckpointComparison()
    for row in sorted(_checkpoint_rows(checkpoints), key=lambda r: r["seq"]):
        seq = int(row["seq"])
        exp = expected_roots(row)
        roots = roots_at.get(seq)
        if roots is None:
            act: dict[str, str | None] = {name: None for name in ROOT_NAMES}
            out.checks.append(CheckpointCheck(seq, row.get("ts"), None, False, exp, act, False, False,
                                              ROOT_NAMES[:4]))
            continue
        act = roots.as_dict()
        mism = diff_roots(exp, act)
        ts = row.get("ts")
        out.checks.append(CheckpointCheck(seq, ts, roots.ts, True, exp, act, not mism,
                                          ts is not None and ts == roots.ts, mism))
    return out
