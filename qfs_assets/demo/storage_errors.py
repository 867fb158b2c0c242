"""The demo's StorageEngine error feed (``storage_errors/date=``, qfs-export-v1.1).

Written after the simulation from the day's snapshots, with its own seeded random generator, so
the rest of the export is byte-identical with or without it. Every day has a few transient
errors (``io_error``, ``timeout``, ``not_found``, ``capacity_exceeded``, ``internal``) on
in-service nodes; the incidents of :data:`qfs_assets.demo.incidents.INCIDENT_PLAN` add

- ``storage_corruption``: one ``checksum_mismatch`` (a proof challenge found a shard whose bytes no
  longer match its hash) on a shard held at the end of that day;
- ``storage_error_burst``: the failing node's disk errors in the hour before it fails, more than
  the default alert threshold (100 an hour).
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from qfs_assets.contract.schema import IN_SERVICE_STATUSES
from qfs_assets.demo.config import HOUR, MINUTE, SEC, DemoConfig
from qfs_assets.demo.export_writer import arrow_table, partition_file
from qfs_assets.demo.incidents import INCIDENT_PLAN, Schedule
from qfs_assets.demo.simulation import day_start_us

TRANSIENT = (("io_error", 3), ("timeout", 4), ("not_found", 2), ("capacity_exceeded", 1), ("internal", 1))
OPERATIONS = ("put", "get", "delete", "repair", "proof")


def _shards(root: Path, d: date) -> list[tuple[str, int, str]]:
    t = pq.read_table(partition_file(root, "shards", d), columns=["object_id", "shard_index", "node_id"])
    return sorted(zip(*(t.column(c).to_pylist() for c in ("object_id", "shard_index", "node_id"))))


def _in_service(root: Path, d: date) -> list[str]:
    t = pq.read_table(partition_file(root, "nodes", d), columns=["node_id", "status"])
    return sorted(n for n, s in zip(t.column("node_id").to_pylist(), t.column("status").to_pylist())
                  if s in IN_SERVICE_STATUSES)


def write_storage_errors(cfg: DemoConfig, root: Path, schedule: Schedule) -> tuple[int, dict]:
    """Write one partition per day; returns (rows written, {incident: (day, row)})."""
    rng = random.Random(cfg.seed * 7919 + 104729)
    classes = [c for c, w in TRANSIENT for _ in range(w)]
    plan = INCIDENT_PLAN
    total, found = 0, {}
    for i, d in enumerate(schedule.days):
        day0 = day_start_us(d)
        rows: list[dict] = []
        shards = _shards(root, d)
        nodes = _in_service(root, d)
        for _ in range(rng.randint(0, 6)):
            obj, idx, node = shards[rng.randrange(len(shards))] if shards else (None, None, None)
            node = node if node in nodes else (nodes[rng.randrange(len(nodes))] if nodes else None)
            cls = classes[rng.randrange(len(classes))]
            known = cls != "capacity_exceeded" and rng.random() < 0.8
            rows.append({"ts": day0 + rng.randrange(0, 24 * HOUR), "node_id": node,
                         "object_id": obj if known else None, "shard_index": idx if known else None,
                         "operation": OPERATIONS[rng.randrange(len(OPERATIONS))], "error_class": cls,
                         "detail": None if rng.random() < 0.5 else f"{cls} after {rng.randint(1, 30)} s"})
        burst = plan["storage_error_burst"]
        if cfg.error_burst and cfg.node_failure and schedule.fail_node and i == burst["day"]:
            held = _shards(root, schedule.days[i - 1] if i else d)
            held = [s for s in held if s[2] == schedule.fail_node] or held
            start = day0 + burst["from"]
            for k in range(burst["errors"]):
                obj, idx, _ = held[k % len(held)]
                rows.append({"ts": start + k * (HOUR // burst["errors"]) + rng.randrange(0, 20 * SEC),
                             "node_id": schedule.fail_node, "object_id": obj, "shard_index": idx,
                             "operation": ("get", "put", "proof")[k % 3],
                             "error_class": "io_error" if k % 4 else "timeout",
                             "detail": "EIO reading the shard file (sector read failure)" if k % 4 else None})
            found["storage_error_burst"] = (d, schedule.fail_node)
        corrupt = plan["storage_corruption"]
        if cfg.storage_corruption and i == corrupt["day"] and shards:
            obj, idx, node = shards[(cfg.seed + i) % len(shards)]
            row = {"ts": day0 + corrupt["at"], "node_id": node, "object_id": obj, "shard_index": idx,
                   "operation": "proof", "error_class": "checksum_mismatch",
                   "detail": "proof challenge: sha256 of the stored shard differs from its shard_hash"}
            rows.append(row)
            found["storage_corruption"] = (d, (node, obj, idx))
        rows.sort(key=lambda r: (r["ts"], r["error_class"]))
        cols: dict[str, list] = {c: [] for c in ("error_id", "ts", "node_id", "object_id", "shard_index", "operation",
                                                "error_class", "detail")}
        for n, r in enumerate(rows, start=1):
            r["error_id"] = f"err-{d:%Y%m%d}-{n:05d}"
            for c in cols:
                cols[c].append(r[c])
        path = partition_file(root, "storage_errors", d)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow_table("storage_errors", cols), path, compression="snappy")
        total += len(rows)
    return total, found
