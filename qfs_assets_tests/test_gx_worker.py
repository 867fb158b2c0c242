"""Great Expectations in its helper process gives exactly the verdicts of GX in this process."""

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
