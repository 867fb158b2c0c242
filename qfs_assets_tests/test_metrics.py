"""Prometheus metrics from the evidence store (qfs_assets.observability).

The values are checked against the evidence JSON itself, first in-process, then through a real
Prometheus server (Debian's ``prometheus``) that scrapes ``qfs-assure metrics`` on 127.0.0.1 and
answers through its HTTP query API. The Prometheus tests are skipped only when the binary is
absent and QFS_REQUIRE_PROMETHEUS is unset (``.ci/run`` installs it and sets it).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from qfs_assets.observability import metrics as M
from qfs_assets.observability.exporter import registry_for, write_textfile
from qfs_assets_tests.observability_kit import (
    build_evidence,
    build_ledger,
    exporter,
    prom_query,
    prometheus_scraping,
    wait_for_scrape,
)

ROOT = Path(__file__).resolve().parents[1]


def _latest(root: Path, activity: str) -> tuple[Path, dict]:
    files = sorted((root / activity).glob("*.json"), key=lambda p: (p.stem[-8:], p.stem))
    return files[-1], json.loads(files[-1].read_text())


def expected_values(root: Path) -> dict[tuple[str, tuple], float]:
    """What the exporter must say, derived from the evidence files independently of the exporter."""
    import datetime as dt

    def ts(s):
        return dt.datetime.fromisoformat(s).timestamp()

    out: dict[tuple[str, tuple], float] = {}
    for activity in M.ACTIVITIES:
        path, doc = _latest(root, activity)
        a = (("activity", activity),)
        out[("qfs_assure_verdict_passed", a)] = float(doc["passed"])
        out[("qfs_assure_verdict_criteria_failed", a)] = float(sum(not c["passed"] for c in doc["criteria"]))
        out[("qfs_assure_latest_window_end_timestamp_seconds", a)] = ts(doc["window"]["end"])
        out[("qfs_assure_latest_partition_start_timestamp_seconds", a)] = ts(doc["window"]["start"])
        out[("qfs_assure_evidence_partitions", a)] = float(len(list((root / activity).glob("*.json"))))
        out[("qfs_assure_last_run_timestamp_seconds", a)] = max(p.stat().st_mtime for p in (root / activity).glob("*.json"))
        for c in doc["criteria"]:
            out[("qfs_assure_criterion_passed", (("activity", activity), ("criterion", c["name"])))] = float(c["passed"])
        for h in M.HEADLINES[activity]:
            v = doc["metrics"].get(h.key)
            if isinstance(v, bool):
                v = float(v)
            elif isinstance(v, str):
                v = ts(v)
            if v is not None:
                out[(f"qfs_assure_{h.name}", ())] = float(v)
    _, nh = _latest(root, "node_health_assessment")
    for cls, n in nh["metrics"]["storage_errors_by_class"].items():
        out[("qfs_assure_node_health_storage_errors_by_class", (("error_class", cls),))] = float(n)
    _, dw = _latest(root, "dual_write_verification")
    for cat in M.INCONSISTENCY_CATEGORIES:
        out[("qfs_assure_dual_write_inconsistencies_by_category", (("category", cat),))] = float(dw["metrics"][cat])
    return out


@pytest.fixture
def evidence(tmp_path):
    root = tmp_path / "evidence"
    build_evidence(root)
    build_ledger(root)
    return root


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_snapshot_equals_the_evidence(evidence):
    from prometheus_client import generate_latest

    got = _samples(generate_latest(registry_for(str(evidence))).decode())
    want = expected_values(evidence)
    for key, value in want.items():
        assert got.get(key) == value, key
    # the latest day judged storage errors; ages from the real ledger: two diffs open since the
    # first run (2026-03-30T00:00Z), the last run at 2026-03-31T06:00Z -> 30 hours, both over 24 h
    assert got[("qfs_assure_dual_write_open_diffs", ())] == 2
    assert got[("qfs_assure_dual_write_open_diffs_by_category", (("category", "missing_in_sor"),))] == 1
    assert got[("qfs_assure_dual_write_open_diffs_by_category", (("category", "version_mismatch"),))] == 1
    assert got[("qfs_assure_dual_write_oldest_open_diff_age_seconds", ())] == 30 * 3600
    assert got[("qfs_assure_dual_write_open_diffs_over_resolution_window", ())] == 2
    assert got[("qfs_assure_dual_write_ledger_runs", ())] == 2
    assert got[("qfs_assure_latest_partition_info", (("activity", "node_failure_response"),
                                                      ("evidence_key", "node-0007_20260311"), ("partition", "2026-03-11")))] == 1
    # every exposed family is a documented, stable name
    names = {fam.name for fam in text_string_to_metric_families(generate_latest(registry_for(str(evidence))).decode())}
    assert names <= set(M.metric_names())


def test_absent_metrics_have_no_sample(evidence):
    """v1 evidence (no storage_errors feed) and null metrics: no sample rather than a made-up 0."""
    nh = evidence / "node_health_assessment"
    newest = sorted(nh.glob("*.json"))[-1]
    newest.unlink()  # the latest day is now one without the storage-errors feed
    doc = json.loads(sorted(nh.glob("*.json"))[-1].read_text())
    doc["metrics"]["verified_ratio"] = None
    sorted(nh.glob("*.json"))[-1].write_text(json.dumps(doc))
    snap = M.snapshot(M.EvidenceView(str(evidence)))
    names = {s.name for s in snap.samples}
    for absent in ("node_health_storage_errors", "node_health_corruption_errors", "node_health_storage_errors_by_class",
                   "node_health_verified_ratio"):
        assert absent not in names
    assert snap.value("node_health_proof_challenges") == doc["metrics"]["proof_challenges"]


def test_latest_is_by_partition_not_by_write_time_and_last_passed(evidence):
    """Re-running an old partition updates the last run time, not the latest verdict."""
    nh = evidence / "node_health_assessment"
    oldest = sorted(nh.glob("*.json"))[0]
    os.utime(oldest, (4_000_000_000, 4_000_000_000))
    snap = M.snapshot(M.EvidenceView(str(evidence)))
    assert snap.value("last_run_timestamp_seconds", activity="node_health_assessment") == 4_000_000_000
    latest = json.loads(sorted(nh.glob("*.json"))[-1].read_text())
    assert snap.value("verdict_passed", activity="node_health_assessment") == float(latest["passed"]) == 0.0
    # the last partition that passed is 2026-03-03 (verified ratio 39/40 and no unrecoverable objects)
    import datetime as dt
    assert snap.value("last_passed_window_end_timestamp_seconds", activity="node_health_assessment") == \
        dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc).timestamp()
    # no storage replay drill passed in the latest quarter, but the one before did
    assert snap.value("verdict_passed", activity="storage_replay_drill") == 0.0
    assert snap.value("last_passed_window_end_timestamp_seconds", activity="storage_replay_drill") == \
        dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc).timestamp()


def test_last_passed_is_the_newest_partition_that_passed(evidence):
    """With two passing days before a failing one, the newest of them is the last that passed."""
    import datetime as dt

    oldest = sorted((evidence / "node_health_assessment").glob("*.json"))[0]  # 2026-03-02: failed (ratio 0.95)
    doc = json.loads(oldest.read_text())
    doc["passed"] = True
    for c in doc["criteria"]:
        c["passed"] = True
    oldest.write_text(json.dumps(doc))
    snap = M.snapshot(M.EvidenceView(str(evidence)))
    assert snap.value("verdict_passed", activity="node_health_assessment") == 0.0  # 2026-03-04 failed
    assert snap.value("last_passed_window_end_timestamp_seconds", activity="node_health_assessment") == \
        dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc).timestamp()  # the end of 2026-03-03, not of 03-02


def test_a_diff_open_exactly_the_resolution_window_is_not_over_it(tmp_path):
    """The 24-hour rule: a difference first seen exactly 24 h before the ledger's latest run is
    still within the window (as the ledger's own unresolved_over says); one second more is over."""
    import datetime as dt

    import pyarrow as pa

    from qfs_assets.activities.dual_write.ledger import DiffLedger

    UTC = dt.timezone.utc
    root = tmp_path / "evidence"
    ledger = DiffLedger(root)
    diffs = pa.table({"object_id": ["obj-1", "obj-2"], "category": ["missing_in_sor", "version_mismatch"]})
    ledger.apply("run-1", dt.datetime(2026, 3, 30, tzinfo=UTC), diffs.slice(0, 1))  # obj-1 first seen
    ledger.apply("run-2", dt.datetime(2026, 3, 30, 0, 0, 1, tzinfo=UTC), diffs)  # obj-2 first seen
    ledger.apply("run-3", dt.datetime(2026, 3, 31, tzinfo=UTC), diffs)  # obj-1 open exactly 24 h
    snap = M.snapshot(M.EvidenceView(str(root)))
    assert snap.value("dual_write_oldest_open_diff_age_seconds") == 24 * 3600
    assert snap.value("dual_write_open_diffs") == 2
    assert snap.value("dual_write_open_diffs_over_resolution_window") == 0
    assert ledger.unresolved_over("run-3").num_rows == 0
    ledger.apply("run-4", dt.datetime(2026, 3, 31, 0, 0, 1, tzinfo=UTC), diffs)  # obj-1 24 h 1 s, obj-2 24 h
    snap = M.snapshot(M.EvidenceView(str(root)))
    assert snap.value("dual_write_open_diffs_over_resolution_window") == 1
    assert ledger.unresolved_over("run-4").num_rows == 1


def test_unreadable_verdict_is_counted_not_fatal(evidence):
    bad = evidence / "economics_sanity_check" / "economics_sanity_check_20260323.json"
    bad.write_text("{ truncated")
    (evidence / "economics_sanity_check" / ".economics_sanity_check_20260330.json.abc.tmp").write_text("{")
    snap = M.snapshot(M.EvidenceView(str(evidence)))
    assert snap.value("evidence_unreadable_files", activity="economics_sanity_check") == 1
    assert snap.value("evidence_partitions", activity="economics_sanity_check") == 2
    # the newest readable week is reported
    assert snap.value("economics_fees_atr") == 27_085_807_199


def test_empty_store_and_missing_ledger(tmp_path):
    (tmp_path / "ev").mkdir()
    snap = M.snapshot(M.EvidenceView(str(tmp_path / "ev")))
    assert {s.name for s in snap.samples} == {"evidence_partitions", "evidence_unreadable_files"}
    assert all(s.value == 0 for s in snap.samples)


def test_resolution_window_from_the_evidence_and_default_equals_code():
    from qfs_assets.activities.dual_write.params import DualWriteParams

    assert M.DEFAULT_RESOLUTION_HOURS == DualWriteParams().resolution_hours


def test_textfile_is_written_atomically_in_text_format(evidence, tmp_path):
    out = write_textfile(str(evidence), tmp_path / "textfile" / "qfs_assure.prom")
    text = out.read_text()
    assert _samples(text)[("qfs_assure_economics_fees_atr", ())] == 27_085_807_199
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary file left
    with pytest.raises(ValueError, match=r"\.prom"):
        write_textfile(str(evidence), tmp_path / "qfs_assure.txt")


def test_openmetrics_exposition_parses(evidence):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    text = openmetrics_latest(registry_for(str(evidence))).decode()
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in om_parse(text)}
    assert fams["qfs_assure_verdict_passed"].type == "gauge"
    assert fams["qfs_assure_latest_partition"].type == "info"


