"""`defs` loads and materialises in-process; the CLI's exit codes; evidence is replaced, never lost."""

import json

import duckdb
import pytest
from dagster import DagsterInstance

from qfs_assets import cli
from qfs_assets.definitions import defs
from qfs_assets_tests.exportkit import node, obj, proof, shard, write
from qfs_assets_tests.test_node_health import build as build_failing

DAY = "2026-03-02"


def build_healthy(root, nodes=10):
    ids = [f"n{i:02d}" for i in range(nodes)]
    write(root, "nodes", [node(n) for n in ids], DAY)
    write(root, "proofs", [proof(f"c{n}{j}", n) for n in ids for j in range(3)], DAY)
    objects, shards = [], []
    for o in range(nodes):
        objects.append(obj(f"o{o}", k=2, n=3))
        shards += [shard(f"o{o}", i, ids[(o + i) % nodes]) for i in range(3)]
    write(root, "objects", objects, DAY)
    write(root, "shards", shards, DAY)
    return root


@pytest.fixture(scope="module")
def instance():
    return DagsterInstance.ephemeral()


def test_defs_load_with_partitions_and_checks():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"node_inventory", "shard_map", "proof_results", "aegis_verification", "shard_distribution",
            "node_health_assessment"} <= keys
    checks = {c.name for c in graph.asset_check_keys if c.asset_key.to_user_string() == "node_health_assessment"}
    assert checks == {"nodes_verified", "proof_success", "shard_balance", "no_unrecoverable_objects",
                      "no_corruption_errors"}
    job = defs.resolve_job_def("node_health_assessment_job")
    assert job.partitions_def is not None and job.partitions_def.has_partition_key(DAY)


def test_materialize_in_process_passing_day(tmp_path, instance):
    export = build_healthy(tmp_path / "export")
    o = cli.execute("node_health_assessment", DAY, export_root=str(export), evidence_root=str(tmp_path / "ev"),
                    instance=instance)
    assert o.exit_code == cli.EXIT_PASSED, o.message
    doc = json.loads(open(o.evidence_path).read())
    assert doc["activity"] == "node_health_assessment" and doc["partition"] == DAY and doc["passed"] is True
    assert doc["window"] == {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
    assert [c["name"] for c in doc["criteria"]] == ["nodes_verified", "proof_success", "shard_balance",
                                                    "no_unrecoverable_objects"]
    assert doc["metrics"]["verified_ratio"] == 1.0
    assert {t["table"] for t in doc["inputs"]["tables"]} == {"nodes", "proofs", "objects", "shards"}
    # the checks were recorded against the asset
    evaluations = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [c for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key.to_user_string() == "node_health_assessment"])
    statuses = {k.name: r.status.value for k, r in evaluations.items()}
    # no storage_errors feed (a v1 export): no_corruption_errors is not judged, so it is not reported passed
    assert len(statuses) == 5 and statuses.pop("no_corruption_errors") != "SUCCEEDED"
    assert set(statuses.values()) == {"SUCCEEDED"}


