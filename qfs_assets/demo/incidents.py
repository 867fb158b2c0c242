"""The incident schedule: which anomalies the demo plants, on which days, and where the
assurance activities should (or should not) see them. Pure: derived from :class:`DemoConfig`
alone, no simulation needed.

Incidents are on fixed day offsets from the start (:data:`INCIDENT_PLAN`); with the default
start (Monday 2026-03-02, 42 days) they fall on the dates listed in :data:`DEFAULT_INCIDENT_DATES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from qfs_assets.demo.config import DIFF_CATEGORIES, HOUR, MINUTE, DemoConfig, node_id
from qfs_assets.windows import monday_of

#: Day offsets (0 = start day) and parameters of the incidents. Node numbers are 1-based
#: indices into ``node-NNNN`` (clamped to the node count).
INCIDENT_PLAN: dict[str, dict[str, Any]] = {
    # node-0007 fails at 10:17 on day 9; its shards are moved to other in-service nodes in 12
    # batches on days 10-12 (02:00/08:00/14:00/20:00); it is back `active` at 06:00 on day 14
    # and the rebalancer moves shards back onto it. On day 9 objects are degraded, none is
    # unrecoverable (every object has its 6 shards on 6 distinct nodes, only one node is down).
    "node_failure": {"day": 9, "node": 7, "fail_at": 10 * HOUR + 17 * MINUTE,
                     "repair_days": (10, 11, 12), "recovery_day": 14, "recover_at": 6 * HOUR},
    # One `storage` reward paid to the failed node at the epoch close of its failure day (a
    # finding: rewards_to_failed_nodes == 1 in that week), clawed back the next day by a
    # negative `adjustment` (adjustments are not findings). Own switch; applies with node_failure.
    "reward_to_failed_node": {"day": 9, "clawback_day": 10},
    # Every in-service node gets exactly one challenge per hour (24 a day). On day 16, ~3% of
    # the day's challenges fail or time out, at most one per node, so the day's proof_success
    # criterion fails while every node still has >= 95% passed (nodes_verified still passes).
    "poor_proofs": {"day": 16, "bad_rate": 0.03},
    # The 4th Monday-Sunday week (the first Monday on or after day 21): the epoch pools pay
    # 115% of the fees, so that week's conservation criterion fails.
    "reward_overrun": {"week_from_day": 21, "ratio": (115, 100)},
    # Not a failing incident: node-0013 reports `degraded` at 11:00 on day 30 and is `active`
    # again at 09:00 on day 31 (in service throughout; every criterion passes).
    "maintenance": {"day": 30, "node": 13, "at": 11 * HOUR, "recovery_day": 31, "recover_at": 9 * HOUR},
    # Not a failing incident: the last `understaked_nodes` nodes stake < 1000 NOD, so they are
    # listed in unverified_node_ids every day (verified_ratio stays > 0.95 with 40 nodes).
    "understaked_node": {},
    # The system of record (written once, the live state after the last day) differs from the
    # final manifest: see DriftSpec. The drifted objects are among those written on day 0 and never
    # rewritten, so every difference is visible from the first daily diff on.
    "dual_write_drift": {},
    # v1.1: one checksum_mismatch in the storage_errors feed (a proof challenge at 14:31 on day 23
    # finds a shard whose bytes no longer match its hash): that day fails no_corruption_errors and
    # the storage errors sensor sends a critical storage_corruption alert.
    "storage_corruption": {"day": 23, "at": 14 * HOUR + 31 * MINUTE},
    # 120 disk errors of the failing node between 09:00 and 10:00 on its failure day (before it
    # fails at 10:17): a storage_error_burst alert (default threshold: more than 100 an hour).
    "storage_error_burst": {"day": 9, "from": 9 * HOUR, "errors": 120},
    # A write the gateway recorded at 10:00 on day 0 that the StorageEngine applied on day 3: the
    # daily diffs see missing_in_storage for three days (resolved 72 hours after first seen), so the
    # month's diffs_resolved_in_24h fails with resolved_late 1 although the difference closed.
    "delayed_storage_write": {"gateway_day": 0, "storage_day": 3},
    # Not in the export: `qfs-assure demo` skips this partition, as a stopped daemon would; the
    # evidence watchdog alerts evidence_missing and `qfs-assure gaps` lists it.
    "missed_run": {"activity": "node_health_assessment", "day": 34},
}

#: Dates of the incidents for the default configuration (start 2026-03-02, 42 days).
DEFAULT_INCIDENT_DATES = {
    "node_failure": "failed 2026-03-11 (node-0007), repaired 2026-03-12..14, active 2026-03-16",
    "reward_to_failed_node": "storage reward 2026-03-11 (week 2026-03-09), claw-back 2026-03-12",
    "poor_proofs": "2026-03-18",
    "reward_overrun": "week 2026-03-23 .. 2026-03-29",
    "maintenance": "node-0013 degraded 2026-04-01, active 2026-04-02",
    "understaked_node": "node-0040, every day",
    "dual_write_drift": ("system of record (live, after 2026-04-12) vs manifest of 2026-04-12 (month 2026-04); "
                         "against 2026-03-31 (month 2026-03) the April changes are in flight and the drifted "
                         "objects that existed then show up too"),
    "storage_corruption": "2026-03-25 14:31 (checksum_mismatch found by a proof challenge)",
    "storage_error_burst": "node-0007, 120 errors 2026-03-11 09:00..10:00 (before it fails at 10:17)",
    "delayed_storage_write": "recorded by the gateway 2026-03-02 10:00, applied by the StorageEngine 2026-03-05 "
                             "(daily diffs 2026-03-02..04; month 2026-03)",
    "missed_run": "node_health_assessment 2026-04-05 not judged by the demo",
}


@dataclass(frozen=True)
class Incident:
    """A deliberate anomaly and where the assurance activities should (or should not) see it."""

    name: str
    activity: str  # the evidence activity that judges it
    days: tuple[date, ...]  # the days it spans
    partitions: tuple[date, ...]  # first days of the partitions whose evidence shows it
    failing_criteria: tuple[str, ...]  # criteria that fail in those partitions (() = none)
    node_ids: tuple[str, ...] = ()
    object_ids: tuple[str, ...] = ()
    expected_metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["days"] = [x.isoformat() for x in self.days]
        d["partitions"] = [x.isoformat() for x in self.partitions]
        return d


@dataclass(frozen=True)
class Schedule:
    """The configuration's incidents resolved to days and nodes."""

    days: tuple[date, ...]
    fail_node: str | None  # the node that fails (node_failure)
    blip_node: str | None  # the node under maintenance (never the failing one)
    understaked: tuple[str, ...]  # nodes staking < 1000 NOD
    overrun_monday: date  # first day of the reward-overrun week

    @classmethod
    def of(cls, cfg: DemoConfig) -> "Schedule":
        plan = INCIDENT_PLAN
        fail_node = node_id(min(plan["node_failure"]["node"], cfg.nodes)) if cfg.node_failure else None
        blip_node = node_id(min(plan["maintenance"]["node"], cfg.nodes)) if cfg.maintenance else None
        if blip_node is not None and blip_node == fail_node:
            blip_node = node_id(1 if fail_node != node_id(1) else 2)
        overrun_from = cfg.start + timedelta(days=plan["reward_overrun"]["week_from_day"])
        return cls(
            days=tuple(cfg.start + timedelta(days=i) for i in range(cfg.days)),
            fail_node=fail_node,
            blip_node=blip_node,
            understaked=tuple(node_id(i) for i in range(cfg.nodes - cfg.understaked_nodes + 1, cfg.nodes + 1)),
            overrun_monday=overrun_from + timedelta(days=(7 - overrun_from.weekday()) % 7),
        )

    def in_overrun_week(self, d: date) -> bool:
        return self.overrun_monday <= d < self.overrun_monday + timedelta(days=7)


