"""Node failure response: detection (EQM + snapshot, cursor), the redistribution plan, the response.

Tiny hand-made exports written with the contract schemas (exportkit) plus a hash-chained EQM
log helper. No Dagster, no Great Expectations: criteria are read with ``Rule.holds``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qfs_assets.contract.hashing import GENESIS_PREV_HASH, canonical_json, event_hash
from qfs_assets.activities.node_failure.detect import (
    FailureCursor,
    FailureEvent,
    failure_events,
    failure_from_id,
    parse_failure_id,
    scan_failures,
)
from qfs_assets.activities.node_failure.plan import (
    REASON_CAPACITY,
    REASON_CO_LOCATION,
    REASON_NO_VERIFIED,
    REASON_NOT_LIVE,
    REASON_UNRECOVERABLE,
    RendezvousPlanner,
    plan_redistribution,
)
from qfs_assets.activities.node_failure.assess import (
    co_located_objects,
    receivers_table,
    respond_to_failure,
    reward_adjustments,
)
from qfs_assets.activities.node_health.assess import NodeHealthParams
from qfs_assets.evidence.model import Criterion
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import node, obj, proof, shard, ts, write

D1, D2, D3, D4 = "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"
NOD = 10**8


def day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


# -- a hash-chained EQM log ----------------------------------------------------------------------
class EqmLog:
    """Events in seq order; written as ``eqm/date=`` partitions by the event's UTC day."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, at: dt.datetime, event_type: str, **payload) -> int:
        seq = len(self.rows)
        prev = self.rows[-1]["event_hash"] if self.rows else GENESIS_PREV_HASH
        text = canonical_json(payload)
        self.rows.append({"seq": seq, "ts": at, "event_type": event_type, "payload": text, "prev_hash": prev,
                          "event_hash": event_hash(prev, seq, event_type, text)})
        return seq

    def register(self, at, *node_ids):
        for n in node_ids:
            self.add(at, "node_registered", node_id=n, region="eu", capacity_bytes=1000, stake_nod=2000 * NOD)

    def status(self, at, node_id, status) -> int:
        return self.add(at, "node_status_changed", node_id=node_id, status=status)

    def write(self, root: Path, days=None, *, name="part-0.parquet", min_seq: int = 0) -> None:
        by_day: dict[dt.date, list[dict]] = {}
        for r in self.rows:
            if r["seq"] >= min_seq:
                by_day.setdefault(r["ts"].date(), []).append(r)
        for d, rows in sorted(by_day.items()):
            if days is None or d in {day(x) if isinstance(x, str) else x for x in days}:
                write(root, "eqm", rows, d, name=name)


def snapshot(root, d, statuses: dict[str, str]) -> None:
    write(root, "nodes", [node(n, day=d, status=s) for n, s in sorted(statuses.items())], d)


def ids(events):
    return [e.failure_id for e in events]


