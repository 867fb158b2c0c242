"""The project's shape: pure modules free of Dagster, one entry point, a reviewed definitions graph.

- every module outside the orchestration layer (``qfs_assets.defs``), the CLI and
  ``definitions.py`` imports without importing Dagster;
- ``dagster definitions validate`` and ``dagster dev`` work from the repository root with no
  flags;
- the definitions graph (assets with their deps, checks, jobs, schedules with their cron, sensors)
  equals the committed snapshot, so a change to the graph shows in review. After an intended
  change: ``QFS_UPDATE_SNAPSHOTS=1 pytest qfs_assets_tests/test_project_layout.py`` and commit
  the new ``snapshots/definitions.json``.
"""

import json
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import qfs_assets

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
ORCHESTRATION = ("qfs_assets.defs", "qfs_assets.definitions", "qfs_assets.activity_definitions", "qfs_assets.cli")


def pure_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(qfs_assets.__path__, prefix="qfs_assets.")]
    return sorted(n for n in names if not n.startswith(ORCHESTRATION) and not n.endswith("__main__"))


def test_every_pure_module_imports_without_dagster():
    modules = pure_modules()
    assert len(modules) > 30 and "qfs_assets.registry" in modules and "qfs_assets.alerting.model" in modules
    probe = (
        "import importlib, sys, json\n"
        "bad = []\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'dagster' in sys.modules:\n"
        "        bad.append(name); break\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], "imports dagster (first offender)"


#: what importing the definitions must not import: each is needed by one activity's run only (or by
#: none in this process), and every process that loads the code location (a `qfs-assure run` of
#: any activity, the code server, the daemon) would pay for it (numba alone ~0.5 s of CPU)
NOT_AT_LOAD = {
    "numba": "the replay engine's compiled kernels (the drill imports them when it runs)",
    "pandas": "pulled in by pyarrow's first pa.array/pa.scalar of Python values: none at module level",
    "jinja2": "the HTML dashboard (its asset imports it when it renders)",
    "great_expectations": "GX (its helper process, or the judge when a run has no helper)",
    "qfs_assets_tests": "the tests (the frozen reference replay engine lives there): the runtime never imports them",
}


@pytest.mark.parametrize("load", ["import qfs_assets.definitions",
                                  "from qfs_assets import registry\n"
                                  "from qfs_assets.activity_definitions import activity_definitions\n"
                                  "for name in registry.activities(): activity_definitions(name)"],
                         ids=["code location", "each activity's own definitions (qfs-assure run)"])
def test_loading_the_definitions_imports_only_what_every_run_needs(load):
    probe = ("import sys, json\n"
             f"{load}\n"
             f"print(json.dumps(sorted(m for m in {sorted(NOT_AT_LOAD)!r} if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], {m: NOT_AT_LOAD[m] for m in loaded}


def graph_snapshot(defs) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "checks": sorted(c.name for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.jobs),
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name, "timezone": s.execution_timezone,
                               "default_status": s.default_status.value}
                      for s in sorted(defs.schedules, key=lambda s: s.name)},
        "sensors": {s.name: {"default_status": s.default_status.value,
                             "jobs": sorted(j.name for j in (s.jobs if s.has_jobs else []))}
                    for s in sorted(defs.sensors, key=lambda s: s.name)},
        "resources": sorted(defs.resources or {}),
    }


def test_definitions_match_the_snapshot():
    from qfs_assets.definitions import defs

    current = graph_snapshot(defs)
    if os.environ.get("QFS_UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_every_registered_activity_has_its_job_and_schedule():
    from qfs_assets import registry
    from qfs_assets.definitions import defs

    jobs = {j.name for j in defs.jobs}
    schedules = {s.name: s for s in defs.schedules}
    for activity in registry.activities().values():
        assert activity.job_name in jobs, activity.name
        if activity.schedule_cron:
            assert schedules[activity.schedule_name].cron_schedule == activity.schedule_cron
        else:
            assert activity.schedule_name not in schedules


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QFS_")}
    env.update(DAGSTER_HOME=str(tmp_path), DAGSTER_DISABLE_TELEMETRY="1")
    return env


def test_dagster_definitions_validate_with_no_flags(tmp_path):
    exe = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(exe), "definitions", "validate"], cwd=ROOT, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Validation successful for code location qfs_assets" in out.stdout + out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_dev_serves_the_code_location_with_no_flags(tmp_path):
    exe = Path(sys.executable).parent / "dagster"
    port = _free_port()
    proc = subprocess.Popen([str(exe), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                 "locationOrLoadError { __typename } } } } }"}).encode()
    try:
        deadline, entries = time.monotonic() + 150, None
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    entries = json.load(resp)["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert entries and [e["name"] for e in entries] == ["qfs_assets"], entries
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
