"""Daily node health assessment (evidence-v1 ``node_health_assessment``), free of Dagster.

Every heavy step is a DuckDB aggregate over the day's Parquet partitions, so memory is
bounded by the number of nodes (10k) and a few small groups, not by the shard rows (1B):

1. per-node proof tallies over the day's challenges (group by node_id);
2. per-node shard count and bytes over the shard map (group by node_id, without ``object_id``):
   the distribution, and which node ids a shard names that the inventory does not know;
3. one pass over the shard rows grouped by ``shard_index`` (a handful of groups): per index, the
   row count and the exact sum of ``hash(object_id)``, which must equal those of the live objects
   with ``total_shards`` above the index (one group-by of the manifest by ``total_shards``): this
   proves the shard map is exactly what the manifest expects (no missing, extra, repeated or
   orphan shard), and then the degraded objects are only those with a shard on a node not in
   service, caught in the same pass (a hash-bucket filter on ``node_id``, checked exactly after).
   A map off expectation is judged by the general plan (a group-by per object), which also names
   a repeated ``(object_id, shard_index)`` key;
4. ``object_id`` uniqueness in the manifest: read in file order in a background thread while
   DuckDB scans the shards (sorted ids prove it), else the reader's group-by.

Choices where the contract is silent (documented in docs/architecture.md):
- A proof belongs to the day of its ``proofs/date=`` partition.
- Shards whose node is absent from the day's inventory are unhealthy (unknown node).
- An unrecoverable object is also degraded (fewer than ``data_shards`` healthy implies fewer
  than ``total_shards``); both counts are reported as defined.
- A node with ``capacity_bytes <= 0`` has no defined utilisation; it is left out of the
  balance metrics and counted in ``nodes_without_capacity``.
- With no in-service node, or no challenge, the ratio metrics are null and their criteria
  fail (a NULL metric never passes).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import duckdb
import pyarrow as pa

from qfs_assets.evidence.model import ActivityResult, CriterionSpec, Rule
from qfs_assets.readers.base import BadInput, ExportReader, connect
from qfs_assets.readers.nodes import IN_SERVICE_SQL, node_snapshot
from qfs_assets.readers.proofs import proofs_of_day
from qfs_assets.readers.storage import object_manifest, shard_map
from qfs_assets.activities.node_health.params import NOD, NodeHealthParams
from qfs_assets.windows import day_window
from qfs_assets.activities.node_health import storage_errors as errors

ACTIVITY = "node_health_assessment"



def criteria_specs(p: NodeHealthParams, storage_errors: bool = True) -> list[CriterionSpec]:
    """The criteria; ``no_corruption_errors`` only where the storage_errors feed covers the day."""
    return [
        CriterionSpec(
            "nodes_verified",
            (Rule("verified_ratio", min_value=p.min_verified_ratio, strict_min=True),),
            ("verified_ratio",),
            p.min_verified_ratio,
            "verified_ratio > threshold",
        ),
        CriterionSpec(
            "proof_success",
            (Rule("proof_success_rate", min_value=p.min_proof_success_rate, strict_min=True),),
            ("proof_success_rate",),
            p.min_proof_success_rate,
            "proof_success_rate > threshold",
        ),
        CriterionSpec(
            "shard_balance",
            (
                Rule("utilization_cv", max_value=p.max_utilization_cv),
                Rule("utilization_max_over_mean", max_value=p.max_utilization_max_over_mean),
            ),
            ("utilization_cv", "utilization_max_over_mean"),
            {"utilization_cv": p.max_utilization_cv, "utilization_max_over_mean": p.max_utilization_max_over_mean},
            "utilization_cv <= threshold and utilization_max_over_mean <= threshold",
        ),
        CriterionSpec(
            "no_unrecoverable_objects",
            (Rule("objects_unrecoverable", max_value=0),),
            ("objects_unrecoverable",),
            0,
            "objects_unrecoverable == 0",
        ),
    ] + ([errors.criterion_spec()] if storage_errors else [])


def _one(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> tuple | None:
    """The first row of a query, with the result fully consumed (DuckDB 2 keeps unread results open)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def aegis_table(con: duckdb.DuckDBPyConnection, window_end: dt.datetime, p: NodeHealthParams) -> pa.Table:
    """Per-node AEGIS verdict over the views ``nodes`` and ``proofs``."""
    hb_cut = window_end - dt.timedelta(seconds=p.heartbeat_max_age_seconds)
    return con.execute(
        f"""
        WITH tallies AS (
            SELECT node_id,
                   count(*) AS challenges,
                   count(*) FILTER (WHERE outcome = 'passed') AS passed,
                   count(*) FILTER (WHERE outcome = 'failed') AS failed,
                   count(*) FILTER (WHERE outcome = 'timeout') AS timeout
            FROM proofs GROUP BY node_id
        ), judged AS (
            SELECT n.node_id, n.region, n.status,
                   {IN_SERVICE_SQL} AS in_service,
                   n.last_heartbeat >= ?::TIMESTAMPTZ AS heartbeat_ok,
                   n.stake_nod >= ? AS stake_ok,
                   n.used_bytes <= n.capacity_bytes AS capacity_ok,
                   coalesce(t.challenges, 0) AS challenges,
                   coalesce(t.passed, 0) AS passed,
                   coalesce(t.failed, 0) AS failed,
                   coalesce(t.timeout, 0) AS timeout,
                   n.last_heartbeat, n.stake_nod, n.used_bytes, n.capacity_bytes
            FROM nodes n LEFT JOIN tallies t USING (node_id)
        )
        SELECT *,
               challenges > 0 AS challenged,
               challenges > 0 AND passed * 10000 >= ? * challenges AS pass_rate_ok,
               in_service AND heartbeat_ok AND stake_ok AND capacity_ok AND challenges > 0
                   AND passed * 10000 >= ? * challenges AS verified,
               concat_ws(', ',
                   CASE WHEN NOT in_service THEN 'not in service (' || status || ')' END,
                   CASE WHEN NOT heartbeat_ok THEN 'stale heartbeat' END,
                   CASE WHEN NOT stake_ok THEN 'stake below minimum' END,
                   CASE WHEN NOT capacity_ok THEN 'used_bytes > capacity_bytes' END,
                   CASE WHEN challenges = 0 THEN 'no challenge issued' END,
                   CASE WHEN challenges > 0 AND passed * 10000 < ? * challenges THEN 'pass rate below minimum' END
               ) AS reasons
        FROM judged ORDER BY node_id
        """,
        [hb_cut, p.min_stake_nod, p.min_node_pass_bps, p.min_node_pass_bps, p.min_node_pass_bps],
    ).to_arrow_table()