# -- detection -------------------------------------------------------------------------------------
def test_eqm_failure_is_detected_and_degraded_is_not(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1", "n2", "n3")
    log.status(ts(D1, 9), "n1", "degraded")
    seq = log.status(ts(D1, 10, 17), "n2", "failed")
    log.status(ts(D1, 11), "n3", "decommissioned")
    log.write(tmp_path)
    events = failure_events(ExportReader(tmp_path))
    assert events == [FailureEvent("n2", ts(D1, 10, 17), seq, "eqm")]
    assert events[0].failure_id == "n2_20260302"
    assert parse_failure_id("n2_20260302") == ("n2", day(D1), 1)


def test_fail_recover_fail_yields_two_failures(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1")
    log.status(ts(D1, 10), "n1", "failed")
    log.status(ts(D1, 12), "n1", "failed")  # a repeated status is not a new failure
    log.status(ts(D2, 6), "n1", "active")
    log.status(ts(D3, 8), "n1", "failed")
    log.status(ts(D3, 9), "n1", "degraded")  # any non-failed status ends the failure
    log.status(ts(D3, 20), "n1", "failed")  # same day again: unique id
    log.write(tmp_path)
    reader = ExportReader(tmp_path)
    events = failure_events(reader)
    assert ids(events) == ["n1_20260302", "n1_20260304", "n1_20260304_2"]
    assert [e.failed_at for e in events] == [ts(D1, 10), ts(D3, 8), ts(D3, 20)]
    for e in events:  # the partition key alone rebuilds the failure
        assert failure_from_id(reader, e.failure_id) == e


def test_snapshot_only_failure_counts_and_does_not_duplicate_a_logged_one(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1", "n2", "n3")
    log.status(ts(D2, 10), "n1", "failed")
    log.write(tmp_path)
    snapshot(tmp_path, D2, {"n1": "failed", "n2": "active", "n3": "failed"})  # n3: no event
    reader = ExportReader(tmp_path)
    events = failure_events(reader)
    assert ids(events) == ["n1_20260303", "n3_20260303"]
    n3 = events[1]
    assert (n3.source, n3.seq, n3.failed_at) == ("snapshot", None, ts(D2))
    assert failure_from_id(reader, "n3_20260303") == n3
    with pytest.raises(KeyError):
        failure_from_id(reader, "n2_20260303")


def _build_incremental_export(root: Path) -> EqmLog:
    log = EqmLog()
    log.register(ts(D1, 1), "n1", "n2", "n3")
    log.status(ts(D1, 10), "n1", "failed")
    log.status(ts(D2, 6), "n1", "active")
    log.status(ts(D2, 7), "n2", "degraded")
    log.status(ts(D3, 8), "n1", "failed")
    log.status(ts(D4, 9), "n2", "failed")
    log.write(root)
    snapshot(root, D1, {"n1": "failed", "n2": "active", "n3": "active"})
    snapshot(root, D2, {"n1": "active", "n2": "degraded", "n3": "active"})
    snapshot(root, D3, {"n1": "failed", "n2": "degraded", "n3": "failed"})  # n3: only the snapshot knows
    snapshot(root, D4, {"n1": "failed", "n2": "failed", "n3": "failed"})
    return log


def test_cursor_detection_never_reports_a_failure_twice_and_reads_only_new_partitions(tmp_path):
    _build_incremental_export(tmp_path)
    reader = ExportReader(tmp_path)
    everything = ids(scan_failures(reader)[0])
    assert everything == ["n1_20260302", "n1_20260304", "n3_20260304", "n2_20260305"]

    cursor, seen = FailureCursor(), []
    for d in (D1, D1, D2, D3, D3, D4):  # ticks, some with nothing new
        reader = ExportReader(tmp_path)
        new, cursor = scan_failures(reader, FailureCursor.from_json(cursor.to_json()), through=day(d))
        for table in ("eqm", "nodes"):  # only the new partition, if any
            parts = [r.partitions for r in reader.reads if r.table == table]
            assert all(p == [d] for p in parts), (table, parts)
        seen += ids(new)
    assert seen == everything
    assert scan_failures(ExportReader(tmp_path), cursor)[0] == []


def test_cursor_reads_files_added_to_its_partition(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1", "n2")
    log.write(tmp_path)
    new, cursor = scan_failures(ExportReader(tmp_path))
    assert new == [] and cursor.last_seq == 1
    n = len(log.rows)
    log.status(ts(D1, 15), "n2", "failed")
    log.write(tmp_path, name="part-1.parquet", min_seq=n)  # a second file in the same partition
    new, cursor = scan_failures(ExportReader(tmp_path), cursor)
    assert ids(new) == ["n2_20260302"]
    reader = ExportReader(tmp_path)
    assert scan_failures(reader, cursor)[0] == [] and not [r for r in reader.reads if r.table == "eqm"]


def test_stale_snapshot_after_the_log_moved_on_is_not_a_new_failure(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1")
    log.status(ts(D1, 23), "n1", "failed")
    log.status(ts(D3, 6), "n1", "active")  # recovered before snapshot D2 arrives
    log.write(tmp_path)
    new, cursor = scan_failures(ExportReader(tmp_path))
    assert ids(new) == ["n1_20260302"]
    snapshot(tmp_path, D2, {"n1": "failed"})  # late: the failure is the one already reported
    new, cursor = scan_failures(ExportReader(tmp_path), cursor)
    assert new == [] and cursor.snapshot_date == day(D2)


def test_stateless_since_seq_uses_footers_and_skips_old_partitions(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1", "n2")
    log.status(ts(D1, 10), "n1", "failed")
    s = log.status(ts(D3, 10), "n2", "failed")
    log.write(tmp_path)
    reader = ExportReader(tmp_path)
    assert ids(failure_events(reader, since_seq=s - 1)) == ["n2_20260304"]
    assert [r.partitions for r in reader.reads if r.table == "eqm"] == [[D3]]
    assert failure_events(ExportReader(tmp_path), since_seq=s) == []


def test_malformed_status_payload_is_bad_input(tmp_path):
    log = EqmLog()
    log.register(ts(D1, 1), "n1")
    log.add(ts(D1, 2), "node_status_changed", node_id="n1", status="on fire")
    log.write(tmp_path)
    with pytest.raises(BadInput, match="payload"):
        failure_events(ExportReader(tmp_path))


# -- the plan ----------------------------------------------------------------------------------------
def build_cluster(root: Path, nodes: dict[str, dict], objects: list[dict], shards: list[dict], *, d=D2,
                  unverified: set[str] = frozenset(), proofs_day: str | None = None, shuffle_seed: int | None = None):
    """A one-day export: nodes (kwargs of exportkit.node), objects, shards, one passing proof per verified node."""
    write(root, "nodes", [node(n, day=d, **kw) for n, kw in nodes.items()], d)
    write(root, "objects", objects, d)
    rows = list(shards)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    write(root, "shards", rows, d)
    pday = proofs_day or d
    write(root, "proofs", [proof(f"c-{n}", n, day=pday) for n in nodes if n not in unverified], pday)


def small_cluster(root: Path, **kw):
    """f fails; a1..a5 healthy. o1: 3 shards (f, a1, a2); o2: 3 shards (f, a1, a3) + f also holds o2/3; o3: 2 shards (f, a4)."""
    nodes = {"f": dict(status="failed", capacity=10_000, used=500)}
    for i in range(1, 6):
        nodes[f"a{i}"] = dict(capacity=10_000, used=1_000 * i)
    objects = [obj("o1", k=2, n=3), obj("o2", k=2, n=4), obj("o3", k=1, n=2)]
    shards = [
        shard("o1", 0, "f", 100), shard("o1", 1, "a1", 100), shard("o1", 2, "a2", 100),
        shard("o2", 0, "f", 200), shard("o2", 1, "a1", 200), shard("o2", 2, "a3", 200), shard("o2", 3, "f", 200),
        shard("o3", 0, "f", 300), shard("o3", 1, "a4", 300),
    ]
    build_cluster(root, nodes, objects, shards, **kw)


def test_plan_places_every_shard_without_co_location_fewest_healthy_first(tmp_path):
    small_cluster(tmp_path)
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D2))
    rows = res.plan.to_pylist()
    assert [(r["object_id"], r["shard_index"], r["healthy_shards_before"]) for r in rows] == [
        ("o3", 0, 1), ("o1", 0, 2), ("o2", 0, 2), ("o2", 3, 2)]  # fewest healthy first, ties by object_id
    assert all(r["to_node_id"] and r["reason"] is None and r["from_node_id"] == "f" for r in rows)
    holders = {}
    for r in res.holders.to_pylist():
        holders.setdefault(r["object_id"], set()).add(r["node_id"])
    for r in rows:
        assert r["to_node_id"] not in holders[r["object_id"]] | {"f"}
    o2 = [r["to_node_id"] for r in rows if r["object_id"] == "o2"]
    assert len(set(o2)) == 2  # two shards of one object never go to the same node
    assert co_located_objects(res.plan, res.holders) == 0
    assert res.plan_date == res.aegis_date == day(D2) and res.failed_node_status == "failed"
    assert res.balance["balance_nodes"] == 5
    assert res.balance["utilization_cv_after"] is not None


def test_plan_is_deterministic_and_independent_of_row_order(tmp_path):
    small_cluster(tmp_path / "a")
    small_cluster(tmp_path / "b", shuffle_seed=7)
    p1 = plan_redistribution(ExportReader(tmp_path / "a"), "f", day(D2), day(D2))
    p2 = plan_redistribution(ExportReader(tmp_path / "a"), "f", day(D2), day(D2))
    p3 = plan_redistribution(ExportReader(tmp_path / "b"), "f", day(D2), day(D2))
    assert p1.plan.equals(p2.plan) and p1.plan.equals(p3.plan)
    assert p1.balance == p3.balance


def test_plan_uses_newest_snapshot_on_or_after_failure(tmp_path):
    small_cluster(tmp_path)  # D2
    # D3: o1's shard already moved off f by the engine; f still holds the rest
    nodes = {"f": dict(status="failed", capacity=10_000, used=500)} | {f"a{i}": dict(capacity=10_000, used=1_000 * i) for i in range(1, 6)}
    build_cluster(tmp_path, nodes, [obj("o1", k=2, n=3), obj("o3", k=1, n=2)],
                  [shard("o1", 0, "a5", 100), shard("o1", 1, "a1", 100), shard("o1", 2, "a2", 100),
                   shard("o3", 0, "f", 300), shard("o3", 1, "a4", 300)], d=D3)
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D4))
    assert res.plan_date == day(D3)
    assert [(r["object_id"], r["shard_index"]) for r in res.plan.to_pylist()] == [("o3", 0)]
    with pytest.raises(BadInput, match="no snapshot"):
        plan_redistribution(ExportReader(tmp_path), "f", day(D4), day(D4))


def test_unplaceable_shards_are_reported_with_a_reason(tmp_path):
    nodes = {"f": dict(status="failed"), "a1": dict(capacity=1000, used=100), "a2": dict(capacity=1000, used=950),
             "a3": dict(capacity=1000, used=100), "u": dict(capacity=10**9, used=0)}
    objects = [obj("big", k=1, n=2), obj("crowd", k=1, n=4), obj("lost", k=3, n=4), obj("gone", deleted=True), obj("ok", k=1, n=2)]
    shards = [
        shard("big", 0, "f", 900), shard("big", 1, "a1", 900),  # only a2 (50 free) and a3 (900 free -> ok?)
        shard("crowd", 0, "f", 10), shard("crowd", 1, "a1", 10), shard("crowd", 2, "a2", 10), shard("crowd", 3, "a3", 10),
        shard("lost", 0, "f", 10), shard("lost", 1, "a1", 10), shard("lost", 2, "x-unknown", 10),
        shard("gone", 0, "f", 10), shard("gone", 1, "a1", 10),
        shard("orphan", 0, "f", 10),
        shard("ok", 0, "f", 10), shard("ok", 1, "a1", 10),
    ]
    build_cluster(tmp_path, nodes, objects, shards, unverified={"u"})
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D2))
    got = {(r["object_id"], r["shard_index"]): (r["to_node_id"], r["reason"]) for r in res.plan.to_pylist()}
    assert got[("crowd", 0)] == (None, REASON_CO_LOCATION)  # every verified node holds one; u is unverified
    assert got[("lost", 0)] == (None, REASON_UNRECOVERABLE)  # 1 healthy < k=3
    assert got[("gone", 0)] == (None, REASON_NOT_LIVE)
    assert got[("orphan", 0)] == (None, REASON_NOT_LIVE)
    assert got[("ok", 0)][0] in {"a2", "a3"}
    assert got[("big", 0)][0] == "a3" or got[("big", 0)] == (None, REASON_CAPACITY)
    assert "u" not in {to for to, _ in got.values()}

    # capacity: the only verified candidate without a shard of the object cannot take it
    root2 = tmp_path / "cap"
    build_cluster(root2, {"f": dict(status="failed"), "a1": dict(capacity=1000, used=0), "a2": dict(capacity=1000, used=990)},
                  [obj("o", k=1, n=2)], [shard("o", 0, "f", 500), shard("o", 1, "a1", 500)])
    r2 = plan_redistribution(ExportReader(root2), "f", day(D2), day(D2)).plan.to_pylist()
    assert [(r["to_node_id"], r["reason"]) for r in r2] == [(None, REASON_CAPACITY)]

    # no AEGIS data for the day (an empty proofs partition): nobody is verified
    root3 = tmp_path / "noproofs"
    build_cluster(root3, {"f": dict(status="failed"), "a1": {}}, [obj("o", k=1, n=2)],
                  [shard("o", 0, "f", 5), shard("o", 1, "f", 5)], proofs_day=D1)
    # v1.1: day partitions are complete, so a proofs day missing after the first is bad input
    with pytest.raises(BadInput, match=r"table 'proofs'.*missing partition date=2026-03-03 .*first missing day 2026-03-03"):
        plan_redistribution(ExportReader(root3), "f", day(D2), day(D2))
    write(root3, "proofs", [], D2)
    r3 = plan_redistribution(ExportReader(root3), "f", day(D2), day(D2)).plan.to_pylist()
    assert {r["reason"] for r in r3} == {REASON_UNRECOVERABLE}  # both shards on f: 0 healthy < k
    shutil.rmtree(root3)
    build_cluster(root3, {"f": dict(status="failed"), "a1": {}, "a2": {}}, [obj("o", k=1, n=2)],
                  [shard("o", 0, "f", 5), shard("o", 1, "a1", 5)], proofs_day=D1)
    write(root3, "proofs", [], D2)
    r3 = plan_redistribution(ExportReader(root3), "f", day(D2), day(D2))
    assert [r["reason"] for r in r3.plan.to_pylist()] == [REASON_NO_VERIFIED] and r3.candidates == 0


