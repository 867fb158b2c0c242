"""`qfs-assure run` (the console script) makes its process-wide settings before any data library
loads (cli.one_shot_settings): the garbage collector off and the activity's ``process_env``;
``cli.main`` called in a longer-lived process leaves that process as it is."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from qfs_assets import cli, registry

ROOT = Path(__file__).resolve().parents[1]

# Runs the console script's entry() for `run <activity>` on a missing export (bad input: exit 2
# before any work) and reports what the process looked like: the environment variable when Arrow
# was first imported, and at the end (from an atexit function) the collector and the variable.
PROBE = """
import atexit, builtins, gc, json, os, sys
out = sys.argv.pop()
report = {}
_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name.split('.')[0] == 'pyarrow' and 'at_arrow' not in report:
        report['at_arrow'] = os.environ.get('MIMALLOC_PURGE_DELAY')
    return _import(name, *args, **kwargs)
builtins.__import__ = spy
def done():
    report.update(gc=gc.isenabled(), at_end=os.environ.get('MIMALLOC_PURGE_DELAY'))
    open(out, 'w').write(json.dumps(report))
atexit.register(done)
sys.argv = ['qfs-assure', 'run'] + sys.argv[1:]
from qfs_assets.cli import entry
entry()
"""


def _probe(tmp_path: Path, activity: str, **env_extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"{activity}.json"
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    env.update(QFS_PARTITIONS_START="2023-01-01", **env_extra)
    args = [activity, "--partition", "2025-01-01", "--export-root", str(tmp_path / "no_export"),
            "--evidence-root", str(tmp_path / "ev"), str(out)]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)
    return proc, json.loads(out.read_text())


def test_a_drill_run_sets_the_allocator_before_arrow_loads_and_turns_the_collector_off(tmp_path):
    proc, seen = _probe(tmp_path, "storage_replay_drill")
    assert proc.returncode == 2 and "no_export" in proc.stderr, proc.stderr  # (no export: bad input)
    assert seen == {"at_arrow": "-1", "gc": False, "at_end": "-1"}
    assert dict(registry.get("storage_replay_drill").process_env) == {"MIMALLOC_PURGE_DELAY": "-1",
                                                                      "OPENBLAS_NUM_THREADS": "1"}


def test_an_operators_own_setting_wins_and_other_activities_get_none(tmp_path):
    _, seen = _probe(tmp_path, "storage_replay_drill", MIMALLOC_PURGE_DELAY="250")
    assert seen["at_end"] == "250"
    _, seen = _probe(tmp_path, "economics_sanity_check")
    assert seen["gc"] is False and seen["at_end"] is None


def test_main_in_a_longer_lived_process_changes_neither_the_collector_nor_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    monkeypatch.setenv("QFS_PARTITIONS_START", "2023-01-01")
    assert gc.isenabled()
    code = cli.main(["run", "storage_replay_drill", "--partition", "2025-01-01", "--export-root",
                     str(tmp_path / "no_export"), "--evidence-root", str(tmp_path / "ev")])
    assert code == 2
    assert gc.isenabled() and "MIMALLOC_PURGE_DELAY" not in os.environ
