"""Finding 2 of issue 19: no path built from data leaves its root.

Before the fix a node id holding ``../`` (the failure-id pattern accepted ``/``) made
``node_failure_response`` write its JSON and Parquet outside the evidence root, and the node
failure sensor requested such a partition by itself. Now every name that becomes a path
component (activity, table, partition key, failure id, node id) must match one strict pattern,
and every path is checked to resolve inside its root; anything else is bad input.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from qfs_assets import cli
from qfs_assets.activities.node_failure.detect import parse_failure_id, scan_failures
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import node, obj, proof, shard, ts, write
from qfs_assets_tests.test_node_failure import EqmLog
from qfs_assets_tests.test_scenarios import Hook

D1, D2 = "2026-03-02", "2026-03-03"
HOSTILE_NODES = [
    "../../escape",
    "x/../../node_health_assessment/node_health_assessment",
    "/abs/path",
    "a\\b",
    "..",
    ".hidden",
    "n\n1",
    "n\r1",
    "n\x001",
    "n\u20281",
    "n 1",
    "n%2F1",
    "n=1",
    "",
]
SAFE_NODES = ["node-0007", "n1", "N_1.eu-west", "a" * 100]


def _files_outside(tmp_path: Path, *roots: Path) -> list[Path]:
    """Every file under tmp_path that is not under one of ``roots``."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and not any(r in p.parents for r in roots)]


@pytest.mark.parametrize("node_id", HOSTILE_NODES)
def test_a_failure_id_of_a_hostile_node_is_rejected(node_id):
    with pytest.raises(ValueError, match="not a failure id"):
        parse_failure_id(f"{node_id}_20260303")


@pytest.mark.parametrize("node_id", SAFE_NODES)
def test_a_failure_id_of_an_ordinary_node_is_parsed(node_id):
    assert parse_failure_id(f"{node_id}_20260303_2") == (node_id, dt.date(2026, 3, 3), 2)


@pytest.mark.parametrize("name", HOSTILE_NODES)
def test_the_evidence_store_builds_no_path_from_an_unsafe_name(tmp_path, name):
    store = EvidenceStore(tmp_path / "ev")
    with pytest.raises(BadInput, match="not a safe name"):
        store.json_path("node_failure_response", "2026-03-03", key=name)
    with pytest.raises(BadInput, match="not a safe name"):
        store.table_path("node_failure_plan", name)
    with pytest.raises(BadInput, match="not a safe name"):
        store.table_path(name or "..", "2026-03-03")
    with pytest.raises(BadInput, match="not a safe name"):
        store.json_path(name or "..", "2026-03-03")


def test_the_evidence_store_paths_stay_inside_the_root(tmp_path):
    store = EvidenceStore(tmp_path / "ev")
    for path in (store.json_path("node_failure_response", "2026-03-03", key="node-0007_20260303"),
                 store.table_path("node_failure_plan", "node-0007_20260303"),
                 store.json_path("node_health_assessment", "2026-03-03")):
        assert (tmp_path / "ev") in path.parents


# -- an export where a hostile node and an ordinary node fail -----------------------------------------
EVIL = "../../escape"


def hostile_export(root: Path) -> Path:
    """On D2 ``f-ok`` and ``EVIL`` fail (EQM); snapshot, objects, shards and proofs of D2 for the response."""
    log = EqmLog()
    log.register(ts(D1, 1), "f-ok", EVIL, "a1", "a2", "a3", "a4")
    log.status(ts(D2, 9), "f-ok", "failed")
    log.status(ts(D2, 10), EVIL, "failed")
    log.write(root)
    nodes = {"f-ok": "failed", EVIL: "failed", "a1": "active", "a2": "active", "a3": "active", "a4": "active"}
    write(root, "nodes", [node(n, day=D1, status="active") for n in sorted(nodes)], D1)
    write(root, "nodes", [node(n, day=D2, status=s, capacity=10_000, used=100) for n, s in sorted(nodes.items())], D2)
    write(root, "objects", [obj("o1", k=2, n=3), obj("o2", k=2, n=3)], D2)
    write(root, "shards", [shard("o1", 0, "f-ok"), shard("o1", 1, "a1"), shard("o1", 2, "a2"),
                           shard("o2", 0, EVIL), shard("o2", 1, "a3"), shard("o2", 2, "a4")], D2)
    write(root, "proofs", [proof(f"c-{n}", n, day=D2) for n in sorted(nodes) if nodes[n] == "active"], D2)
    for d in (D1, D2):
        write(root, "rewards", [], d)
    return root


