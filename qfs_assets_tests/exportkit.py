"""Tiny hand-made exports for tests: write rows of any contract table as Parquet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from qfs_assets.contract.schema import TABLES

UTC = dt.timezone.utc


def ts(day: dt.date | str, hh: int = 0, mm: int = 0, ss: int = 0) -> dt.datetime:
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def write(root: Path, table: str, rows: Iterable[dict[str, Any]], day: dt.date | str | None = None,
          *, schema: pa.Schema | None = None, name: str = "part-0.parquet") -> Path:
    """Write ``rows`` as one Parquet file of ``table`` (in the ``day`` partition when partitioned)."""
    spec = TABLES[table]
    folder = Path(root) / table
    if spec.partition_column:
        day = dt.date.fromisoformat(day) if isinstance(day, str) else day
        folder = folder / f"{spec.partition_column}={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    schema = schema or spec.schema
    data = pa.Table.from_pylist(rows, schema=pa.schema([f.with_nullable(True) for f in schema]))
    path = folder / name
    pq.write_table(data, path)
    return path


def node(node_id: str, *, day="2026-03-02", status="active", capacity=1000, used=100, stake=2000 * 10**8,
         hb_h=23, hb_m=30, region="eu", **extra) -> dict:
    return {"node_id": node_id, "region": region, "status": status, "capacity_bytes": capacity, "used_bytes": used,
            "stake_nod": stake, "software_version": "13.5.0", "last_heartbeat": ts(day, hb_h, hb_m),
            "registered_at": ts("2026-01-01"), **extra}


def obj(object_id: str, *, version=1, size=100, k=2, n=3, deleted=False, updated=None, content_hash=None) -> dict:
    return {"object_id": object_id, "version": version, "content_hash": content_hash or ("c" * 64), "size_bytes": size,
            "data_shards": k, "total_shards": n, "updated_at": updated or ts("2026-03-01", 12), "deleted": deleted}


def shard(object_id: str, index: int, node_id: str, nbytes: int = 50) -> dict:
    return {"object_id": object_id, "shard_index": index, "node_id": node_id, "shard_hash": "d" * 64, "shard_bytes": nbytes}


def proof(cid: str, node_id: str, outcome: str = "passed", *, day="2026-03-02", object_id="o1", shard_index=0) -> dict:
    return {"challenge_id": cid, "issued_at": ts(day, 12), "node_id": node_id, "object_id": object_id,
            "shard_index": shard_index, "outcome": outcome, "latency_ms": None if outcome == "timeout" else 20}
