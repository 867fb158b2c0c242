"""Great Expectations in its helper process gives exactly the verdicts of GX in this process."""

import subprocess
import sys
import time

import pyarrow as pa
import pytest

from qfs_assets.activities.node_health.assess import NodeHealthParams, criteria_specs
from qfs_assets.evidence import gx_suite

SPECS = criteria_specs(NodeHealthParams())
METRICS = {"verified_ratio": 0.95, "proof_success_rate": None, "utilization_cv": 0.1,
           "utilization_max_over_mean": 1.2, "objects_unrecoverable": 3}


def judge(**over):
    row = {**METRICS, **over}
    return pa.table({k: pa.array([v], pa.int64() if k == "objects_unrecoverable" else pa.float64()) for k, v in row.items()})


@pytest.fixture
def worker(monkeypatch):
    monkeypatch.setenv("QFS_GX_WORKER", "1")
    gx_suite._stop_worker()
    monkeypatch.delitem(gx_suite._STATE, "ctx", raising=False)
    monkeypatch.delitem(gx_suite._STATE, "prefetching", raising=False)  # (left by an in-process prefetch)
    gx_suite.prefetch()
    w = gx_suite._STATE.get("worker")
    assert w is not None and w.proc.poll() is None
    yield w
    gx_suite._stop_worker()


def _as_dicts(verdicts):
    return [(c.name, c.passed, c.observed, c.threshold, c.could_not_run, c.detail) for c in verdicts]


def test_helper_process_verdicts_equal_in_process_verdicts(worker):
    for table, metrics in ((judge(), METRICS), (judge(verified_ratio=0.99, proof_success_rate=0.999,
                                                      objects_unrecoverable=0), None)):
        remote = gx_suite.validate("node_health_assessment", table, SPECS, metrics)
        assert gx_suite._STATE.get("worker") is worker  # answered by the helper, not the fallback
        local = gx_suite.validate_local("node_health_assessment", table, SPECS, metrics)
        assert _as_dicts(remote) == _as_dicts(local)
    # a NULL metric fails its criterion (not "could not run"), a boundary value is judged strictly
    by_name = {c.name: c for c in remote}
    assert [c.name for c in remote] == [s.name for s in SPECS]
    first = {c.name: c for c in gx_suite.validate("node_health_assessment", judge(), SPECS, METRICS)}
    assert not first["nodes_verified"].passed and not first["proof_success"].passed
    assert not first["proof_success"].could_not_run and not first["no_unrecoverable_objects"].passed
    assert by_name["nodes_verified"].passed and by_name["no_unrecoverable_objects"].passed
    # the helper judged without loading what it hides or defers (their compiled extensions are not mapped)
    maps = open(f"/proc/{worker.proc.pid}/maps").read()
    assert "scipy/stats" not in maps and "sqlalchemy" not in maps, "the helper loaded scipy.stats or SQLAlchemy"


def test_a_dead_helper_falls_back_to_gx_in_this_process(worker):
    worker.proc.kill()
    worker.proc.wait()
    verdicts = gx_suite.validate("node_health_assessment", judge(), SPECS, METRICS)
    assert "worker" not in gx_suite._STATE
    assert _as_dicts(verdicts) == _as_dicts(gx_suite.validate_local("node_health_assessment", judge(), SPECS, METRICS))


def test_helper_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("QFS_GX_WORKER", "0")
    gx_suite._stop_worker()
    monkeypatch.delitem(gx_suite._STATE, "prefetching", raising=False)
    gx_suite.prefetch()  # imports GX in a thread of this process instead
    assert "worker" not in gx_suite._STATE
    assert gx_suite.validate("node_health_assessment", judge(), SPECS, METRICS)[0].name == "nodes_verified"


def test_the_helper_exits_by_itself_when_its_parent_is_done(worker):
    gx_suite.validate("node_health_assessment", judge(), SPECS, METRICS)
    gx_suite._stop_worker()
    assert worker.proc.returncode == 0  # closed stdin: it ended on its own (not killed)


def test_a_helper_still_importing_gx_is_not_waited_for(monkeypatch):
    """A run that ends before judging (bad input, a usage error) does not wait for GX's import."""
    monkeypatch.setenv("QFS_GX_WORKER", "1")
    gx_suite._stop_worker()
    monkeypatch.delitem(gx_suite._STATE, "ctx", raising=False)
    monkeypatch.delitem(gx_suite._STATE, "prefetching", raising=False)  # (left by an in-process prefetch)
    gx_suite.prefetch()
    w = gx_suite._STATE["worker"]
    t0 = time.perf_counter()
    gx_suite._stop_worker()
    assert w.proc.returncode is not None and time.perf_counter() - t0 < 1.0