def test_detection_still_sees_the_hostile_failure(tmp_path):
    """The failure is real data: detection reports it; only what becomes a path is refused."""
    failures, _ = scan_failures(ExportReader(hostile_export(tmp_path / "export")))
    assert {f.node_id for f in failures} == {"f-ok", EVIL}


def test_the_sensor_requests_no_partition_for_a_hostile_node_and_alerts(tmp_path, monkeypatch):
    from qfs_assets.defs.node_failure.sensors import node_failure_sensor
    from qfs_assets.defs.resources import EvidenceResource, ExportResource

    export = hostile_export(tmp_path / "export")
    resources = {"export": ExportResource(export_root=str(export)),
                 "evidence": EvidenceResource(evidence_root=str(tmp_path / "ev"))}
    hook = Hook()
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        monkeypatch.setenv("QFS_EVIDENCE_ROOT", str(tmp_path / "ev"))
        with dg.instance_for_test() as instance:
            tick = node_failure_sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert [r.partition_key for r in tick.run_requests] == ["f-ok_20260303"]
            assert [list(r.partition_keys) for r in tick.dynamic_partitions_requests] == [["f-ok_20260303"]]
            again = node_failure_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                                resources=resources))
            assert again.run_requests == []
    finally:
        hook.close()
    kinds = sorted(alert["kind"] for _, alert in hook.posts)  # each once, not repeated by the next tick
    assert kinds == ["bad_input", "node_failure"], kinds
    [alert] = [a for _, a in hook.posts if a["kind"] == "bad_input"]
    assert alert["activity"] == "node_failure_response"
    assert "'../../escape'" in alert["message"] and "not a safe name" in alert["message"]
    assert _files_outside(tmp_path, tmp_path / "export", tmp_path / "ev") == []


def test_the_cli_refuses_a_hostile_partition_and_writes_nothing_anywhere(tmp_path, capsys):
    export = hostile_export(tmp_path / "export")
    ev = tmp_path / "a" / "ev"
    code = cli.main(["run", "node_failure_response", "--partition", f"{EVIL}_20260303", "--export-root", str(export),
                     "--evidence-root", str(ev)])
    assert code == cli.EXIT_BAD_INPUT
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("qfs-assure:")]
    assert "is not <node_id>_<YYYYMMDD>" in line or "not a failure id" in line or "is not" in line
    assert _files_outside(tmp_path, export) == []
    # the ordinary failure of the same export is answered, inside the root
    assert cli.main(["run", "node_failure_response", "--partition", "f-ok_20260303", "--export-root", str(export),
                     "--evidence-root", str(ev)]) in (cli.EXIT_PASSED, cli.EXIT_FAILED)
    assert (ev / "node_failure_response" / "f-ok_20260303.json").is_file()
    assert _files_outside(tmp_path, export, ev) == []


def test_a_hostile_dynamic_partition_added_by_hand_fails_as_bad_input_inside_the_root(tmp_path):
    """Someone adds the partition in the UI: the run fails in one line and writes nothing."""
    from qfs_assets.definitions import defs
    from qfs_assets.defs.node_failure.assets import node_failures

    export = hostile_export(tmp_path / "export")
    ev = tmp_path / "a" / "ev"
    key = f"{EVIL}_20260303"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(node_failures.name, [key])
        result = defs.resolve_job_def("node_failure_response_job").execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            run_config={"resources": {"export": {"config": {"export_root": str(export)}},
                                      "evidence": {"config": {"evidence_root": str(ev)}}}})
    assert not result.success
    code, message = cli._failure_message(result)  # noqa: SLF001
    assert code == cli.EXIT_BAD_INPUT and "not a failure id" in message and "\n" not in message
    assert _files_outside(tmp_path, export) == []
