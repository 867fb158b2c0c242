"""Saved verified states, so that a drill need not replay from genesis every quarter.

A drill (``start_from`` either way) saves the state at its quarter's last checkpoint when that
checkpoint matched the published roots and the hash chain is intact up to it, beside the
evidence: ``<evidence root>/_replay_state/<quarter>/`` (a folder the evidence catalog does not
list), one Parquet file per component (the contract's row fields, in no particular order), the
applied ``tx_ids`` and ``reward_ids`` (duplicate detection needs them), and ``state.json``:
the seq, ts and stored ``event_hash`` of the checkpoint's event, the five roots, row counts and
a set hash of each id list. It is written to a temporary folder and renamed into place, so a
crash never leaves a half-written state under the final name.

A later drill with ``start_from="snapshot"`` takes the newest state saved by an earlier quarter
and trusts it only after three checks:

1. its roots are exactly those of the published checkpoint at its seq (``checkpoints/``);
2. the roots recomputed from the loaded rows equal them (and the id lists match their set
   hashes): the files are the state that was verified;
3. the log's hash chain is verified from genesis through that seq in the same pass that
   replays the rest (rows up to the seq are hashed, not applied), and the stored event_hash at
   that seq is the one recorded: the log is the one the state was taken from.

Checks 1-2 failing (or no saved state) make the drill replay from genesis; check 3 failing
(``columnar.SnapshotMismatch``) makes it start again from genesis. Either way the evidence says
where the replay started and why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qfs_assets.contract.hashing import COMPONENTS, state_root
from qfs_assets.contract.schema import NODE_STATUSES

from . import kernels as K
from .chain import ts_to_datetime
from .rows import COMPONENT_SCHEMAS

STATE_DIR = "_replay_state"
ID_FILES = ("tx_ids", "reward_ids")
ID_SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False)])
ROOT_NAMES = COMPONENTS + ("state",)
# Parquet dictionary encoding only where values repeat many times (a shard's node); on unique keys
# and hashes Arrow builds a dictionary, then falls back to plain: ~0.3 s CPU for nothing at 5.7M shards.
# A shard's object (each repeated total_shards times) is left plain too: its dictionary cost ~0.15 s
# of the save's critical path (5.5M shards: 1.15 -> 0.97 s of wall and 1.88 -> 1.69 s of CPU,
# medians of four), and the file is no bigger (62.8 MB against 63.6 MB: snappy finds the repeats
# the dictionary found). No column statistics (min/max per page: nothing filters a state that is
# read whole): ~0.2 s less
DICTIONARY_COLUMNS = {"shards": ["node_id"], "objects": ["data_shards", "total_shards"]}


class SnapshotInvalid(ValueError):
    """A saved state that cannot be trusted (see the module doc); the drill replays from genesis."""


@dataclass(frozen=True)
class SavedState:
    path: Path
    quarter: str
    seq: int
    ts: dt.datetime
    event_hash: str
    roots: dict[str, str]
    counts: dict[str, int]
    ids_roots: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "quarter": self.quarter, "seq": self.seq, "ts": self.ts,
                "event_hash": self.event_hash, "state_root": self.roots["state"]}


def _ids_root(kt) -> str:
    """Order-independent set hash of a key table's keys (as the component roots)."""
    n = kt.count
    if n == 0:
        return "0" * 64
    out = np.empty((n, 32), np.uint8)
    K.sha256_many(kt.kheap, kt.koff[:n + 1], out)
    limbs = out.view(">u4").sum(axis=0, dtype=np.uint64).tolist()  # (buffered: no uint64 copy of the digests)
    total = 0
    for s in limbs:
        total = (total << 32) + int(s)
    return format(total % (1 << 256), "064x")


def state_folder(root: str | os.PathLike, quarter: dt.date) -> Path:
    return Path(root) / STATE_DIR / quarter.isoformat()


