"""The Dagster UI: every activity asset with its partitions and checks, and each verdict where
operators look for it.

A module fixture judges `node_health_assessment` through the CLI's `execute` (the job, run config and
instance path of `qfs-assure run`) on a throwaway instance folder over the demo deployment:
2026-03-18 fails proof_success (0.9698 <= 0.99), 2026-03-17 passes every criterion, 2026-04-20 is
after the export ends (bad input). In-process tests read what Dagster recorded (per-partition
checks, run tags, metadata, parameter sources); the last test starts a real `dagster-webserver` on
that instance, asks its GraphQL API, and stops it by process group (a background `dagster dev`
ignores SIGTERM for a long time).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from qfs_assets import cli, settings
from qfs_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]

FAILING, PASSING, BROKEN = "2026-03-18", "2026-03-17", "2026-04-20"  # BROKEN: after the export ends
ASSET = dg.AssetKey("node_health_assessment")
CHECKS = ("nodes_verified", "proof_success", "shard_balance", "no_unrecoverable_objects", "no_corruption_errors")


@pytest.fixture(scope="module")
def judged(demo, tmp_path_factory):
    """node_health_assessment judged for a failing day, a passing day and a day of missing input, in an
    instance folder (DAGSTER_HOME) a webserver can serve."""
    tmp = tmp_path_factory.mktemp("verdicts")
    evidence, home = tmp / "evidence", tmp / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        outcomes = {day: cli.execute("node_health_assessment", day, export_root=str(demo.export_root),
                                     evidence_root=str(evidence), defs=defs, instance=instance)
                    for day in (FAILING, PASSING, BROKEN)}
        yield instance, outcomes, evidence, home


def _runs(instance):
    return {r.tags.get("dagster/partition"): r for r in instance.get_runs()}


def test_verdicts_and_exit_codes(judged):
    _, outcomes, _, _ = judged
    assert outcomes[FAILING].exit_code == cli.EXIT_FAILED and outcomes[FAILING].failed_criteria == ["proof_success"]
    assert outcomes[PASSING].exit_code == cli.EXIT_PASSED
    assert outcomes[BROKEN].exit_code == cli.EXIT_BAD_INPUT


def test_checks_are_recorded_per_partition_with_no_skipped_execution(judged):
    instance, _, _, _ = judged
    runs = _runs(instance)
    for name in CHECKS:
        history = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(ASSET, name),
                                                                              limit=20)
        by_partition = {r.partition: r for r in history}
        assert set(by_partition) == {FAILING, PASSING, BROKEN}, name  # one execution per run, each its partition
        assert len(history) == 3, name
        expected_failing = "FAILED" if name == "proof_success" else "SUCCEEDED"
        assert by_partition[FAILING].status.value == expected_failing, name
        assert by_partition[PASSING].status.value == "SUCCEEDED", name
        # the bad-input run left its own partition's checks unfinished (EXECUTION_FAILED in the UI), only those
        assert by_partition[BROKEN].status.value == "PLANNED" and by_partition[BROKEN].run_id == runs[BROKEN].run_id
        assert runs[BROKEN].status == dg.DagsterRunStatus.FAILURE


def test_runs_are_tagged_with_their_verdict(judged):
    instance, _, _, _ = judged
    runs = _runs(instance)
    assert runs[FAILING].tags["qfs/verdict"] == "failed"
    assert runs[FAILING].tags["qfs/failed_criteria"] == "proof_success"
    assert runs[PASSING].tags["qfs/verdict"] == "passed" and "qfs/failed_criteria" not in runs[PASSING].tags
    assert "qfs/verdict" not in runs[BROKEN].tags  # bad input: no verdict, the run failed
    found = instance.get_runs(filters=dg.RunsFilter(tags={"qfs/verdict": "failed"}))
    assert [r.run_id for r in found] == [runs[FAILING].run_id]


def _metadata(instance, partition):
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ASSET, asset_partitions=[partition]), limit=1).records
    return record.asset_materialization.metadata


def test_metadata_leads_with_the_verdict_and_is_numeric(judged):
    instance, _, _, _ = judged
    md = _metadata(instance, FAILING)
    keys = list(md)
    assert keys[:4] == ["verdict", "passed", "failed_criteria", "failed_criteria_names"]
    verdict = md["verdict"].value
    assert verdict.startswith("**FAILED** — node_health_assessment 2026-03-18: 1 of 5 criteria failed (proof_success)")
    assert "| proof_success | **FAILED** | 0.969" in verdict
    # shard_balance's observed values and thresholds read as text, not a Python dict
    assert "| shard_balance | passed | utilization_cv=" in verdict and "utilization_max_over_mean=1.5 |" in verdict
    assert "{" not in verdict and "'" not in verdict and "None" not in verdict
    assert md["passed"].value is False and md["failed_criteria"].value == 1
    # metrics and thresholds as numbers (the UI plots them by partition); no JSON anywhere
    assert isinstance(md["proof_success_rate"], dg.FloatMetadataValue)
    assert isinstance(md["in_service_nodes"], dg.IntMetadataValue)
    assert md["param.min_proof_success_rate"].value == 0.99
    assert md["param.min_stake_nod"].value == 100_000_000_000
    assert not [k for k, v in md.items() if isinstance(v, dg.JsonMetadataValue)]
    assert _metadata(instance, PASSING)["verdict"].value.startswith("**PASSED** — node_health_assessment 2026-03-17")


def test_check_metadata_is_numeric(judged):
    instance, _, _, _ = judged
    [record] = [r for r in instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(ASSET, "shard_balance"), limit=10) if r.partition == FAILING]
    md = record.evaluation.metadata
    assert set(md) >= {"observed.utilization_cv", "observed.utilization_max_over_mean",
                       "threshold.utilization_cv", "threshold.utilization_max_over_mean"}
    assert md["threshold.utilization_cv"].value == 0.25
    assert not [k for k, v in md.items() if isinstance(v, dg.JsonMetadataValue)]


def test_evidence_records_where_each_parameter_came_from(judged, demo, tmp_path, monkeypatch):
    _, _, evidence, _ = judged
    doc = json.loads((evidence / "node_health_assessment" / "node_health_assessment_20260318.json").read_text())
    assert doc["parameters"]["min_proof_success_rate"] == 0.99
    assert set(doc["parameter_sources"]) == set(doc["parameters"])
    assert set(doc["parameter_sources"].values()) == {"default"}
    assert doc["judged_at"].endswith("Z")

    # a deployment file judges (0.9698 > 0.95: passed), one value given in run config (the launchpad) on top
    path = tmp_path / "qfs-assure.toml"
    path.write_text("[node_health]\nmin_proof_success_rate = 0.95\n", encoding="utf-8")
    monkeypatch.setenv(settings.ENV_VAR, str(path))
    ev = tmp_path / "ev"
    try:
        config = cli.run_config(activity="node_health_assessment")
        config["ops"]["node_health_assessment"]["config"]["max_utilization_cv"] = 0.5
        with dg.instance_for_test() as instance, cli.settings_env(export_root=str(demo.export_root),
                                                                  evidence_root=str(ev)):
            job = defs.resolve_job_def("node_health_assessment_job")
            assert job.execute_in_process(partition_key=FAILING, run_config=config, instance=instance).success
    finally:
        monkeypatch.undo()
        settings.reset()
    doc = json.loads((ev / "node_health_assessment" / "node_health_assessment_20260318.json").read_text())
    assert doc["passed"] is True and doc["parameters"]["min_proof_success_rate"] == 0.95
    assert doc["parameter_sources"]["min_proof_success_rate"] == f"file:{path.resolve()}"
    assert doc["parameter_sources"]["max_utilization_cv"] == "run_config"
    assert doc["parameter_sources"]["min_verified_ratio"] == "default"


def test_the_node_failure_response_uses_node_healths_aegis_thresholds(demo, tmp_path, monkeypatch):
    path = tmp_path / "qfs-assure.toml"
    path.write_text("[node_health]\nmin_node_pass_bps = 10000\n", encoding="utf-8")
    monkeypatch.setenv(settings.ENV_VAR, str(path))
    ev = tmp_path / "ev"
    try:
        with dg.instance_for_test() as instance:
            cli.execute("node_failure_response", "node-0007_20260311", export_root=str(demo.export_root),
                        evidence_root=str(ev), defs=defs, instance=instance)
    finally:
        monkeypatch.undo()
        settings.reset()
    doc = json.loads((ev / "node_failure_response" / "node-0007_20260311.json").read_text())
    assert doc["parameters"]["aegis"]["min_node_pass_bps"] == 10000
    assert doc["parameter_sources"]["aegis"]["min_node_pass_bps"] == f"file:{path.resolve()}"
    assert doc["parameter_sources"]["aegis"]["min_stake_nod"] == "default"


QUERY = "{ assetNodes { assetKey { path } isPartitioned assetChecksOrError { ... on AssetChecks { checks { name } } } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _executions(port: int, check: str, partition: str | None = None) -> list[dict]:
    where = f', partition: "{partition}"' if partition is not None else ""
    data = _graphql(port, '{ assetCheckExecutions(assetKey: {path: ["node_health_assessment"]}, '
                          f'checkName: "{check}"{where}, limit: 50) {{ status partition runId }} }}')
    return data["data"]["assetCheckExecutions"]


def test_webserver_shows_assets_checks_and_per_partition_verdicts(judged, tmp_path):
    """Done when: over GraphQL the failing day's proof_success execution for that partition is FAILED,
    the passing day's SUCCEEDED, and no check has a SKIPPED execution in either run."""
    instance, _, _, home = judged
    runs = _runs(instance)
    port = _free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen([str(exe), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path,
                            env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        data = None
        while time.time() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": QUERY}).encode(),
                                             headers={"Content-Type": "application/json"})
                data = json.loads(urllib.request.urlopen(req, timeout=5).read())["data"]
                if data and data["assetNodes"]:
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert data and data["assetNodes"], "dagster-webserver did not answer"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        checks = {k: {c["name"] for c in n["assetChecksOrError"].get("checks", [])} for k, n in nodes.items()}
        for activity in ("node_health_assessment", "economics_sanity_check", "dual_write_verification",
                         "storage_replay_drill", "node_failure_response"):
            assert nodes[activity]["isPartitioned"], activity
            assert len(checks[activity]) >= 3, activity
        assert checks["node_health_assessment"] == set(CHECKS)

        failing = _executions(port, "proof_success", FAILING)
        passing = _executions(port, "proof_success", PASSING)
        assert [(e["status"], e["partition"], e["runId"]) for e in failing] == [("FAILED", FAILING, runs[FAILING].run_id)]
        assert [(e["status"], e["partition"], e["runId"]) for e in passing] == [("SUCCEEDED", PASSING, runs[PASSING].run_id)]
        judged_runs = {runs[FAILING].run_id, runs[PASSING].run_id}
        for check in CHECKS:
            everything = _executions(port, check)
            mine = [e for e in everything if e["runId"] in judged_runs]
            assert len(mine) == 2 and not [e for e in mine if e["status"] == "SKIPPED"], (check, mine)
            assert {e["partition"] for e in mine} == {FAILING, PASSING}, check
            # the bad-input run marks only its own partition
            [broken] = [e for e in everything if e["runId"] == runs[BROKEN].run_id]
            assert (broken["status"], broken["partition"]) == ("EXECUTION_FAILED", BROKEN), check
        statuses = _graphql(port, '{ runsOrError(filter: {tags: [{key: "qfs/verdict", value: "failed"}]}) '
                                  '{ ... on Runs { results { runId } } } }')
        assert [r["runId"] for r in statuses["data"]["runsOrError"]["results"]] == [runs[FAILING].run_id]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
