"""A real `dagster-daemon`: a sensor launches a run by itself, and nothing the demo did is repeated.

The instance folder is first left as `qfs-assure demo` leaves one: the demo evaluates the node
failure sensor once (node-0007 failed on 2026-03-11), runs the response it requests and keeps the
sensor's cursor in the instance. Then the export grows by one day whose `nodes` snapshot shows
node-0003 failed, and the daemon is started on the instance with the project's workspace.

Its first sensor tick must launch exactly one run, for node-0003, with no run for node-0007 (a
daemon that ignored the demo's cursor would respond to node-0007 again). The wait is bounded; the
daemon and everything it started (code server, run worker) are killed by process group.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qfs_assets import cli
from qfs_assets.definitions import defs
from qfs_assets.defs.node_failure.sensors import SENSOR_NAME, saved_cursor

REPO = Path(__file__).resolve().parents[1]
DEMO_FAILURE, NEW_FAILURE, NEW_DAY = "node-0007_20260311", "node-0003_20260413", "2026-04-13"


def grown_export(demo_export: Path, out: Path) -> Path:
    """The demo's export (linked, not copied) plus a 2026-04-13 `nodes` snapshot with node-0003 failed."""
    out.mkdir()
    for table in demo_export.iterdir():
        if table.name != "nodes":
            (out / table.name).symlink_to(table, target_is_directory=True)
    nodes = out / "nodes"
    nodes.mkdir()
    for part in (demo_export / "nodes").iterdir():
        (nodes / part.name).symlink_to(part, target_is_directory=True)
    last = sorted((demo_export / "nodes").iterdir())[-1]
    new = nodes / f"snapshot_date={NEW_DAY}"
    new.mkdir()
    for f in sorted(last.glob("*.parquet")):
        t = pq.read_table(f)
        status = pc.if_else(pc.equal(t["node_id"], "node-0003"), "failed", t["status"])
        pq.write_table(t.set_column(t.schema.get_field_index("status"), "status", status), new / f.name)
    return out


def test_daemon_sensor_launches_a_run_by_itself_and_repeats_nothing_of_the_demo(demo, tmp_path):
    home, evidence = tmp_path / "home", tmp_path / "evidence"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")

    # what `qfs-assure demo` does for node failures, on this instance
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        rows = cli._respond_to_failures(defs, instance, str(demo.export_root), str(evidence))
        assert [(o.partition, o.exit_code) for o in rows] == [(DEMO_FAILURE, cli.EXIT_PASSED)]
        assert saved_cursor(instance)
    finally:
        instance.dispose()

    export = grown_export(Path(demo.export_root), tmp_path / "export")
    env = {**os.environ, "DAGSTER_HOME": str(home), "QFS_EXPORT_ROOT": str(export),
           "QFS_EVIDENCE_ROOT": str(evidence), "DAGSTER_DISABLE_TELEMETRY": "1"}
    exe = Path(sys.executable).parent / "dagster-daemon"
    proc = subprocess.Popen([str(exe), "run", "-w", str(REPO / "workspace.yaml")], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        by_sensor = dg.RunsFilter(tags={"dagster/sensor_name": SENSOR_NAME})
        deadline, runs = time.monotonic() + 180, []
        while time.monotonic() < deadline and not runs:
            assert proc.poll() is None, "dagster-daemon exited"
            runs = instance.get_runs(filters=by_sensor)
            time.sleep(1)
        assert runs, "the sensor launched no run within 180 s"
        # the tick that launched it is complete: its run requests are all there is
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _state(instance)
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            if ticks and ticks[0].status.value in ("SUCCESS", "SKIPPED", "FAILURE"):
                break
            time.sleep(1)
        runs = instance.get_runs(filters=by_sensor)
        assert [r.tags["dagster/partition"] for r in runs] == [NEW_FAILURE]
        assert runs[0].tags["qfs/source"] == "node_failure_sensor"
        assert runs[0].run_config["ops"]["node_failure_response"]["config"]["aegis"]["min_node_pass_bps"] == 9500
        assert not instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": DEMO_FAILURE,
                                                                 "dagster/sensor_name": SENSOR_NAME}))
        # let the launched run end (whatever its verdict) before stopping everything
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not instance.get_run_by_id(runs[0].run_id).is_finished:
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        instance.dispose()


def _state(instance):
    [state] = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR_NAME]
    return state
