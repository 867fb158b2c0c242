"""node_failure_response: what to do about one failed node, as evidence (pure code, no Dagster).

:func:`respond_to_failure` returns an :class:`~qfs_assets.evidence.model.ActivityResult` for
activity ``node_failure_response``: partition = the ``as_of`` day, evidence stem = the
failure's ``failure_id``, window = ``[failed_at, end of as_of day)``. It holds

- the shard redistribution plan (:mod:`.plan`), detail table ``node_failure_plan``;
- an independent AEGIS re-verification of every receiving node as of the newest data (a fresh
  :func:`aegis_table` over the newest ``nodes`` snapshot on or before ``as_of`` and its
  ``proofs``), with each receiver's planned bytes against its capacity in the plan's ``nodes``
  snapshot, detail table ``node_failure_receivers``;
- a reward adjustment *proposal*: one negative ``adjustment`` per non-adjustment reward paid
  to the node with ``failed_at <= ts < window end`` (the ``rewards`` partitions from the failure
  day through ``as_of``; a missing partition is a day without rewards), detail table
  ``node_failure_reward_adjustments``; and an exclusion entry for future reward runs
  (``extra["reward_exclusion"]``: node_id, excluded_from = failed_at, until "active again").
  The proposal is *net* of the claw-backs already made: every ``adjustment`` to the node paid at
  or after ``failed_at`` (read from the failure day to the newest ``rewards`` partition, whenever
  it was paid, up to the node's next failure) is subtracted, oldest reward first; a reward fully
  recovered that way is left out of the proposal, a partly recovered one is proposed for the
  rest (``netted_nod``). The evidence says so: ``clawback_gross_nod`` (paid while failed),
  ``existing_adjustments_nod`` (their signed sum), ``clawback_nod`` (the net proposal),
  ``rewards_already_clawed_back``, and ``extra["clawback_netting"]`` lists the adjustments.

Criteria (data, judged by the GX adapter over a one-row judge table):
``all_shards_placed`` (shards_unplaceable == 0), ``receivers_verified`` (receivers_unverified
== 0), ``no_co_location`` (co_located_objects == 0: objects where, after the plan, one node
would hold two of the object's shards of which at least one is planned, recomputed from the
plan rows and the snapshot holders, not from the planner's state) and ``capacity_respected``
(receivers_over_capacity == 0: ``used_bytes + planned bytes > capacity_bytes``).

Money is integer nod: ``clawback_nod`` is the total to recover (>= 0) and the proposal's rows
sum to ``-clawback_nod``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa

from qfs_assets.activities.node_failure.detect import FailureEvent, _status_events
from qfs_assets.activities.node_failure.plan import PlanResult, aegis_day_for, plan_redistribution, register_aegis
from qfs_assets.activities.node_health.assess import NodeHealthParams
from qfs_assets.evidence.model import ActivityResult, CriterionSpec, Rule
from qfs_assets.money import require_int64
from qfs_assets.readers.base import ExportReader, connect
from qfs_assets.windows import day_end, days_between
from qfs_assets.readers.ledgers import reward_ledger
from qfs_assets.activities.node_failure.params import NodeFailureParams

ACTIVITY = "node_failure_response"
EXCLUSION_UNTIL = "active again"

ADJUSTMENT_SCHEMA = pa.schema([
    pa.field("adjustment_id", pa.string(), nullable=False),
    pa.field("failure_id", pa.string(), nullable=False),
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("amount_nod", pa.int64(), nullable=False),
    pa.field("clawed_reward_id", pa.string(), nullable=False),
    pa.field("clawed_kind", pa.string(), nullable=False),
    pa.field("clawed_epoch", pa.int64(), nullable=False),
    pa.field("clawed_ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("clawed_amount_nod", pa.int64(), nullable=False),
    pa.field("netted_nod", pa.int64(), nullable=False),  # already recovered by existing adjustments
])

RECEIVER_SCHEMA = pa.schema([
    pa.field("node_id", pa.string(), nullable=False),
    pa.field("planned_shards", pa.int64(), nullable=False),
    pa.field("planned_bytes", pa.int64(), nullable=False),
    pa.field("capacity_bytes", pa.int64()),
    pa.field("used_bytes", pa.int64()),
    pa.field("free_after_bytes", pa.int64()),
    pa.field("over_capacity", pa.bool_(), nullable=False),
    pa.field("verified", pa.bool_(), nullable=False),
    pa.field("reasons", pa.string(), nullable=False),
])


def criteria_specs() -> list[CriterionSpec]:
    return [
        CriterionSpec("all_shards_placed", (Rule("shards_unplaceable", max_value=0),), ("shards_unplaceable",), 0,
                      "shards_unplaceable == 0"),
        CriterionSpec("receivers_verified", (Rule("receivers_unverified", max_value=0),),
                      ("receiving_nodes", "receivers_verified"), 0,
                      "every receiving node passes AEGIS (receivers_unverified == 0)"),
        CriterionSpec("no_co_location", (Rule("co_located_objects", max_value=0),), ("co_located_objects",), 0,
                      "no object has two shards on one node after the plan (co_located_objects == 0)"),
        CriterionSpec("capacity_respected", (Rule("receivers_over_capacity", max_value=0),), ("receivers_over_capacity",), 0,
                      "no receiving node over capacity after the plan (receivers_over_capacity == 0)"),
    ]


# -- independent checks of a plan ----------------------------------------------------------------
def co_located_objects(plan: pa.Table, holders: pa.Table) -> int:
    """Objects where one node would hold two shards after the plan, one of them planned.

    After the plan an object's shards are its snapshot holders minus the shards the plan moves
    (every shard of the failed node), plus the placed rows of the plan.
    """
    con = duckdb.connect()
    try:
        con.register("p", plan.select(["object_id", "shard_index", "to_node_id"]))
        con.register("h", holders.select(["object_id", "shard_index", "node_id"]))
        return int(con.execute(
            """
            WITH after AS (
                SELECT object_id, to_node_id AS node_id, true AS planned FROM p WHERE to_node_id IS NOT NULL
                UNION ALL
                SELECT h.object_id, h.node_id, false FROM h ANTI JOIN p USING (object_id, shard_index)
            )
            SELECT count(DISTINCT object_id) FROM (
                SELECT object_id, node_id FROM after GROUP BY ALL HAVING count(*) > 1 AND bool_or(planned)
            )
            """
        ).fetchall()[0][0])
    finally:
        con.close()


def receivers_table(reader: ExportReader, plan: PlanResult, as_of: dt.date, p: NodeHealthParams) -> pa.Table:
    """Every receiving node: planned load vs the plan day's capacity, and AEGIS re-verified afresh."""
    load: dict[str, list[int]] = {}
    for to, nbytes in zip(plan.plan.column("to_node_id").to_pylist(), plan.plan.column("shard_bytes").to_pylist()):
        if to is not None:
            acc = load.setdefault(to, [0, 0])
            acc[0] += 1
            acc[1] += nbytes
    cap = {n: (c, u) for n, c, u in zip(*(plan.nodes.column(k).to_pylist() for k in ("node_id", "capacity_bytes", "used_bytes")))}
    con = connect()
    try:
        aegis = register_aegis(reader, con, aegis_day_for(reader, as_of), p)
    finally:
        con.close()
    verdict = {n: (v, r) for n, v, r in zip(*(aegis.column(k).to_pylist() for k in ("node_id", "verified", "reasons")))}
    cols: dict[str, list] = {f.name: [] for f in RECEIVER_SCHEMA}
    for node in sorted(load):
        shards, nbytes = load[node]
        c, u = cap.get(node, (None, None))
        free_after = None if c is None else c - u - nbytes
        v, reasons = verdict.get(node, (False, "absent from the node inventory"))
        cols["node_id"].append(node)
        cols["planned_shards"].append(shards)
        cols["planned_bytes"].append(require_int64(nbytes, f"planned bytes onto {node}"))
        cols["capacity_bytes"].append(c)
        cols["used_bytes"].append(u)
        cols["free_after_bytes"].append(free_after)
        cols["over_capacity"].append(free_after is None or free_after < 0)
        cols["verified"].append(bool(v))
        cols["reasons"].append(reasons or "")
    return pa.table(cols, schema=RECEIVER_SCHEMA)


