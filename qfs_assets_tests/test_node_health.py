"""Daily node health against a small hand-computed export (every metric and AEGIS boundary)."""

import datetime as dt
import statistics

import pytest

from qfs_assets.activities.node_health.assess import NodeHealthParams, assess_node_health
from qfs_assets.evidence import gx_suite
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import node, obj, proof, shard, ts, write

DAY = "2026-03-02"
NOD = 10**8


def build(root):
    nodes = [
        node("n1"),
        node("n2", hb_h=23, hb_m=0),  # heartbeat exactly one hour before the day's end: ok
        node("n3", status="degraded", stake=1000 * NOD),  # stake exactly the minimum: ok
        node("n4", hb_h=22, hb_m=59, last_heartbeat=ts(DAY, 22, 59, 59)),  # one second too old
        node("n5"),  # no challenge issued
        node("n6", status="failed"),
        node("n7", used=1001),  # used > capacity
        node("n8", stake=1000 * NOD - 1),  # one unit under the minimum stake
        node("n9"),  # 90% of challenges passed
    ]
    write(root, "nodes", nodes, DAY)
    proofs = []
    def add(node_id, outcomes):
        for o in outcomes:
            proofs.append(proof(f"c{len(proofs)}", node_id, o))
    add("n1", ["passed"] * 20)
    add("n2", ["passed"] * 19 + ["failed"])  # exactly 95%: ok
    add("n3", ["passed"])
    add("n4", ["passed"])
    add("n6", ["failed", "failed"])
    add("n7", ["passed"])
    add("n8", ["passed"])
    add("n9", ["passed"] * 18 + ["failed", "timeout"])
    write(root, "proofs", proofs, DAY)
    write(root, "objects", [
        obj("o1", k=2, n=3), obj("o2", k=2, n=3), obj("o3", k=1, n=2), obj("o4", deleted=True), obj("o5", k=1, n=1),
    ], DAY)
    write(root, "shards", [
        shard("o1", 0, "n1"), shard("o1", 1, "n2"), shard("o1", 2, "n6"),
        shard("o2", 0, "n6"), shard("o2", 1, "n1"), shard("o2", 2, "ghost"),
        shard("o3", 0, "n3"), shard("o3", 1, "n4"),
    ], DAY)
    return root


@pytest.fixture
def export(tmp_path):
    return build(tmp_path / "export")


def test_every_metric_by_hand(export):
    r = assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))
    m = r.metrics
    assert m["in_service_nodes"] == 8
    assert m["verified_nodes"] == 3
    assert m["verified_ratio"] == 3 / 8
    assert m["unverified_node_ids"] == ["n4", "n5", "n7", "n8", "n9"]
    assert m["proof_challenges"] == 66
    assert m["proof_success_rate"] == 61 / 66
    utils = [0.1, 0.05, 0.05, 0.05, 0, 0, 0, 0]
    mean = statistics.fmean(utils)
    assert m["utilization_cv"] == pytest.approx(statistics.pstdev(utils) / mean, rel=1e-12)
    assert m["utilization_max_over_mean"] == pytest.approx(0.1 / mean, rel=1e-12)
    assert m["objects_degraded"] == 3  # o1 (2 of 3 healthy), o2 and o5 (unrecoverable ones are degraded too)
    assert m["objects_unrecoverable"] == 2  # o2 (1 healthy < k=2), o5 (no shard)
    reasons = dict(zip(r.tables["node_health_aegis"].column("node_id").to_pylist(),
                       r.tables["node_health_aegis"].column("reasons").to_pylist()))
    assert reasons["n4"] == "stale heartbeat"
    assert reasons["n5"] == "no challenge issued"
    assert reasons["n7"] == "used_bytes > capacity_bytes"
    assert reasons["n8"] == "stake below minimum"
    assert reasons["n9"] == "pass rate below minimum"
    assert reasons["n2"] == "" and reasons["n3"] == ""


