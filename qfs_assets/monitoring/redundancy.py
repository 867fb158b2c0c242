"""``redundancy_lost``: objects below their full shard count, from node health's detail table.

Node health lists every degraded object of the day (``node_health_objects``: object_id,
data_shards, total_shards, healthy_shards, state). An alert goes out when more objects than the
threshold are degraded (default 0: any) *and* some of them were not degraded the day before
(the previous day's detail table in the evidence store; all are new when it is absent), so an
object that stays degraded while it is being repaired is announced once, on the day it lost
redundancy. The alert carries the count, the unrecoverable count and the worst objects (fewest
healthy shards above ``data_shards`` first).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qfs_assets.alerting import events
from qfs_assets.alerting.model import Alert
from qfs_assets.evidence.store import EvidenceStore

TABLE = "node_health_objects"


def previous_degraded(evidence_root: str | Path, day: dt.date) -> set[str] | None:
    """Object ids degraded at the end of the day before ``day`` (None: no evidence for that day)."""
    path = EvidenceStore(evidence_root).table_path(TABLE, (day - dt.timedelta(days=1)).isoformat())
    if not path.exists():
        return None
    with path.open("rb") as fh:  # a local file or an object in storage
        return set(pq.read_table(fh, columns=["object_id"]).column("object_id").to_pylist())


def worst_objects(detail: pa.Table, limit: int = events.MAX_LISTED) -> list[dict]:
    rows = detail.select(["object_id", "data_shards", "total_shards", "healthy_shards"]).to_pylist()
    rows.sort(key=lambda r: (r["healthy_shards"] - r["data_shards"], r["healthy_shards"] / max(r["total_shards"], 1),
                             r["object_id"]))
    return rows[:limit]


def redundancy_alert(day: dt.date, detail: pa.Table, previous: set[str] | None, threshold: int,
                     evidence_path: str | None) -> Alert | None:
    """The alert for the day, or None (not above the threshold, or nothing newly degraded)."""
    degraded = detail.num_rows
    if degraded <= threshold:
        return None
    ids = detail.column("object_id").to_pylist()
    new = [o for o in ids if previous is None or o not in previous]
    if not new:
        return None
    unrecoverable = sum(1 for s in detail.column("state").to_pylist() if s == "unrecoverable")
    return events.redundancy_lost(day, degraded, unrecoverable, len(new), threshold, worst_objects(detail),
                                  evidence_path, new_ids=new)