def test_cli_metrics_usage_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "qfs_assets.cli", "metrics", *args], capture_output=True, text=True,
                              timeout=120)

    p = run("--evidence-root", str(tmp_path / "missing"), "--textfile", str(tmp_path / "x.prom"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "does not exist" in p.stderr
    p = run("--evidence-root", "s3://user:secret@bucket/x", "--textfile", str(tmp_path / "x.prom"))
    assert p.returncode == 2 and "secret" not in p.stderr and "AWS_" in p.stderr
    (tmp_path / "ev").mkdir()
    p = run("--evidence-root", str(tmp_path / "ev"), "--textfile", str(tmp_path / "x.txt"))
    assert p.returncode == 2 and ".prom" in p.stderr and "Traceback" not in p.stderr


def test_docs_list_every_metric():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(qfs_assure_[a-z0-9_]+)`", doc))
    assert set(M.metric_names()) <= documented, set(M.metric_names()) - documented
    assert documented <= set(M.metric_names()), documented - set(M.metric_names())


def test_prometheus_scrapes_the_exporter_and_answers_the_evidence(evidence, tmp_path):
    """Values through Prometheus's query API equal the evidence; every dashboard query answers;
    the alerting rules fire exactly for the criteria the evidence failed."""
    from qfs_assets.observability.rules import default_criteria
    from qfs_assets_tests.test_alert_rules_and_dashboard import RULES, dashboard_exprs

    want = expected_values(evidence)
    with exporter(str(evidence)) as port, prometheus_scraping(port, tmp_path, [RULES]) as prom:
        wait_for_scrape(prom, "qfs_assure_dual_write_open_diffs")
        for (name, labels), value in want.items():
            sel = ",".join(f'{k}="{v}"' for k, v in labels)
            result = prom_query(prom, f"{name}{{{sel}}}")
            assert len(result) == 1, (name, labels, result)
            assert float(result[0]["value"][1]) == value, (name, labels)
        # a question an operator asks: which activities' latest verdict failed?
        failed = {r["metric"]["activity"] for r in prom_query(prom, "qfs_assure_verdict_passed == 0")}
        assert failed == {a for a in M.ACTIVITIES if not _latest(evidence, a)[1]["passed"]}
        assert float(prom_query(prom, "qfs_assure_dual_write_oldest_open_diff_age_seconds")[0]["value"][1]) == 30 * 3600
        assert prom_query(prom, 'qfs_assure_latest_partition_info{activity="economics_sanity_check"}')[0]["metric"][
            "partition"] == "2026-03-09"
        for title, expr in dashboard_exprs():
            assert prom_query(prom, expr), (title, expr)
        # criterion alerts: exactly the latest partitions' failed criteria that the rules mirror
        import time as _time

        expected = set()
        for activity in M.ACTIVITIES:
            for c in _latest(evidence, activity)[1]["criteria"]:
                if not c["passed"]:
                    expected.add((activity, c["name"]))
        mirrored = {(a, s.name) for a, specs in default_criteria().items() for s in specs}
        expected &= mirrored
        deadline = _time.monotonic() + 30
        while True:
            firing = {(r["metric"]["activity"], r["metric"]["criterion"])
                      for r in prom_query(prom, 'ALERTS{alertstate="firing", criterion!=""}')}
            if firing == expected or _time.monotonic() > deadline:
                break
            _time.sleep(0.5)
        assert firing == expected
        assert expected  # the fixture fails some criteria on purpose
        # its rule group evaluates on its own cycle: wait for it too, as for the criteria above
        deadline = _time.monotonic() + 30
        while not (unresolved := prom_query(prom, 'ALERTS{alertname="QfsAssureDualWriteDiffUnresolved", '
                                                  'alertstate="firing"}')) and _time.monotonic() < deadline:
            _time.sleep(0.5)
        assert unresolved