# -- rewards ------------------------------------------------------------------------------------
def recovered_at(reader: ExportReader, failure: FailureEvent, as_of: dt.date) -> dt.datetime | None:
    """When the node left `failed` again (its first later status change in the log), up to ``as_of``."""
    days = [d for d in reader.available_dates("eqm") if failure.failed_on <= d <= as_of]
    events = _status_events(reader, days, failure.seq)[0]
    return next((ts for _, ts, node, status in events
                 if node == failure.node_id and ts > failure.failed_at and status != "failed"), None)


def next_failure_at(reader: ExportReader, failure: FailureEvent, through: dt.date) -> dt.datetime | None:
    """When the node failed again after recovering (its next failure in the log), up to ``through``."""
    days = [d for d in reader.available_dates("eqm") if failure.failed_on <= d <= through]
    events = _status_events(reader, days, failure.seq)[0]
    recovered = False
    for _, ts, node, status in events:
        if node != failure.node_id or ts <= failure.failed_at:
            continue
        if status != "failed":
            recovered = True
        elif recovered:
            return ts
    return None


def reward_adjustments(reader: ExportReader, failure: FailureEvent, as_of: dt.date) -> tuple[pa.Table, dict]:
    """The claw-back proposal (one negative adjustment per reward paid while the node was failed,
    net of the adjustments already paid for the failure) and totals.

    The window is ``[failed_at, recovery)`` when the node came back before the end of ``as_of``
    (rewards earned after the repair are legitimate), else ``[failed_at, end of as_of)``.
    Existing adjustments are read from the failure day to the newest rewards partition.
    """
    recovery = recovered_at(reader, failure, as_of)
    end = min(day_end(as_of), recovery) if recovery else day_end(as_of)
    days = days_between(failure.failed_on, as_of + dt.timedelta(days=1))
    newest = max([d for d in reader.available_dates("rewards")] + [as_of])
    adj_days = days_between(failure.failed_on, newest + dt.timedelta(days=1))
    adj_end = next_failure_at(reader, failure, newest)
    con = connect()
    try:
        view = reward_ledger(reader, con, days, view="nf_rewards", required=False, validate_keys=False)
        rows = con.execute(
            f"""
            SELECT reward_id, ts, epoch, kind, amount_nod FROM "{view}"
            WHERE node_id = ? AND kind <> 'adjustment' AND ts >= ? AND ts < ?
            ORDER BY ts, reward_id
            """,
            [failure.node_id, failure.failed_at, end],
        ).fetchall()
        adj_view = reward_ledger(reader, con, adj_days, view="nf_adjustments", required=False, validate_keys=False)
        existing = con.execute(
            f"""SELECT reward_id, ts, amount_nod FROM "{adj_view}"
                WHERE node_id = ? AND kind = 'adjustment' AND ts >= ? AND (? IS NULL OR ts < ?)
                ORDER BY ts, reward_id""",
            [failure.node_id, failure.failed_at, adj_end, adj_end],
        ).fetchall()
    finally:
        con.close()
    existing_sum = sum(int(a) for _, _, a in existing)
    recovered_already = max(0, -existing_sum)  # claw-backs already made (positive adjustments offset them)
    left = recovered_already
    cols: dict[str, list] = {f.name: [] for f in ADJUSTMENT_SCHEMA}
    seen: Counter = Counter()
    gross = total = fully_netted = 0
    for reward_id, ts, epoch, kind, amount in rows:
        amount = int(amount)
        gross += amount
        netted = min(left, max(amount, 0))
        left -= netted
        seen[reward_id] += 1
        if amount - netted <= 0:
            fully_netted += 1
            continue
        suffix = "" if seen[reward_id] == 1 else f"#{seen[reward_id]}"  # a duplicated reward_id is clawed back per row
        cols["adjustment_id"].append(f"clawback:{failure.failure_id}:{reward_id}{suffix}")
        cols["failure_id"].append(failure.failure_id)
        cols["node_id"].append(failure.node_id)
        cols["kind"].append("adjustment")
        cols["amount_nod"].append(-(amount - netted))
        cols["clawed_reward_id"].append(reward_id)
        cols["clawed_kind"].append(kind)
        cols["clawed_epoch"].append(int(epoch))
        cols["clawed_ts"].append(ts)
        cols["clawed_amount_nod"].append(amount)
        cols["netted_nod"].append(netted)
        total += amount - netted
    table = pa.table(cols, schema=ADJUSTMENT_SCHEMA)
    applied = [{"reward_id": rid, "ts": ts, "amount_nod": int(a)} for rid, ts, a in existing]
    note = (f"{gross} nod paid to {failure.node_id} while failed; {min(recovered_already, gross)} nod of it already "
            f"clawed back by {len(existing)} adjustment(s) paid since {failure.failed_at.isoformat()}; "
            f"proposed: the remaining {total} nod" if existing else
            f"{gross} nod paid to {failure.node_id} while failed; no adjustment paid to it since the failure; "
            f"proposed: {total} nod")
    return table, {
        "clawback_nod": total,
        "clawback_gross_nod": gross,
        "rewards_clawed_back": table.num_rows,
        "rewards_already_clawed_back": fully_netted,
        "existing_adjustments": len(existing),
        "existing_adjustments_nod": existing_sum,
        "existing_adjustment_list": applied,
        "netting_note": note,
        "reward_days_read": [d.isoformat() for d in days],
        "adjustment_days_read": [adj_days[0].isoformat(), adj_days[-1].isoformat()] if adj_days else [],
        "recovered_at": recovery,
    }


