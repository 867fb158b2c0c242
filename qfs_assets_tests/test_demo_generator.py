"""Tests of the demo deployment generator (qfs_assets.demo).

One small deployment (24 nodes, 300 objects, 42 days: the whole incident schedule) is
generated twice per module; everything else reads it back and re-derives what it claims
with straightforward, independent code (a reference fold of the EQM log, plain Python
metrics), never with the generator's own helpers.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from qfs_assets.contract import hashing
from qfs_assets.contract.schema import EVENT_TYPES, SOR_COLUMNS, TABLES
from qfs_assets.demo.generator import (
    DEFAULT_INCIDENT_DATES,
    DIFF_CATEGORIES,
    INCIDENT_PLAN,
    DemoConfig,
    DriftSpec,
    generate,
    incident_list,
)
from qfs_assets.demo.sor_writer import SOR_ARROW_SCHEMA, normalize_url, read_sor, write_sor

PG_URL = os.environ.get("QFS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

CFG = DemoConfig(
    nodes=24,
    objects=200,
    days=42,
    writes_per_day=8,
    updates_per_day=5,
    deletes_per_day=2,
    reads_per_day=25,
    renews_per_day=12,
    accounts=30,
    seed=7,
)
UTC = timezone.utc


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo_a"), CFG)


@pytest.fixture(scope="module")
def dep_again(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo_b"), CFG)


def _read(dep, table: str, day: date | None = None) -> pa.Table:
    return pq.read_table(dep.partition_path(table, day))


def _rows(dep, table: str, day: date | None = None) -> list[dict]:
    return _read(dep, table, day).to_pylist()


@pytest.fixture(scope="module")
def log(dep):
    """The whole EQM log as (date, row) in seq order."""
    out = []
    for d in dep.days:
        for r in _read(dep, "eqm", d).to_pylist():
            out.append((d, r))
    return out


@pytest.fixture(scope="module")
def fold(dep, log):
    """An independent, straightforward re-application of the log (the contract's effect table).

    Returns {seq: (roots dict, state copy)} for every checkpoint seq, plus the moves checked.
    """
    cps = {r["seq"]: r for r in _rows(dep, "checkpoints")}
    nodes, objects, shards, ledger = {}, {}, {}, {}
    obj_idx = defaultdict(set)
    txs, rids = set(), set()
    at_cp = {}
    bad_moves = []
    snapshot_checks = {}

    def party(pid):
        return ledger.setdefault(pid, {"party_id": pid, "atr_paid": 0, "nod_earned": 0})

    for _d, ev in log:
        p = json.loads(ev["payload"])
        t = ev["event_type"]
        if t == "node_registered":
            assert p["node_id"] not in nodes
            nodes[p["node_id"]] = {**p, "status": "active"}
        elif t == "node_status_changed":
            assert p["node_id"] in nodes
            nodes[p["node_id"]] = {**nodes[p["node_id"]], "status": p["status"]}
        elif t == "object_written":
            old = objects.get(p["object_id"])
            assert old is None or p["version"] > old["version"]
            objects[p["object_id"]] = {**p, "deleted": False}
        elif t == "object_deleted":
            old = objects[p["object_id"]]
            objects[p["object_id"]] = {**old, "deleted": True, "version": p["version"]}
            for idx in obj_idx.pop(p["object_id"], set()):
                del shards[(p["object_id"], idx)]
        elif t == "shard_placed":
            assert p["object_id"] in objects and p["node_id"] in nodes
            shards[(p["object_id"], p["shard_index"])] = dict(p)
            obj_idx[p["object_id"]].add(p["shard_index"])
        elif t == "shard_moved":
            key = (p["object_id"], p["shard_index"])
            assert shards[key]["node_id"] == p["from_node_id"]
            others = {shards[(key[0], i)]["node_id"] for i in obj_idx[key[0]] if i != key[1]}
            if p["to_node_id"] in others or nodes[p["to_node_id"]]["status"] not in ("active", "degraded"):
                bad_moves.append(p)
            shards[key] = {**shards[key], "node_id": p["to_node_id"]}
        elif t == "fee_charged":
            assert p["tx_id"] not in txs
            txs.add(p["tx_id"])
            party(p["account_id"])["atr_paid"] += p["amount_atr"]
        elif t == "reward_paid":
            assert p["reward_id"] not in rids and p["node_id"] in nodes
            rids.add(p["reward_id"])
            party(p["node_id"])["nod_earned"] += p["amount_nod"]
        else:
            raise AssertionError(t)
        if ev["seq"] in cps:
            roots = {
                "nodes_root": hashing.component_root(nodes.values()),
                "objects_root": hashing.component_root(objects.values()),
                "shards_root": hashing.component_root(shards.values()),
                "ledger_root": hashing.component_root(ledger.values()),
            }
            roots["state_root"] = hashing.state_root(
                roots["nodes_root"], roots["objects_root"], roots["shards_root"], roots["ledger_root"]
            )
            at_cp[ev["seq"]] = roots
            # The day's snapshots against the state of the log at the day's last event.
            d = _d
            snap_nodes = {
                r["node_id"]: {k: r[k] for k in ("node_id", "region", "capacity_bytes", "stake_nod", "status")}
                for r in _rows(dep, "nodes", d)
            }
            snap_objects = {
                r["object_id"]: {k: r[k] for k in ("object_id", "version", "content_hash", "size_bytes",
                                                   "data_shards", "total_shards", "deleted")}
                for r in _rows(dep, "objects", d)
            }
            snap_shards = {(r["object_id"], r["shard_index"]): r for r in _rows(dep, "shards", d)}
            snapshot_checks[d] = (snap_nodes == nodes, snap_objects == objects, snap_shards == shards)
    return {"at": at_cp, "bad_moves": bad_moves, "cps": cps, "snapshots": snapshot_checks}


# --------------------------------------------------------------------------- determinism & layout


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_export(dep, dep_again):
    a, b = _files(dep.export_root), _files(dep_again.export_root)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert read_sor(dep.sor_url) == read_sor(dep_again.sor_url)
    assert dep.expected_dual_write_diffs == dep_again.expected_dual_write_diffs
    assert dep.final_state_root == dep_again.final_state_root
    ja = json.loads((dep.out_dir / "deployment.json").read_text())
    jb = json.loads((dep_again.out_dir / "deployment.json").read_text())
    for j in (ja, jb):
        j.pop("export_root"), j.pop("sor_url")
    assert ja == jb


def test_other_seed_differs(dep, tmp_path):
    other = generate(tmp_path, replace(CFG, seed=8, days=2))
    assert _read(other, "eqm", other.days[1]) != _read(dep, "eqm", dep.days[1])


def test_layout_and_exact_schemas(dep):
    root = dep.export_root
    assert sorted(p.name for p in root.iterdir()) == sorted(TABLES)
    assert [p.name for p in (root / "checkpoints").iterdir()] == ["part-0.parquet"]
    for name, spec in TABLES.items():
        if spec.partition_column is None:
            paths = [root / name / "part-0.parquet"]
        else:
            folders = sorted(p.name for p in (root / name).iterdir())
            assert folders == [f"{spec.partition_column}={d.isoformat()}" for d in dep.days]
            for f in folders:
                assert [p.name for p in (root / name / f).iterdir()] == ["part-0.parquet"]
            paths = [root / name / f / "part-0.parquet" for f in folders]
        for path in paths:
            schema = pq.read_schema(path)
            assert schema.equals(spec.schema), (path, schema)
            assert [f.nullable for f in schema] == [c.nullable for c in spec.columns]
            assert spec.partition_column not in schema.names
        tbl = pq.read_table(paths[-1])
        for col, allowed in spec.allowed_values.items():
            assert set(tbl.column(col).to_pylist()) <= set(allowed)
    assert dep.row_counts["checkpoints"] == dep.checkpoint_count == len(dep.days)
    assert dep.row_counts["eqm"] == dep.event_count
    for name in TABLES:
        if TABLES[name].partition_column:
            assert dep.row_counts[name] == sum(pq.read_metadata(dep.partition_path(name, d)).num_rows for d in dep.days)


def test_keys_unique_and_required_columns_not_null(dep):
    for name, spec in TABLES.items():
        days = [None] if spec.partition_column is None else dep.days
        seen = set()
        for d in days:
            tbl = _read(dep, name, d)
            for c in spec.columns:
                if not c.nullable:
                    assert tbl.column(c.name).null_count == 0, (name, d, c.name)
            keys = list(zip(*(tbl.column(k).to_pylist() for k in spec.key)))
            if spec.partition_column == "snapshot_date":
                assert len(set(keys)) == len(keys), (name, d)
            else:
                assert not seen & set(keys), (name, d)
                seen |= set(keys)


# --------------------------------------------------------------------------- the log


def test_hash_chain_seq_and_ts(log):
    prev, last_ts = hashing.GENESIS_PREV_HASH, None
    for i, (d, ev) in enumerate(log):
        assert ev["seq"] == i
        assert ev["prev_hash"] == prev
        assert ev["event_hash"] == hashing.event_hash(prev, ev["seq"], ev["event_type"], ev["payload"])
        assert ev["ts"].date() == d  # partitioned by the event's day
        assert last_ts is None or ev["ts"] >= last_ts
        assert ev["payload"] == hashing.canonical_json(json.loads(ev["payload"]))
        prev, last_ts = ev["event_hash"], ev["ts"]
    assert {ev["event_type"] for _d, ev in log} == set(EVENT_TYPES)


def test_checkpoints_equal_roots_of_a_reference_fold(dep, log, fold):
    cps = fold["cps"]
    last_of_day = {}
    for d, ev in log:
        last_of_day[d] = ev
    assert sorted(cps) == [last_of_day[d]["seq"] for d in dep.days]  # one per day, at its last event
    for seq, cp in cps.items():
        roots = fold["at"][seq]
        assert cp["ts"] == log[seq][1]["ts"]
        for k, v in roots.items():
            assert cp[k] == v, (seq, k)
    assert dep.final_state_root == cps[max(cps)]["state_root"]


def test_snapshots_equal_the_state_of_the_log_at_each_day_end(dep, fold):
    # (nodes, objects, shards) snapshot == state of the reference fold at the day's last event
    assert fold["snapshots"] == {d: (True, True, True) for d in dep.days}


def test_shard_moves_go_to_in_service_nodes_without_a_sibling_shard(fold, log):
    assert fold["bad_moves"] == []
    assert sum(1 for _d, ev in log if ev["event_type"] == "shard_moved") > 0


def test_fee_and_reward_ledgers_equal_their_events(dep, log):
    by_day = defaultdict(lambda: {"fee_charged": [], "reward_paid": []})
    for d, ev in log:
        if ev["event_type"] in ("fee_charged", "reward_paid"):
            by_day[d][ev["event_type"]].append({**json.loads(ev["payload"]), "ts": ev["ts"]})
    for d in dep.days:
        fees = _rows(dep, "fees", d)
        assert fees == [{k: e[k] for k in TABLES["fees"].column_names} for e in by_day[d]["fee_charged"]]
        assert all(r["amount_atr"] > 0 for r in fees)
        rewards = _rows(dep, "rewards", d)
        assert rewards == [{k: e[k] for k in TABLES["rewards"].column_names} for e in by_day[d]["reward_paid"]]
        assert all(r["amount_nod"] > 0 for r in rewards if r["kind"] != "adjustment")
        assert {r["epoch"] for r in rewards} == {(d - dep.start).days + 1}


# --------------------------------------------------------------------------- realism / health


def _node_health(dep, d):
    nodes = _rows(dep, "nodes", d)
    shards = _rows(dep, "shards", d)
    objects = _rows(dep, "objects", d)
    proofs = _rows(dep, "proofs", d)
    end = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
    status = {n["node_id"]: n["status"] for n in nodes}
    in_service = [n for n in nodes if n["status"] in ("active", "degraded")]
    held = defaultdict(int)
    for s in shards:
        held[s["node_id"]] += s["shard_bytes"]
    per = defaultdict(lambda: [0, 0])
    for p in proofs:
        per[p["node_id"]][0] += 1
        per[p["node_id"]][1] += p["outcome"] == "passed"
        assert (p["latency_ms"] is None) == (p["outcome"] == "timeout")
    verified = [
        n["node_id"] for n in in_service
        if n["last_heartbeat"] >= end - timedelta(hours=1) and n["stake_nod"] >= 1000 * 10**8
        and n["used_bytes"] <= n["capacity_bytes"] and per[n["node_id"]][0] >= 1
        and per[n["node_id"]][1] >= 0.95 * per[n["node_id"]][0]
    ]
    util = [held[n["node_id"]] / n["capacity_bytes"] for n in in_service]
    mean = statistics.mean(util)
    healthy = defaultdict(int)
    for s in shards:
        healthy[s["object_id"]] += status[s["node_id"]] in ("active", "degraded")
    live = [o for o in objects if not o["deleted"]]
    return {
        "nodes": nodes, "shards": shards, "objects": objects, "held": held,
        "verified_ratio": len(verified) / len(in_service),
        "unverified": sorted(set(n["node_id"] for n in in_service) - set(verified)),
        "proof_rate": sum(v[1] for v in per.values()) / sum(v[0] for v in per.values()),
        "max_bad_per_node": max(v[0] - v[1] for v in per.values()),
        "cv": statistics.pstdev(util) / mean, "max_over_mean": max(util) / mean,
        "degraded": sum(1 for o in live if healthy[o["object_id"]] < o["total_shards"]),
        "unrecoverable": sum(1 for o in live if healthy[o["object_id"]] < o["data_shards"]),
    }


@pytest.fixture(scope="module")
def health(dep):
    return {d: _node_health(dep, d) for d in dep.days}


def test_daily_node_health_is_realistic_and_only_the_incidents_fail(dep, health):
    poor = dep.incident("poor_proofs").days[0]
    fail_day = dep.incident("node_failure").partitions[0]
    last_repair = dep.start + timedelta(days=INCIDENT_PLAN["node_failure"]["repair_days"][-1])
    for d, h in health.items():
        assert h["cv"] <= 0.25 and h["max_over_mean"] <= 1.5, d
        assert 0.02 < h["cv"], d  # balanced, but not unrealistically uniform
        assert h["unrecoverable"] == 0, d
        assert h["verified_ratio"] > 0.95, d
        assert h["unverified"] == list(dep.incident("understaked_node").node_ids), d
        assert h["max_bad_per_node"] <= 1, d
        assert (h["proof_rate"] > 0.99) == (d != poor), d
        # degraded objects from the failure until the last repair batch (20:00 on the last repair day)
        assert (h["degraded"] > 0) == (fail_day <= d < last_repair), d
        for n in h["nodes"]:
            assert n["used_bytes"] == h["held"][n["node_id"]] <= n["capacity_bytes"]
            assert 10**12 <= n["capacity_bytes"] <= 4 * 10**12
        # manifest and placement agree: live objects have shards 0..n-1 on distinct nodes
        by_obj = defaultdict(list)
        for s in h["shards"]:
            by_obj[s["object_id"]].append(s)
        for o in h["objects"]:
            got = by_obj.get(o["object_id"], [])
            if o["deleted"]:
                assert got == []
            else:
                assert sorted(s["shard_index"] for s in got) == list(range(o["total_shards"]))
                assert len({s["node_id"] for s in got}) == o["total_shards"]
                assert sum(s["shard_bytes"] for s in got) >= o["size_bytes"]
            assert o["updated_at"] < datetime.combine(d + timedelta(days=1), datetime.min.time(), UTC)


def test_node_failure_incident(dep, health):
    inc = dep.incident("node_failure")
    (node,) = inc.node_ids
    plan = INCIDENT_PLAN["node_failure"]
    fail_day = dep.start + timedelta(days=plan["day"])
    back_day = dep.start + timedelta(days=plan["recovery_day"])
    assert inc.partitions == (fail_day,) and inc.failing_criteria == ()
    status = {d: next(n["status"] for n in h["nodes"] if n["node_id"] == node) for d, h in health.items()}
    assert [d for d, s in status.items() if s != "active"] == [
        fail_day + timedelta(days=i) for i in range((back_day - fail_day).days)
    ]
    assert health[fail_day]["degraded"] > 0 and health[fail_day]["unrecoverable"] == 0
    last_repair = dep.start + timedelta(days=plan["repair_days"][-1])
    assert health[last_repair]["held"][node] == 0  # all its shards moved away
    assert health[back_day]["held"][node] > 0  # rebalanced back onto it


def _weekly_economics(dep):
    weeks = defaultdict(lambda: {"fees": 0, "rewards": 0, "to_failed": 0})
    status = {d: {n["node_id"]: n["status"] for n in _rows(dep, "nodes", d)} for d in dep.days}
    for d in dep.days:
        w = weeks[d - timedelta(days=d.weekday())]
        w["fees"] += sum(r["amount_atr"] for r in _rows(dep, "fees", d))
        for r in _rows(dep, "rewards", d):
            w["rewards"] += r["amount_nod"]
            if r["kind"] != "adjustment" and status[r["ts"].date()][r["node_id"]] in ("failed", "decommissioned"):
                w["to_failed"] += 1
    for w in weeks.values():
        buffer = max(0, math.ceil(w["fees"] * 500 / 10000))
        w["conservation"] = w["fees"] >= w["rewards"] + buffer
    return weeks


def test_economics_incidents(dep):
    weeks = _weekly_economics(dep)
    assert len(weeks) == 6
    overrun = dep.incident("reward_overrun")
    to_failed = dep.incident("reward_to_failed_node")
    assert overrun.partitions == (date(2026, 3, 23),) and len(overrun.days) == 7
    assert to_failed.partitions == (date(2026, 3, 9),)
    for monday, w in weeks.items():
        assert w["conservation"] == (monday != overrun.partitions[0]), monday
        if w["conservation"]:  # comfortably
            assert w["fees"] - w["rewards"] > 0.2 * w["fees"]
        assert w["to_failed"] == (1 if monday == to_failed.partitions[0] else 0), monday
    # the erroneous reward is clawed back the next day
    node = to_failed.node_ids[0]
    adj = [r for d in dep.days for r in _rows(dep, "rewards", d) if r["kind"] == "adjustment"]
    assert len(adj) == 1 and adj[0]["node_id"] == node and adj[0]["amount_nod"] < 0
    assert adj[0]["ts"].date() == to_failed.days[-1]


def test_incident_list_and_default_dates(dep, tmp_path):
    names = [i.name for i in dep.incidents]
    assert sorted(names) == sorted(INCIDENT_PLAN)
    d = {i.name: i for i in incident_list(DemoConfig())}
    assert d["node_failure"].days[0] == date(2026, 3, 11) and d["node_failure"].days[-1] == date(2026, 3, 16)
    assert d["node_failure"].node_ids == ("node-0007",)
    assert d["poor_proofs"].days == (date(2026, 3, 18),)
    assert d["reward_overrun"].days[0] == date(2026, 3, 23) and d["reward_overrun"].days[-1] == date(2026, 3, 29)
    assert d["understaked_node"].node_ids == ("node-0040",)
    assert d["maintenance"].days == (date(2026, 4, 1), date(2026, 4, 2))
    for name in ("node_failure", "reward_to_failed_node", "poor_proofs", "reward_overrun", "maintenance"):
        assert d[name].days[0].isoformat() in DEFAULT_INCIDENT_DATES[name], name
        assert d[name].days[-1].isoformat() in DEFAULT_INCIDENT_DATES[name], name
    # switches
    off = incident_list(replace(DemoConfig(), poor_proofs=False, reward_overrun=False))
    assert {"poor_proofs", "reward_overrun"}.isdisjoint(i.name for i in off)


def test_config_validation():
    with pytest.raises(ValueError):
        DemoConfig(nodes=6).validate()  # 6 shards + a spare node for the failure
    with pytest.raises(ValueError):
        DemoConfig(challenges_per_node=25).validate()
    DemoConfig(nodes=6, node_failure=False).validate()


def test_without_incidents_everything_is_healthy(tmp_path):
    dep = generate(tmp_path, replace(CFG, days=14, objects=120).without_incidents())
    assert dep.incidents == [] and dep.expected_dual_write_diffs == {}
    assert dep.live_sor_diffs(dep.end) == {}
    for d in dep.days:
        h = _node_health(dep, d)
        assert h["verified_ratio"] == 1.0 and h["proof_rate"] > 0.99 and h["degraded"] == 0, d
        assert h["cv"] <= 0.25 and h["max_over_mean"] <= 1.5, d
        assert {r["kind"] for r in _rows(dep, "rewards", d)} == {"storage", "proof"}
    weeks = _weekly_economics(dep)
    assert all(w["conservation"] and w["to_failed"] == 0 for w in weeks.values())
    types = {json.loads(p)["status"] for d in dep.days
             for t, p in zip(_read(dep, "eqm", d).column("event_type").to_pylist(),
                             _read(dep, "eqm", d).column("payload").to_pylist()) if t == "node_status_changed"}
    assert types == set()


# --------------------------------------------------------------------------- system of record


def _diffs(sor: pa.Table, manifest: pa.Table, day: date) -> dict[str, str]:
    """The dual-write comparison restated as set algebra over object ids: deliberately a
    different formulation from the product's (qfs_assets.activities.dual_write.classify, an
    ordered rule table applied to one pair of rows), so that a slip in one does not hide in
    the other."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    s = {r["object_id"]: r for r in sor.to_pylist()}
    m = {r["object_id"]: r for r in manifest.to_pylist()}
    fly = {k for side in (s, m) for k, r in side.items() if r["updated_at"] >= end}
    s_live = {k for k, r in s.items() if not r["deleted"]} - fly
    m_live = {k for k, r in m.items() if not r["deleted"]} - fly
    both = {k for k in (s.keys() & m.keys()) - fly if not (s[k]["deleted"] and m[k]["deleted"])}
    version = {k for k in both if s[k]["version"] != m[k]["version"]}
    fields = ("content_hash", "size_bytes", "data_shards", "total_shards", "deleted")
    content = {k for k in both - version if any(s[k][f] != m[k][f] for f in fields)}
    out = {k: "in_flight" for k in fly}
    out |= {k: "missing_in_storage" for k in s_live - m.keys()}
    out |= {k: "missing_in_sor" for k in m_live - s.keys()}
    out |= {k: "version_mismatch" for k in version}
    out |= {k: "content_mismatch" for k in content}
    return dict(sorted(out.items()))