def test_cli_exit_codes_and_evidence_safety(tmp_path, capsys):
    ev = tmp_path / "ev"
    good = build_healthy(tmp_path / "good")
    failing = build_failing(tmp_path / "failing")
    assert cli.main(["run", "node_health_assessment", "--partition", DAY, "--export-root", str(good),
                     "--evidence-root", str(ev)]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "node_health_assessment_20260302.json" in out
    evidence = ev / "node_health_assessment" / "node_health_assessment_20260302.json"
    before = evidence.read_bytes()

    # bad input: exit 2, one line on stderr, earlier evidence untouched
    (good / "nodes" / "snapshot_date=2026-03-02" / "part-0.parquet").write_bytes(b"broken")
    assert cli.main(["run", "node_health_assessment", "--partition", DAY, "--export-root", str(good),
                     "--evidence-root", str(ev)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qfs-assure: bad input: table 'nodes', file '") and "\n" not in err and "Traceback" not in err
    assert evidence.read_bytes() == before

    # a failing day: exit 1, evidence replaced
    assert cli.main(["run", "node_health_assessment", "--partition", DAY, "--export-root", str(failing),
                     "--evidence-root", str(ev)]) == 1
    assert "FAILED (nodes_verified" in capsys.readouterr().out
    assert json.loads(evidence.read_text())["passed"] is False

    # usage errors: exit 2
    assert cli.main(["run", "node_health_assessment", "--partition", "02/03/2026"]) == 2
    assert cli.main(["run", "no_such_activity", "--partition", DAY]) == 2
    assert cli.main(["run", "node_health_assessment"]) == 2


def test_rerun_replaces_parquet_rows_never_duplicates(tmp_path, instance):
    export = build_failing(tmp_path / "export")
    ev = tmp_path / "ev"
    for _ in range(2):
        o = cli.execute("node_health_assessment", DAY, export_root=str(export), evidence_root=str(ev), instance=instance)
        assert o.exit_code == cli.EXIT_FAILED
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{ev}/node_health_aegis/*/*.parquet', hive_partitioning=true)"
                    " WHERE partition_key = DATE '2026-03-02'").fetchone()[0]
    assert n == 9
    import pyarrow.dataset as ds
    assert ds.dataset(ev / "node_health_aegis", partitioning="hive").to_table().num_rows == 9


def test_a_bad_input_cli_run_alerts_once(tmp_path, monkeypatch, capsys):
    """In-process CLI runs are not seen by run-status sensors: the CLI alerts itself, deduplicated."""
    from qfs_assets_tests.test_scenarios import Hook

    hook = Hook()
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        good = build_healthy(tmp_path / "export")
        (good / "proofs" / "date=2026-03-02" / "part-0.parquet").write_bytes(b"broken")
        args = ["run", "node_health_assessment", "--partition", DAY, "--export-root", str(good),
                "--evidence-root", str(tmp_path / "ev")]
        assert cli.main(args) == 2
        assert cli.main(args) == 2
        assert len(hook.posts) == 1
        alert = hook.posts[0][1]
        assert alert["kind"] == "bad_input" and alert["activity"] == "node_health_assessment"
        assert "table 'proofs'" in alert["message"] and alert["partition"] == DAY
    finally:
        hook.close()


def test_bad_input_line_is_printed_while_gx_imports_in_the_background(tmp_path, capsys):
    export = build_healthy(tmp_path / "export")  # no fee ledger at all
    assert cli.main(["run", "economics_sanity_check", "--partition", "2026-03-02", "--export-root", str(export),
                     "--evidence-root", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "qfs-assure: bad input: table 'fees'" in err
    import sys
    assert sys.stderr is not None and "StringIO" not in type(sys.stderr).__name__


def test_the_system_of_record_password_never_reaches_run_storage(tmp_path):
    import dagster as dg

    export = build_healthy(tmp_path / "export")
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        o = cli.execute("dual_write_diff", DAY, export_root=str(export), evidence_root=str(tmp_path / "ev"),
                        sor_url="postgresql://alice:S3cretPW@127.0.0.1:1/test", instance=instance)
        assert o.exit_code == cli.EXIT_SOURCE_UNREACHABLE and "S3cretPW" not in o.message and "***" in o.message
        run = instance.get_runs()[0]
        assert "S3cretPW" not in json.dumps(run.run_config)
    for path in home.rglob("*"):
        if path.is_file():
            assert b"S3cretPW" not in path.read_bytes(), path


def test_a_missing_setting_is_named_and_nothing_falls_back_to_demo_data(tmp_path, monkeypatch, capsys):
    for var in ("QFS_EXPORT_ROOT", "QFS_SOR_URL", "QFS_EVIDENCE_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "node_health_assessment", "--partition", DAY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "qfs-assure: no export root (the folder the deployment publishes): pass --export-root or set QFS_EXPORT_ROOT"
    assert cli.main(["run", "dual_write_diff", "--partition", DAY, "--export-root", str(tmp_path),
                     "--evidence-root", str(tmp_path / "ev")]) == 2
    assert "pass --sor-url or set QFS_SOR_URL" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_settings_come_from_a_dotenv_file_in_the_working_directory(tmp_path, monkeypatch, capsys):
    for var in ("QFS_EXPORT_ROOT", "QFS_SOR_URL", "QFS_EVIDENCE_ROOT"):
        monkeypatch.delenv(var, raising=False)
    export = build_healthy(tmp_path / "export")
    (tmp_path / ".env").write_text(f"QFS_EXPORT_ROOT={export}\nQFS_EVIDENCE_ROOT={tmp_path / 'ev'}\n")
    monkeypatch.chdir(tmp_path)
    try:
        assert cli.main(["run", "node_health_assessment", "--partition", DAY]) == 0
    finally:
        for var in ("QFS_EXPORT_ROOT", "QFS_EVIDENCE_ROOT"):
            monkeypatch.delenv(var, raising=False)
    assert (tmp_path / "ev" / "node_health_assessment" / "node_health_assessment_20260302.json").is_file()


def test_the_resources_read_the_environment_with_no_fallback():
    import dagster as dg

    from qfs_assets.defs import resources

    for res, var in ((resources.export, "QFS_EXPORT_ROOT"), (resources.system_of_record, "QFS_SOR_URL"),
                     (resources.evidence, "QFS_EVIDENCE_ROOT")):
        values = list(res._get_non_default_public_field_values().values())  # noqa: SLF001
        assert values == [dg.EnvVar(var)], (res, values)


def _processes_with(marker: str) -> list[int]:
    """The live processes whose environment holds ``marker`` (Linux /proc)."""
    import os
    from pathlib import Path

    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "environ").read_bytes() and (p / "stat").read_text().split()[2] != "Z":
                    found.append(int(p.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


def test_the_console_script_exits_without_teardown_yet_finishes_its_work(tmp_path):
    """`qfs-assure` ends with ``os._exit`` after its own exit work (cli.entry): the verdict is
    printed, the run is recorded SUCCESS in the instance, the evidence is whole, and no process
    it started (the GX helper) outlives it; a bad input still exits 2 with its one line."""
    import os
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    export = build_healthy(tmp_path / "export")
    (tmp_path / "home").mkdir()
    marker = f"QFS_TEST_MARKER={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QFS_")}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               **dict([marker.split("=")]))
    cmd = [sys.executable, "-m", "qfs_assets.cli", "run", "node_health_assessment", "--partition", DAY,
           "--export-root", str(export), "--evidence-root", str(tmp_path / "ev")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    evidence = tmp_path / "ev" / "node_health_assessment" / "node_health_assessment_20260302.json"
    assert proc.stdout == f"node_health_assessment {DAY}: PASSED\nevidence: {evidence}\n"
    assert json.loads(evidence.read_text())["passed"] is True
    assert _processes_with(marker) == []  # the GX helper was stopped before the exit
    with DagsterInstance.from_config(str(tmp_path / "home")) as inst:
        [run] = inst.get_runs()
        assert run.status.value == "SUCCESS" and run.tags["qfs/source"] == "cli"

    (export / "nodes" / f"snapshot_date={DAY}" / "part-0.parquet").write_bytes(b"broken")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("qfs-assure: bad input: table 'nodes', file '") and proc.stderr.count("\n") == 1
    assert _processes_with(marker) == []


@pytest.mark.parametrize("name", sorted(__import__("qfs_assets.registry").registry.activities()))
def test_the_cli_runs_the_code_locations_job_from_the_activitys_own_folder(name):
    """`qfs-assure run` loads only the activity's folder of defs/ and the resources
    (qfs_assets.activity_definitions); its job must be the code location's: the same job
    snapshot (assets, checks, ops, config schema) and the same executable assets."""
    from qfs_assets import registry
    from qfs_assets.activity_definitions import activity_definitions

    spec = registry.get(name)
    ours, served = activity_definitions(name).resolve_job_def(spec.job_name), defs.resolve_job_def(spec.job_name)
    assert ours.get_job_snapshot().snapshot_id == served.get_job_snapshot().snapshot_id
    assert ours.asset_layer.executable_asset_keys == served.asset_layer.executable_asset_keys
    assert set(ours.asset_layer.asset_graph.asset_check_keys) == set(served.asset_layer.asset_graph.asset_check_keys)
    # every asset the job's graph knows, upstream ones included (their partitions decide which
    # upstream version a run records as its input), is the code location's
    ours_graph, served_graph = ours.asset_layer.asset_graph, served.asset_layer.asset_graph
    assert ours_graph.get_all_asset_keys() == served_graph.get_all_asset_keys()
    for key in ours_graph.get_all_asset_keys():
        a, b = ours_graph.get(key), served_graph.get(key)
        assert (a.is_materializable, a.is_executable, a.partitions_def) == \
               (b.is_materializable, b.is_executable, b.partitions_def), key
    import qfs_assets.defs
    from pathlib import Path

    assert (Path(qfs_assets.defs.__file__).parent / spec.package / "assets.py").is_file()


def test_the_console_scripts_exit_runs_atexit_functions_and_waits_for_threads(tmp_path):
    """cli.entry skips the interpreter's teardown but not its exit work: a non-daemon thread still
    running when the command returns is waited for, and the atexit functions run (both write a
    file after a delay), before the process ends with the command's exit code."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import atexit, sys, threading, time\n"
        "from pathlib import Path\n"
        f"out = Path({str(tmp_path)!r})\n"
        "def late(name, delay):\n"
        "    time.sleep(delay)\n"
        "    (out / name).write_text('done')\n"
        "threading.Thread(target=late, args=('thread', 1.5)).start()\n"
        "atexit.register(late, 'atexit', 0.1)\n"
        "sys.argv = ['qfs-assure', 'run', 'no_such_activity', '--partition', '2026-03-02']\n"
        "from qfs_assets.cli import entry\n"
        "entry()\n"
        "(out / 'after').write_text('entry returned')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and "unknown activity 'no_such_activity'" in proc.stderr
    assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "done"
    assert not (tmp_path / "after").exists()  # entry() ended the process