def test_criteria_through_gx_agree_with_the_rules(export):
    r = assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))
    verdicts = {c.name: c for c in gx_suite.validate(r.activity, r.judge_table, r.criteria_specs)}
    assert [c for c in verdicts] == ["nodes_verified", "proof_success", "shard_balance", "no_unrecoverable_objects"]
    assert not any(c.passed for c in verdicts.values())
    assert verdicts["no_unrecoverable_objects"].observed == 2
    assert verdicts["shard_balance"].threshold == {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}
    row = r.judge_table.to_pylist()[0]
    for spec in r.criteria_specs:
        assert verdicts[spec.name].passed == all(rule.holds(row[rule.column]) for rule in spec.rules)


def test_thresholds_are_configuration(export):
    p = NodeHealthParams(min_verified_ratio=0.3, min_proof_success_rate=0.9, max_utilization_cv=5,
                         max_utilization_max_over_mean=5)
    r = assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY), p)
    verdicts = {c.name: c.passed for c in gx_suite.validate(r.activity, r.judge_table, r.criteria_specs)}
    assert verdicts == {"nodes_verified": True, "proof_success": True, "shard_balance": True,
                        "no_unrecoverable_objects": False}
    assert r.parameters["min_verified_ratio"] == 0.3


def test_ratio_boundaries_are_strict(tmp_path):
    """verified_ratio > 0.95: exactly 0.95 fails; proof success > 0.99: exactly 0.99 fails."""
    from qfs_assets.evidence.model import Rule
    assert not Rule("x", min_value=0.95, strict_min=True).holds(19 / 20)
    assert Rule("x", min_value=0.95, strict_min=True).holds(20 / 21 + 0.0)
    p = NodeHealthParams()
    import pyarrow as pa
    judge = pa.table({"verified_ratio": [0.95], "proof_success_rate": [0.99], "utilization_cv": [0.25],
                      "utilization_max_over_mean": [1.5], "objects_unrecoverable": pa.array([0], pa.int64())})
    from qfs_assets.activities.node_health.assess import criteria_specs
    verdicts = {c.name: c.passed for c in gx_suite.validate("b", judge, criteria_specs(p, storage_errors=False))}
    assert verdicts == {"nodes_verified": False, "proof_success": False, "shard_balance": True,
                        "no_unrecoverable_objects": True}


def test_no_in_service_node_gives_a_clear_failing_verdict(tmp_path):
    root = tmp_path / "e"
    write(root, "nodes", [node("n1", status="failed")], DAY)
    write(root, "proofs", [], DAY)
    write(root, "objects", [], DAY)
    write(root, "shards", [], DAY)
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert r.metrics["verified_ratio"] is None and r.metrics["proof_success_rate"] is None
    verdicts = {c.name: c for c in gx_suite.validate(r.activity, r.judge_table, r.criteria_specs)}
    assert not verdicts["nodes_verified"].passed and not verdicts["nodes_verified"].could_not_run
    assert verdicts["no_unrecoverable_objects"].passed


def test_duplicate_shard_key_is_bad_input(export):
    write(export, "shards", [shard("o3", 1, "n5")], DAY, name="part-1.parquet")
    with pytest.raises(BadInput, match=r"table 'shards'.*column 'object_id,shard_index'.*duplicate key object_id='o3', shard_index=1"):
        assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))


def test_duplicate_shard_key_found_beyond_index_63(export):
    """Indices outside 0..63 take the count(DISTINCT) path; duplicates are still found."""
    write(export, "shards", [shard("o9", 70, "n1"), shard("o9", 70, "n2")], DAY, name="part-1.parquet")
    with pytest.raises(BadInput, match=r"duplicate key object_id='o9', shard_index=70"):
        assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))


def test_wide_indices_without_duplicates_are_fine(export):
    write(export, "shards", [shard("o9", 0, "n1"), shard("o9", 64, "n2")], DAY, name="part-1.parquet")
    r = assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))
    assert r.metrics["objects_with_unknown_manifest"] == 1