def test_a_full_cluster_is_unplaceable_for_capacity_not_for_aegis(tmp_path):
    """Every node that passes AEGIS is full (used == capacity): the shard has no target because no
    verified node has free capacity (add capacity), not because no node passes AEGIS (fix AEGIS)."""
    build_cluster(tmp_path, {"f": dict(status="failed"), "a1": dict(capacity=1000, used=1000), "a2": {}},
                  [obj("o", k=1, n=2)], [shard("o", 0, "f", 5), shard("o", 1, "a2", 5)], unverified={"a2"})
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D2))
    assert res.aegis.filter(res.aegis.column("verified")).column("node_id").to_pylist() == ["a1"]
    assert [(r["to_node_id"], r["reason"]) for r in res.plan.to_pylist()] == [(None, REASON_CAPACITY)]
    assert res.candidates == 0  # eligible receivers need free capacity


def test_rendezvous_weights_follow_free_capacity():
    hits = {"a": 0, "b": 0}
    for i in range(4000):
        p = RendezvousPlanner([("a", 3 * 10**12), ("b", 10**12)])
        to, _ = p.place(f"obj{i}", 0, 1, [])
        hits[to] += 1
    assert 0.70 < hits["a"] / 4000 < 0.80  # ~3:1, as the weights


def test_full_verified_nodes_never_receive_a_shard_but_decide_the_reason():
    """A verified node without free capacity (0 or less) takes no shard, not even one of 0 bytes;
    a shard that only full nodes could take is unplaceable for capacity; where every verified
    node holds a shard of the object, the reason is co-location, full or not."""
    planner = RendezvousPlanner([("full0", 0), ("over", -5), ("room", 100)])
    assert planner.place("o", 0, 0, ["room"]) == (None, REASON_CAPACITY)
    assert planner.place("o", 1, 10, ["room"]) == (None, REASON_CAPACITY)
    assert planner.place("p", 0, 0, []) == ("room", None)
    assert planner.place("q", 0, 1, ["room", "full0", "over"]) == (None, REASON_CO_LOCATION)
    only_full = RendezvousPlanner([("full0", 0)])
    assert only_full.place("o", 0, 1, []) == (None, REASON_CAPACITY)
    assert RendezvousPlanner([]).place("o", 0, 1, []) == (None, REASON_NO_VERIFIED)


