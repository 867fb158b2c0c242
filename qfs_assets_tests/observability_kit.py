"""Shared helpers of the observability and object-storage tests: a small evidence store with every
activity (published through the real EvidenceStore and DiffLedger), free ports, and real servers
(Prometheus, the metrics exporter, moto) started on 127.0.0.1 and stopped by process group."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest

from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore

UTC = dt.timezone.utc
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def t(d: dt.date, h: int = 0, m: int = 0) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=UTC)


def publish(store, activity, day, start, end, metrics, criteria, key=None, parameters=None, tables=None):
    result = ActivityResult(activity=activity, partition=day.isoformat(), window_start=start, window_end=end,
                            metrics=metrics, inputs={"note": "test"}, parameters=parameters or {}, criteria_specs=[],
                            judge_table=pa.table({"x": [1]}), tables=tables or {}, evidence_key=key)
    return store.publish(result, [Criterion(n, p, o, th) for n, p, o, th in criteria])


def build_evidence(root) -> str:
    """Every activity, two or more partitions each; the latest node health day has v1.1 storage
    errors, the day before has none (v1: the feed absent). Returns the root as given."""
    store = EvidenceStore(root) if not str(root).startswith("s3://") else None
    if store is None:
        from qfs_assets.evidence.store import open_store

        store = open_store(str(root))
    d0 = dt.date(2026, 3, 2)
    for i in range(3):
        day = d0 + dt.timedelta(days=i)
        metrics = {"in_service_nodes": 40, "verified_nodes": 38 + i % 2, "verified_ratio": (38 + i % 2) / 40,
                   "unverified_node_ids": ["node-0040"], "proof_challenges": 960 + i, "proof_success_rate": 0.996875 - i / 1000,
                   "utilization_cv": 0.0889876116588882 + i / 100, "utilization_max_over_mean": 1.1279307356701833,
                   "objects_degraded": i, "objects_unrecoverable": i // 2}
        crit = [("nodes_verified", metrics["verified_ratio"] > 0.95, metrics["verified_ratio"], 0.95),
                ("proof_success", True, metrics["proof_success_rate"], 0.99),
                ("shard_balance", True, {"utilization_cv": metrics["utilization_cv"]}, {"utilization_cv": 0.25}),
                ("no_unrecoverable_objects", metrics["objects_unrecoverable"] == 0, metrics["objects_unrecoverable"], 0)]
        if i == 2:
            metrics.update({"storage_errors": 7, "corruption_errors": 2, "storage_error_nodes": ["node-0003"],
                            "storage_errors_by_class": {"checksum_mismatch": 2, "io_error": 5, "timeout": 0}})
            crit.append(("no_corruption_errors", False, 2, 0))
        publish(store, "node_health_assessment", day, t(day), t(day + dt.timedelta(days=1)), metrics, crit,
                tables={"node_health_objects": pa.table({"object_id": [f"obj-{i}"], "healthy": [i]})})
    for i, (fees, rewards) in enumerate([(10_000_000_000, 8_000_000_000), (27_085_807_199, 18_960_064_791)]):
        week = d0 + dt.timedelta(weeks=i)
        buffer = -(-fees * 500 // 10_000)
        margin = fees - rewards - buffer
        publish(store, "economics_sanity_check", week, t(week), t(week + dt.timedelta(days=7)), {
            "fees_atr": fees, "rewards_nod": rewards, "rewards_in_atr": rewards, "buffer_atr": buffer, "margin_atr": margin,
            "duplicate_tx_ids": 0, "duplicate_reward_ids": i, "rewards_to_failed_nodes": 0, "ledger_vs_log_atr": -3 * i,
        }, [("conservation", margin >= 0, {"margin_atr": margin}, {"margin_atr_min": 0}),
            ("ledger_integrity", i == 0, i, 0), ("no_rewards_to_failed_nodes", True, 0, 0),
            ("ledger_matches_log", i == 0, -3 * i, 0)])
    for i, month in enumerate([dt.date(2026, 2, 1), dt.date(2026, 3, 1)]):
        nxt = dt.date(2026, 3, 1) if i == 0 else dt.date(2026, 4, 1)
        publish(store, "dual_write_verification", month, t(month), t(nxt), {
            "sor_objects": 3678, "storage_objects": 3678 + i, "in_flight": 3, "missing_in_storage": 2 * i, "missing_in_sor": 3 * i,
            "version_mismatch": i, "content_mismatch": i, "inconsistencies": 7 * i, "sampled_objects": 33,
            "sample_failures": 0, "unresolved_over_24h": 5 * i, "resolved_late": i,
        }, [("counts_match", i == 0, 0, 0), ("zero_inconsistencies", i == 0, 7 * i, 0),
            ("sample_consistent", True, 0, 0), ("diffs_resolved_in_24h", i == 0, 5 * i, 0)],
            parameters={"sample_bps": 100, "resolution_hours": 24})
    for q, nxt in ((dt.date(2026, 1, 1), dt.date(2026, 4, 1)), (dt.date(2026, 4, 1), dt.date(2026, 7, 1))):
        publish(store, "storage_replay_drill", q, t(q), t(nxt), {
            "events_replayed": 60_541, "chain_intact": True, "first_broken_seq": None, "invalid_events": 0,
            "checkpoints_compared": 12, "checkpoints_matched": 11 if q.month == 4 else 12, "first_mismatch_seq": None,
            "mismatched_components": [], "final_state_root": "ab" * 32, "last_event_ts": f"{q.isoformat()}T23:50:00Z",
        }, [("chain_intact", True, True, True), ("no_invalid_events", True, 0, 0),
            ("deterministic_match", q.month != 4, 11, 12)])
    fday = dt.date(2026, 3, 11)
    publish(store, "node_failure_response", fday, t(fday, 10, 17), t(fday + dt.timedelta(days=1)), {
        "failure_id": "node-0007_20260311", "node_id": "node-0007", "shards_to_move": 379, "shards_unplaceable": 0,
        "clawback_nod": 56_551_950}, [("all_shards_placed", True, 0, 0)], key="node-0007_20260311")
    return str(root)


def build_ledger(root: str | Path) -> None:
    """A real diff ledger (DiffLedger.apply): two runs; one diff resolved, two open since day 1."""
    from qfs_assets.activities.dual_write.ledger import DiffLedger

    ledger = DiffLedger(root)
    d = pa.table({"object_id": ["obj-1", "obj-2", "obj-3"], "category": ["missing_in_sor", "version_mismatch", "missing_in_sor"]})
    ledger.apply("daily:2026-03-29", t(dt.date(2026, 3, 30)), d)
    ledger.apply("daily:2026-03-30", t(dt.date(2026, 3, 31), 6), d.slice(0, 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def exporter(evidence_root: str, env: dict | None = None):
    """`qfs-assure metrics --port 0` in its own process group; yields the port it bound."""
    proc = subprocess.Popen([sys.executable, "-m", "qfs_assets.cli", "metrics", "--evidence-root", evidence_root, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        line = proc.stdout.readline()
        if "serving metrics on http://127.0.0.1:" not in line:
            raise AssertionError(f"exporter did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}")
        yield int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    finally:
        stop(proc)


def require(binary: str, env_var: str, package: str) -> str:
    if os.path.exists(binary):
        return binary
    if os.environ.get(env_var):
        pytest.fail(f"{env_var} is set but {binary} is absent (apt-get install -y {package})")
    pytest.skip(f"{binary} is not installed (apt-get install -y {package}); set {env_var}=1 to make this a failure")


@contextlib.contextmanager
def prometheus_scraping(target_port: int, workdir: Path, rule_files: list[Path] = ()):
    """A real Prometheus on 127.0.0.1 scraping 127.0.0.1:<target_port> every second (evaluating
    ``rule_files`` every second); yields its base URL."""
    binary = require(PROMETHEUS, "QFS_REQUIRE_PROMETHEUS", "prometheus")
    port = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: qfs_assure\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        + ("rule_files:\n" + "".join(f"  - '{f}'\n" for f in rule_files) if rule_files else "")
    )
    log = open(workdir / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base
    finally:
        stop(proc)
        log.close()


def prom_query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for_scrape(base: str, metric: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if prom_query(base, f'up{{job="qfs_assure"}} == 1') and prom_query(base, metric):
                return
        except OSError as exc:  # Prometheus still starting
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape {metric} within {timeout}s ({last})")
