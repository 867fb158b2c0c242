"""The replay's input shape and its results, shared by the engines (``columnar`` runs drills;
the frozen per-event reference engine, qfs_assets_tests/reference_engine.py, returns them too)."""

from __future__ import annotations

import datetime as dt
import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from .compare import CheckpointComparison

EQM_COLUMNS = ("seq", "ts", "event_type", "payload", "prev_hash", "event_hash")
_TS = pa.timestamp("us", tz="UTC")
_EQM_TYPES = {"seq": pa.int64(), "ts": _TS, "event_type": pa.string(), "payload": pa.string(),
              "prev_hash": pa.string(), "event_hash": pa.string()}


class ReplayInputError(ValueError):
    """The batches do not have the EQM shape (missing column, null, uncastable type)."""


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass(frozen=True)
class InvalidEvent:
    seq: int
    event_type: str
    reason: str


@dataclass(frozen=True)
class Roots:
    """The state roots after the replayed events up to a point.

    ``seq`` is the seq the roots were asked for (a checkpoint) or, for the final roots, the last
    replayed seq; ``last_seq``/``ts`` describe the last event actually applied before them
    (None before any event); ``events`` is how many events were replayed by then.
    """

    seq: int | None
    last_seq: int | None
    ts: dt.datetime | None
    events: int
    nodes: str
    objects: str
    shards: str
    ledger: str
    state: str

    def as_dict(self) -> dict[str, str]:
        return {"nodes": self.nodes, "objects": self.objects, "shards": self.shards, "ledger": self.ledger,
                "state": self.state}


@dataclass
class ReplayResult:
    events_replayed: int
    chain_intact: bool
    first_broken_seq: int | None
    chain_break: ChainBreak | None
    chain_breaks: int  # rows failing any chain check
    invalid_events: list[InvalidEvent]
    checkpoint_roots: dict[int, Roots]  # roots at every reached checkpoint seq
    unreached_checkpoints: list[int]
    final_roots: Roots
    last_seq: int | None
    last_ts: dt.datetime | None
    elapsed_seconds: float
    events_per_second: float
    limit_reached: bool = False  # a row beyond through_seq/through_ts/before_ts was seen
    snapshots: dict[int, dict[str, pa.Table]] = field(default_factory=dict)
    checkpoint_comparison: CheckpointComparison | None = None
    payload_fallbacks: int = 0  # payloads parsed by the reference parser (not canonical / fast path off)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds per engine phase

    @property
    def final_state_root(self) -> str:
        return self.final_roots.state


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC: the state is millions of tuples; no cycles are created."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _to_us(value: dt.datetime | int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # the contract's times are UTC
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TypeError(f"{name} must be a datetime or integer microseconds, got {type(value).__name__}")



def normalise(batch: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
    """The EQM columns of a batch, with the contract's types (ReplayInputError if impossible)."""
    names = batch.schema.names
    missing = [c for c in EQM_COLUMNS if c not in names]
    if missing:
        raise ReplayInputError(f"EQM batch lacks column(s) {missing}")
    cols = []
    for name in EQM_COLUMNS:
        col = batch.column(name)
        if col.null_count:
            raise ReplayInputError(f"EQM column {name!r} holds {col.null_count} null(s)")
        want = _EQM_TYPES[name]
        if col.type != want:
            try:  # a tz-naive ts is read as UTC (the contract's times are UTC)
                col = col.cast(want, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise ReplayInputError(f"EQM column {name!r} of type {col.type} cannot become {want}: {e}") from e
        cols.append(col)
    if isinstance(batch, pa.Table):
        t = pa.Table.from_arrays(cols, names=list(EQM_COLUMNS))
        return t.to_batches()
    return [pa.RecordBatch.from_arrays(cols, names=list(EQM_COLUMNS))]
