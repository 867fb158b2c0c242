"""Tests of the replay engines (qfs_assets.replay): chain verification, effects, invalid events, roots.

Every test runs twice: on the frozen per-event reference engine, the oracle
(``qfs_assets_tests.reference_engine``), and on the columnar engine the drill uses
(``replay.columnar``), through the autouse ``engine`` fixture that binds this module's
``replay`` / ``ReplayEngine``. Tests of the reference engine's own machinery (its helper process,
its DuckDB parser) are marked ``reference_only``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qfs_assets.contract.hashing import (
    GENESIS_PREV_HASH,
    SetHash,
    canonical_json,
    component_root,
    event_hash,
    row_hash_int,
    state_root,
)
from qfs_assets.contract.schema import EQM
from qfs_assets.replay import (
    COMPONENT_FIELDS,
    EVENT_FIELDS,
    ReplayInputError,
    compare_checkpoints,
    parse_payload,
    row_text,
)
from qfs_assets_tests.reference_engine import ReplayEngine, replay  # the oracle; the fixture binds each engine

from qfs_assets.replay import columnar as _columnar  # noqa: E402

ENGINE = "reference"
_REFERENCE = (replay, ReplayEngine)


@pytest.fixture(autouse=True, params=["reference", "columnar"])
def engine(request, monkeypatch):
    """Run the test on each engine (see the module doc)."""
    global ENGINE
    if request.param == "columnar":
        if request.node.get_closest_marker("reference_only"):
            pytest.skip("tests the reference engine's own machinery")
        monkeypatch.setitem(globals(), "replay", _columnar.replay)
        monkeypatch.setitem(globals(), "ReplayEngine", _columnar.ColumnarEngine)
    else:
        monkeypatch.setitem(globals(), "replay", _REFERENCE[0])
        monkeypatch.setitem(globals(), "ReplayEngine", _REFERENCE[1])
    monkeypatch.setitem(globals(), "ENGINE", request.param)
    _base_result.cache_clear()
    yield request.param


T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
COMPONENTS = ("nodes", "objects", "shards", "ledger")
FAST_MODES = [True, False]  # DuckDB fast path always / reference parser only


# ------------------------------------------------------------------------------------- helpers


def build_log(events, start_ts=T0, step=dt.timedelta(seconds=1)) -> list[dict]:
    """A correct hash-chained log from (event_type, payload) pairs; a str payload is used verbatim."""
    rows, prev = [], GENESIS_PREV_HASH
    for seq, (et, payload) in enumerate(events):
        text = payload if isinstance(payload, str) else canonical_json(payload)
        h = event_hash(prev, seq, et, text)
        rows.append({"seq": seq, "ts": start_ts + seq * step, "event_type": et, "payload": text,
                     "prev_hash": prev, "event_hash": h})
        prev = h
    return rows


def rehash(rows: list[dict]) -> list[dict]:
    """Recompute seq-consistent hashes over rows as given (a tamperer covering tracks)."""
    prev, out = GENESIS_PREV_HASH, []
    for r in rows:
        r = dict(r, prev_hash=prev)
        r["event_hash"] = event_hash(prev, r["seq"], r["event_type"], r["payload"])
        prev = r["event_hash"]
        out.append(r)
    return out


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EQM.schema)


def batches_of(rows: list[dict], size: int) -> list[pa.RecordBatch]:
    return [b for i in range(0, len(rows), size) for b in to_table(rows[i:i + size]).to_batches()]


def run(rows, fast=True, **kw):
    return replay([to_table(rows)], fast_path=fast, **kw)


def reg(nid, region="eu", cap=10**12, stake=2000 * 10**8):
    return ("node_registered", {"node_id": nid, "region": region, "capacity_bytes": cap, "stake_nod": stake})


def write(oid, version=1, size=100, k=2, n=3, ch=None):
    return ("object_written", {"object_id": oid, "version": version, "content_hash": ch or f"c-{oid}-{version}",
                               "size_bytes": size, "data_shards": k, "total_shards": n})


def place(oid, idx, nid, nbytes=50):
    return ("shard_placed", {"object_id": oid, "shard_index": idx, "node_id": nid,
                             "shard_hash": f"h-{oid}-{idx}", "shard_bytes": nbytes})


def move(oid, idx, frm, to):
    return ("shard_moved", {"object_id": oid, "shard_index": idx, "from_node_id": frm, "to_node_id": to})


def delete(oid, version):
    return ("object_deleted", {"object_id": oid, "version": version})


def status(nid, s):
    return ("node_status_changed", {"node_id": nid, "status": s})


def fee(tx, acct, amt, oid=None, op="put"):
    return ("fee_charged", {"tx_id": tx, "account_id": acct, "object_id": oid, "operation": op, "amount_atr": amt})


def reward(rid, nid, amt, kind="storage", epoch=1):
    return ("reward_paid", {"reward_id": rid, "epoch": epoch, "node_id": nid, "kind": kind, "amount_nod": amt})


def roots_of(state: dict[str, list[dict]]) -> dict[str, str]:
    """Roots computed from scratch over a state given as rows, with hashing.component_root."""
    r = {c: component_root(state[c]) for c in COMPONENTS}
    r["state"] = state_root(r["nodes"], r["objects"], r["shards"], r["ledger"])
    return r


class Reference:
    """A naive, eager model of the contract (dict rows, SetHash.add/remove on every change)."""

    def __init__(self):
        self.comp = {c: {} for c in COMPONENTS}
        self.sh = {c: SetHash() for c in COMPONENTS}
        self.tx, self.rw = set(), set()
        self.invalid = []

    def _put(self, c, key, row):
        old = self.comp[c].get(key)
        if old is not None:
            self.sh[c].remove(old)
        if row is None:
            self.comp[c].pop(key, None)
        else:
            self.comp[c][key] = row
            self.sh[c].add(row)

    def roots(self):
        r = {c: self.sh[c].hex() for c in COMPONENTS}
        r["state"] = state_root(r["nodes"], r["objects"], r["shards"], r["ledger"])
        return r

    def apply(self, seq, et, text):
        p = parse_payload(et, text) if et in _FIELDS else "unknown event_type"
        if isinstance(p, str):
            self.invalid.append(seq)
            return
        p = dict(zip(_FIELDS[et], p))
        nodes, objs, shards, ledger = (self.comp[c] for c in COMPONENTS)
        bad = False
        if et == "node_registered":
            bad = p["node_id"] in nodes
            if not bad:
                self._put("nodes", p["node_id"], dict(p, status="active"))
        elif et == "node_status_changed":
            bad = p["node_id"] not in nodes or p["status"] not in ("active", "degraded", "failed", "decommissioned")
            if not bad:
                self._put("nodes", p["node_id"], dict(nodes[p["node_id"]], status=p["status"]))
        elif et == "object_written":
            old = objs.get(p["object_id"])
            bad = old is not None and p["version"] <= old["version"]
            if not bad:
                self._put("objects", p["object_id"], dict(p, deleted=False))
        elif et == "object_deleted":
            old = objs.get(p["object_id"])
            bad = old is None or p["version"] <= old["version"]
            if not bad:
                self._put("objects", p["object_id"], dict(old, deleted=True, version=p["version"]))
                for key in [k for k in shards if k[0] == p["object_id"]]:
                    self._put("shards", key, None)
        elif et == "shard_placed":
            o = objs.get(p["object_id"])
            bad = o is None or o["deleted"] or p["node_id"] not in nodes
            if not bad:
                self._put("shards", (p["object_id"], p["shard_index"]), dict(p))
        elif et == "shard_moved":
            o = objs.get(p["object_id"])
            cur = shards.get((p["object_id"], p["shard_index"]))
            bad = (o is None or o["deleted"] or cur is None or cur["node_id"] != p["from_node_id"]
                   or p["to_node_id"] not in nodes)
            if not bad:
                self._put("shards", (p["object_id"], p["shard_index"]), dict(cur, node_id=p["to_node_id"]))
        elif et == "fee_charged":
            bad = p["tx_id"] in self.tx
            if not bad:
                self.tx.add(p["tx_id"])
                old = ledger.get(p["account_id"], {"party_id": p["account_id"], "atr_paid": 0, "nod_earned": 0})
                self._put("ledger", p["account_id"], dict(old, atr_paid=old["atr_paid"] + p["amount_atr"]))
        elif et == "reward_paid":
            bad = p["node_id"] not in nodes or p["reward_id"] in self.rw
            if not bad:
                self.rw.add(p["reward_id"])
                old = ledger.get(p["node_id"], {"party_id": p["node_id"], "atr_paid": 0, "nod_earned": 0})
                self._put("ledger", p["node_id"], dict(old, nod_earned=old["nod_earned"] + p["amount_nod"]))
        if bad:
            self.invalid.append(seq)


_FIELDS = {et: [n for n, _ in f] for et, f in EVENT_FIELDS.items()}


def reference_replay(rows, checkpoints=()):
    ref, at = Reference(), {}
    cps = set(checkpoints)
    for r in rows:
        ref.apply(r["seq"], r["event_type"], r["payload"])
        if r["seq"] in cps:
            at[r["seq"]] = ref.roots()
    return ref, at


def engine_roots(roots) -> dict[str, str]:
    return roots.as_dict()


# A small, valid log touching every event type and the main edge cases.
CLEAN = [
    reg("n1", "eu"), reg("n2", "us"), reg("n3", "ap"),
    write("o1", 1), place("o1", 0, "n1"), place("o1", 1, "n2"), place("o1", 2, "n3"),
    fee("t1", "acct-a", 7, "o1"),
    write("o2", 1, size=10), place("o2", 0, "n2"),
    reward("r1", "n1", 100), reward("r2", "n2", 50, kind="proof"), reward("r3", "n1", -5, kind="adjustment"),
    fee("t2", "acct-a", 3, None, "get"), fee("t3", "n3", 2),  # a node that also pays fees
    move("o1", 1, "n2", "n3"),
    status("n2", "degraded"),
    write("o1", 2, size=120),  # new version: shards stay
    delete("o2", 2),
    write("o3", 5), place("o3", 0, "n1"), place("o3", 0, "n2", nbytes=60),  # re-placement (upsert)
    delete("o3", 6), write("o3", 7),  # resurrected, no shards
]

CLEAN_FINAL = {
    "nodes": [
        {"node_id": "n1", "region": "eu", "capacity_bytes": 10**12, "stake_nod": 2000 * 10**8, "status": "active"},
        {"node_id": "n2", "region": "us", "capacity_bytes": 10**12, "stake_nod": 2000 * 10**8, "status": "degraded"},
        {"node_id": "n3", "region": "ap", "capacity_bytes": 10**12, "stake_nod": 2000 * 10**8, "status": "active"},
    ],
    "objects": [
        {"object_id": "o1", "version": 2, "content_hash": "c-o1-2", "size_bytes": 120, "data_shards": 2,
         "total_shards": 3, "deleted": False},
        {"object_id": "o2", "version": 2, "content_hash": "c-o2-1", "size_bytes": 10, "data_shards": 2,
         "total_shards": 3, "deleted": True},
        {"object_id": "o3", "version": 7, "content_hash": "c-o3-7", "size_bytes": 100, "data_shards": 2,
         "total_shards": 3, "deleted": False},
    ],
    "shards": [
        {"object_id": "o1", "shard_index": 0, "node_id": "n1", "shard_hash": "h-o1-0", "shard_bytes": 50},
        {"object_id": "o1", "shard_index": 1, "node_id": "n3", "shard_hash": "h-o1-1", "shard_bytes": 50},
        {"object_id": "o1", "shard_index": 2, "node_id": "n3", "shard_hash": "h-o1-2", "shard_bytes": 50},
    ],
    "ledger": [
        {"party_id": "acct-a", "atr_paid": 10, "nod_earned": 0},
        {"party_id": "n1", "atr_paid": 0, "nod_earned": 95},
        {"party_id": "n2", "atr_paid": 0, "nod_earned": 50},
        {"party_id": "n3", "atr_paid": 2, "nod_earned": 0},
    ],
}


# ------------------------------------------------------------------------------------- clean replay


@pytest.mark.parametrize("fast", FAST_MODES)
def test_clean_replay_matches_roots_from_scratch(fast):
    rows = build_log(CLEAN)
    engine = ReplayEngine(fast_path=fast)
    engine.feed(to_table(rows))
    res = engine.finish()
    assert res.chain_intact and res.first_broken_seq is None and res.chain_break is None
    assert res.chain_breaks == 0
    assert res.invalid_events == []
    assert res.events_replayed == len(CLEAN)
    assert res.last_seq == len(CLEAN) - 1
    assert res.last_ts == T0 + dt.timedelta(seconds=len(CLEAN) - 1)
    expected = roots_of(CLEAN_FINAL)
    assert engine_roots(res.final_roots) == expected
    assert res.final_state_root == expected["state"]
    for c in COMPONENTS:
        assert list(engine.rows(c)) == CLEAN_FINAL[c]
        tbl = engine.table(c)
        assert tbl.column_names == list(COMPONENT_FIELDS[c])
        assert tbl.to_pylist() == CLEAN_FINAL[c]
    assert engine.table("objects").schema.field("data_shards").type == pa.int16()
    assert engine.table("shards").schema.field("shard_index").type == pa.int32()
    assert res.events_per_second > 0 and res.elapsed_seconds > 0
    assert res.payload_fallbacks == (0 if fast or ENGINE == "columnar" else len(CLEAN))  # columnar: always compiled


def test_empty_log():
    res = replay([])
    zero = "0" * 64
    assert res.events_replayed == 0 and res.chain_intact and res.first_broken_seq is None
    assert res.last_seq is None and res.last_ts is None and res.invalid_events == []
    assert res.final_roots.as_dict() == {"nodes": zero, "objects": zero, "shards": zero, "ledger": zero,
                                         "state": state_root(zero, zero, zero, zero)}
    res2 = replay([to_table([])], checkpoint_seqs=[0])
    assert res2.events_replayed == 0 and res2.unreached_checkpoints == [0]


def test_gc_is_restored_after_replay():
    import gc

    assert gc.isenabled()
    run(build_log(CLEAN[:3]))
    assert gc.isenabled()


def test_determinism_two_replays_identical():
    rows = build_log(CLEAN)
    a = run(rows, checkpoint_seqs=range(len(rows)))
    b = run(rows, checkpoint_seqs=range(len(rows)))
    assert a.final_roots == b.final_roots
    assert a.checkpoint_roots == b.checkpoint_roots
    assert a.invalid_events == b.invalid_events


@pytest.mark.parametrize("size", [1, 2, 5, 7])
def test_streaming_in_batches_equals_one_batch(size):
    rows = build_log(CLEAN + [write("o1", 1), fee("t1", "x", 1)])  # two invalid events at the end
    cps = [0, 3, 9, 15, len(rows) - 1]
    one = run(rows, checkpoint_seqs=cps)
    many = replay(batches_of(rows, size), checkpoint_seqs=cps, fast_path=True, batch_rows=3)
    assert many.final_roots == one.final_roots
    assert many.checkpoint_roots == one.checkpoint_roots
    assert many.invalid_events == one.invalid_events
    assert many.events_replayed == one.events_replayed == len(rows)


def test_fast_and_reference_parsers_agree_and_canonical_payloads_take_the_fast_path():
    rows = build_log(CLEAN)
    fast = run(rows, fast=True)
    slow = run(rows, fast=False)
    auto = replay([to_table(rows)])
    assert fast.final_roots == slow.final_roots == auto.final_roots
    assert fast.payload_fallbacks == 0
    assert slow.payload_fallbacks == (0 if ENGINE == "columnar" else len(rows))


# ------------------------------------------------------------------------------------- roots


def test_roots_at_intermediate_seqs_match_from_scratch():
    rows = build_log(CLEAN)
    cps = list(range(len(rows)))
    res = run(rows, checkpoint_seqs=cps)
    _, ref_at = reference_replay(rows, cps)
    assert sorted(res.checkpoint_roots) == cps
    for s in cps:
        assert engine_roots(res.checkpoint_roots[s]) == ref_at[s], s
        assert res.checkpoint_roots[s].last_seq == s
        assert res.checkpoint_roots[s].events == s + 1
    # after seq 2 only the three nodes exist
    three = roots_of({"nodes": [
        {"node_id": n, "region": r, "capacity_bytes": 10**12, "stake_nod": 2000 * 10**8, "status": "active"}
        for n, r in (("n1", "eu"), ("n2", "us"), ("n3", "ap"))], "objects": [], "shards": [], "ledger": []})
    assert engine_roots(res.checkpoint_roots[2]) == three
    assert res.checkpoint_roots[len(rows) - 1].as_dict() == res.final_roots.as_dict()


def test_checkpoint_beyond_log_is_unreached_and_before_genesis_is_empty():
    rows = build_log(CLEAN[:3])
    res = run(rows, checkpoint_seqs=[-1, 2, 10])
    assert res.unreached_checkpoints == [10]
    assert res.checkpoint_roots[-1].shards == "0" * 64 and res.checkpoint_roots[-1].events == 0
    assert res.checkpoint_roots[2] == dataclass_replace(res.final_roots, seq=2)


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_row_text_is_canonical_json_for_awkward_strings():
    for s in ["plain", 'quo"te', "back\\slash", "tab\tnl\n\x00\x1f\x7f", "é漢字🙂", "\u2028", ""]:
        rows = {
            "nodes": (s, (s, 5, -7, "failed")),
            "objects": (s, (3, s, 0, 4, 6, True)),
            "shards": ((s, 2), (s, s, 9)),
            "ledger": (s, (-1, 2**62)),
        }
        from qfs_assets.replay.rows import row_hash
        from qfs_assets_tests.reference_engine import row_dict

        for c, (k, v) in rows.items():
            d = row_dict(c, k, v)
            assert row_text(c, k, v) == canonical_json(d)
            assert row_hash(c, k, v) == row_hash_int(d)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.text(), st.integers(-(2**63), 2**63 - 1), st.booleans())
def test_row_text_is_canonical_json_property(a, b, n, flag):
    from qfs_assets_tests.reference_engine import row_dict

    for c, k, v in [("nodes", a, (b, n, n, a)), ("objects", a, (n, b, n, 1, 2, flag)),
                    ("shards", (a, 3), (b, a, n)), ("ledger", b, (n, -n))]:
        assert row_text(c, k, v) == canonical_json(row_dict(c, k, v))


# ------------------------------------------------------------------------------------- chain breaks


@pytest.mark.parametrize("fast", FAST_MODES)
def test_payload_edited_after_hashing(fast):
    rows = build_log(CLEAN)
    rows[8] = dict(rows[8], payload=rows[8]["payload"].replace('"size_bytes":10', '"size_bytes":11'))
    res = run(rows, fast)
    assert not res.chain_intact
    assert res.first_broken_seq == 8
    assert res.chain_break.reason == "event_hash mismatch (payload edited?)"
    assert res.chain_breaks == 1  # the next row still links to the stored event_hash
    assert res.events_replayed == len(rows)  # replay continues after a break
    assert res.final_roots.objects != roots_of(CLEAN_FINAL)["objects"]  # the edit is applied


def test_deleted_event_is_a_seq_gap():
    rows = build_log(CLEAN)
    del rows[17]
    res = run(rows)
    assert not res.chain_intact and res.first_broken_seq == 18
    assert res.chain_break.reason.startswith("seq gap: expected 17, got 18")
    assert "prev_hash does not match" in res.chain_break.reason
    assert res.chain_breaks == 1
    assert res.events_replayed == len(CLEAN) - 1


def test_deleted_first_event():
    rows = build_log(CLEAN)[1:]
    res = run(rows)
    assert res.first_broken_seq == 1
    assert res.chain_break.reason.startswith("seq gap: expected 0, got 1")


def test_two_events_swapped():
    rows = build_log(CLEAN)
    rows[5], rows[6] = rows[6], rows[5]
    res = run(rows)
    assert not res.chain_intact and res.first_broken_seq == 6
    assert res.chain_break.reason.startswith("seq gap: expected 5, got 6")
    assert res.chain_breaks == 3  # rows 6, 5 (out of order) and 7 (gap after 5)


def test_swapped_and_rehashed_log_keeps_its_chain_but_not_its_state():
    # A tamperer who swaps two events and recomputes every hash keeps the chain intact;
    # then only the state (roots vs checkpoints) can reveal it. Here it even makes an event invalid.
    rows = build_log(CLEAN)
    a, b = dict(rows[3]), dict(rows[4])  # object_written o1, shard_placed o1/0
    rows[3] = dict(rows[3], event_type=b["event_type"], payload=b["payload"])
    rows[4] = dict(rows[4], event_type=a["event_type"], payload=a["payload"])
    res = run(rehash(rows))
    assert res.chain_intact
    assert [(e.seq, e.event_type) for e in res.invalid_events] == [(3, "shard_placed")]


def test_wrong_prev_hash():
    rows = build_log(CLEAN)
    rows[10] = dict(rows[10], prev_hash="f" * 64)
    res = run(rows)
    assert res.first_broken_seq == 10
    # the row's own hash covers its prev_hash, so both checks fail
    assert res.chain_break.reason == ("prev_hash does not match event_hash of seq-1; "
                                      "event_hash mismatch (payload edited?)")
    rows = build_log(CLEAN)
    rows[0] = dict(rows[0], prev_hash="1" * 64)
    assert run(rows).chain_break.reason.startswith("prev_hash of the first event is not the genesis hash")


def test_ts_decreasing_is_a_break():
    rows = build_log(CLEAN)
    rows[4] = dict(rows[4], ts=rows[4]["ts"] - dt.timedelta(hours=1))
    res = run(rows)
    assert res.first_broken_seq == 4 and res.chain_break.reason.startswith("ts decreases")
    assert res.chain_breaks == 1  # row 5 is later than row 4 again
    rows = build_log(CLEAN, step=dt.timedelta(0))  # equal ts is fine
    assert run(rows).chain_intact


def test_malformed_hash_strings_are_breaks_not_errors():
    rows = build_log(CLEAN[:4])
    rows[2] = dict(rows[2], event_hash="abc")
    res = run(rows)
    assert res.first_broken_seq == 2 and "event_hash mismatch" in res.chain_break.reason
    assert res.chain_breaks == 2  # row 3's prev_hash no longer matches either


def test_first_break_only_is_recorded_but_all_are_counted():
    rows = build_log(CLEAN)
    rows[3] = dict(rows[3], payload=rows[3]["payload"] + " ")
    rows[12] = dict(rows[12], payload=rows[12]["payload"] + " ")
    res = replay(batches_of(rows, 4), batch_rows=4)
    assert res.first_broken_seq == 3 and res.chain_breaks == 2


# ------------------------------------------------------------------------------------- invalid events

BASE = [reg("n1"), reg("n2"), write("o1", 3), place("o1", 0, "n1"), fee("t1", "a", 5), reward("r1", "n1", 9)]

INVALID_CASES = [
    ("node exists", reg("n1"), "node_registered for existing node 'n1'"),
    ("status of unknown node", status("nx", "failed"), "node_status_changed for unknown node 'nx'"),
    ("unknown status", status("n1", "exploded"), "node_status_changed to unknown status 'exploded'"),
    ("version equal", write("o1", 3), "object_written version 3 not greater than stored version 3 of 'o1'"),
    ("version lower", write("o1", 2), "object_written version 2 not greater than stored version 3 of 'o1'"),
    ("delete unknown", delete("ox", 9), "object_deleted for unknown object 'ox'"),
    ("delete version not greater", delete("o1", 3),
     "object_deleted version 3 not greater than stored version 3 of 'o1'"),
    ("place unknown object", place("ox", 0, "n1"), "shard_placed for unknown object 'ox'"),
    ("place unknown node", place("o1", 1, "nx"), "shard_placed onto unknown node 'nx'"),
    ("move unknown object", move("ox", 0, "n1", "n2"), "shard_moved for unknown object 'ox'"),
    ("move unknown shard", move("o1", 5, "n1", "n2"), "shard_moved of unknown shard ('o1', 5)"),
    ("move from wrong node", move("o1", 0, "n2", "n1"), "shard_moved from_node_id 'n2' is not the shard's node 'n1'"),
    ("move to unknown node", move("o1", 0, "n1", "nx"), "shard_moved to unknown node 'nx'"),
    ("duplicate tx", fee("t1", "b", 1), "duplicate tx_id 't1'"),
    ("duplicate reward", reward("r1", "n2", 1), "duplicate reward_id 'r1'"),
    ("reward unknown node", reward("r9", "nx", 1), "reward_paid to unknown node 'nx'"),
    ("unknown event type", ("object_exploded", {"object_id": "o1"}), "unknown event_type 'object_exploded'"),
    ("unparsable payload", ("fee_charged", '{"tx_id": "t9",'), "unparsable payload"),
    ("not an object", ("fee_charged", "[1, 2]"), "payload is not a JSON object (got list)"),
    ("missing field", ("node_registered", {"node_id": "n9", "region": "eu", "capacity_bytes": 1}),
     "missing payload field 'stake_nod'"),
    ("null field", ("object_deleted", {"object_id": "o1", "version": None}), "missing payload field 'version'"),
    ("string for int", ("object_deleted", {"object_id": "o1", "version": "9"}),
     "payload field 'version' must be an integer, got str"),
    ("float for int", ("object_deleted", '{"object_id":"o1","version":9.0}'),
     "payload field 'version' must be an integer, got float"),
    ("bool for int", ("object_deleted", {"object_id": "o1", "version": True}),
     "payload field 'version' must be an integer, got bool"),
    ("int for string", ("object_deleted", {"object_id": 7, "version": 9}),
     "payload field 'object_id' must be a string, got int"),
    ("int16 overflow", write("o9", 1, k=40000), "payload field 'data_shards' out of int16 range: 40000"),
    ("int64 overflow", fee("t9", "a", 2**63), "payload field 'amount_atr' out of int64 range"),
    ("lone surrogate", ("fee_charged", '{"account_id":"\\ud800","amount_atr":1,"object_id":null,'
                                       '"operation":"put","tx_id":"t9"}'),
     "payload field 'account_id' is not valid Unicode (lone surrogate)"),
]


@functools.lru_cache(maxsize=None)
def _base_result(fast):
    return run(build_log(BASE), fast)


@pytest.mark.parametrize("fast", FAST_MODES)
@pytest.mark.parametrize("name,event,reason", INVALID_CASES, ids=[c[0] for c in INVALID_CASES])
def test_each_invalid_event_kind_is_recorded_and_applies_nothing(name, event, reason, fast):
    base = _base_result(fast)
    rows = build_log(BASE + [event])
    res = run(rows, fast)
    assert res.chain_intact  # an invalid event is a state finding, not a chain break
    assert len(res.invalid_events) == 1, res.invalid_events
    inv = res.invalid_events[0]
    assert inv.seq == len(BASE) and inv.event_type == event[0]
    assert inv.reason.startswith(reason), inv.reason
    assert res.final_roots.as_dict() == base.final_roots.as_dict()  # nothing applied


@pytest.mark.parametrize("fast", FAST_MODES)
def test_deleted_object_edge_cases(fast):
    pre = [reg("n1"), reg("n2"), write("o1", 1), place("o1", 0, "n1"), delete("o1", 2)]
    res = run(build_log(pre + [place("o1", 1, "n1"), move("o1", 0, "n1", "n2")]), fast)
    assert [(e.seq, e.reason) for e in res.invalid_events] == [
        (5, "shard_placed for deleted object 'o1'"), (6, "shard_moved for deleted object 'o1'")]
    # a second delete with a greater version refreshes the tombstone; a write resurrects without shards
    engine = ReplayEngine(fast_path=fast)
    engine.feed(to_table(build_log(pre + [delete("o1", 3), write("o1", 4, ch="new")])))
    res = engine.finish()
    assert res.invalid_events == []
    assert list(engine.rows("objects")) == [{"object_id": "o1", "version": 4, "content_hash": "new",
                                             "size_bytes": 100, "data_shards": 2, "total_shards": 3,
                                             "deleted": False}]
    assert list(engine.rows("shards")) == []


def test_invalid_reward_or_fee_does_not_register_its_id():
    rows = build_log([reg("n1"), reward("r1", "nx", 5), reward("r1", "n1", 5),
                      ("fee_charged", {"tx_id": "t1", "account_id": 3, "object_id": None, "operation": "put",
                                       "amount_atr": 1}),
                      fee("t1", "a", 1)])
    res = run(rows)
    assert [e.seq for e in res.invalid_events] == [1, 3]


def test_fee_object_id_may_be_absent_null_or_string_and_extra_fields_are_ignored():
    rows = build_log([
        ("fee_charged", {"tx_id": "t1", "account_id": "a", "operation": "get", "amount_atr": 1}),
        fee("t2", "a", 2, None), fee("t3", "a", 3, "o1"),
        ("fee_charged", {"tx_id": "t4", "account_id": "a", "object_id": None, "operation": "get",
                         "amount_atr": 4, "memo": "extra"}),
        ("fee_charged", '{ "tx_id": "t5", "account_id": "a", "object_id": null, "operation": "get", "amount_atr": 5 }'),
    ])
    for fast in FAST_MODES:
        engine = ReplayEngine(fast_path=fast)
        engine.feed(to_table(rows))
        res = engine.finish()
        assert res.invalid_events == []
        assert list(engine.rows("ledger")) == [{"party_id": "a", "atr_paid": 15, "nod_earned": 0}]
        assert res.payload_fallbacks == (3 if fast or ENGINE == "columnar" else 5)


# ------------------------------------------------------------------------------------- limits


def test_through_seq_and_ts_limits():
    rows = build_log(CLEAN)
    full = run(rows, checkpoint_seqs=[9])
    res = replay(batches_of(rows, 4), through_seq=9)
    assert res.events_replayed == 10 and res.last_seq == 9 and res.limit_reached
    assert res.final_roots.as_dict() == full.checkpoint_roots[9].as_dict()
    before = replay([to_table(rows)], before_ts=T0 + dt.timedelta(seconds=10))
    through = replay([to_table(rows)], through_ts=T0 + dt.timedelta(seconds=9))
    assert before.final_roots == through.final_roots == res.final_roots
    naive = replay([to_table(rows)], before_ts=dt.datetime(2025, 1, 1, 0, 0, 10))
    assert naive.final_roots == res.final_roots
    nothing = replay([to_table(rows)], before_ts=T0)
    assert nothing.events_replayed == 0 and nothing.last_seq is None
    assert not run(rows).limit_reached


def test_replay_stops_reading_the_input_after_the_limit():
    rows = build_log(CLEAN)
    consumed = []

    def gen():
        for b in batches_of(rows, 2):
            consumed.append(b)
            yield b

    res = replay(gen(), through_seq=3, batch_rows=2)
    assert res.events_replayed == 4
    assert len(consumed) < len(rows) // 2


# ------------------------------------------------------------------------------------- checkpoints


def _checkpoint_rows(roots_at, rows, tamper=None):
    out = []
    for s, r in sorted(roots_at.items()):
        row = {"seq": s, "ts": rows[s]["ts"], "state_root": r["state"], "nodes_root": r["nodes"],
               "objects_root": r["objects"], "shards_root": r["shards"], "ledger_root": r["ledger"]}
        out.append(row)
    return out


def test_compare_checkpoints_and_snapshot_at_first_mismatch():
    rows = build_log(CLEAN)
    cps = [2, 7, 12, 20, len(rows) - 1, 999]
    _, ref_at = reference_replay(rows, cps)
    published = _checkpoint_rows(ref_at, rows)
    published.append({"seq": 999, "ts": T0, **{f"{c}_root": "0" * 64 for c in ("state",) + COMPONENTS}})
    # the production engine's state diverged at seq 12 (its objects root differs)
    published[2] = dict(published[2], objects_root="a" * 64)
    res = run(rows, expected_checkpoints=pa.Table.from_pylist(published))
    cmp = res.checkpoint_comparison
    assert cmp.compared == 6 and cmp.matched == 4
    assert cmp.first_mismatch_seq == 12 and cmp.mismatched_components == ["objects"]
    assert [c.matched for c in cmp.checks] == [True, True, False, True, True, False]
    assert cmp.checks[-1].reached is False and res.unreached_checkpoints == [999]
    assert all(c.ts_matched for c in cmp.checks[:-1])
    # the mismatched component was exported as it was right after seq 12
    snap = res.snapshots[12]
    assert list(snap) == ["objects"]
    assert snap["objects"].to_pylist() == [
        {"object_id": "o1", "version": 1, "content_hash": "c-o1-1", "size_bytes": 100, "data_shards": 2,
         "total_shards": 3, "deleted": False},
        {"object_id": "o2", "version": 1, "content_hash": "c-o2-1", "size_bytes": 10, "data_shards": 2,
         "total_shards": 3, "deleted": False}]
    # the standalone helper agrees
    again = compare_checkpoints(res.checkpoint_roots, published)
    assert again.rows() == cmp.rows()
    assert cmp.to_table().num_rows == 6


def test_on_checkpoint_callback_and_snapshot_at():
    rows = build_log(CLEAN)
    seen = []

    def cb(roots, engine):
        seen.append((roots.seq, engine.table("shards").num_rows))

    res = run(rows, checkpoint_seqs=[6], snapshot_at={9: ["shards", "ledger"]}, on_checkpoint=cb)
    assert seen == [(6, 3), (9, 4)]
    assert sorted(res.snapshots[9]) == ["ledger", "shards"]
    assert res.snapshots[9]["ledger"].to_pylist() == [{"party_id": "acct-a", "atr_paid": 7, "nod_earned": 0}]


def test_checkpoint_inside_a_gap_is_taken_before_the_next_row():
    rows = build_log(CLEAN)
    full = run(rows, checkpoint_seqs=[16])
    del rows[17]
    res = run(rows, checkpoint_seqs=[17])
    assert res.checkpoint_roots[17].last_seq == 16
    assert res.checkpoint_roots[17].as_dict() == full.checkpoint_roots[16].as_dict()


# ------------------------------------------------------------------------------------- input


def test_bad_input_raises():
    rows = build_log(CLEAN[:2])
    t = to_table(rows)
    with pytest.raises(ReplayInputError, match="lacks column"):
        replay([t.drop_columns(["prev_hash"])])
    with pytest.raises(ReplayInputError, match="null"):
        replay([t.set_column(3, "payload", pa.array([None, "x"], pa.string()))])
    ns = t.set_column(1, "ts", pa.array([1, 2], pa.timestamp("ns", tz="UTC")))
    with pytest.raises(ReplayInputError, match="cannot become"):
        replay([ns])


def test_input_types_are_normalised_and_extra_columns_ignored():
    rows = build_log(CLEAN)
    t = to_table(rows)
    odd = pa.table({
        "extra": pa.array(range(len(rows))),
        "seq": t["seq"].cast(pa.int32()),
        "ts": t["ts"].cast(pa.timestamp("ms", tz="UTC")),
        "event_type": t["event_type"].cast(pa.large_string()),
        "payload": t["payload"].cast(pa.large_string()),
        "prev_hash": t["prev_hash"],
        "event_hash": t["event_hash"].cast(pa.string_view()),
    })
    assert replay([odd]).final_roots == run(rows).final_roots


# ------------------------------------------------------------------------------------- fuzz


def _random_log(rnd: random.Random, n: int) -> list:
    nodes, objs, events = ["n0", "n1", "n2", "n3"], ["o0", "o1", "o2", "o3", "o4"], []
    for _ in range(n):
        k = rnd.random()
        nid, oid = rnd.choice(nodes + ["nx"]), rnd.choice(objs)
        if k < 0.08:
            events.append(reg(nid, rnd.choice(["eu", "us"])))
        elif k < 0.12:
            events.append(status(nid, rnd.choice(["active", "degraded", "failed", "decommissioned", "zzz"])))
        elif k < 0.30:
            events.append(write(oid, rnd.randint(0, 8), size=rnd.randint(0, 9)))
        elif k < 0.36:
            events.append(delete(oid, rnd.randint(0, 9)))
        elif k < 0.60:
            events.append(place(oid, rnd.randint(0, 3), nid, rnd.randint(1, 9)))
        elif k < 0.70:
            events.append(move(oid, rnd.randint(0, 3), rnd.choice(nodes), rnd.choice(nodes + ["nx"])))
        elif k < 0.82:
            events.append(fee(f"t{rnd.randint(0, 30)}", rnd.choice(["a", "b", "n1"]), rnd.randint(-3, 9),
                              rnd.choice([None, oid])))
        elif k < 0.94:
            events.append(reward(f"r{rnd.randint(0, 30)}", nid, rnd.randint(-5, 9)))
        else:  # malformed payloads, some of which are still valid JSON with the right fields
            et, p = rnd.choice([write(oid, 50), fee(f"u{rnd.randint(0, 9)}", "a", 1), reg("nz")])
            text = rnd.choice([
                json.dumps(p),  # non-canonical spacing and order
                json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + " ",
                canonical_json(p)[:-3],
                canonical_json({**p, "zz": [1, {"a": None}]}),
                canonical_json(p).replace('"', "'"),
                canonical_json(p).replace(":1,", ":1.0,").replace(":1}", ":true}"),
                canonical_json({k: (str(v) if isinstance(v, int) else v) for k, v in p.items()}),
            ])
            events.append((rnd.choice([et, et, "mystery"]), text))
    return events


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_engine_equals_naive_reference_in_every_mode(seed):
    rnd = random.Random(seed)
    rows = build_log(_random_log(rnd, 500))
    cps = sorted(rnd.sample(range(len(rows)), 25))
    ref, ref_at = reference_replay(rows, cps)
    results = [
        replay([to_table(rows)], checkpoint_seqs=cps, fast_path=True),
        replay([to_table(rows)], checkpoint_seqs=cps, fast_path=False),
        replay(batches_of(rows, 37), checkpoint_seqs=cps, fast_path=True, batch_rows=150),
    ]
    for res in results:
        assert res.chain_intact
        assert [e.seq for e in res.invalid_events] == ref.invalid
        assert res.final_roots.as_dict() == ref.roots()
        assert {s: r.as_dict() for s, r in res.checkpoint_roots.items()} == ref_at
    assert results[0].invalid_events == results[1].invalid_events == results[2].invalid_events


_FUZZ_PARSER = []


def _fuzz_parser():
    from qfs_assets_tests.reference_fastparser import FastParser

    if not _FUZZ_PARSER:
        _FUZZ_PARSER.append(FastParser())
    return _FUZZ_PARSER[0]


_ANY = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.integers(-(2**70), 2**70),
                st.text(max_size=4))


@st.composite
def _payload_values(draw, event_type):
    from qfs_assets.replay.payloads import EVENT_FIELDS

    out = []
    for _name, kind in EVENT_FIELDS[event_type]:
        if kind.startswith("str"):
            good = st.one_of(st.from_regex(r"[a-z0-9\- é漢🙂/]{0,8}", fullmatch=True), st.text(max_size=5))
        else:
            good = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-40000, 40000), st.integers(-(2**65), 2**65))
        out.append(draw(good if draw(st.integers(0, 9)) < 8 else _ANY))
    return out


@pytest.mark.reference_only
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_parser_agrees_with_reference_parser_on_fuzzed_payloads(data):
    import numpy as np

    from qfs_assets.replay.payloads import EVENT_FIELDS, EVENT_TYPES
    from qfs_assets_tests.reference_fastparser import APPLY_INDEX

    kinds = ["shard_placed", "object_written", "fee_charged", "reward_paid"]
    texts, types = [], []
    for _ in range(data.draw(st.integers(10, 30))):
        event_type = data.draw(st.sampled_from(kinds))
        obj = dict(zip([n for n, _ in EVENT_FIELDS[event_type]], data.draw(_payload_values(event_type))))
        texts.append(canonical_json(obj) if data.draw(st.integers(0, 2)) else json.dumps(obj))
        types.append(event_type)
    codes = np.array([EVENT_TYPES.index(t) for t in types])
    wanted = [(k, np.flatnonzero(codes == EVENT_TYPES.index(k))) for k in kinds if k in types]
    out = _fuzz_parser().parse_batch(pa.array(texts), codes, wanted)
    for event_type, rows in wanted:
        ok_rows, cols, rt, slow = out[event_type]
        assert sorted(ok_rows.tolist() + slow.tolist()) == rows.tolist()
        for j, i in enumerate(ok_rows.tolist()):
            ref = parse_payload(event_type, texts[i])
            assert tuple(c[j] for c in cols) == tuple(ref[k] for k in APPLY_INDEX[event_type])
            assert texts[i] == canonical_json(dict(zip([n for n, _ in EVENT_FIELDS[event_type]], ref)))
            if event_type == "object_written":
                assert rt[j].as_py() == row_text("objects", ref[0], ref[1:] + (False,))


@pytest.mark.parametrize("fast", FAST_MODES)
def test_payload_bytes_that_are_not_utf8_are_an_invalid_event_not_a_crash(fast):
    import hashlib

    rows = build_log(CLEAN[:3])
    prev = rows[-1]["event_hash"]
    bad_payload = b'{"account_id":"a\xff","amount_atr":1,"object_id":null,"operation":"put","tx_id":"t"}'
    h = hashlib.sha256(prev.encode() + b"|3|fee_charged|" + bad_payload).hexdigest()
    good = to_table(rows)
    texts = [r["payload"].encode() for r in rows] + [bad_payload]
    offsets = pa.array([0] + [sum(len(t) for t in texts[:k + 1]) for k in range(len(texts))], pa.int32())
    payload = pa.StringArray.from_buffers(len(texts), offsets.buffers()[1], pa.py_buffer(b"".join(texts)))
    tail = {"seq": [3], "ts": [T0 + dt.timedelta(seconds=3)], "event_type": ["fee_charged"], "prev_hash": [prev],
            "event_hash": [h]}
    table = pa.table({
        "seq": pa.concat_arrays([good["seq"].combine_chunks(), pa.array(tail["seq"], pa.int64())]),
        "ts": pa.concat_arrays([good["ts"].combine_chunks(), pa.array(tail["ts"], good["ts"].type)]),
        "event_type": pa.concat_arrays([good["event_type"].combine_chunks(), pa.array(tail["event_type"])]),
        "payload": payload,
        "prev_hash": pa.concat_arrays([good["prev_hash"].combine_chunks(), pa.array(tail["prev_hash"])]),
        "event_hash": pa.concat_arrays([good["event_hash"].combine_chunks(), pa.array(tail["event_hash"])]),
    })
    res = replay([table], fast_path=fast)
    assert res.chain_intact
    assert [(e.seq, e.reason) for e in res.invalid_events] == [(3, "payload is not valid UTF-8")]


# ------------------------------------------------------------------------------------- helper process / pipelining


def _result_key(res):
    return (res.events_replayed, res.chain_intact, res.first_broken_seq, res.chain_break, res.chain_breaks,
            res.invalid_events, {s: r for s, r in res.checkpoint_roots.items()}, res.final_roots,
            res.unreached_checkpoints, res.limit_reached, res.payload_fallbacks)


def _counting_init(init, started):
    def counting(self, *a, **k):
        started.append(1)
        init(self, *a, **k)
    return counting


def _broken_variants(rows):
    edited = [dict(r) for r in rows]
    edited[7] = dict(edited[7], payload=edited[7]["payload"] + " ")
    gap = [r for i, r in enumerate(rows) if i != 40]
    swapped = list(rows)
    swapped[20], swapped[21] = swapped[21], swapped[20]
    bad_hash = list(rows)
    bad_hash[30] = dict(bad_hash[30], event_hash="abc")
    return [rows, edited, gap, swapped, bad_hash]


@pytest.mark.reference_only
@pytest.mark.parametrize("seed", range(2))
def test_hash_helper_process_and_pipelined_steps_give_the_same_result(monkeypatch, seed):
    """Big steps hash in the helper process and parse one step ahead: force that on small logs."""
    import qfs_assets_tests.reference_engine as E
    import qfs_assets_tests.reference_hashworker as H

    monkeypatch.setenv("QFS_REPLAY_HELPER", "1")  # whatever the machine's load
    started = []
    monkeypatch.setattr(H.HashWorker, "__init__", _counting_init(H.HashWorker.__init__, started))
    rnd = random.Random(seed)
    rows = build_log(_random_log(rnd, 400))
    cps = sorted(rnd.sample(range(len(rows)), 15))
    for variant in _broken_variants(rows):
        kw = dict(checkpoint_seqs=cps, fast_path=True, batch_rows=64)
        monkeypatch.setattr(E, "_WORKER_MIN_ROWS", 10**9)
        local = replay(batches_of(variant, 50), **kw)
        monkeypatch.setattr(E, "_WORKER_MIN_ROWS", 1)
        helped = replay(batches_of(variant, 50), **kw)
        assert _result_key(helped) == _result_key(local)
        assert started  # the helper process did run
        limited = replay(batches_of(variant, 50), through_seq=len(variant) // 2, **kw)
        monkeypatch.setattr(E, "_WORKER_MIN_ROWS", 10**9)
        assert _result_key(limited) == _result_key(replay(batches_of(variant, 50), through_seq=len(variant) // 2,
                                                          **kw))


@pytest.mark.reference_only
def test_hash_helper_failure_falls_back_in_process(monkeypatch):
    import qfs_assets_tests.reference_engine as E
    import qfs_assets_tests.reference_hashworker as H

    monkeypatch.setenv("QFS_REPLAY_HELPER", "1")
    rows = build_log(_random_log(random.Random(7), 400))
    cps = list(range(0, len(rows), 37))
    expected = replay(batches_of(rows, 50), checkpoint_seqs=cps, batch_rows=64)
    monkeypatch.setattr(E, "_WORKER_MIN_ROWS", 1)
    calls = []
    real_job = H.HashWorker._job

    def flaky(self, *a):
        calls.append(1)
        if len(calls) == 5:  # kill the helper mid-replay: that and later requests hash in process
            self._proc.kill()
            self._proc.wait()
        return real_job(self, *a)

    monkeypatch.setattr(H.HashWorker, "_job", flaky)
    res = replay(batches_of(rows, 50), checkpoint_seqs=cps, batch_rows=64)
    assert len(calls) >= 5
    assert _result_key(res) == _result_key(expected)


@pytest.mark.reference_only
def test_state_read_between_feeds_includes_the_step_prepared_ahead(monkeypatch):
    import qfs_assets_tests.reference_engine as E

    monkeypatch.setenv("QFS_REPLAY_HELPER", "1")
    rows = build_log(_random_log(random.Random(3), 300))
    seen = {}
    for threshold in (10**9, 1):
        monkeypatch.setattr(E, "_WORKER_MIN_ROWS", threshold)
        engine = ReplayEngine(batch_rows=40)
        out = []
        for b in batches_of(rows, 45):
            engine.feed(b)
            out.append((engine.roots().as_dict(), engine.events_replayed, engine.table("shards").num_rows))
        res = engine.finish()
        assert engine._worker is None and engine._parse_pool is None  # the helpers are stopped
        seen[threshold] = (out, _result_key(res))
    assert seen[1] == seen[10**9]


@pytest.mark.reference_only
def test_helper_mode_switch(monkeypatch):
    import qfs_assets_tests.reference_engine as E

    monkeypatch.setenv("QFS_REPLAY_HELPER", "0")
    assert not E._parallel_allowed()
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("QFS_REPLAY_HELPER", "1")
    assert E._parallel_allowed()
    monkeypatch.delenv("QFS_REPLAY_HELPER")
    monkeypatch.setattr(E.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert E._parallel_allowed()
    monkeypatch.setattr(E.os, "getloadavg", lambda: (3.5, 3.0, 3.0))
    assert not E._parallel_allowed()
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setenv("QFS_REPLAY_HELPER", "1")
    assert not E._parallel_allowed()
    # off: a big log is replayed in the calling thread only
    monkeypatch.setenv("QFS_REPLAY_HELPER", "0")
    monkeypatch.setattr(E, "_WORKER_MIN_ROWS", 1)
    engine = ReplayEngine(batch_rows=16)
    for b in batches_of(build_log(CLEAN), 16):
        engine.feed(b)
    assert engine._worker is None and engine._parse_pool is None and engine._pending is None
    assert engine.finish().final_roots.as_dict() == roots_of(CLEAN_FINAL)
