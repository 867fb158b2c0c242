"""Finding 7 of issue 19: an evidence root that cannot be written is an operational error.

Before the fix an evidence root that is a file, a full disk or a read-only root ended with exit 3
"internal error (a bug)" and several lines, and a read-only root with a webhook configured sent
no alert (the alert state lives under the evidence root). Now each is one line naming the root
and the system's reason, exit 5, an ``evidence_unwritable`` alert (delivered even though the
alert ledger cannot be written), and earlier evidence byte-identical.

The read-only and full cases use a real read-only bind mount and a real full tmpfs (full at the
start, and filling up while the evidence is being published), inside a
private mount namespace of a child process (``unshare``: root on Linux, as in CI), so nothing
outside the test's own folder is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qfs_assets import cli
from qfs_assets_tests.test_cli_and_defs import DAY, build_healthy
from qfs_assets_tests.test_node_health import build as build_failing
from qfs_assets_tests.test_scenarios import Hook
from qfs_assets_tests.test_sor_network import our_lines

REPO = Path(__file__).resolve().parents[1]


def _run(export, ev) -> list[str]:
    return ["run", "node_health_assessment", "--partition", DAY, "--export-root", str(export), "--evidence-root", str(ev)]


def test_an_evidence_root_that_is_a_file_is_one_line_exit_5_and_an_alert(tmp_path, monkeypatch, capfd):
    export = build_healthy(tmp_path / "export")
    ev = tmp_path / "ev"
    ev.write_text("not a folder\n")
    hook = Hook()
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        code = cli.main(_run(export, ev))
    finally:
        hook.close()
    out, err = capfd.readouterr()
    assert code == cli.EXIT_EVIDENCE_UNWRITABLE == 5
    [line] = our_lines(err)
    assert line.startswith(f"qfs-assure: evidence root '{ev}' cannot be written") and "(ENOTDIR)" in line, line
    assert "internal error" not in err and "Traceback" not in err
    assert ev.read_text() == "not a folder\n"
    [(_, alert)] = hook.posts
    assert alert["kind"] == "evidence_unwritable" and alert["activity"] == "node_health_assessment"
    assert alert["partition"] == DAY and "cannot be written" in alert["message"]


def test_a_bug_is_still_exit_3(tmp_path, monkeypatch, capfd):
    """The new exit code is for the storage only: an unexpected exception stays an internal error."""
    from qfs_assets.evidence import store

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(store.EvidenceStore, "publish", boom)
    assert cli.main(_run(build_healthy(tmp_path / "export"), tmp_path / "ev")) == cli.EXIT_INTERNAL
    assert "internal error" in capfd.readouterr().err


_SCENARIOS = r'''
import json, os, subprocess, sys
from pathlib import Path

from qfs_assets import cli

tmp, good, failing = (Path(a) for a in sys.argv[1:4])
results = {}


def run(name, export, ev):
    errfile = tmp / f"{name}.err"
    saved = os.dup(2)
    with open(errfile, "wb") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            code = cli.main(["run", "node_health_assessment", "--partition", "2026-03-02", "--export-root", str(export),
                             "--evidence-root", str(ev)])
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    results[name] = {"code": code, "err": errfile.read_text()}


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes().hex() for p in sorted(root.rglob("*"))
            if p.is_file() and "_alerts" not in p.parts and p.name != "filler"}


# a read-only evidence root (a read-only bind mount) holding earlier evidence
ro = tmp / "ro_ev"
run("ro_before", good, ro)
before = snapshot(ro)
subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
run("ro", failing, ro)
results["ro_intact"] = snapshot(ro) == before

# a full evidence root (a tmpfs filled to the last byte) holding earlier evidence
full = tmp / "full_ev"
full.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(full)], check=True)
run("full_before", good, full)
before = snapshot(full)
try:
    with open(full / "filler", "wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
except OSError:
    pass
run("full", failing, full)
results["full_intact"] = snapshot(full) == before
results["full_tmp_left"] = [str(p) for p in full.rglob("*.tmp")]

# room for the start-up check, not for the whole publication: the disk fills while publishing
with open(full / "filler", "r+b") as fh:
    fh.truncate(os.path.getsize(full / "filler") - 8192)
run("full_mid", failing, full)
results["full_mid_intact"] = snapshot(full) == before
results["full_mid_left"] = [str(p) for p in full.rglob("*") if p.name.endswith((".tmp", ".staged", ".pending", ".commit"))]
print(json.dumps(results))
'''


def test_read_only_and_full_evidence_roots_are_exit_5_one_line_alerted_and_leave_evidence_intact(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("this test needs root and unshare(1) for a private mount namespace (as in CI)")
    good = build_healthy(tmp_path / "good")
    failing = build_failing(tmp_path / "failing")
    (tmp_path / "home").mkdir()
    hook = Hook()
    try:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("QFS_")},
               "DAGSTER_HOME": str(tmp_path / "home"), "QFS_ALERT_WEBHOOK_URLS": hook.url,
               "PYTHONPATH": str(REPO)}
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _SCENARIOS,
                               str(tmp_path), str(good), str(failing)], capture_output=True, text=True, timeout=600,
                              env=env, cwd=tmp_path)
    finally:
        hook.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ro_before"]["code"] == res["full_before"]["code"] == cli.EXIT_PASSED
    for name, reason in (("ro", "(EROFS)"), ("full", "(ENOSPC)"), ("full_mid", "(ENOSPC)")):
        assert res[name]["code"] == cli.EXIT_EVIDENCE_UNWRITABLE, (name, res[name])
        [line] = our_lines(res[name]["err"])
        assert line.startswith("qfs-assure: evidence root ") and "cannot be written" in line and reason in line, line
        assert "Traceback" not in res[name]["err"]
    assert res["ro_intact"] and res["full_intact"] and res["full_mid_intact"], res
    assert res["full_tmp_left"] == [] and res["full_mid_left"] == []
    assert "cannot be written, file '" in res["full_mid"]["err"]  # it failed while publishing, not at the check
    kinds = [alert["kind"] for _, alert in hook.posts]
    assert kinds == ["evidence_unwritable"] * 3, kinds


def test_daemon_runs_alert_the_same_kinds(tmp_path, monkeypatch):
    """Runs launched by the daemon are alerted by ``alert_on_run_failure``: an unwritable evidence
    root is ``evidence_unwritable``, an unreachable system of record ``source_unreachable``."""
    import dagster as dg

    from qfs_assets.definitions import defs
    from qfs_assets.defs.alerting.sensors import alert_on_run_failure
    from qfs_assets_tests.exportkit import obj, write

    export = build_healthy(tmp_path / "export")
    write(export, "objects", [obj("o1")], "2026-03-31")
    ev_file = tmp_path / "ev_is_a_file"
    ev_file.write_text("x")
    hook = Hook()
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        monkeypatch.setenv("QFS_ALERT_STATE_DIR", str(tmp_path / "alert_state"))
        instance = dg.DagsterInstance.ephemeral()
        cases = [("node_health_assessment_job", DAY, {"QFS_EVIDENCE_ROOT": str(ev_file)}),
                 ("dual_write_diff_job", "2026-03-31", {"QFS_EVIDENCE_ROOT": str(tmp_path / "ev"),
                                                        "QFS_SOR_URL": "postgresql://postgres:pw@127.0.0.1:1/test"})]
        for job_name, partition, env in cases:
            for k, v in {"QFS_EXPORT_ROOT": str(export), **env}.items():
                monkeypatch.setenv(k, v)
            result = defs.resolve_job_def(job_name).execute_in_process(
                partition_key=partition, instance=instance, raise_on_error=False,
                run_config=cli.run_config(activity=job_name.removesuffix("_job")))
            assert not result.success
            context = dg.build_run_status_sensor_context(
                sensor_name="alert_on_run_failure", dagster_event=result.get_run_failure_event(),
                dagster_instance=instance, dagster_run=result.dagster_run).for_run_failure()
            alert_on_run_failure(context)
    finally:
        hook.close()
    kinds = [(a["kind"], a["activity"]) for _, a in hook.posts]
    assert kinds == [("evidence_unwritable", "node_health_assessment"), ("source_unreachable", "dual_write_diff")]
    assert all("pw@" not in a["message"] for _, a in hook.posts)