def test_dual_write_drift_matches_expected_diffs(dep):
    sor = read_sor(dep.sor_url)
    assert sor.schema.equals(SOR_ARROW_SCHEMA)
    diffs = _diffs(sor, _read(dep, "objects", dep.end), dep.end)
    assert diffs == dep.expected_dual_write_diffs
    spec = DriftSpec()
    counts = {c: sum(1 for v in diffs.values() if v == c) for c in DIFF_CATEGORIES}
    assert counts == {"missing_in_storage": spec.missing_in_storage, "missing_in_sor": spec.missing_in_sor,
                      "version_mismatch": spec.version_mismatch, "content_mismatch": spec.content_mismatch,
                      "in_flight": spec.in_flight}
    inc = dep.incident("dual_write_drift")
    assert inc.partitions == (date(2026, 4, 1),) and set(inc.object_ids) == set(diffs)
    # the written SoR is exactly what sor_table() rebuilds
    assert dep.sor_table()[0] == sor


def test_live_sor_against_an_earlier_month_end(dep):
    day = date(2026, 3, 31)
    live = dep.live_sor_diffs(day)
    assert live == _diffs(read_sor(dep.sor_url), _read(dep, "objects", day), day)
    assert dep.live_sor_diffs(dep.end) == dep.expected_dual_write_diffs
    # objects written/updated/deleted in April are in flight against the March manifest
    assert sum(1 for v in live.values() if v == "in_flight") > DriftSpec().in_flight