def test_the_runbook_explains_every_reason_the_planner_writes():
    """docs/runbooks/node-failure.md's table of unplaceable reasons quotes the plan's ``reason``
    values exactly (operators filter on them)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "runbooks" / "node-failure.md").read_text()
    table = text.split("| unplaceable `reason` |", 1)[1].split("\n\n", 1)[0]
    quoted = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    assert quoted == [REASON_NOT_LIVE, REASON_UNRECOVERABLE, REASON_NO_VERIFIED, REASON_CO_LOCATION, REASON_CAPACITY]


@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 7))
    free = draw(st.lists(st.integers(0, 400), min_size=n_nodes, max_size=n_nodes))
    n_objects = draw(st.integers(1, 8))
    objects = []
    for o in range(n_objects):
        n_shards = draw(st.integers(1, 4))
        holders = draw(st.lists(st.integers(0, n_nodes - 1), max_size=3, unique=True))
        sizes = draw(st.lists(st.integers(1, 150), min_size=n_shards, max_size=n_shards))
        objects.append((f"o{o}", sizes, [f"n{h}" for h in holders]))
    return [(f"n{i}", f) for i, f in enumerate(free)], objects


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_planner_never_co_locates_and_respects_capacity(cluster):
    nodes, objects = cluster
    planner = RendezvousPlanner(nodes)
    free = dict(nodes)
    for oid, sizes, holders in objects:
        chosen = []
        for i, b in enumerate(sizes):
            to, reason = planner.place(oid, i, b, holders)
            if to is None:
                assert reason in (REASON_CO_LOCATION, REASON_CAPACITY)
                eligible = [n for n, _ in nodes if n not in holders and n not in chosen]
                assert (reason == REASON_CO_LOCATION) == (not eligible)
                assert all(free[n] < b for n in eligible)  # nothing that could take it was skipped
            else:
                assert to not in holders and to not in chosen
                assert free[to] >= b
                free[to] -= b
                chosen.append(to)
    assert all(f >= 0 for f in free.values())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.integers(0, 3))
def test_plan_on_exports_never_co_locates_and_respects_capacity(cluster, n_failed_shards):
    nodes, objects = cluster
    root = Path(tempfile.mkdtemp(prefix="nf-prop-"))
    try:
        node_rows = {"f": dict(status="failed", capacity=1000, used=0)}
        node_rows |= {n: dict(capacity=1000, used=1000 - free) for n, free in nodes}
        obj_rows, shard_rows = [], []
        for oid, sizes, holders in objects:
            k_failed = min(len(sizes), max(1, n_failed_shards))
            layout = ["f"] * k_failed + holders
            obj_rows.append(obj(oid, k=1, n=len(layout)))
            shard_rows += [shard(oid, i, n, sizes[i % len(sizes)]) for i, n in enumerate(layout)]
        build_cluster(root, node_rows, obj_rows, shard_rows)
        res = plan_redistribution(ExportReader(root), "f", day(D2), day(D2))
        again = plan_redistribution(ExportReader(root), "f", day(D2), day(D2))
        assert res.plan.equals(again.plan)
        assert co_located_objects(res.plan, res.holders) == 0
        receivers = receivers_table(ExportReader(root), res, day(D2), NodeHealthParams())
        assert not any(receivers.column("over_capacity").to_pylist())
        assert all(receivers.column("verified").to_pylist())
        healthy = res.plan.column("healthy_shards_before").to_pylist()
        keys = list(zip(healthy, res.plan.column("object_id").to_pylist(), res.plan.column("shard_index").to_pylist()))
        assert keys == sorted(keys)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_independent_checks_catch_a_bad_plan(tmp_path):
    """The response's checks do not trust the planner: a hand-made bad plan is caught."""
    nodes = {"f": dict(status="failed"), "a1": dict(capacity=1000, used=900), "a2": {}, "u": {}}
    build_cluster(tmp_path, nodes, [obj("o", k=1, n=3)], [shard("o", 0, "f", 60), shard("o", 1, "f", 60), shard("o", 2, "a2", 60)],
                  unverified={"u"})
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D2))
    bad = res.plan.set_column(res.plan.schema.get_field_index("to_node_id"), "to_node_id",
                              pa.array(["a1", "a1"]))
    assert co_located_objects(bad, res.holders) == 1
    bad2 = res.plan.set_column(res.plan.schema.get_field_index("to_node_id"), "to_node_id",
                               pa.array(["a2", "u"]))
    assert co_located_objects(bad2, res.holders) == 1  # a2 already holds o/2
    res.plan = bad
    rec = receivers_table(ExportReader(tmp_path), res, day(D2), NodeHealthParams()).to_pylist()
    assert rec == [{"node_id": "a1", "planned_shards": 2, "planned_bytes": 120, "capacity_bytes": 1000, "used_bytes": 900,
                    "free_after_bytes": -20, "over_capacity": True, "verified": True, "reasons": ""}]
    res.plan = bad2
    rec = {r["node_id"]: r for r in receivers_table(ExportReader(tmp_path), res, day(D2), NodeHealthParams()).to_pylist()}
    assert rec["u"]["verified"] is False and rec["u"]["reasons"] == "no challenge issued"


