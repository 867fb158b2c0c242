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
    report.update(gc=gc.isenabled(), frozen=gc.get_freeze_count() > 0, at_end=os.environ.get('MIMALLOC_PURGE_DELAY'),
                  env={k: os.environ.get(k) for k in ('MIMALLOC_ALLOW_THP', 'NUMPY_MADVISE_HUGEPAGE', 'OPENBLAS_NUM_THREADS')})
    if 'numpy' in sys.modules:  # (numpy reads NUMPY_MADVISE_HUGEPAGE when it loads)
        report['numpy_huge_pages'] = sys.modules['numpy']._core.multiarray._get_madvise_hugepage()
    open(out, 'w').write(json.dumps(report))
atexit.register(done)
sys.argv = ['qfs-assure', 'run'] + sys.argv[1:]
from qfs_assets import cli
real_settings = cli.one_shot_settings
def settings(name):
    report['loaded_before'] = sorted(m for m in ('numpy', 'pyarrow', 'pandas', 'dagster') if m in sys.modules)
    real_settings(name)
    report['gc_during_load'] = gc.isenabled()
cli.one_shot_settings = settings
cli.entry()
"""


def _probe(tmp_path: Path, activity: str, partition: str = "2025-01-01",
           **env_extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"{activity}.json"
    settings = {name for spec in registry.activities().values() for name, _ in spec.process_env}
    env = {k: v for k, v in os.environ.items() if k not in settings}  # (as an operator who set none)
    env.update(QFS_PARTITIONS_START="2023-01-01", **env_extra)
    args = [activity, "--partition", partition, "--export-root", str(tmp_path / "no_export"),
            "--evidence-root", str(tmp_path / "ev"), str(out)]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)
    return proc, json.loads(out.read_text())


def test_a_drill_run_sets_its_environment_before_any_data_library_loads_and_pauses_the_collector(tmp_path):
    proc, seen = _probe(tmp_path, "storage_replay_drill")
    assert proc.returncode == 2 and "no_export" in proc.stderr, proc.stderr  # (no export: bad input)
    assert seen["loaded_before"] == [] and seen["at_arrow"] == seen["at_end"] == "-1"
    # paused while the libraries, definitions and instance load; frozen and back on for the run
    assert seen["gc_during_load"] is False and seen["gc"] is True and seen["frozen"] is True
    assert seen["numpy_huge_pages"] is False
    assert seen["env"] == {"MIMALLOC_ALLOW_THP": "0", "NUMPY_MADVISE_HUGEPAGE": "0", "OPENBLAS_NUM_THREADS": "1"}


def test_an_operators_own_setting_wins_and_other_activities_get_none(tmp_path):
    _, seen = _probe(tmp_path, "storage_replay_drill", MIMALLOC_PURGE_DELAY="250")
    assert seen["at_end"] == "250"
    proc, seen = _probe(tmp_path, "economics_sanity_check", "2024-12-30")  # (a Monday: a run, of bad input)
    assert proc.returncode == 2 and "no_export" in proc.stderr, proc.stderr
    assert seen["gc_during_load"] is False and seen["frozen"] is True and seen["at_end"] is None
    assert seen["numpy_huge_pages"] is True and set(seen["env"].values()) == {None}


def test_main_in_a_longer_lived_process_changes_neither_the_collector_nor_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    monkeypatch.setenv("QFS_PARTITIONS_START", "2023-01-01")
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        code = cli.main(["run", "storage_replay_drill", "--partition", "2025-01-01", "--export-root",
                         str(tmp_path / "no_export"), "--evidence-root", str(tmp_path / "ev")])
        assert code == 2
        assert gc.isenabled() and gc.get_freeze_count() == frozen and "MIMALLOC_PURGE_DELAY" not in os.environ
    finally:  # (never leave a later test of this worker without its collector)
        gc.enable()
        os.environ.pop("MIMALLOC_PURGE_DELAY", None)


def test_the_drills_job_carries_its_environment_for_the_kubernetes_launcher():
    import json

    from qfs_assets.definitions import defs

    for name, spec in registry.activities().items():
        tags = defs.resolve_job_def(spec.job_name).tags
        k8s = tags.get("dagster-k8s/config")
        if not spec.process_env:
            assert k8s is None, name
            continue
        k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
        assert k8s == {"container_config": {"env": [{"name": n, "value": v} for n, v in spec.process_env]}}
    assert registry.get("storage_replay_drill").process_env  # (the loop checked a job with settings)
