"""The drill's replay: from genesis (the default) or from a saved verified state (``snapshot.py``).

``drill_replay`` runs the columnar engine over the log, compares the quarter's checkpoints,
saves the state at the quarter's last checkpoint when it is verified (that checkpoint matched
and the chain is intact through it), and says where the replay started and why.

Choices: the state saved is the one at the quarter's *last* checkpoint, and only when that
checkpoint matched (a state at an earlier matched checkpoint would need the whole state written
at every checkpoint); a quarter whose last checkpoint does not match saves nothing, so the next
incremental drill starts from the newest state that was verified, or from genesis.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa

from .columnar import SnapshotMismatch, replay
from .compare import diff_roots, expected_roots
from .result import ReplayResult
from .snapshot import SnapshotInvalid, StartState, StateWriter, check_against_checkpoints, latest_saved_state

START_FROM = ("genesis", "snapshot")


@dataclass
class DrillReplay:
    result: ReplayResult
    started_from: dict[str, Any]
    saved_state: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def drill_replay(stream: Callable[[], Iterable[pa.RecordBatch]], *, quarter: dt.date, end: dt.datetime,
                 checkpoints: pa.Table, in_quarter: pa.Table, start_from: str = "genesis",
                 state_root: str | Path | None = None, batch_rows: int = 262_144,
                 expected_events: int | None = None) -> DrillReplay:
    """Replay ``stream()`` (the log from genesis, in seq order) up to ``end`` (see the module doc);
    ``expected_events``: the log's row count when known (the engine sizes its tables from it)."""
    if start_from not in START_FROM:
        raise ValueError(f"start_from must be one of {START_FROM}, got {start_from!r}")
    notes: list[str] = []
    start = None
    if start_from == "snapshot":
        saved = latest_saved_state(state_root, quarter)
        if saved is None:
            notes.append("start_from=snapshot: no state saved by an earlier quarter; replayed from genesis")
        else:
            try:
                check_against_checkpoints(saved, checkpoints)
                start = StartState(saved)
            except SnapshotInvalid as exc:
                notes.append(f"start_from=snapshot: saved state {saved.path} rejected ({exc}); replayed from genesis")

    last_cp = max(in_quarter.column("seq").to_pylist(), default=None)
    expected = {int(r["seq"]): expected_roots(r) for r in in_quarter.to_pylist()}

    def attempt(start_state) -> tuple[ReplayResult, StateWriter | None]:
        writer = StateWriter(state_root, quarter) if state_root is not None and last_cp is not None else None

        def on_checkpoint(roots, engine) -> None:
            if writer is not None and roots.seq == last_cp and roots.last_seq == last_cp \
                    and not diff_roots(expected[last_cp], roots.as_dict()):
                writer.write(engine, roots)

        out: list = []
        try:
            res = replay(stream(), engine_out=out, before_ts=end, expected_checkpoints=in_quarter, snapshot_first_mismatch=True,
                         on_checkpoint=on_checkpoint, batch_rows=batch_rows, start_state=start_state,
                         expected_events=expected_events)
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        chain_only[0] = out[0].events_chain_only
        return res, writer

    chain_only = [0]
    result = writer = None
    if start is not None:
        try:
            result, writer = attempt(start)
        except (SnapshotInvalid, SnapshotMismatch) as exc:
            notes.append(f"start_from=snapshot: saved state {start.saved.path} rejected ({exc}); replayed from genesis")
            start = None
    if result is None:
        result, writer = attempt(None)

    saved_out = None
    if writer is not None and writer.written is not None:
        s = writer.written
        if result.first_broken_seq is None or result.first_broken_seq > s.seq:
            saved_out = writer.commit().describe()
        else:
            writer.discard()
            notes.append("the state at the quarter's last checkpoint was not saved: the hash chain is broken before it")
    if start is None:
        started = {"from": "genesis", "seq": 0}
    else:
        started = {"from": "snapshot", "seq": start.seq + 1, "saved_state": start.saved.describe(),
                   "events_chain_verified_only": chain_only[0]}
    return DrillReplay(result, started, saved_out, notes)