@pytest.mark.parametrize("indices", [[-1, 1, 2], [0, 1, 7], [0, 1, 70]])
def test_shards_outside_0_to_n_minus_1_are_not_healthy(tmp_path, indices):
    root = tmp_path / "e"
    write(root, "nodes", [node("n1"), node("n2"), node("n3")], DAY)
    write(root, "proofs", [proof("c1", "n1")], DAY)
    write(root, "objects", [obj("o1", k=2, n=3)], DAY)
    write(root, "shards", [shard("o1", i, f"n{j + 1}") for j, i in enumerate(indices)], DAY)
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert r.metrics["objects_degraded"] == 1
    assert r.tables["node_health_objects"].column("healthy_shards").to_pylist() == [2]


def test_dictionary_encoded_strings_are_accepted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = write(tmp_path, "nodes", [node("n1"), node("n2")], DAY)
    t = pq.read_table(path)
    t = t.set_column(0, "node_id", t.column("node_id").dictionary_encode())
    pq.write_table(t, path)
    assert ExportReader(tmp_path).read("nodes", [dt.date.fromisoformat(DAY)]).column("node_id").to_pylist() == ["n1", "n2"]


def complete_map(root):
    """A day whose shard map is exactly what the manifest expects (the fast plan's case), some
    shards on failed, decommissioned and unknown nodes, three objects unrecoverable."""
    write(root, "nodes", [node("n1"), node("n2"), node("n3", status="degraded"), node("n4", status="failed"),
                          node("n5", status="decommissioned"), node("n6")], DAY)
    write(root, "proofs", [proof("c1", "n1", "passed")], DAY)
    write(root, "objects", [obj("o1", k=2, n=3), obj("o2", k=2, n=3), obj("o3", k=1, n=2), obj("o4", deleted=True),
                            obj("o5", k=3, n=4), obj("o6", k=1, n=1)], DAY)
    write(root, "shards", [
        shard("o1", 0, "n1"), shard("o1", 1, "n2"), shard("o1", 2, "n3"),
        shard("o2", 0, "n4"), shard("o2", 1, "n1"), shard("o2", 2, "ghost"),
        shard("o3", 1, "n3"), shard("o3", 0, "n6"),
        shard("o5", 0, "n4"), shard("o5", 1, "n5"), shard("o5", 2, "n1"), shard("o5", 3, "n2"),
        shard("o6", 0, "n5"),
    ], DAY)
    return root


@pytest.mark.parametrize("variant", ["complete", "complete_registered", "complete_one_bucket", "incomplete"])
def test_object_health_fast_and_general_plans_agree(tmp_path, monkeypatch, variant):
    """The fast plan (shard map as expected; rows on bad nodes let through by hash bucket, also when
    every node shares a bucket, or by an exact IN) and the general plan give the same evidence."""
    from qfs_assets.activities.node_health import assess as metrics

    root = build(tmp_path / "e") if variant == "incomplete" else complete_map(tmp_path / "e")
    calls = []
    general = metrics.object_health_general
    monkeypatch.setattr(metrics, "object_health_general", lambda con: calls.append(1) or general(con))
    if variant == "complete_registered":
        monkeypatch.setattr(metrics, "_MAX_FILTER_NODES", 0)
    if variant == "complete_one_bucket":  # every node shares the bad nodes' bucket: all rows let through
        monkeypatch.setattr(metrics, "_filter_buckets", lambda n_bad: 1)
    got = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert len(calls) == (1 if variant == "incomplete" else 0)  # which plan judged
    monkeypatch.setattr(metrics, "object_health", lambda con, check_keys=None: check_keys() or general(con))
    want = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert got.metrics == want.metrics
    assert got.tables["node_health_objects"].equals(want.tables["node_health_objects"])
    if variant != "incomplete":
        assert (want.metrics["objects_degraded"], want.metrics["objects_unrecoverable"]) == (3, 3)