def test_sor_as_of_an_earlier_day(dep):
    day = date(2026, 3, 31)
    tbl, diffs = dep.sor_table(as_of=day)
    assert _diffs(tbl, _read(dep, "objects", day), day) == diffs
    assert sum(1 for v in diffs.values() if v == "in_flight") == DriftSpec().in_flight
    clean, none = dep.sor_table(as_of=day, drift=False)
    assert none == {} and _diffs(clean, _read(dep, "objects", day), day) == {}


def test_sqlite_storage_format(dep):
    path = sa.engine.make_url(dep.sor_url).database
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT updated_at, deleted, typeof(updated_at) FROM qfs_objects LIMIT 5").fetchall()
        cols = [r[1] for r in con.execute("PRAGMA table_info(qfs_objects)")]
    finally:
        con.close()
    assert cols == list(SOR_COLUMNS)
    for ts, deleted, typ in rows:
        assert typ == "text" and ts.endswith("+00:00") and len(ts) == len("2026-04-12 23:10:00.000000+00:00")
        assert deleted in (0, 1)


def test_write_sor_from_plain_rows_roundtrip(tmp_path):
    url = f"sqlite:///{tmp_path / 'custom.sqlite'}"
    rows = [
        {"object_id": "b", "version": 2, "content_hash": "x", "size_bytes": 10, "data_shards": 4,
         "total_shards": 6, "updated_at": datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC), "deleted": False},
        {"object_id": "a", "version": 1, "content_hash": None, "size_bytes": 1, "data_shards": 1,
         "total_shards": 1, "updated_at": "2026-03-01T00:00:00+02:00", "deleted": True, "extra": 1},
    ]
    assert write_sor(url, rows) == 2
    back = read_sor(url).to_pylist()
    assert [r["object_id"] for r in back] == ["a", "b"]
    assert back[0]["updated_at"] == datetime(2026, 2, 28, 22, 0, tzinfo=UTC)
    assert back[0]["content_hash"] is None and back[0]["deleted"] is True
    assert back[1]["updated_at"] == datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert write_sor(url, rows[:1]) == 1  # drop + create
    assert read_sor(url).num_rows == 1
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"