class StateWriter:
    """Writes an engine's state (at a checkpoint, from ``on_checkpoint``) to a temporary folder;
    ``commit`` moves it into place, ``discard`` drops it."""

    def __init__(self, root: str | os.PathLike, quarter: dt.date) -> None:
        self.final = state_folder(root, quarter)
        self.tmp = self.final.parent / f".tmp-{quarter.isoformat()}-{os.getpid()}"
        self.quarter = quarter
        self.written: SavedState | None = None

    def write(self, engine, roots) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        st = engine.state
        counts, ids_roots = {}, {}

        def component(comp: str) -> None:
            with pq.ParquetWriter(self.tmp / f"{comp}.parquet", COMPONENT_SCHEMAS[comp],
                                  use_dictionary=DICTIONARY_COLUMNS.get(comp, True), write_statistics=False) as w:
                n = 0
                for chunk in st.chunks(comp):
                    w.write_table(chunk)
                    n += chunk.num_rows
            counts[comp] = n

        def ids(name: str, kt) -> None:
            pq.write_table(pa.table([kt.strings()], schema=ID_SCHEMA), self.tmp / f"{name}.parquet",
                           use_dictionary=False, write_statistics=False)
            counts[name] = kt.count
            ids_roots[name] = _ids_root(kt)

        # the files in two threads (Arrow's writer and the kernels release the GIL; nothing changes
        # the state meanwhile), the biggest first
        with ThreadPoolExecutor(2, thread_name_prefix="qfs-replay-save") as pool:
            jobs = [pool.submit(component, "shards")]
            jobs += [pool.submit(ids, name, kt) for name, kt in zip(ID_FILES, (st.ktT, st.ktR))]
            jobs += [pool.submit(component, c) for c in COMPONENTS if c != "shards"]
            for job in jobs:
                job.result()
        doc = {"quarter": self.quarter.isoformat(), "seq": roots.seq, "ts": roots.ts.isoformat(),
               "event_hash": engine.last_event_hash(), "roots": roots.as_dict(), "counts": counts,
               "ids_roots": ids_roots, "format": "qfs-replay-state-v1"}
        (self.tmp / "state.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
        self.written = _info(self.final, doc)

    def commit(self) -> SavedState | None:
        if self.written is None:
            return None
        old = self.final.parent / f".old-{self.quarter.isoformat()}-{os.getpid()}"
        if self.final.exists():
            self.final.rename(old)
        self.tmp.rename(self.final)
        shutil.rmtree(old, ignore_errors=True)
        return self.written

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.written = None


def _info(path: Path, doc: dict) -> SavedState:
    return SavedState(path, doc["quarter"], int(doc["seq"]), dt.datetime.fromisoformat(doc["ts"]), doc["event_hash"],
                      dict(doc["roots"]), dict(doc["counts"]), dict(doc["ids_roots"]))


def latest_saved_state(root: str | os.PathLike | None, before: dt.date) -> SavedState | None:
    """The newest state saved by a quarter before ``before`` (None when there is none)."""
    if root is None:
        return None
    base = Path(root) / STATE_DIR
    if not base.is_dir():
        return None
    found = []
    for p in base.iterdir():
        try:
            q = dt.date.fromisoformat(p.name)
        except ValueError:
            continue
        if q < before and (p / "state.json").is_file():
            found.append((q, p))
    for _, p in sorted(found, reverse=True):
        try:
            return _info(p, json.loads((p / "state.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def check_against_checkpoints(saved: SavedState, checkpoints: pa.Table) -> None:
    """Check 1 of the module doc: the published checkpoint at the state's seq has its roots."""
    rows = checkpoints.filter(pc.equal(checkpoints.column("seq"), saved.seq)).to_pylist()
    if not rows:
        raise SnapshotInvalid(f"no published checkpoint at the saved state's seq {saved.seq}")
    published = {name: rows[0][f"{name}_root"] for name in ROOT_NAMES}
    if published != saved.roots:
        raise SnapshotInvalid(f"the saved state's roots differ from the published checkpoint at seq {saved.seq}")
    if saved.roots["state"] != state_root(*(saved.roots[c] for c in COMPONENTS)):
        raise SnapshotInvalid("the saved state's state_root is not the hash of its component roots")


class StartState:
    """A saved state to start a ``ColumnarEngine`` from (``start_state=``); check 2 runs when the
    engine loads it (``SnapshotInvalid``), check 3 while it replays (``SnapshotMismatch``)."""

    def __init__(self, saved: SavedState) -> None:
        self.saved = saved
        self.seq = saved.seq
        self.event_hash = saved.event_hash

    def load_into(self, engine) -> None:
        st = engine.state
        path = self.saved.path
        try:
            for comp in COMPONENTS:
                pf = pq.ParquetFile(path / f"{comp}.parquet")
                if pf.schema_arrow.names != COMPONENT_SCHEMAS[comp].names:
                    raise SnapshotInvalid(f"{comp}.parquet does not hold the {comp} row fields")
                for batch in pf.iter_batches(batch_size=1 << 20):
                    st.load(comp, pa.Table.from_batches([batch]).cast(COMPONENT_SCHEMAS[comp]))
            for name in ID_FILES:
                kt = st.ktT if name == "tx_ids" else st.ktR
                for batch in pq.ParquetFile(path / f"{name}.parquet").iter_batches(batch_size=1 << 20):
                    st.load_ids(kt, batch.column(0))
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise SnapshotInvalid(f"the saved state cannot be read: {exc}") from None
        st.flush()
        hexes = st.root_hex()
        roots = dict(zip(COMPONENTS, hexes), state=state_root(*hexes))
        if roots != self.saved.roots:
            bad = [c for c in ROOT_NAMES if roots[c] != self.saved.roots[c]]
            raise SnapshotInvalid(f"the saved state's rows do not give its roots ({', '.join(bad)})")
        for name, kt in zip(ID_FILES, (st.ktT, st.ktR)):
            if kt.count != self.saved.counts.get(name) or _ids_root(kt) != self.saved.ids_roots.get(name):
                raise SnapshotInvalid(f"the saved state's {name} are not the ones recorded")
        engine.last_seq = self.seq
        engine._last_ts_us = int((self.saved.ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
                                 / dt.timedelta(microseconds=1))
        _ = ts_to_datetime  # same conversion back in Roots


STATUS_CODES = {s: i for i, s in enumerate(NODE_STATUSES)}
