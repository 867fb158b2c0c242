"""Writing the storage export: Parquet files of the contract's tables, one per partition.

Layout under the export root (qfs-export-v1)::

    <table>/<snapshot_date|date>=YYYY-MM-DD/part-0.parquet   (nodes objects shards proofs fees rewards eqm)
    checkpoints/part-0.parquet

Deterministic: same rows, same row groups (at most :data:`FLUSH_ROWS` rows each), same bytes.
"""

from __future__ import annotations

from datetime import date
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from qfs_assets.contract.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from qfs_assets.demo.state import NetworkState

FLUSH_ROWS = 131_072  # rows per row group when a day's table is written in pieces


def partition_file(root: Path, table: str, day: date | None = None) -> Path:
    """``<root>/<table>/<partition column>=<day>/part-0.parquet`` (no folder for ``checkpoints``)."""
    spec = TABLES[table]
    if spec.partition_column is None:
        return root / table / "part-0.parquet"
    return root / table / f"{spec.partition_column}={day.isoformat()}" / "part-0.parquet"


def arrow_table(name: str, cols: dict[str, list]) -> pa.Table:
    spec = TABLES[name]
    arrays = [pa.array(cols[c.name], type=c.type) for c in spec.columns]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


class Sink:
    """One Parquet file of one table, written in row groups of at most FLUSH_ROWS rows as the
    columns fill up (so a big day never sits in memory twice). Deterministic: same rows, same
    row groups, same bytes. Callers append to the lists of ``cols`` and call :meth:`flush`
    when :meth:`full`."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.names = TABLES[name].column_names
        self.cols: dict[str, list] = {c: [] for c in self.names}
        self._first = self.cols[self.names[0]]
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    @classmethod
    def day(cls, root: Path, name: str, d: date) -> "Sink":
        return cls(name, partition_file(root, name, d))

    def full(self) -> bool:
        return len(self._first) >= FLUSH_ROWS

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, TABLES[self.name].schema, compression="snappy")
        return self.writer

    def flush(self) -> None:
        if not len(self._first):
            return
        tbl = arrow_table(self.name, self.cols)
        self._open().write_table(tbl)
        self.rows += tbl.num_rows
        self.cols = {c: [] for c in self.names}
        self._first = self.cols[self.names[0]]

    def write(self, cols: dict[str, Any]) -> None:
        """Write a chunk of whole columns (sequences) as one row group."""
        self.flush()
        self.cols = cols
        self._first = cols[self.names[0]]
        self.flush()

    def close(self) -> int:
        self.flush()
        self._open().close()  # a table with no rows that day is still written (zero row groups)
        return self.rows


def write_snapshots(state: "NetworkState", root: Path, d: date, counts: dict[str, int]) -> Path:
    """Write the ``nodes``, ``objects`` and ``shards`` snapshots of the end of day ``d`` from
    the state (adding their row counts to ``counts``); returns the objects file's path."""
    s = Sink.day(root, "nodes", d)
    c = s.cols
    for nid in state.node_order:
        region, cap, stake, status, _h_ = state.nodes[nid]
        c["node_id"].append(nid)
        c["region"].append(region)
        c["status"].append(status)
        c["capacity_bytes"].append(cap)
        c["used_bytes"].append(state.used[nid])
        c["stake_nod"].append(stake)
        c["software_version"].append(state.software[nid])
        c["last_heartbeat"].append(state.heartbeat[nid])
        c["registered_at"].append(state.registered_at[nid])
    counts["nodes"] += s.close()

    s = Sink.day(root, "objects", d)
    upd = state.updated_at
    items = iter(state.objs.items())
    while chunk := list(islice(items, FLUSH_ROWS)):
        oids, vals = zip(*chunk)
        v, ch, size, k, n, deleted, _hs = zip(*vals)
        s.write({"object_id": oids, "version": v, "content_hash": ch, "size_bytes": size, "data_shards": k,
                 "total_shards": n, "updated_at": [upd[o] for o in oids], "deleted": deleted})
    counts["objects"] += s.close()
    objects_path = s.path

    s = Sink.day(root, "shards", d)
    items = iter(state.shards.items())
    while chunk := list(islice(items, FLUSH_ROWS)):
        keys, vals = zip(*chunk)
        oids, idxs = zip(*keys)
        nids, shashes, sbs, _hs = zip(*vals)
        s.write({"object_id": oids, "shard_index": idxs, "node_id": nids, "shard_hash": shashes,
                 "shard_bytes": sbs})
    del chunk, items
    counts["shards"] += s.close()
    return objects_path


def write_checkpoints(root: Path, cols: dict[str, list]) -> int:
    """Write the checkpoints table (one row group); returns its row count."""
    s = Sink("checkpoints", partition_file(root, "checkpoints"))
    s.write(cols)
    return s.close()
