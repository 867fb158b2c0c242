"""A fast columnar scale generator for benchmarks: one storage day at network size.

The demo generator (``generator.py``) builds a small, story-driven deployment event by event
(~28 µs per event in Python); at 60M shard rows that would take half an hour. This module writes
the same contract tables (``qfs_assets.contract.schema``) column-wise with numpy and pyarrow,
streamed in chunks of objects so memory stays flat (one chunk of objects and its shards at a
time), deterministic for a given configuration (ids and values are functions of the row index;
the only random draws come from ``numpy.random.default_rng(seed)``).

What one day holds (``storage_day``):

- ``nodes/snapshot_date=D``: ``nodes`` nodes ``node-00000``...; every 1000th node (index
  ``% 1000 == 7``) is ``failed``, every 100th (``% 100 == 50``) ``degraded``, the rest ``active``;
  recent heartbeats, stake above the AEGIS minimum.
- ``objects/snapshot_date=D``: ``objects`` objects ``obj-0000000000``... (byte order = index order),
  1 in 200 deleted (tombstones). This is also the StorageEngine manifest for the dual-write diff.
- ``shards/snapshot_date=D``: ``shards_per_object`` shards per live object, on distinct nodes
  (``base + k * stride``); a failed node is never twice in one object, so objects with a shard on
  a failed node are degraded but none is unrecoverable.
- ``proofs/date=D``: ``proofs_per_node`` challenges per node, 0.3% failed or timed out.

``sor_batches`` derives the system of record (``qfs_objects``) from the same object rows with a
drift of ``4 / drift_period`` (default 0.01%) spread over the four categories: an object missing
in storage (``i % P == 1``, present only in the SoR), missing in the SoR (``i % P == 2``), version
mismatch (``3``), content mismatch (``4``), plus one in flight per period (``5``: written after
the snapshot's end). ``load_sor`` COPYs it into PostgreSQL; ``load_table`` COPYs any batches
(e.g. the manifest, for a peer tool that diffs table to table).

    from qfs_assets.demo.scale import ScaleConfig, storage_day
    storage_day(Path("/tmp/qfs_bench/export"), ScaleConfig(objects=10_000_000))
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from qfs_assets.contract.schema import NODES, OBJECTS, PROOFS, SHARDS, SOR_COLUMNS, TableSpec
from qfs_assets.windows import day_start_us as _start_us

US = 1_000_000
DAY_US = 86_400 * US
NOD = 10**8
REGIONS = ("eu-west", "us-east", "ap-south", "sa-east")


@dataclass(frozen=True)
class ScaleConfig:
    day: dt.date = dt.date(2024, 3, 11)
    nodes: int = 10_000
    objects: int = 10_000_000
    shards_per_object: int = 6
    data_shards: int = 4
    proofs_per_node: int = 24
    chunk_objects: int = 1_000_000
    drift_period: int = 40_000  # 4 drifted objects per period: 0.01% at 40,000
    seed: int = 7

    def as_dict(self) -> dict:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        return d


def _ids(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _hex64(values: np.ndarray) -> pa.Array:
    """A fixed-width 64-character digest stand-in per value (decimal digits of four mixed words):
    distinct per value, cheap to build, same width and type as a sha256 hex digest."""
    v = np.asarray(values, dtype=np.uint64)
    h = (v * np.uint64(0x9E3779B97F4A7C15)) ^ (v >> np.uint64(7))
    words = [pc.utf8_lpad(pa.array(h ^ np.uint64((k * 0x632BE59BD9B4E019) % (1 << 64))).cast(pa.string()), 20, "0") for k in range(4)]
    return pc.utf8_slice_codeunits(pc.binary_join_element_wise(*words, ""), 0, 64)


def _ts(values_us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values_us, dtype=np.int64), pa.timestamp("us", tz="UTC"))


def _node_ids(n: int) -> pa.Array:
    return _ids("node-", np.arange(n), 5)


def node_status(n: int) -> np.ndarray:
    idx = np.arange(n)
    status = np.full(n, "active", dtype=object)
    status[idx % 100 == 50] = "degraded"
    status[idx % 1000 == 7] = "failed"
    return status


class _Writer:
    """One Parquet file per table partition, written a chunk at a time with the contract schema."""

    def __init__(self, root: Path, spec: TableSpec, day: dt.date):
        pdir = root / spec.name / f"{spec.partition_column}={day.isoformat()}"
        pdir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.path = pdir / "part-0.parquet"
        self.w = pq.ParquetWriter(self.path, spec.schema, compression="snappy")
        self.rows = 0

    def write(self, cols: dict) -> None:
        t = pa.table(cols).select(self.spec.column_names).cast(self.spec.schema)
        self.w.write_table(t, row_group_size=1 << 20)
        self.rows += t.num_rows

    def close(self) -> int:
        self.w.close()
        return self.rows


def object_chunk(cfg: ScaleConfig, lo: int, hi: int) -> dict[str, np.ndarray | pa.Array]:
    """The base object rows [lo, hi) (before manifest/SoR drift); deterministic in the index."""
    i = np.arange(lo, hi, dtype=np.int64)
    start = _start_us(cfg.day)
    return {
        "i": i,
        "object_id": _ids("obj-", i, 10),
        "version": i % 7 + 1,
        "content_hash": _hex64(i * 2 + 1),
        "size_bytes": 1_000 + (i * 7_919) % 64_000_000,
        "data_shards": np.full(len(i), cfg.data_shards, np.int16),
        "total_shards": np.full(len(i), cfg.shards_per_object, np.int16),
        "updated_at": start - 86_400 * US * 30 + (i * 1_000_003) % (31 * DAY_US - US),  # all before the day's end
        "deleted": i % 200 == 0,
    }


def storage_day(root: Path, cfg: ScaleConfig = ScaleConfig()) -> dict[str, int]:
    """Write nodes, objects (the manifest), shards and proofs of ``cfg.day`` under ``root``."""
    root = Path(root)
    rng = np.random.default_rng(cfg.seed)
    start, end = _start_us(cfg.day), _start_us(cfg.day) + DAY_US
    n = cfg.nodes
    node_ids = _node_ids(n)
    status = node_status(n)
    counts: dict[str, int] = {}

    w = _Writer(root, NODES, cfg.day)
    w.write({
        "node_id": node_ids,
        "region": pa.array(np.array(REGIONS, dtype=object)[np.arange(n) % len(REGIONS)], pa.string()),
        "status": pa.array(status, pa.string()),
        "capacity_bytes": np.full(n, 10**14, np.int64),
        "used_bytes": np.full(n, 6 * 10**13, np.int64),
        "stake_nod": (2_000 + np.arange(n) % 1_000).astype(np.int64) * NOD,
        "software_version": pa.array(["13.5.0"] * n, pa.string()),
        "last_heartbeat": _ts(end - rng.integers(60, 1_800, n) * US),
        "registered_at": _ts(np.full(n, _start_us(dt.date(2023, 1, 1)))),
    })
    counts["nodes"] = w.close()

    wo, ws = _Writer(root, OBJECTS, cfg.day), _Writer(root, SHARDS, cfg.day)
    k = cfg.shards_per_object
    stride = n // k + 1
    drop = cfg.drift_period
    for lo in range(0, cfg.objects, cfg.chunk_objects):
        hi = min(cfg.objects, lo + cfg.chunk_objects)
        o = object_chunk(cfg, lo, hi)
        keep = o["i"] % drop != 1  # "missing in storage": the SoR holds these, the manifest does not
        cols = {c: (o[c].filter(pa.array(keep)) if isinstance(o[c], pa.Array) else o[c][keep]) for c in OBJECTS.column_names}
        cols["updated_at"] = _ts(cols["updated_at"])
        wo.write(cols)
        live = keep & ~o["deleted"]
        idx = np.nonzero(live)[0]
        rep = np.repeat(idx, k)
        kk = np.tile(np.arange(k, dtype=np.int64), len(idx))
        gi = o["i"][rep]
        base = (gi * 2_654_435_761) % n
        node = (base + kk * stride) % n
        ws.write({
            "object_id": o["object_id"].take(pa.array(rep)),
            "shard_index": kk.astype(np.int32),
            "node_id": node_ids.take(pa.array(node)),
            "shard_hash": _hex64(gi * 16 + kk),
            "shard_bytes": o["size_bytes"][rep] // cfg.data_shards + 1,
        })
    counts["objects"] = wo.close()
    counts["shards"] = ws.close()

    w = _Writer(root, PROOFS, cfg.day)
    m = n * cfg.proofs_per_node
    j = np.arange(m, dtype=np.int64)
    node = j % n
    outcome = np.full(m, "passed", dtype=object)
    r = rng.random(m)
    outcome[r < 0.002] = "failed"
    outcome[(r >= 0.002) & (r < 0.003)] = "timeout"
    latency = rng.integers(5, 900, m).astype(np.int32)
    lat = pa.array(latency, pa.int32(), mask=outcome == "timeout")
    w.write({
        "challenge_id": _ids("ch-", np.int64(cfg.day.toordinal()) * 10**9 + j, 16),
        "issued_at": _ts(np.sort(start + rng.integers(0, DAY_US, m))),
        "node_id": node_ids.take(pa.array(node)),
        "object_id": _ids("obj-", rng.integers(0, cfg.objects, m), 10),
        "shard_index": rng.integers(0, k, m).astype(np.int32),
        "outcome": pa.array(outcome, pa.string()),
        "latency_ms": lat,
    })
    counts["proofs"] = w.close()
    return counts


# -- system of record --------------------------------------------------------------------------

SOR_ARROW = pa.schema([OBJECTS.schema.field(c) for c in SOR_COLUMNS])


def sor_batches(cfg: ScaleConfig) -> Iterator[pa.RecordBatch]:
    """The system of record's rows (``qfs_objects``): the objects with 0.01% drift, in id order."""
    p = cfg.drift_period
    end = _start_us(cfg.day) + DAY_US
    for lo in range(0, cfg.objects, cfg.chunk_objects):
        hi = min(cfg.objects, lo + cfg.chunk_objects)
        o = object_chunk(cfg, lo, hi)
        r = o["i"] % p
        keep = r != 2  # "missing in sor"
        version = np.where((r == 3) | (r == 5), o["version"] + 1, o["version"])
        chash = pc.if_else(pa.array(r == 4), _hex64(o["i"] * 2 + 2), o["content_hash"])
        updated = np.where(r == 5, end + 3_600 * US, o["updated_at"])  # in flight: written after the end
        t = pa.table({
            "object_id": o["object_id"], "version": version, "content_hash": chash, "size_bytes": o["size_bytes"],
            "data_shards": o["data_shards"], "total_shards": o["total_shards"], "updated_at": _ts(updated),
            "deleted": o["deleted"],
        }).filter(pa.array(keep)).cast(SOR_ARROW)
        yield from t.to_batches(max_chunksize=cfg.chunk_objects)