def test_independent_checks_pass_a_receiver_filled_to_the_byte_and_ignore_the_snapshots_own_pairs(tmp_path):
    """capacity_respected fails on used + planned > capacity: a receiver filled exactly is within it.
    no_co_location counts objects where a *planned* shard shares a node: two shards the snapshot
    already had on one node (and the plan leaves alone) are not the plan's co-location."""
    nodes = {"f": dict(status="failed"), "a1": dict(capacity=1000, used=880), "a2": {}}
    build_cluster(tmp_path, nodes, [obj("o", k=1, n=3)],
                  [shard("o", 0, "f", 120), shard("o", 1, "a2", 60), shard("o", 2, "a2", 60)])
    res = plan_redistribution(ExportReader(tmp_path), "f", day(D2), day(D2))
    assert res.plan.select(["object_id", "shard_index", "to_node_id"]).to_pylist() == [
        {"object_id": "o", "shard_index": 0, "to_node_id": "a1"}]  # a2 holds o: a1 is the only receiver
    assert co_located_objects(res.plan, res.holders) == 0
    rec = receivers_table(ExportReader(tmp_path), res, day(D2), NodeHealthParams()).to_pylist()
    assert [(r["node_id"], r["free_after_bytes"], r["over_capacity"]) for r in rec] == [("a1", 0, False)]
    m = respond_to_failure(ExportReader(tmp_path), FailureEvent("f", ts(D2, 1), None, "snapshot"), day(D2)).metrics
    assert (m["receivers_over_capacity"], m["co_located_objects"]) == (0, 0)


