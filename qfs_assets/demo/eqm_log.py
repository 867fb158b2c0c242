"""The EQM log: sequence numbers, the hash chain, and the checkpoints.

Events are appended to the current day's ``eqm`` sink (:meth:`EventLog.open_day`); a
checkpoint is taken at the day's last event (:meth:`EventLog.checkpoint`) with the state's
component roots, and the checkpoints table is written at the end (:meth:`EventLog.finish`).
Timestamps never go backwards: an event stamped before the previous one takes its time.
"""

from __future__ import annotations

from pathlib import Path

from qfs_assets.contract.hashing import GENESIS_PREV_HASH, event_hash, state_root
from qfs_assets.contract.schema import TABLES
from qfs_assets.demo.export_writer import Sink, write_checkpoints

COMPONENTS = ("nodes", "objects", "shards", "ledger")


class EventLog:
    __slots__ = ("seq", "prev_hash", "last_ts", "day_events", "sink", "ev", "checkpoints")

    def __init__(self) -> None:
        self.seq = 0
        self.prev_hash = GENESIS_PREV_HASH
        self.last_ts = 0
        self.day_events = 0
        self.sink: Sink | None = None
        self.ev: dict[str, list] | None = None
        self.checkpoints: dict[str, list] = {c: [] for c in TABLES["checkpoints"].column_names}

    def open_day(self, sink: Sink) -> None:
        self.sink = sink
        self.ev = sink.cols
        self.day_events = 0

    def append(self, ts: int, et: str, pj: str) -> None:
        """Log one event (``pj``: its payload as canonical JSON) at ``ts`` or the last event's time."""
        if ts < self.last_ts:
            ts = self.last_ts
        h = event_hash(self.prev_hash, self.seq, et, pj)
        ev = self.ev
        ev["seq"].append(self.seq)
        ev["ts"].append(ts)
        ev["event_type"].append(et)
        ev["payload"].append(pj)
        ev["prev_hash"].append(self.prev_hash)
        ev["event_hash"].append(h)
        self.prev_hash = h
        self.seq += 1
        self.last_ts = ts
        self.day_events += 1
        if self.sink.full():
            self.sink.flush()
            self.ev = self.sink.cols

    def close_day(self) -> int:
        """Close the day's eqm file; returns its row count."""
        rows = self.sink.close()
        self.ev = None
        return rows

    def checkpoint(self, roots: list[str]) -> None:
        """A checkpoint at the last event, with the four component roots (in COMPONENTS order);
        none on a day without events."""
        if not self.day_events:
            return
        cp = self.checkpoints
        cp["seq"].append(self.seq - 1)
        cp["ts"].append(self.last_ts)
        cp["state_root"].append(state_root(*roots))
        for name, r in zip(COMPONENTS, roots):
            cp[f"{name}_root"].append(r)

    def finish(self, root: Path) -> int:
        """Write the checkpoints table under the export root; returns its row count."""
        return write_checkpoints(root, self.checkpoints)