def incident_list(cfg: DemoConfig, schedule: Schedule | None = None) -> list[Incident]:
    """The incidents of the storage export (all but ``dual_write_drift``, which needs the
    system of record: :func:`dual_write_incident`)."""
    s = schedule or Schedule.of(cfg)
    plan, days = INCIDENT_PLAN, s.days
    last = len(days) - 1
    out: list[Incident] = []

    def day(k: int) -> date:
        return days[k]

    nf = plan["node_failure"]
    if cfg.node_failure and nf["day"] <= last:
        span = tuple(days[nf["day"]: min(nf["recovery_day"], last) + 1])
        out.append(Incident(
            name="node_failure", activity="node_health_assessment", days=span,
            partitions=(day(nf["day"]),), failing_criteria=(), node_ids=(s.fail_node,),
            expected_metrics={"objects_unrecoverable": 0, "objects_degraded": ">0"},
            description=(f"{s.fail_node} goes failed at 10:17 on {day(nf['day'])}; its shards are moved "
                         f"to other in-service nodes (shard_moved, never onto a node holding a shard of the "
                         f"same object) in 12 batches over the next three days; it is active again at 06:00 "
                         f"on {days[nf['recovery_day']] if nf['recovery_day'] <= last else 'n/a'} and shards "
                         f"are rebalanced back onto it. On the failure day objects are degraded, none "
                         f"unrecoverable; the node is out of service, so no node-health criterion fails."),
        ))
    rf = plan["reward_to_failed_node"]
    if cfg.reward_to_failed_node and cfg.node_failure and rf["day"] <= last:
        d0 = day(rf["day"])
        out.append(Incident(
            name="reward_to_failed_node", activity="economics_sanity_check",
            days=tuple(days[rf["day"]: min(rf["clawback_day"], last) + 1]),
            partitions=(monday_of(d0),), failing_criteria=("no_rewards_to_failed_nodes",),
            node_ids=(s.fail_node,),
            expected_metrics={"rewards_to_failed_nodes": 1},
            description=(f"a storage reward (epoch {rf['day'] + 1}) is paid to {s.fail_node} on {d0}, the day "
                         f"its snapshot shows it failed; a negative adjustment claws it back the next day "
                         f"(adjustments are not findings)."),
        ))
    pp = plan["poor_proofs"]
    if cfg.poor_proofs and pp["day"] <= last:
        out.append(Incident(
            name="poor_proofs", activity="node_health_assessment", days=(day(pp["day"]),),
            partitions=(day(pp["day"]),), failing_criteria=("proof_success",),
            expected_metrics={"proof_success_rate": "~0.97 (< 0.99)"},
            description=("~3% of the day's challenges fail or time out (at most one per node, so "
                         "nodes_verified still passes)."),
        ))
    if cfg.reward_overrun and s.overrun_monday <= days[-1]:
        week = tuple(x for x in days if s.in_overrun_week(x))
        out.append(Incident(
            name="reward_overrun", activity="economics_sanity_check", days=week,
            partitions=(s.overrun_monday,), failing_criteria=("conservation",),
            expected_metrics={"margin_atr": "<0"},
            description="each epoch of the week pays 115% of its fees in rewards (normally 70%).",
        ))
    m = plan["maintenance"]
    if cfg.maintenance and m["day"] <= last:
        out.append(Incident(
            name="maintenance", activity="node_health_assessment",
            days=tuple(days[m["day"]: min(m["recovery_day"], last) + 1]),
            partitions=(day(m["day"]),), failing_criteria=(), node_ids=(s.blip_node,),
            description=f"{s.blip_node} is degraded (still in service) for a day; nothing fails.",
        ))
    if s.understaked:
        out.append(Incident(
            name="understaked_node", activity="node_health_assessment", days=tuple(days),
            partitions=tuple(days), failing_criteria=(), node_ids=tuple(s.understaked),
            expected_metrics={"unverified_node_ids": "contains " + ", ".join(s.understaked)},
            description="stake below 1000 NOD: unverified every day; verified_ratio stays above 0.95.",
        ))
    return out