# -- the response --------------------------------------------------------------------------------------
def reward(rid, node_id, at, kind="storage", amount=1000, epoch=1):
    return {"reward_id": rid, "ts": at, "epoch": epoch, "node_id": node_id, "kind": kind, "amount_nod": amount}


def test_clawback_sums_exactly_the_rewards_after_failure(tmp_path):
    failure = FailureEvent("f", ts(D2, 10, 17), 7, "eqm")
    write(tmp_path, "rewards", [
        reward("r1", "f", ts(D1, 23, 50), amount=5),  # before the failure day
        reward("r2", "f", ts(D2, 10, 16, 59), amount=7),  # same day, one second before
        reward("r3", "f", ts(D2, 10, 17), amount=11),  # exactly at failed_at: clawed back
        reward("r4", "f", ts(D2, 23, 50), "proof", 13),
        reward("r5", "f", ts(D2, 23, 51), "adjustment", -11),  # adjustments are not clawed back
        reward("r6", "other", ts(D2, 23, 50), amount=17),
    ], D2)
    write(tmp_path, "rewards", [reward("r0", "f", ts(D1, 9), amount=3)], D1)
    write(tmp_path, "rewards", [], D3)  # a day without rewards: an empty partition (v1.1)
    write(tmp_path, "rewards", [reward("r7", "f", ts(D4, 23, 50), amount=19)], D4)
    write(tmp_path, "rewards", [reward("r8", "f", ts("2026-03-06", 1), amount=23)], "2026-03-06")  # after as_of
    table, totals = reward_adjustments(ExportReader(tmp_path), failure, day(D4))
    rows = table.to_pylist()
    # r3 (11) was already clawed back by the adjustment r5 (-11): netted out of the proposal, oldest first
    assert [r["clawed_reward_id"] for r in rows] == ["r4", "r7"]
    assert [r["amount_nod"] for r in rows] == [-13, -19] and [r["netted_nod"] for r in rows] == [0, 0]
    assert all(r["kind"] == "adjustment" and r["node_id"] == "f" for r in rows)
    assert totals["clawback_gross_nod"] == 43 and totals["clawback_nod"] == 32 == -sum(r["amount_nod"] for r in rows)
    assert totals["rewards_clawed_back"] == 2 and totals["rewards_already_clawed_back"] == 1
    assert totals["existing_adjustments_nod"] == -11
    assert totals["reward_days_read"] == [D2, D3, D4]
    assert "already clawed back by 1 adjustment(s)" in totals["netting_note"]