@pytest.mark.parametrize("change", ["missing", "extra_index", "index_beyond_all", "negative_index", "orphan", "deleted_object",
                                    "swapped_objects"])
def test_a_shard_map_off_expectation_goes_to_the_general_plan(tmp_path, monkeypatch, change):
    from qfs_assets.activities.node_health import assess as metrics

    root = complete_map(tmp_path / "e")
    extra = {"missing": [], "extra_index": [shard("o6", 1, "n1")], "index_beyond_all": [shard("o6", 9, "n1")],
             "negative_index": [shard("o6", -1, "n1")], "orphan": [shard("zz", 0, "n1")],
             "deleted_object": [shard("o4", 0, "n1")], "swapped_objects": []}[change]
    rows = [shard("o1", 0, "n1"), shard("o1", 1, "n2"), shard("o1", 2, "n3"),
            shard("o2", 0, "n4"), shard("o2", 1, "n1"), shard("o2", 2, "ghost"),
            shard("o3", 1, "n3"), shard("o3", 0, "n6"),
            shard("o5", 0, "n4"), shard("o5", 1, "n5"), shard("o5", 2, "n1"), shard("o5", 3, "n2")]
    if change == "missing":
        rows = rows[1:]
    if change == "swapped_objects":  # same count and indices, one shard under the wrong object
        rows = rows[:-1] + [shard("o1", 3, "n2")]
    write(root, "shards", rows + [shard("o6", 0, "n5")] + extra, DAY)
    calls = []
    general = metrics.object_health_general
    monkeypatch.setattr(metrics, "object_health_general", lambda con: calls.append(1) or general(con))
    assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert calls == [1]


@pytest.mark.parametrize("where", ["same_file_sorted", "same_file_unsorted", "second_file"])
def test_duplicate_object_key_is_bad_input_sorted_or_not(export, where):
    objs = [obj("o1", k=2, n=3), obj("o2", k=2, n=3), obj("o3", k=1, n=2), obj("o4", deleted=True), obj("o5", k=1, n=1)]
    if where == "same_file_sorted":
        write(export, "objects", objs[:2] + [obj("o2", deleted=True)] + objs[2:], DAY)
    elif where == "same_file_unsorted":
        write(export, "objects", [objs[3], obj("o2", deleted=True)] + objs[:3] + objs[4:], DAY)
    else:
        write(export, "objects", [obj("o4", deleted=True)], DAY, name="part-1.parquet")
    with pytest.raises(BadInput, match=r"table 'objects'.*column 'object_id'.*duplicate key object_id='o[24]'"):
        assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))


def test_unsorted_manifest_without_duplicates_is_fine(export):
    write(export, "objects", [obj("o5", k=1, n=1), obj("o3", k=1, n=2), obj("o1", k=2, n=3), obj("o4", deleted=True),
                              obj("o2", k=2, n=3)], DAY)
    r = assess_node_health(ExportReader(export), dt.date.fromisoformat(DAY))
    assert r.metrics["objects_live"] == 4


def test_a_node_filled_exactly_to_capacity_is_verified(tmp_path):
    """AEGIS requires used_bytes <= capacity_bytes: a node full to the byte passes, one byte over fails."""
    root = tmp_path / "e"
    write(root, "nodes", [node("full", capacity=1000, used=1000), node("over", capacity=1000, used=1001)], DAY)
    write(root, "proofs", [proof("c1", "full"), proof("c2", "over")], DAY)
    write(root, "objects", [], DAY)
    write(root, "shards", [], DAY)
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert r.metrics["verified_nodes"] == 1 and r.metrics["unverified_node_ids"] == ["over"]
    reasons = dict(zip(r.tables["node_health_aegis"].column("node_id").to_pylist(),
                       r.tables["node_health_aegis"].column("reasons").to_pylist()))
    assert reasons == {"full": "", "over": "used_bytes > capacity_bytes"}