def _verdicts_in_a_fresh_process(setup: str) -> list[str]:
    probe = (
        "import sys\n"
        "from qfs_assets.evidence import gx_worker\n"
        f"{setup}\n"
        "from qfs_assets.evidence import gx_suite\n"
        "from qfs_assets_tests.test_gx_worker import judge, SPECS, METRICS\n"
        "v = gx_suite.validate_local('node_health_assessment', judge(), SPECS, METRICS)\n"
        "assert [c.name for c in v] == [s.name for s in SPECS]\n"
        "print(repr(v))\n"
        "print(sorted(m for m in gx_worker.NOT_FOR_GX if sys.modules.get(m) is not None))\n"
        "print(sorted(m for m in gx_worker.DEFERRED_FOR_GX if not isinstance(sys.modules.get(m), gx_worker.Deferred)))\n"
    )
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-3:]


def test_the_helper_judges_without_gx_optional_integrations_and_without_loading_scipy_stats_or_altair():
    """The helper hides SQLAlchemy, psycopg2 and boto3 from GX (they are optional for GX and its
    pandas source never uses them) and defers scipy.stats and altair (imported by GX, used only by
    expectations and renderers never run here): GX still imports and judges, with exactly the
    verdicts of a plain GX import, none of the hidden modules is loaded and the deferred ones
    are still stand-ins."""
    verdicts, hidden, loaded = _verdicts_in_a_fresh_process(
        "gx_worker.hide_optional_integrations(); gx_worker.defer_unused_imports()")
    assert hidden == "[]" and loaded == "[]"
    plain, _, loaded_plain = _verdicts_in_a_fresh_process("pass")
    assert verdicts == plain
    assert loaded_plain == repr(sorted(DEFERRED)), "a plain GX import loads them (else the deferral is moot)"


DEFERRED = __import__("qfs_assets.evidence.gx_worker").evidence.gx_worker.DEFERRED_FOR_GX


def test_a_deferred_module_is_imported_on_first_use():
    import types

    from qfs_assets.evidence.gx_worker import Deferred

    name = "json.tool"  # a stdlib module no test imports
    saved = sys.modules.pop(name, None)
    try:
        sys.modules[name] = stand_in = Deferred(name)
        assert isinstance(sys.modules[name], Deferred)
        assert callable(stand_in.main)  # first use: the real module is imported and used
        assert isinstance(sys.modules[name], types.ModuleType) and not isinstance(sys.modules[name], Deferred)
        assert stand_in.main is sys.modules[name].main
    finally:
        sys.modules.pop(name, None)
        if saved is not None:
            sys.modules[name] = saved


def test_the_helper_loads_gx_with_the_collector_off_then_freezes_it_and_turns_it_back_on():
    """gx_worker.main: no collector pass while GX loads (its classes are never garbage), then the
    loaded objects are frozen and the collector is on again for the requests."""
    probe = (
        "import gc, json, os, sys\n"
        "from qfs_assets.evidence import gx_suite, gx_worker\n"
        "seen = {}\n"
        "real_context, real_exit = gx_suite._context, os._exit\n"
        "def context():\n"
        "    seen['during'] = gc.isenabled()\n"
        "    return real_context()\n"
        "gx_suite._context = context\n"
        "def leave(code):\n"  # the helper leaves by os._exit once its stdin is closed
        "    seen.update(after=gc.isenabled(), frozen=gc.get_freeze_count())\n"
        "    sys.__stderr__.write('SEEN' + json.dumps(seen) + '\\n'); sys.__stderr__.flush()\n"
        "    real_exit(code)\n"
        "os._exit = leave\n"
        "gx_worker.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], input=b"", capture_output=True, timeout=180)
    line = [x for x in proc.stderr.decode().splitlines() if x.startswith("SEEN")][-1]
    seen = __import__("json").loads(line[4:])
    assert seen["during"] is False and seen["after"] is True and seen["frozen"] > 0


def test_the_helper_starts_without_a_blas_thread_pool_unless_the_operator_says_otherwise(monkeypatch):
    seen, real_popen = [], gx_suite.subprocess.Popen
    monkeypatch.setattr(gx_suite.subprocess, "Popen", lambda *a, **k: seen.append(k["env"]) or real_popen(
        ["true"], stdin=gx_suite.subprocess.PIPE, stdout=gx_suite.subprocess.PIPE))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    gx_suite._Worker().close()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    gx_suite._Worker().close()
    assert [env.get("OPENBLAS_NUM_THREADS") for env in seen] == ["1", "3"]
