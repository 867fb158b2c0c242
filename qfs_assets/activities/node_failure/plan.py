"""The shard redistribution plan for a failed node (pure code: DuckDB, Arrow, NumPy; no Dagster).

Inputs, as of a day ``D`` = the newest ``shards`` snapshot on or after the failure day (and on
or before ``as_of``): that day's ``shards``, ``nodes`` and ``objects`` snapshots; and AEGIS
verification as of the newest data, i.e. :func:`~qfs_assets.activities.node_health.assess.aegis_table`
over the newest ``nodes`` snapshot on or before ``as_of`` and that day's ``proofs`` (a day
without a proofs partition reads as no challenge, so nobody is verified).

The shard map (1B rows) is never loaded: DuckDB scans it to

1. validate it (the reader's aggregate pass: types, nulls);
2. keep the failed node's shards (~1/n of the rows) in a temp table;
3. sum shard bytes per node (the utilisation balance before the plan);
4. fetch the other shards of the affected objects only, by a semi-join on ``object_id``
   (co-location rule, healthy-shard counts; ``(object_id, shard_index)`` duplicates among
   them are bad input);

and the failed node's shards are then *streamed* (Arrow batches) in plan order, objects with
the fewest healthy shards first, ties by ``object_id``, then ``shard_index``.

Placement: weighted rendezvous (highest-random-weight) hashing. For shard ``(o, i)`` and
candidate node ``n`` the score is ``w_n / -ln(u(n, o, i))``, where ``u`` in (0, 1) comes from
the first 8 bytes of ``sha256(node_id)`` and of ``sha256(f"{o}\\x1f{i}")`` mixed by SplitMix64,
and ``w_n`` is the node's free capacity
``capacity_bytes - used_bytes - bytes already planned onto it``. The highest score wins (ties:
the smallest node_id), so a node is chosen with probability proportional to its free
capacity and the plan is a pure function of the input. A candidate must be in service in the
``D`` snapshot, pass AEGIS, not be the failed node, hold no shard of the object in the
snapshot, not already be planned a shard of the object, and have free capacity
``>= shard_bytes``. Cost: O(shards x verified in-service nodes), vectorised per shard.

A shard without a target gets a ``reason``: its object is not live in the manifest (absent or
deleted), the object is unrecoverable (fewer healthy shards than ``data_shards``, so the
shard cannot be rebuilt), no node passes AEGIS, every verified node already holds (or is
planned) a shard of the object, or no verified node has the free capacity.

``healthy_shards_before`` counts the object's shards on in-service nodes other than the failed
node. The utilisation balance (population CV and max/mean of ``sum(shard_bytes) /
capacity_bytes``) is over the in-service nodes of ``D`` other than the failed node with
``capacity_bytes > 0``, before and after adding the planned bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from qfs_assets.contract.schema import TABLES
from qfs_assets.activities.node_health.assess import NodeHealthParams, aegis_table
from qfs_assets.readers.base import BadInput, ExportReader, connect
from qfs_assets.readers.nodes import IN_SERVICE_SQL
from qfs_assets.readers.storage import object_manifest, shard_map
from qfs_assets.sqltext import quote_literal
from qfs_assets.windows import day_end

PLAN_SCHEMA = pa.schema([
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("shard_index", pa.int32(), nullable=False),
    pa.field("shard_bytes", pa.int64(), nullable=False),
    pa.field("from_node_id", pa.string(), nullable=False),
    pa.field("to_node_id", pa.string()),
    pa.field("healthy_shards_before", pa.int64(), nullable=False),
    pa.field("reason", pa.string()),
])

REASON_NOT_LIVE = "object not live in the manifest (absent or deleted)"
REASON_UNRECOVERABLE = "object unrecoverable: fewer healthy shards than data_shards"
REASON_NO_VERIFIED = "no in-service node passes AEGIS"
REASON_CO_LOCATION = "every verified node already holds or is planned a shard of the object"
REASON_CAPACITY = "no verified node has free capacity for the shard"

def _h64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def shard_key_hash(object_id: str, shard_index: int) -> int:
    return _h64(f"{object_id}\x1f{int(shard_index)}")


class RendezvousPlanner:
    """Weighted rendezvous hashing over candidate nodes whose weight is their free capacity.

    ``nodes`` is ``(node_id, free_bytes)`` for every in-service node that passes AEGIS, the failed
    node excepted. Those without free capacity (``free_bytes <= 0``) never receive a shard; they
    are there so that a shard only they could take gets the capacity reason, not the AEGIS one.
    Call :meth:`place` in plan order; it remembers the bytes and objects planned so far.
    """

    def __init__(self, nodes: Iterable[tuple[str, int]]):
        rows = sorted(nodes)
        self.node_ids: list[str] = [n for n, _ in rows]
        if len(set(self.node_ids)) != len(self.node_ids):
            raise ValueError("duplicate candidate node")
        self.index = {n: i for i, n in enumerate(self.node_ids)}
        self.free = np.array([int(f) for _, f in rows], dtype=np.int64)
        self.node_hash = np.array([_h64(n) for n in self.node_ids], dtype=np.uint64)
        self.planned_bytes = np.zeros(len(rows), dtype=np.int64)
        self._planned_for: dict[str, set[int]] = {}

    def place(self, object_id: str, shard_index: int, shard_bytes: int, holders: Iterable[str]) -> tuple[str | None, str | None]:
        """``(to_node_id, None)`` or ``(None, reason)``; updates free capacity on success."""
        if not self.node_ids:
            return None, REASON_NO_VERIFIED
        excluded = np.zeros(len(self.node_ids), dtype=bool)
        for h in holders:
            i = self.index.get(h)
            if i is not None:
                excluded[i] = True
        planned = self._planned_for.get(object_id)
        if planned:
            excluded[list(planned)] = True
        allowed = ~excluded
        if not allowed.any():
            return None, REASON_CO_LOCATION
        fits = allowed & (self.free >= int(shard_bytes)) & (self.free > 0)
        if not fits.any():
            return None, REASON_CAPACITY
        key = np.uint64(shard_key_hash(object_id, shard_index))
        mixed = _splitmix64(self.node_hash ^ key)
        u = ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)  # (0, 1)
        score = np.where(fits, self.free.astype(np.float64) / -np.log(u), -np.inf)
        win = int(np.argmax(score))  # first maximum: the smallest node_id on a tie
        self.free[win] -= int(shard_bytes)
        self.planned_bytes[win] += int(shard_bytes)
        self._planned_for.setdefault(object_id, set()).add(win)
        return self.node_ids[win], None


@dataclass
class PlanResult:
    node_id: str
    plan_date: dt.date  # D: the shards/nodes/objects snapshot planned from
    aegis_date: dt.date  # the nodes snapshot + proofs day AEGIS was judged on
    plan: pa.Table  # PLAN_SCHEMA, in plan order
    nodes: pa.Table  # every node of D: status, in_service, capacity, used, shard_bytes, verified, candidate
    holders: pa.Table  # every shard of the affected objects in D: object_id, shard_index, node_id
    aegis: pa.Table  # aegis_table as of aegis_date
    balance: dict[str, float | int | None]
    failed_node_status: str | None  # the failed node's status in D (None when absent)
    candidates: int  # nodes eligible as receivers (in service, verified, free capacity > 0)


def utilization_balance(utils: Sequence[float]) -> tuple[float | None, float | None]:
    """Population coefficient of variation and max/mean (None when undefined)."""
    if not utils:
        return None, None
    mean = math.fsum(utils) / len(utils)
    if not mean:
        return None, None
    var = math.fsum((u - mean) ** 2 for u in utils) / len(utils)
    return math.sqrt(var) / mean, max(utils) / mean


def plan_day_for(reader: ExportReader, failed_on: dt.date, as_of: dt.date) -> dt.date:
    """The newest shards snapshot in ``[failed_on, as_of]`` (bad input when there is none)."""
    days = [d for d in reader.available_dates("shards") if failed_on <= d <= as_of]
    if not days:
        raise BadInput("shards", f"no snapshot between the failure day {failed_on.isoformat()} and {as_of.isoformat()}",
                       file=reader.table_dir("shards"))
    return days[-1]


def aegis_day_for(reader: ExportReader, as_of: dt.date) -> dt.date:
    days = [d for d in reader.available_dates("nodes") if d <= as_of]
    if not days:
        raise BadInput("nodes", f"no snapshot on or before {as_of.isoformat()}", file=reader.table_dir("nodes"))
    return days[-1]


def register_aegis(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, p: NodeHealthParams) -> pa.Table:
    """AEGIS verdicts as of ``day`` (views ``nodes`` and ``proofs`` on ``con``)."""
    reader.relation(con, "nodes", [day], view_name="nodes")
    reader.relation(con, "proofs", [day], view_name="proofs", required=False)
    return aegis_table(con, day_end(day), p)


def plan_redistribution(
    reader: ExportReader,
    node_id: str,
    failed_on: dt.date,
    as_of: dt.date,
    params: NodeHealthParams | None = None,
    *,
    batch_rows: int = 65_536,
) -> PlanResult:
    """Plan where every shard of ``node_id`` goes, as of the newest snapshot in ``[failed_on, as_of]``."""
    p = params or NodeHealthParams()
    plan_day = plan_day_for(reader, failed_on, as_of)
    aegis_day = aegis_day_for(reader, as_of)
    con = connect()
    try:
        aegis = register_aegis(reader, con, aegis_day, p)
        con.register("aegis_verdicts", aegis.select(["node_id", "verified"]))
        reader.relation(con, "nodes", [plan_day], view_name="nodes_d")
        shard_map(reader, con, plan_day, view="shards_d", columns=["object_id", "shard_index", "node_id", "shard_bytes"],
                  validate_keys=False)
        object_manifest(reader, con, plan_day, view="objects_d", columns=["object_id", "data_shards", "deleted"])
        x = quote_literal(node_id)

        con.execute(f"CREATE OR REPLACE TEMP TABLE nf_lost AS SELECT object_id, shard_index, shard_bytes FROM shards_d WHERE node_id = {x}")
        con.execute("CREATE OR REPLACE TEMP TABLE nf_per_node AS SELECT node_id, sum(shard_bytes)::HUGEINT AS shard_bytes FROM shards_d GROUP BY node_id")
        con.execute("CREATE OR REPLACE TEMP TABLE nf_holders AS SELECT s.object_id, s.shard_index, s.node_id FROM shards_d s SEMI JOIN nf_lost l ON s.object_id = l.object_id")
        dup = con.execute(
            "SELECT object_id, shard_index, count(*) FROM nf_holders GROUP BY ALL HAVING count(*) > 1 ORDER BY 1, 2 LIMIT 1"
        ).fetchall()
        if dup:
            o, i, n = dup[0]
            raise BadInput("shards", f"duplicate key object_id={o!r}, shard_index={i} ({n} rows)",
                           file=reader.partition_dir(TABLES["shards"], plan_day), column="object_id,shard_index")
        nodes = con.sql(
            f"""
            SELECT n.node_id, n.status, {IN_SERVICE_SQL} AS in_service, n.capacity_bytes, n.used_bytes,
                   coalesce(s.shard_bytes, 0)::BIGINT AS shard_bytes,
                   coalesce(a.verified, false) AS verified,
                   ({IN_SERVICE_SQL}) AND coalesce(a.verified, false) AND n.node_id <> {x}
                       AND n.capacity_bytes - n.used_bytes > 0 AS candidate
            FROM nodes_d n LEFT JOIN nf_per_node s USING (node_id) LEFT JOIN aegis_verdicts a USING (node_id)
            ORDER BY n.node_id
            """
        ).to_arrow_table()
        failed_status = con.execute(f"SELECT status FROM nodes_d WHERE node_id = {x}").fetchall()
        holders = con.sql("SELECT object_id, shard_index, node_id FROM nf_holders ORDER BY object_id, shard_index").to_arrow_table()

        # every verified in-service node but the failed one: those without free capacity never receive a shard (the
        # candidates are the others), but a shard only they could take is unplaceable for want of capacity, not for
        # want of a node passing AEGIS
        planner = RendezvousPlanner([(n, c - u) for n, c, u, ins, ok in zip(*(nodes.column(k).to_pylist() for k in (
            "node_id", "capacity_bytes", "used_bytes", "in_service", "verified"))) if ins and ok and n != node_id])

        ordered = con.sql(
            f"""
            WITH obj AS (
                SELECT h.object_id,
                       count(*) FILTER (WHERE n.node_id IS NOT NULL AND h.node_id <> {x}) AS healthy,
                       list(DISTINCT h.node_id ORDER BY h.node_id) AS holders
                FROM nf_holders h LEFT JOIN (SELECT node_id FROM nodes_d WHERE {IN_SERVICE_SQL}) n USING (node_id)
                GROUP BY h.object_id
            ), man AS (
                SELECT object_id, data_shards, deleted FROM objects_d SEMI JOIN nf_lost USING (object_id)
            )
            SELECT l.object_id, l.shard_index, l.shard_bytes, o.healthy, o.holders,
                   m.object_id IS NOT NULL AND NOT m.deleted AS live, m.data_shards
            FROM nf_lost l JOIN obj o USING (object_id) LEFT JOIN man m USING (object_id)
            ORDER BY o.healthy, l.object_id, l.shard_index
            """
        )
        cols: dict[str, list] = {f.name: [] for f in PLAN_SCHEMA}
        for batch in ordered.to_arrow_reader(batch_rows):
            d = batch.to_pydict()
            for oid, idx, nbytes, healthy, hold, live, k in zip(
                d["object_id"], d["shard_index"], d["shard_bytes"], d["healthy"], d["holders"], d["live"], d["data_shards"]
            ):
                if not live:
                    to, reason = None, REASON_NOT_LIVE
                elif healthy < k:
                    to, reason = None, REASON_UNRECOVERABLE
                else:
                    to, reason = planner.place(oid, idx, nbytes, hold)
                cols["object_id"].append(oid)
                cols["shard_index"].append(idx)
                cols["shard_bytes"].append(nbytes)
                cols["from_node_id"].append(node_id)
                cols["to_node_id"].append(to)
                cols["healthy_shards_before"].append(healthy)
                cols["reason"].append(reason)
        plan = pa.table(cols, schema=PLAN_SCHEMA)
    finally:
        con.close()

    # predicted balance: in-service nodes of D other than the failed one, capacity > 0
    planned = dict(zip(planner.node_ids, planner.planned_bytes.tolist()))
    before, after = [], []
    for n, ins, cap, sb in zip(*(nodes.column(k).to_pylist() for k in ("node_id", "in_service", "capacity_bytes", "shard_bytes"))):
        if ins and n != node_id and cap > 0:
            before.append(sb / cap)
            after.append((sb + planned.get(n, 0)) / cap)
    cv_b, mom_b = utilization_balance(before)
    cv_a, mom_a = utilization_balance(after)
    balance = {
        "utilization_cv_before": cv_b,
        "utilization_max_over_mean_before": mom_b,
        "utilization_cv_after": cv_a,
        "utilization_max_over_mean_after": mom_a,
        "balance_nodes": len(before),
    }
    return PlanResult(
        node_id=node_id,
        plan_date=plan_day,
        aegis_date=aegis_day,
        plan=plan,
        nodes=nodes,
        holders=holders,
        aegis=aegis,
        balance=balance,
        failed_node_status=failed_status[0][0] if failed_status else None,
        candidates=sum(1 for ok in nodes.column("candidate").to_pylist() if ok),
    )


__all__ = ["PLAN_SCHEMA", "PlanResult", "RendezvousPlanner", "plan_redistribution", "utilization_balance"]
