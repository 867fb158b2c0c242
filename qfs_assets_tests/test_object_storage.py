"""Exports and evidence in object storage (s3://), against a real S3-compatible server.

moto's standalone server (``moto_server``, from the test extra) is started by these tests on
127.0.0.1; the pipeline finds it through the standard AWS variables (``AWS_ENDPOINT_URL`` and
the keys), exactly as it would find a real bucket. The whole demo window is judged from an S3
export into an S3 evidence root and compared with the same runs on local disk; bad input is
rejected with the same one-line messages; re-runs replace objects; no credential reaches a log,
a message or the evidence.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qfs_assets_tests.observability_kit import build_evidence, build_ledger, free_port, stop

pytestmark = pytest.mark.slow  # the whole demo window through S3: minutes; .ci/run runs it

BUCKET = "qfs-assure-test"
SECRET = "s3cr3t-Do-Not-Log-8f2c"
ACTIVITIES = ("node_health_assessment", "economics_sanity_check", "dual_write_diff", "dual_write_verification",
              "storage_replay_drill")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small deployment with the demo's whole incident schedule (24 nodes, 200 objects, 42 days).

    What the S3 path costs is per file and per run, not per row: the default demo's 77 MB would
    only make the upload and the scans slower, with no more coverage of the S3 code.
    """
    from qfs_assets.demo import DemoConfig, generate

    config = DemoConfig(nodes=24, objects=200, days=42, writes_per_day=8, updates_per_day=5, deletes_per_day=2,
                        reads_per_day=25, renews_per_day=12, accounts=30, seed=7)
    return generate(tmp_path_factory.mktemp("s3demo"), config)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto server on 127.0.0.1 with one bucket; the AWS variables point at it for this module."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the test extra (pip install -e '.[test]')")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise AssertionError("moto_server did not start")
            time.sleep(0.2)
    env = {"AWS_ACCESS_KEY_ID": "qfs-test-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "QFS_STATE_DIR": str(tmp_path_factory.mktemp("state"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from qfs_assets import storage_uri

    storage_uri._FS_CACHE.clear()
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    fs, _ = storage_uri.filesystem(f"s3://{BUCKET}")
    try:
        yield {"fs": fs, "env": env, "port": port}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage_uri._FS_CACHE.clear()
        stop(proc)
        log.close()


def _upload(fs, local: Path, key: str) -> str:
    fs.put(str(local).rstrip("/") + "/", f"{BUCKET}/{key}/", recursive=True)
    return f"s3://{BUCKET}/{key}"


def _verdict(outcome) -> tuple:
    return (outcome.activity, outcome.partition, outcome.exit_code, outcome.passed, tuple(outcome.failed_criteria))


def _comparable(doc: dict) -> dict:
    """The evidence without what names where it came from (roots) or how long it took."""
    doc = json.loads(json.dumps(doc))
    for k in ("timings", "diff", "judged_at"):
        doc.pop(k, None)
    if isinstance(doc.get("replay_state_saved"), dict):  # where the verified state went: root-specific
        doc["replay_state_saved"].pop("path", None)
    inputs = doc.get("inputs") or {}
    for k in ("export_root", "ledger", "system_of_record"):
        inputs.pop(k, None)
    return doc


def _incident_keys(demo) -> set[tuple[str, str]]:
    return {(i.activity, p.isoformat()) for i in demo.incidents for p in i.partitions}


@pytest.fixture(scope="module")
def window(s3, demo, tmp_path_factory):
    """The whole demo window judged from the S3 export into S3 evidence, and, as the reference, on
    local disk every partition an incident touches, each activity's first and last partition, and
    every dual-write partition (a monthly verdict depends on the daily diffs' ledger history). The
    whole window twice would double the module's time for no more coverage of the S3 path."""
    import dagster as dg

    from qfs_assets import registry
    from qfs_assets.cli import _respond_to_failures, demo_partitions, execute
    from qfs_assets.definitions import defs

    export = _upload(s3["fs"], demo.export_root, "export")
    local_ev = tmp_path_factory.mktemp("evidence_local")
    remote_ev = f"s3://{BUCKET}/evidence"
    results: dict[str, list] = {"local_runs": [], "s3_runs": []}
    reference = _incident_keys(demo)
    for name in ACTIVITIES:
        keys = demo_partitions(registry.get(name), demo.start, demo.end)
        reference |= {(name, keys[0]), (name, keys[-1])} | ({(name, k) for k in keys} if name.startswith("dual_write") else set())
        for key in keys:
            runs = [("s3_runs", export, remote_ev)]
            if (name, key) in reference:
                runs.append(("local_runs", str(demo.export_root), str(local_ev)))
            for where, exp, ev in runs:
                o = execute(name, key, export_root=exp, sor_url=demo.sor_url, evidence_root=ev, defs=defs,
                            instance=dg.DagsterInstance.ephemeral())
                results[where].append(o)
    for where, exp, ev in (("local_runs", str(demo.export_root), str(local_ev)), ("s3_runs", export, remote_ev)):
        results[where] += _respond_to_failures(defs, dg.DagsterInstance.ephemeral(), exp, ev)
    return {"export": export, "local": local_ev, "remote": remote_ev, **results}


def test_demo_window_from_s3_has_the_local_verdicts(window, s3, demo):
    local = {(o.activity, o.partition): _verdict(o) for o in window["local_runs"]}
    remote = {(o.activity, o.partition): _verdict(o) for o in window["s3_runs"]}
    assert {k: remote[k] for k in local} == local
    assert all(o.exit_code in (0, 1) for o in window["s3_runs"]), [o.message for o in window["s3_runs"] if o.exit_code > 1]
    # over the whole window, exactly the demo's failures: its incidents, and every monthly verification
    # (the system of record is the live state after the last day: the drift shows in every month)
    failed = {k for k, v in remote.items() if v[2] == 1}
    expected = {(i.activity, p.isoformat()) for i in demo.incidents if i.failing_criteria for p in i.partitions}
    expected |= {k for k in remote if k[0] == "dual_write_verification"}
    assert failed == expected
    # 42 node health days, 6 weeks, 42 daily diffs, 2 months, 1 quarter (the log covers Q1 only:
    # the quarter the demo stops in is bad input by the coverage rule), 1 failure response
    assert len(remote) == 93 + 1
    assert any(o.activity == "node_failure_response" for o in window["s3_runs"])  # the sensor read the S3 export


def test_s3_evidence_equals_local_evidence_and_tables_precede_verdicts(window, s3):
    import pyarrow.parquet as pq

    fs = s3["fs"]
    local: Path = window["local"]
    jsons = sorted(p.relative_to(local).as_posix() for p in local.glob("*/*.json"))
    assert len(jsons) >= 10
    remote_jsons = {k.split("/evidence/", 1)[1] for k in fs.glob(f"{BUCKET}/evidence/*/*.json")}
    assert set(jsons) <= remote_jsons and len(remote_jsons) == 52  # every run above but the 42 daily diffs
    for rel in jsons:
        mine = json.loads((local / rel).read_text())
        theirs = json.loads(fs.cat(f"{BUCKET}/evidence/{rel}"))
        assert _comparable(theirs) == _comparable(mine), rel
        for table in theirs.get("tables", {}).values():  # the commit marker never points at a missing table
            assert fs.exists(f"{BUCKET}/evidence/{table}"), (rel, table)
            assert pq.read_table(fs.open(f"{BUCKET}/evidence/{table}")).equals(pq.read_table(local / table)), table
    for rel in remote_jsons:  # every verdict on S3 has its tables
        for table in json.loads(fs.cat(f"{BUCKET}/evidence/{rel}")).get("tables", {}).values():
            assert fs.exists(f"{BUCKET}/evidence/{table}"), (rel, table)
    assert fs.exists(f"{BUCKET}/evidence/dual_write_verification/dual_write_verification_20260301.reconciliation.sql")
    assert len(fs.glob(f"{BUCKET}/evidence/dual_write_diff_daily/*/part-0.parquet")) == 42


def test_ledgers_stay_local_and_the_diff_ledger_is_mirrored(window, s3):
    import pyarrow.parquet as pq

    from qfs_assets.storage_uri import local_state_dir

    state = Path(local_state_dir(window["remote"]))
    assert state.is_relative_to(Path(os.environ["QFS_STATE_DIR"]))
    kept = pq.read_table(state / "dual_write_diff_ledger" / "ledger.parquet")
    mirrored = pq.read_table(s3["fs"].open(f"{BUCKET}/evidence/dual_write_diff_ledger/ledger.parquet"))
    assert mirrored.equals(kept) and mirrored.schema.metadata == kept.schema.metadata
    runs = json.loads(kept.schema.metadata[b"qfs.dual_write.runs"])
    assert len(runs) == 42 + 2  # every daily diff and both monthly verifications, from S3
    local_ledger = pq.read_table(window["local"] / "dual_write_diff_ledger" / "ledger.parquet")
    assert kept.equals(local_ledger) and kept.schema.metadata == local_ledger.schema.metadata
    assert not s3["fs"].exists(f"{BUCKET}/evidence/dual_write_diff_ledger/.ledger.lock")


def test_rerun_replaces_objects_never_duplicates(window, s3, demo):
    import dagster as dg
    import duckdb

    from qfs_assets.cli import execute
    from qfs_assets.definitions import defs
    from qfs_assets.storage_uri import register_with_duckdb, upath

    fs = s3["fs"]
    before = sorted(fs.find(f"{BUCKET}/evidence/node_health_objects"))
    o = execute("node_health_assessment", "2026-03-11", export_root=window["export"], evidence_root=window["remote"],
                defs=defs, instance=dg.DagsterInstance.ephemeral())
    assert o.exit_code in (0, 1)
    assert sorted(fs.find(f"{BUCKET}/evidence/node_health_objects")) == before
    con = duckdb.connect()
    register_with_duckdb(con, upath(window["remote"]))
    n_remote = con.execute(f"SELECT count(*) FROM read_parquet('s3://{BUCKET}/evidence/node_health_aegis/*/*.parquet', "
                           "hive_partitioning=true)").fetchone()[0]
    n_local = con.execute(f"SELECT count(*) FROM read_parquet('{window['local']}/node_health_aegis/*/*.parquet', "
                          "hive_partitioning=true)").fetchone()[0]
    assert n_remote == n_local > 0


def _broken_exports(demo, tmp_path) -> Path:
    """A copy of the demo export with one unreadable file, one missing column, one missing partition."""
    import shutil

    import pyarrow.parquet as pq

    from qfs_assets.contract.schema import TABLES

    root = tmp_path / "broken"
    for table in ("nodes", "proofs", "shards", "objects"):
        for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
            part = f"{TABLES[table].partition_column}={day}"
            shutil.copytree(demo.export_root / table / part, root / table / part)
    # unreadable: proofs of 03-10; missing column: nodes of 03-11 has no stake_nod; missing partition: shards of 03-12
    f = next((root / "proofs" / "date=2026-03-10").glob("*.parquet"))
    f.write_bytes(b"not parquet at all")
    f = next((root / "nodes" / "snapshot_date=2026-03-11").glob("*.parquet"))
    pq.write_table(pq.read_table(f).drop_columns(["stake_nod"]), f)
    shutil.rmtree(root / "shards" / "snapshot_date=2026-03-12")
    return root


def test_bad_input_is_rejected_the_same_way(s3, demo, tmp_path):
    import dagster as dg

    from qfs_assets.cli import EXIT_BAD_INPUT, execute
    from qfs_assets.definitions import defs

    local = _broken_exports(demo, tmp_path)
    remote = _upload(s3["fs"], local, "broken")
    ev_local, ev_remote = tmp_path / "ev", f"s3://{BUCKET}/bad-evidence"
    for day in ("2026-03-10", "2026-03-11", "2026-03-12"):
        a = execute("node_health_assessment", day, export_root=str(local), evidence_root=str(ev_local), defs=defs,
                    instance=dg.DagsterInstance.ephemeral())
        b = execute("node_health_assessment", day, export_root=remote, evidence_root=ev_remote, defs=defs,
                    instance=dg.DagsterInstance.ephemeral())
        assert a.exit_code == b.exit_code == EXIT_BAD_INPUT, (a.message, b.message)
        assert "\n" not in b.message and "Traceback" not in b.message
        assert b.message.replace(remote, "<root>") == a.message.replace(str(local), "<root>"), (a.message, b.message)
        assert SECRET not in b.message
    assert not s3["fs"].exists(f"{BUCKET}/bad-evidence/node_health_assessment")  # no evidence written
    assert not (ev_local / "node_health_assessment").exists()


def test_cli_on_s3_never_shows_credentials_and_refuses_them_in_urls(window, s3, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "qfs_assets.cli", "run", "economics_sanity_check", "--partition", "2026-03-09",
                        "--export-root", window["export"], "--evidence-root", window["remote"]],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode in (0, 1), p.stderr
    assert "evidence: s3://" in p.stdout
    assert SECRET not in p.stdout + p.stderr and "qfs-test-key" not in p.stdout + p.stderr
    doc = s3["fs"].cat(f"{BUCKET}/evidence/economics_sanity_check/economics_sanity_check_20260309.json").decode()
    assert SECRET not in doc and "qfs-test-key" not in doc
    p = subprocess.run([sys.executable, "-m", "qfs_assets.cli", "run", "economics_sanity_check", "--partition", "2026-03-09",
                        "--export-root", f"s3://key:{SECRET}@{BUCKET}/export", "--evidence-root", window["remote"]],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 2 and SECRET not in p.stdout + p.stderr
    assert "AWS_" in p.stderr and p.stderr.strip().count("\n") == 0
    assert not list(tmp_path.iterdir())  # nothing written to the working directory


def test_metrics_from_s3_evidence_equal_local(s3, tmp_path):
    from qfs_assets.observability.metrics import EvidenceView, snapshot

    local = tmp_path / "evidence"
    build_evidence(local)
    build_ledger(local)
    remote = _upload(s3["fs"], local, "metrics-evidence")

    def values(root):
        snap = snapshot(EvidenceView(root))
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in snap.samples
                if s.name != "last_run_timestamp_seconds"}

    mine, theirs = values(str(local)), values(remote)
    assert theirs == mine and len(mine) > 50
    assert {(s.name, s.labels.get("activity")) for s in snapshot(EvidenceView(remote)).samples
            if s.name == "last_run_timestamp_seconds"} == {("last_run_timestamp_seconds", a) for a in
                                                           ("node_health_assessment", "economics_sanity_check",
                                                            "dual_write_verification", "storage_replay_drill",
                                                            "node_failure_response")}
    out = tmp_path / "tf" / "qfs.prom"
    p = subprocess.run([sys.executable, "-m", "qfs_assets.cli", "metrics", "--evidence-root", remote, "--textfile", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "qfs_assure_economics_fees_atr 2.7085807199e+010" in out.read_text() or \
        "qfs_assure_economics_fees_atr 2.7085807199e+10" in out.read_text()