def feed_incidents(cfg: DemoConfig, found: dict) -> list[Incident]:
    """The incidents of the storage_errors feed, as written (``found``: incident -> (day, detail))."""
    out = []
    if "storage_corruption" in found:
        d, (node, obj, idx) = found["storage_corruption"]
        out.append(Incident(
            name="storage_corruption", activity="node_health_assessment", days=(d,), partitions=(d,),
            failing_criteria=("no_corruption_errors",), node_ids=(node,), object_ids=(obj,),
            expected_metrics={"corruption_errors": 1},
            description=(f"a proof challenge finds that shard {idx} of {obj} on {node} no longer matches its hash "
                         f"(checksum_mismatch): the day fails no_corruption_errors and the storage_errors_sensor "
                         f"sends a critical storage_corruption alert."),
        ))
    if "storage_error_burst" in found:
        d, node = found["storage_error_burst"]
        p = INCIDENT_PLAN["storage_error_burst"]
        out.append(Incident(
            name="storage_error_burst", activity="node_health_assessment", days=(d,), partitions=(d,),
            failing_criteria=(), node_ids=(node,), expected_metrics={"storage_errors": f">{p['errors']}"},
            description=(f"{p['errors']} io_error/timeout errors on {node} in the hour before it fails: a "
                         f"storage_error_burst alert (more than 100 errors of one node in one hour); no criterion "
                         f"judges error volume."),
        ))
    return out