def _per_node(con: duckdb.DuckDBPyConnection) -> str:
    """Shard count and bytes per node id over the whole shard map (every node id a shard names,
    in the inventory or not): one group-by over ~10k node ids that never reads ``object_id``,
    made once and shared by the distribution and the list of nodes not in service."""
    con.execute("""
        CREATE TEMP TABLE IF NOT EXISTS __nh_per_node AS
        SELECT node_id, count(*) AS shard_count, sum(shard_bytes)::HUGEINT AS shard_bytes
        FROM shards GROUP BY node_id""")
    return "__nh_per_node"


def distribution_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Shard bytes and utilisation per in-service node (zero for an in-service node holding none)."""
    per_node = _per_node(con)
    return con.sql(
        f"""
        SELECT n.node_id, n.region, n.status, n.capacity_bytes,
               coalesce(p.shard_count, 0) AS shard_count,
               coalesce(p.shard_bytes, 0)::BIGINT AS shard_bytes,
               CASE WHEN n.capacity_bytes > 0 THEN coalesce(p.shard_bytes, 0)::DOUBLE / n.capacity_bytes END AS utilization
        FROM nodes n LEFT JOIN {per_node} p USING (node_id)
        WHERE {IN_SERVICE_SQL}
        ORDER BY n.node_id
        """
    ).to_arrow_table()


def _not_healthy_nodes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Node ids a shard may sit on that are not in service: known and out of service, or unknown to
    the inventory. Few (a failure touches a handful of nodes), from the per-node tallies."""
    return [r[0] for r in con.execute(
        f"""
        SELECT node_id FROM nodes WHERE NOT ({IN_SERVICE_SQL})
        UNION
        SELECT p.node_id FROM {_per_node(con)} p ANTI JOIN nodes n USING (node_id)
        """
    ).fetchall()]