def test_clawback_is_net_of_adjustments_paid_later_and_partial_ones(tmp_path):
    """An adjustment already paid for the failure counts whenever it was paid, even after as_of; a
    partial one leaves the rest proposed; one after the node's next failure belongs to that one."""
    failure = FailureEvent("f", ts(D2, 10), None, "eqm")
    write(tmp_path, "rewards", [reward("r1", "f", ts(D2, 23, 50), amount=100),
                                reward("r2", "f", ts(D2, 23, 55), "proof", 50)], D2)
    write(tmp_path, "rewards", [reward("a1", "f", ts(D3, 9), "adjustment", -120)], D3)  # paid after as_of = D2
    table, totals = reward_adjustments(ExportReader(tmp_path), failure, day(D2))
    assert [(r["clawed_reward_id"], r["amount_nod"], r["netted_nod"]) for r in table.to_pylist()] == [("r2", -30, 20)]
    assert (totals["clawback_gross_nod"], totals["clawback_nod"], totals["existing_adjustments_nod"]) == (150, 30, -120)
    # without that adjustment the whole 150 is proposed (the check fails if netting is removed)
    write(tmp_path, "rewards", [], D3)
    _, totals = reward_adjustments(ExportReader(tmp_path), failure, day(D2))
    assert totals["clawback_nod"] == 150 and totals["existing_adjustments"] == 0