def delayed_write_incident(cfg: DemoConfig, start: date, object_id: str) -> Incident:
    p = INCIDENT_PLAN["delayed_storage_write"]
    seen = tuple(start + timedelta(days=k) for k in range(p["storage_day"]))
    return Incident(
        name="delayed_storage_write", activity="dual_write_verification",
        days=seen + (start + timedelta(days=p["storage_day"]),), partitions=(start.replace(day=1),),
        failing_criteria=("diffs_resolved_in_24h",), object_ids=(object_id,),
        expected_metrics={"resolved_late": 1},
        description=(f"the gateway recorded {object_id} at 10:00 on {start}, the StorageEngine applied the write "
                     f"on {start + timedelta(days=p['storage_day'])}: missing_in_storage in the daily diffs of "
                     f"{seen[0]}..{seen[-1]}, resolved 72 hours after first seen. The daily diff alerts "
                     f"diff_unresolved the day it reaches 24 hours; the month fails diffs_resolved_in_24h with "
                     f"resolved_late 1 although the difference closed."),
    )


def missed_run_incident(cfg: DemoConfig, schedule: Schedule) -> Incident | None:
    p = INCIDENT_PLAN["missed_run"]
    if not cfg.missed_run or p["day"] >= len(schedule.days):
        return None
    d = schedule.days[p["day"]]
    return Incident(
        name="missed_run", activity=p["activity"], days=(d,), partitions=(d,), failing_criteria=(),
        description=(f"`qfs-assure demo` does not judge {p['activity']} {d} (as if the daemon were stopped that "
                     f"night): no evidence, so the evidence watchdog alerts evidence_missing and `qfs-assure gaps` "
                     f"lists it with the command that fills it."),
    )


def dual_write_incident(cfg: DemoConfig, end: date, diffs: dict[str, str]) -> Incident:
    """The ``dual_write_drift`` incident of a system of record written after ``end`` with ``diffs``."""
    return Incident(
        name="dual_write_drift", activity="dual_write_verification", days=(end,),
        partitions=(end.replace(day=1),),
        failing_criteria=("zero_inconsistencies",) + (
            ("counts_match",) if cfg.drift.missing_in_storage != cfg.drift.missing_in_sor else ()),
        object_ids=tuple(diffs),
        expected_metrics={c: sum(1 for v in diffs.values() if v == c) for c in DIFF_CATEGORIES},
        description=("the system of record (the live state after the last day) differs from the last "
                     "manifest: see DemoDeployment.expected_dual_write_diffs (object_id -> category). "
                     "Compared with an earlier month's last manifest, everything changed since is in "
                     "flight and the drifted objects that already existed then show up too: see "
                     "DemoDeployment.live_sor_diffs(day)."),
    )