_MAX_FILTER_NODES = 4096  # above: an exact IN (a hash join per row) instead of the bucket filter


def _filter_buckets(n_bad: int) -> int:
    """Buckets of the bad-node filter: a power of two, ~256 per bad node (1/256 of the other rows let through)."""
    return max(4096, 1 << (256 * n_bad - 1).bit_length())


DETAIL_SCHEMA = pa.schema([("object_id", pa.string()), ("data_shards", pa.int16()), ("total_shards", pa.int16()),
                          ("healthy_shards", pa.int16()), ("state", pa.string())])


def _expected_per_index(per_total: list[tuple]) -> dict[int, tuple[int, int]]:
    """From ``(total_shards, objects, sum of hash(object_id))`` over the live objects: for each shard
    index ``i``, the number of live objects with ``total_shards > i`` and the sum of their hashes."""
    by_t = {int(t): (int(n), int(h)) for t, n, h in per_total if t is not None and t > 0}
    out, n_acc, h_acc = {}, 0, 0
    for i in range(max(by_t, default=0) - 1, -1, -1):
        n, h = by_t.get(i + 1, (0, 0))
        n_acc, h_acc = n_acc + n, h_acc + h
        out[i] = (n_acc, h_acc)
    return out


def object_health(con: duckdb.DuckDBPyConnection, check_keys: Callable[[], None] | None = None) -> tuple[pa.Table, dict]:
    """Degraded/unrecoverable objects (detail rows) and counts; also finds duplicate shard keys.

    Judged where it matters. One pass over the shard rows, grouped by ``shard_index`` (a handful of
    groups), checks that the shard map is exactly what the manifest expects, every live object
    with its indices ``0..total_shards-1`` once, and nothing else: for every index ``i``, the
    number of rows and the exact sum of ``hash(object_id)`` (DuckDB's 64-bit hash, summed as a
    128-bit integer) must equal the number and the hash sum of the live objects with
    ``total_shards > i`` (one group-by of the manifest by ``total_shards``), and no other index may
    occur. A shard map that differs (a missing or extra shard, a repeated key, an unknown or
    deleted object's shard, a shard under the wrong object) changes some index's multiset of
    objects; it keeps the same count and hash sum only if the hashes of the difference cancel
    exactly (for one differing object, its hash would have to be one given value of 2^64), and is
    otherwise judged by :func:`object_health_general`, which also names bad input (a repeated key).

    When the map is as expected, the only degraded objects are those holding a shard on a node not
    in service (or unknown), taken from those rows alone: the same pass keeps ``(node_id,
    object_id)`` of the rows a bit filter lets through (one bit per ``hash(node_id)`` bucket, set
    for the bad nodes: ~1/256 of the other rows per bad node come along) and their node is then
    checked exactly; the manifest query joins them for ``data_shards``. No 10M-key hash table, no
    per-row string comparison. ``check_keys`` (the manifest's key check) is waited for before the
    manifest is used.
    """
    bad = _not_healthy_nodes(con)
    caught = ""
    if bad:
        # the rows on nodes not in service, kept with their node id: those a cheap filter lets
        # through (one bit per hash(node_id) bucket, set for the bad nodes; a healthy node sharing
        # a bucket is let through too and dropped below by its id), or an exact IN for very many
        con.register("__nh_bad_nodes", pa.table({"node_id": pa.array(bad, pa.string())}))
        if len(bad) <= _MAX_FILTER_NODES:
            nb = _filter_buckets(len(bad))
            bits = ["0"] * nb
            for (b,) in con.execute(f"SELECT hash(node_id) % {nb} FROM __nh_bad_nodes").fetchall():
                bits[int(b)] = "1"
            params = ["".join(bits)]
            let_through = f"get_bit(?::BIT, (hash(node_id) % {nb})::INTEGER) = 1"
        else:
            params, let_through = [], "node_id IN (SELECT node_id FROM __nh_bad_nodes)"
        caught = f", list({{'node_id': node_id, 'object_id': object_id}}) FILTER (WHERE {let_through}) AS caught"
    # one pass: per shard index, the rows and their hash sum, and the rows on nodes not in service
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __nh_off AS
        SELECT shard_index, count(*) AS n, sum(hash(object_id))::HUGEINT AS h{caught}
        FROM shards GROUP BY shard_index""", params if bad else [])
    got = {int(i): (int(n), int(h)) for i, n, h in con.execute("SELECT shard_index, n, h FROM __nh_off").fetchall()}
    if bad:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE __nh_caught AS
            SELECT object_id, count(*) AS off
            FROM (SELECT unnest(caught, recursive := true) FROM __nh_off) SEMI JOIN __nh_bad_nodes USING (node_id)
            GROUP BY object_id""")
    con.execute("DROP TABLE __nh_off")
    if check_keys is not None:
        check_keys()
    # the manifest's side, one query: the live objects per total_shards (count, hash sum), and the
    # live objects caught above with their shard counts
    join = "LEFT JOIN __nh_caught c USING (object_id)" if bad else ""
    hit = ("list({'object_id': object_id, 'data_shards': data_shards, 'total_shards': total_shards, 'off': c.off}) "
           "FILTER (WHERE c.off IS NOT NULL)") if bad else "NULL"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __nh_live AS
        SELECT total_shards, count(*) AS n, sum(hash(object_id))::HUGEINT AS h, {hit} AS hit
        FROM objects {join} WHERE NOT deleted GROUP BY total_shards""")
    per_total = con.execute("SELECT total_shards, n, h FROM __nh_live").fetchall()
    if bad:
        con.execute("DROP TABLE __nh_caught")
    if got != _expected_per_index(per_total):
        con.execute("DROP TABLE __nh_live")
        return object_health_general(con)
    if bad:
        detail = con.sql("""
            WITH h AS (SELECT unnest(hit, recursive := true) FROM __nh_live)
            SELECT object_id, data_shards, total_shards, total_shards - off AS healthy_shards,
                   CASE WHEN total_shards - off < data_shards THEN 'unrecoverable' ELSE 'degraded' END AS state
            FROM h ORDER BY object_id
            """).to_arrow_table().cast(DETAIL_SCHEMA)
    else:
        detail = DETAIL_SCHEMA.empty_table()
    con.execute("DROP TABLE __nh_live")
    unrecoverable = sum(1 for s in detail.column("state").to_pylist() if s == "unrecoverable")
    return detail, {
        "objects_live": sum(int(n) for _, n, _ in per_total),
        "objects_degraded": detail.num_rows,
        "objects_unrecoverable": unrecoverable,
        "objects_with_unknown_manifest": 0,
    }


def _ids_ascending(files: list[str], stop: threading.Event) -> bool:
    """Whether the ``object_id`` values of ``files``, read in order, each exceed the one before
    (which proves them unique); False as soon as one does not, or a file cannot be read so, or
    no file is named (then the exact group-by decides)."""
    import pyarrow.compute as pc

    if not files:
        return False

    from qfs_assets.readers.base import parquet_file

    last = None
    try:
        for f in files:
            for batch in parquet_file(f).iter_batches(batch_size=1 << 20, columns=["object_id"]):
                if stop.is_set():
                    return False
                ids = batch.column(0).cast(pa.string())
                if not len(ids):
                    continue
                if ids.null_count or (last is not None and not ids[0].as_py() > last) or (
                        len(ids) > 1 and not pc.all(pc.greater(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py()):
                    return False
                last = ids[-1].as_py()
    except (pa.ArrowException, OSError):
        return False
    return True


class ObjectKeyCheck:
    """``object_id`` is unique in the day's manifest: proved by reading the ids in file order when
    the export writes them sorted (each key greater than the one before: about a fifth of the cost
    of a 10M-key group-by; read in a background thread while DuckDB scans the shard map), else by
    the reader's own duplicate-key check (which names the duplicate and its file). Start it once
    the ``objects`` view is made; :meth:`check` waits for it and raises BadInput on a repeated key."""

    def __init__(self, reader: ExportReader, con: duckdb.DuckDBPyConnection, view: str = "objects"):
        self.reader, self.con, self.view = reader, con, view
        files = next((r.files for r in reversed(reader.reads) if r.table == "objects"), [])
        self._stop = threading.Event()
        self._result: list[bool] = []
        self._thread = threading.Thread(target=lambda: self._result.append(_ids_ascending(files, self._stop)),
                                        name="qfs-object-keys", daemon=True)
        self._thread.start()

    def check(self) -> None:
        self._thread.join()
        if not (self._result and self._result[0]):
            from qfs_assets.contract.schema import TABLES

            self.reader.validate(self.con, TABLES["objects"], self.view, ["object_id"], keys=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _raise_duplicate(con: duckdb.DuckDBPyConnection, object_id: str) -> None:
    idx = _one(con, "SELECT shard_index FROM shards WHERE object_id = ? GROUP BY shard_index HAVING count(*) > 1 ORDER BY 1 LIMIT 1",
               [object_id])
    raise BadInput("shards", f"duplicate key object_id={object_id!r}, shard_index={idx[0] if idx else '?'}", column="object_id,shard_index")


def object_health_general(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, dict]:
    """:func:`object_health` for any shard index (the plan before the node-set shortcut)."""
    # Shard indices per object as 64-bit sets (bit_or of 1 << index): all indices, and those on
    # in-service nodes. Exact for indices 0..63 and about 6x cheaper in CPU and memory than
    # count(DISTINCT) over 10M objects. An index outside 0..63 anywhere in the map falls back to a
    # join with the manifest for the whole table. Only indices 0..total_shards-1 count as healthy.
    in_service = f"(SELECT node_id FROM nodes WHERE {IN_SERVICE_SQL})"
    bit = "CASE WHEN s.shard_index BETWEEN 0 AND 63 THEN 1::UBIGINT << s.shard_index::UBIGINT ELSE 0::UBIGINT END"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE object_shards AS
        SELECT s.object_id,
               count(*) AS shard_rows,
               bit_count(bit_or({bit})) AS shard_indices,
               count(*) FILTER (WHERE s.shard_index NOT BETWEEN 0 AND 63) AS wide_indices,
               bit_or(CASE WHEN n.node_id IS NOT NULL THEN {bit} ELSE 0::UBIGINT END) AS healthy_bits
        FROM shards s LEFT JOIN {in_service} n USING (node_id)
        GROUP BY s.object_id
        """
    )
    healthy_sql = ("CASE WHEN o.total_shards >= 64 THEN bit_count(s.healthy_bits) "
                   "ELSE bit_count(s.healthy_bits & ((1::UBIGINT << o.total_shards::UBIGINT) - 1::UBIGINT)) END")
    if _one(con, "SELECT count(*) FROM object_shards WHERE wide_indices > 0")[0]:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE object_shards AS
            SELECT s.object_id, count(*) AS shard_rows, count(DISTINCT s.shard_index) AS shard_indices,
                   0 AS wide_indices,
                   count(DISTINCT s.shard_index) FILTER (
                       WHERE n.node_id IS NOT NULL AND s.shard_index BETWEEN 0 AND o.total_shards - 1) AS healthy_count
            FROM shards s LEFT JOIN {in_service} n USING (node_id) LEFT JOIN objects o USING (object_id)
            GROUP BY s.object_id
            """
        )
        healthy_sql = "s.healthy_count"
    dup = _one(con, "SELECT object_id FROM object_shards WHERE shard_rows <> shard_indices ORDER BY object_id LIMIT 1")
    if dup:
        _raise_duplicate(con, dup[0])
    detail = con.execute(
        f"""
        WITH h AS (
            SELECT o.object_id, o.data_shards, o.total_shards, coalesce({healthy_sql}, 0) AS healthy_shards
            FROM objects o LEFT JOIN object_shards s USING (object_id)
            WHERE NOT o.deleted
        )
        SELECT object_id, data_shards, total_shards, healthy_shards,
               CASE WHEN healthy_shards < data_shards THEN 'unrecoverable' ELSE 'degraded' END AS state
        FROM h WHERE healthy_shards < total_shards
        ORDER BY object_id
        """
    ).to_arrow_table()
    counts = _one(
        con,
        """
        SELECT count(*) FILTER (WHERE NOT deleted) AS live_objects,
               (SELECT count(*) FROM object_shards s ANTI JOIN objects o USING (object_id)) AS orphan_shard_objects
        FROM objects
        """,
    )
    unrecoverable = sum(1 for s in detail.column("state").to_pylist() if s == "unrecoverable")
    return detail, {
        "objects_live": int(counts[0]),
        "objects_degraded": detail.num_rows,
        "objects_unrecoverable": unrecoverable,
        "objects_with_unknown_manifest": int(counts[1]),
    }


def _col(t: pa.Table, name: str) -> list:
    return t.column(name).to_pylist()


def assess_node_health(reader: ExportReader, day: dt.date, params: NodeHealthParams | None = None) -> ActivityResult:
    """Judge one day; raises BadInput before anything is written when an input is bad."""
    p = params or NodeHealthParams()
    reader = ExportReader(reader.root)  # a fresh read log: `inputs` lists this run's reads only
    start, end = day_window(day)
    con = connect()
    keys = None
    try:
        node_snapshot(reader, con, day)
        proofs_of_day(reader, con, day)
        object_manifest(reader, con, day, columns=["object_id", "data_shards", "total_shards", "deleted"], validate_keys=False)
        keys = ObjectKeyCheck(reader, con)
        shard_map(reader, con, day, columns=["object_id", "shard_index", "node_id", "shard_bytes"], validate_keys=False)

        aegis = aegis_table(con, end, p)
        dist = distribution_table(con)
        objects_detail, obj = object_health(con, keys.check)
        proofs = _one(con, "SELECT count(*), count(*) FILTER (WHERE outcome = 'passed') FROM proofs")
        day_errors = errors.day_errors(reader, con, day)
    finally:
        if keys is not None:
            keys.close()
        con.close()

    in_service = sum(_col(aegis, "in_service"))
    verified = sum(_col(aegis, "verified"))
    unverified = sorted(n for n, s, v in zip(_col(aegis, "node_id"), _col(aegis, "in_service"), _col(aegis, "verified")) if s and not v)
    utils = [u for u in _col(dist, "utilization") if u is not None]
    mean = sum(utils) / len(utils) if utils else None
    if mean:
        var = sum((u - mean) ** 2 for u in utils) / len(utils)
        cv, max_over_mean = var**0.5 / mean, max(utils) / mean
    else:
        cv = max_over_mean = None
    challenges, passed = int(proofs[0]), int(proofs[1])

    metrics = {
        "in_service_nodes": in_service,
        "verified_nodes": verified,
        "verified_ratio": _ratio(verified, in_service),
        "unverified_node_ids": unverified,
        "proof_challenges": challenges,
        "proof_success_rate": _ratio(passed, challenges),
        "utilization_cv": cv,
        "utilization_max_over_mean": max_over_mean,
        "objects_degraded": obj["objects_degraded"],
        "objects_unrecoverable": obj["objects_unrecoverable"],
        **day_errors.metrics,
        # supplementary
        "nodes_total": aegis.num_rows,
        "proofs_passed": passed,
        "objects_live": obj["objects_live"],
        "shard_bytes_total": sum(_col(dist, "shard_bytes")),
        "nodes_without_capacity": len(_col(dist, "utilization")) - len(utils),
        "objects_with_unknown_manifest": obj["objects_with_unknown_manifest"],
    }
    judge = pa.table(
        {
            k: pa.array([metrics[k]], type=pa.float64() if k != "objects_unrecoverable" else pa.int64())
            for k in ("verified_ratio", "proof_success_rate", "utilization_cv", "utilization_max_over_mean", "objects_unrecoverable")
        }
    )
    if day_errors.present:
        judge = judge.append_column("corruption_errors", pa.array([metrics["corruption_errors"]], pa.int64()))
    return ActivityResult(
        activity=ACTIVITY,
        partition=day.isoformat(),
        window_start=start,
        window_end=end,
        metrics=metrics,
        inputs={"export_root": str(reader.root), "tables": [r.as_evidence() for r in reader.reads],
                "storage_errors": day_errors.coverage.as_evidence()},
        parameters=p.as_evidence(),
        criteria_specs=criteria_specs(p, storage_errors=day_errors.present),
        judge_table=judge,
        tables={
            "node_health_aegis": aegis,
            "node_health_distribution": dist,
            "node_health_objects": objects_detail,
            **({errors.TABLE_CORRUPTION: day_errors.corruption} if day_errors.present else {}),
        },
    )