def _pg_available() -> bool:
    try:
        eng = sa.create_engine(normalize_url(PG_URL))
        with eng.connect() as c:
            c.exec_driver_sql("select 1")
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _pg_available(), reason="PostgreSQL not reachable")
def test_sor_postgres_roundtrip_in_own_schema(dep):
    schema = f"qfs_demo_test_{uuid.uuid4().hex[:10]}"
    tbl, _ = dep.sor_table()
    eng = sa.create_engine(normalize_url(PG_URL))
    try:
        assert write_sor(PG_URL, tbl, schema=schema) == tbl.num_rows
        assert read_sor(PG_URL, schema=schema) == tbl
        with eng.connect() as c:
            types = dict(c.execute(sa.text(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = :s and table_name = 'qfs_objects'"), {"s": schema}).fetchall())
            pk = c.execute(sa.text(
                "select count(*) from information_schema.table_constraints "
                "where table_schema = :s and table_name = 'qfs_objects' and constraint_type = 'PRIMARY KEY'"),
                {"s": schema}).scalar()
        assert types == {"object_id": "text", "version": "bigint", "content_hash": "text", "size_bytes": "bigint",
                         "data_shards": "smallint", "total_shards": "smallint",
                         "updated_at": "timestamp with time zone", "deleted": "boolean"}
        assert pk == 1
        # as-of writes replace the table
        diffs = dep.write_sor_as_of(PG_URL, date(2026, 3, 31), schema=schema)
        assert read_sor(PG_URL, schema=schema) == dep.sor_table(date(2026, 3, 31))[0] and diffs
    finally:
        with eng.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        eng.dispose()