def test_respond_to_failure_end_to_end(tmp_path):
    small_cluster(tmp_path)
    write(tmp_path, "rewards", [reward("r1", "f", ts(D2, 23, 50), amount=100), reward("r2", "a1", ts(D2, 23, 50))], D2)
    failure = FailureEvent("f", ts(D2, 10), None, "eqm")
    r = respond_to_failure(ExportReader(tmp_path), failure, day(D2))
    m = r.metrics
    assert (r.activity, r.partition, r.evidence_key) == ("node_failure_response", D2, "f_20260303")
    assert (r.window_start, r.window_end) == (ts(D2, 10), ts(D3))
    assert m["shards_to_move"] == 4 and m["bytes_to_move"] == 800 and m["shards_unplaceable"] == 0
    assert m["receiving_nodes"] == m["receivers_verified"] >= 2 and m["receivers_unverified"] == 0
    assert m["co_located_objects"] == 0 and m["receivers_over_capacity"] == 0
    assert m["clawback_nod"] == 100 and m["rewards_clawed_back"] == 1
    for k in ("utilization_cv_before", "utilization_cv_after", "utilization_max_over_mean_before", "utilization_max_over_mean_after"):
        assert isinstance(m[k], float)
    assert r.extra["reward_exclusion"] == {"node_id": "f", "excluded_from": ts(D2, 10), "until": "active again",
                                           "failure_id": "f_20260303"}
    assert set(r.tables) == {"node_failure_plan", "node_failure_receivers", "node_failure_reward_adjustments"}
    assert r.judge_table.num_rows == 1
    row = r.judge_table.to_pylist()[0]
    verdicts = [Criterion(s.name, all(rule.holds(row[rule.column]) for rule in s.rules), row[s.observed[0]], s.threshold)
                for s in r.criteria_specs]
    assert [(c.name, c.passed) for c in verdicts] == [
        ("all_shards_placed", True), ("receivers_verified", True), ("no_co_location", True), ("capacity_respected", True)]
    path = EvidenceStore(tmp_path / "evidence").publish(r, verdicts)
    assert path.name == "f_20260303.json"
    assert pq.read_table(tmp_path / "evidence" / "node_failure_plan" / "partition_key=f_20260303" / "part-0.parquet").num_rows == 4
    with pytest.raises(ValueError):
        respond_to_failure(ExportReader(tmp_path), failure, day(D1))


def test_response_fails_all_shards_placed_when_nothing_qualifies(tmp_path):
    build_cluster(tmp_path, {"f": dict(status="failed"), "a1": {}}, [obj("o", k=1, n=2)],
                  [shard("o", 0, "f", 5), shard("o", 1, "a1", 5)])
    r = respond_to_failure(ExportReader(tmp_path), FailureEvent("f", ts(D2, 1), 3, "eqm"), day(D2))
    row = r.judge_table.to_pylist()[0]
    passed = {s.name: all(rule.holds(row[rule.column]) for rule in s.rules) for s in r.criteria_specs}
    assert passed == {"all_shards_placed": False, "receivers_verified": True, "no_co_location": True, "capacity_respected": True}
    assert r.metrics["unplaceable_by_reason"] == {REASON_CO_LOCATION: 1}