# -- the activity ---------------------------------------------------------------------------------
def respond_to_failure(
    reader: ExportReader, failure: FailureEvent, as_of: dt.date, params: NodeFailureParams | None = None
) -> ActivityResult:
    """Plan, re-verify and propose the reward adjustment for ``failure`` as of the end of ``as_of``.

    Raises BadInput (before anything is written) when an input is bad, and ValueError when
    ``as_of`` is before the failure day.
    """
    p = params or NodeFailureParams()
    if as_of < failure.failed_on:
        raise ValueError(f"as_of {as_of.isoformat()} is before the failure day {failure.failed_on.isoformat()}")
    reader = ExportReader(reader.root)  # a fresh read log: `inputs` lists this run's reads only
    window_start, window_end = failure.failed_at, day_end(as_of)

    plan = plan_redistribution(reader, failure.node_id, failure.failed_on, as_of, p.aegis, batch_rows=p.batch_rows)
    receivers = receivers_table(reader, plan, as_of, p.aegis)
    co_located = co_located_objects(plan.plan, plan.holders)
    adjustments, rewards = reward_adjustments(reader, failure, as_of)

    t = plan.plan
    to = t.column("to_node_id").to_pylist()
    nbytes = t.column("shard_bytes").to_pylist()
    reasons = t.column("reason").to_pylist()
    placed = [b for d, b in zip(to, nbytes) if d is not None]
    unplaced = [b for d, b in zip(to, nbytes) if d is None]
    verified = receivers.column("verified").to_pylist()
    over = receivers.column("over_capacity").to_pylist()

    metrics = {
        "failure_id": failure.failure_id,
        "node_id": failure.node_id,
        "failed_at": failure.failed_at,
        "failure_source": failure.source,
        "failure_seq": failure.seq,
        "plan_snapshot_date": plan.plan_date.isoformat(),
        "aegis_date": plan.aegis_date.isoformat(),
        "failed_node_status": plan.failed_node_status,
        "shards_to_move": t.num_rows,
        "bytes_to_move": sum(nbytes),
        "objects_affected": len(set(t.column("object_id").to_pylist())),
        "shards_placed": len(placed),
        "bytes_placed": sum(placed),
        "shards_unplaceable": len(unplaced),
        "bytes_unplaceable": sum(unplaced),
        "unplaceable_by_reason": dict(sorted(Counter(r for r in reasons if r is not None).items())),
        "candidate_nodes": plan.candidates,
        "receiving_nodes": receivers.num_rows,
        "receivers_verified": sum(verified),
        "receivers_unverified": len(verified) - sum(verified),
        "receivers_over_capacity": sum(over),
        "co_located_objects": co_located,
        "clawback_nod": rewards["clawback_nod"],
        "clawback_gross_nod": rewards["clawback_gross_nod"],
        "rewards_clawed_back": rewards["rewards_clawed_back"],
        "rewards_already_clawed_back": rewards["rewards_already_clawed_back"],
        "existing_adjustments_nod": rewards["existing_adjustments_nod"],
        "recovered_at": rewards["recovered_at"],
        "utilization_cv_before": plan.balance["utilization_cv_before"],
        "utilization_max_over_mean_before": plan.balance["utilization_max_over_mean_before"],
        "utilization_cv_after": plan.balance["utilization_cv_after"],
        "utilization_max_over_mean_after": plan.balance["utilization_max_over_mean_after"],
        "balance_nodes": plan.balance["balance_nodes"],
    }
    judge_cols = ("shards_unplaceable", "receiving_nodes", "receivers_verified", "receivers_unverified",
                  "co_located_objects", "receivers_over_capacity")
    judge = pa.table({k: pa.array([metrics[k]], type=pa.int64()) for k in judge_cols})
    exclusion = {"node_id": failure.node_id, "excluded_from": failure.failed_at, "until": EXCLUSION_UNTIL,
                 "failure_id": failure.failure_id}
    return ActivityResult(
        activity=ACTIVITY,
        partition=as_of.isoformat(),
        window_start=window_start,
        window_end=window_end,
        metrics=metrics,
        inputs={
            "export_root": str(reader.root),
            "failure": failure.to_dict(),
            "plan_snapshot_date": plan.plan_date.isoformat(),
            "aegis_date": plan.aegis_date.isoformat(),
            "reward_days": rewards["reward_days_read"],
            "adjustment_days": rewards["adjustment_days_read"],
            "existing_adjustments": rewards["existing_adjustments"],
            "tables": [r.as_evidence() for r in reader.reads],
        },
        parameters=p.as_evidence(),
        criteria_specs=criteria_specs(),
        judge_table=judge,
        tables={
            "node_failure_plan": t,
            "node_failure_receivers": receivers,
            "node_failure_reward_adjustments": adjustments,
        },
        extra={"reward_exclusion": exclusion,
               "clawback_netting": {"note": rewards["netting_note"], "adjustments": rewards["existing_adjustment_list"],
                                    "gross_nod": rewards["clawback_gross_nod"], "net_nod": rewards["clawback_nod"]}},
        evidence_key=failure.failure_id,
    )


__all__ = ["ACTIVITY", "NodeFailureParams", "co_located_objects", "criteria_specs", "receivers_table",
           "respond_to_failure", "reward_adjustments"]