def manifest_batches(export_root: Path, day: dt.date) -> Iterator[pa.RecordBatch]:
    """The written manifest (``objects`` of ``day``) as SoR-shaped batches."""
    f = Path(export_root) / "objects" / f"snapshot_date={day.isoformat()}" / "part-0.parquet"
    yield from pq.ParquetFile(f).iter_batches(batch_size=1 << 20, columns=list(SOR_COLUMNS))


SOR_DDL = """CREATE TABLE {table} (
    object_id text NOT NULL, version bigint NOT NULL, content_hash text NOT NULL,
    size_bytes bigint NOT NULL, data_shards smallint NOT NULL, total_shards smallint NOT NULL,
    updated_at timestamptz NOT NULL, deleted boolean NOT NULL)"""


def load_table(dsn: str, table: str, batches: Iterator[pa.RecordBatch]) -> int:
    """(Re)create ``table`` with the ``qfs_objects`` columns, COPY the batches, add the key, ANALYZE."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    rows = 0
    try:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(SOR_DDL.format(table=table))
        opts = pacsv.WriteOptions(include_header=False)
        for b in batches:
            buf = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([b]), buf, opts)
            buf.seek(0)
            cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buf, size=1 << 20)
            rows += b.num_rows
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (object_id)")
        conn.commit()
        conn.autocommit = True
        conn.cursor().execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.close()
    return rows


def load_sor(dsn: str, cfg: ScaleConfig, table: str = "qfs_objects") -> int:
    return load_table(dsn, table, sor_batches(cfg))


def expected_drift(cfg: ScaleConfig) -> dict[str, int]:
    """The diff's expected counts per category (what the benchmark checks every tool against)."""
    i = np.arange(cfg.objects, dtype=np.int64)
    r = i % cfg.drift_period
    deleted = i % 200 == 0
    return {
        "missing_in_storage": int(np.sum((r == 1) & ~deleted)),
        "missing_in_sor": int(np.sum((r == 2) & ~deleted)),
        "version_mismatch": int(np.sum((r == 3) & ~deleted)),
        "content_mismatch": int(np.sum((r == 4) & ~deleted)),
        "in_flight": int(np.sum(r == 5)),
    }
