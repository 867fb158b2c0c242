"""Analyst views (qfs_assets.analytics.query), the HTML dashboard, its Dagster asset and sensor.

A small evidence store is built by hand in tmp_path (EvidenceStore.publish, plus the dual-write
diff ledger written as one plain Parquet file), with all five activities, so every panel has data.
The Chromium test opens the rendered page in a real headless browser and checks the charts were
laid out; it is skipped only when /usr/bin/chromium is absent and QFS_REQUIRE_CHROMIUM is unset.
"""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qfs_assets.analytics.query import (
    QueryError,
    format_table,
    main_query,
    main_tables,
    register_views,
    run_query,
)
from qfs_assets import registry
from qfs_assets.dashboard import PANELS, build_dashboard, render_dashboard
from qfs_assets.dashboard import svg as svg_mod
from qfs_assets.dashboard.fmt import exact_units
from qfs_assets.evidence.model import ActivityResult, Criterion
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import connect

UTC = dt.timezone.utc
TS = pa.timestamp("us", tz="UTC")
CHROMIUM = "/usr/bin/chromium"


def _t(d: dt.date, h: int = 0, m: int = 0) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=UTC)


def _publish(store, activity, partition, start, end, metrics, criteria, tables=None, key=None, extra=None):
    result = ActivityResult(activity=activity, partition=partition.isoformat(), window_start=start, window_end=end,
                            metrics=metrics, inputs={"note": "test"}, parameters={}, criteria_specs=[],
                            judge_table=pa.table({"x": [1]}), tables=tables or {}, extra=extra or {}, evidence_key=key)
    return store.publish(result, [Criterion(n, p, o, t) for n, p, o, t in criteria])


def build_store(root: Path, *, only_node_health: bool = False) -> Path:
    store = EvidenceStore(root)
    nodes = ["node-0001", "node-0002", "node-0003", "node-0004"]
    for i in range(3):
        day = dt.date(2026, 3, 2) + dt.timedelta(days=i)
        rate = 0.97 if i == 1 else 0.999
        aegis = pa.table({
            "node_id": nodes, "region": ["eu", "eu", "us-<script>alert(1)</script>", "us"], "status": ["active", "active", "active", "failed"],
            "in_service": [True, True, True, False], "verified": [True, True, False, False],
            "challenges": pa.array([24, 24, 24, 0], pa.int64()), "passed": pa.array([24, 24, 20, 0], pa.int64()),
            "stake_nod": pa.array([200_000_000_000, 200_000_000_000, 50_000_000_000, 0], pa.int64()),
            "last_heartbeat": pa.array([_t(day, 23)] * 4, TS),
            "reasons": ["", "", "stake below minimum, pass rate below minimum", "not in service (failed)"],
        })
        dist = pa.table({"node_id": nodes[:3], "capacity_bytes": pa.array([10**12] * 3, pa.int64()),
                         "shard_count": pa.array([10, 12, 9], pa.int64()),
                         "shard_bytes": pa.array([3 * 10**11, 4 * 10**11, 2 * 10**11], pa.int64()),
                         "utilization": [0.3, 0.4, 0.2]})
        _publish(store, "node_health_assessment", day, _t(day), _t(day + dt.timedelta(days=1)), {
            "in_service_nodes": 3, "verified_nodes": 2, "verified_ratio": 2 / 3, "unverified_node_ids": ["node-0003"],
            "proof_challenges": 72, "proof_success_rate": rate, "utilization_cv": 0.27, "utilization_max_over_mean": 1.33,
            "objects_degraded": i, "objects_unrecoverable": 0,
        }, [("nodes_verified", False, 2 / 3, 0.95), ("proof_success", rate > 0.99, rate, 0.99),
            ("shard_balance", False, {"utilization_cv": 0.27}, {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}),
            ("no_unrecoverable_objects", True, 0, 0)],
            tables={"node_health_aegis": aegis, "node_health_distribution": dist})
    if only_node_health:
        return root
    for i, (fees, rewards) in enumerate([(10_000_000_000, 8_000_000_000), (9_000_000_000, 9_400_000_000)]):
        week = dt.date(2026, 3, 2) + dt.timedelta(weeks=i)
        buffer = -(-fees * 500 // 10_000)
        margin = fees - rewards - buffer
        flow = pa.table({"day": [week + dt.timedelta(days=d) for d in range(7)],
                         "fees_atr": pa.array([fees // 7] * 7, pa.int64()),
                         "rewards_in_atr": pa.array([rewards // 7] * 7, pa.int64()),
                         "margin_atr": pa.array([margin // 7] * 7, pa.int64())})
        _publish(store, "economics_sanity_check", week, _t(week), _t(week + dt.timedelta(days=7)), {
            "fees_atr": fees, "rewards_nod": rewards, "rewards_in_atr": rewards, "buffer_atr": buffer, "margin_atr": margin,
            "duplicate_tx_ids": 0, "duplicate_reward_ids": 0, "rewards_to_failed_nodes": 0, "ledger_vs_log_atr": 0,
        }, [("conservation", margin >= 0, {"margin_atr": margin}, {"margin_atr_min": 0}),
            ("ledger_integrity", True, 0, 0), ("no_rewards_to_failed_nodes", True, 0, 0), ("ledger_matches_log", True, 0, 0)],
            tables={"economics_daily_flow": flow})
    for i, month in enumerate([dt.date(2026, 2, 1), dt.date(2026, 3, 1)]):
        cats = ["missing_in_storage", "version_mismatch"] if i else []
        inc = pa.table({"object_id": [f"obj-{k}" for k in range(len(cats))], "category": pa.array(cats, pa.string()),
                        "differing_fields": pa.array(["version"] * len(cats), pa.string()),
                        "first_seen": pa.array([_t(month + dt.timedelta(days=20))] * len(cats), TS)})
        nxt = dt.date(2026, 3, 1) if i == 0 else dt.date(2026, 4, 1)
        _publish(store, "dual_write_verification", month, _t(month), _t(nxt), {
            "sor_objects": 100, "storage_objects": 100 - i, "in_flight": 2, "missing_in_storage": i, "missing_in_sor": 0,
            "version_mismatch": i, "content_mismatch": 0, "inconsistencies": 2 * i, "sampled_objects": 5,
            "sample_failures": 0, "unresolved_over_24h": i,
        }, [("counts_match", i == 0, 100 - i, 100), ("zero_inconsistencies", i == 0, 2 * i, 0),
            ("sample_consistent", True, 0, 0), ("diffs_resolved_in_24h", i == 0, i, 0)],
            tables={"dual_write_inconsistencies": inc})
    ledger = root / "dual_write_diff_ledger" / "ledger.parquet"
    ledger.parent.mkdir(parents=True)
    pq.write_table(pa.table({"object_id": ["obj-0", "obj-1", "obj-9"],
                             "category": ["missing_in_storage", "version_mismatch", "content_mismatch"],
                             "first_seen": pa.array([_t(dt.date(2026, 3, 21))] * 3, TS),
                             "last_seen": pa.array([_t(dt.date(2026, 3, 31))] * 3, TS),
                             "resolved_at": pa.array([None, None, _t(dt.date(2026, 3, 25))], TS)}), ledger)
    (ledger.parent / ".ledger.lock").write_text("")
    q1 = dt.date(2026, 1, 1)
    checks = pa.table({"seq": pa.array([100, 200], pa.int64()), "matched": [True, True]})
    _publish(store, "storage_replay_drill", q1, _t(q1), _t(dt.date(2026, 4, 1)), {
        "events_replayed": 60_541, "chain_intact": True, "first_broken_seq": None, "invalid_events": 0,
        "checkpoints_compared": 2, "checkpoints_matched": 2, "first_mismatch_seq": None, "mismatched_components": [],
        "final_state_root": "ab" * 32, "events_per_second": 12_345.6,
    }, [("chain_intact", True, True, True), ("no_invalid_events", True, 0, 0), ("deterministic_match", True, 2, 2)],
        tables={"replay_checkpoints": checks})
    fday = dt.date(2026, 3, 3)
    _publish(store, "node_failure_response", fday, _t(fday, 10, 17), _t(fday + dt.timedelta(days=1)), {
        "failure_id": "node-0004_20260303", "node_id": "node-0004", "failed_at": "2026-03-03T10:17:00Z",
        "failure_source": "eqm", "shards_to_move": 12, "shards_placed": 12, "shards_unplaceable": 0,
        "bytes_to_move": 123_456_789, "receiving_nodes": 3, "receivers_verified": 3, "clawback_nod": 56_551_950,
        "unplaceable_by_reason": {},
    }, [("all_shards_placed", True, 0, 0)],
        tables={"node_failure_plan": pa.table({"object_id": ["obj-1"], "to_node_id": ["node-0001"]})},
        key="node-0004_20260303")
    # not evidence: alerting state, a write in progress, an unrelated file
    (root / "_alerts").mkdir()
    (root / "_alerts" / "state.json").write_text("{}")
    (root / "node_health_assessment" / ".node_health_assessment_20260305.json.abc.tmp").write_text("{")
    return root


@pytest.fixture
def store(tmp_path):
    return build_store(tmp_path / "evidence")


# ---- analyst views ------------------------------------------------------------------------------------

def test_register_views_finds_every_table_and_verdict_view(store):
    con = connect()
    try:
        views = register_views(con, store)
    finally:
        con.close()
    for activity in ("node_health_assessment", "economics_sanity_check", "dual_write_verification",
                     "storage_replay_drill", "node_failure_response"):
        assert f"{activity}_verdicts" in views
    for table in ("node_health_aegis", "node_health_distribution", "economics_daily_flow", "dual_write_inconsistencies",
                  "dual_write_diff_ledger", "replay_checkpoints", "node_failure_plan", "evidence_verdicts",
                  "evidence_criteria"):
        assert table in views, table
    assert not any(v.startswith("_") for v in views)
    assert "partition_key" in views["node_health_aegis"]
    cols = views["node_health_assessment_verdicts"]
    assert cols[:6] == ["activity", "partition", "evidence_key", "window_start", "window_end", "passed"]
    assert {"failed_criteria", "verified_ratio", "unverified_node_ids", "proof_success_rate"} <= set(cols)


def test_verdict_views_have_typed_metric_columns(store):
    t = run_query(store, "SELECT partition, passed, failed_criteria, verified_ratio, unverified_node_ids, in_service_nodes, "
                         "window_start FROM node_health_assessment_verdicts ORDER BY partition")
    assert t.num_rows == 3
    assert t.schema.field("partition").type == pa.date32()
    assert pa.types.is_floating(t.schema.field("verified_ratio").type)
    assert pa.types.is_integer(t.schema.field("in_service_nodes").type)
    assert pa.types.is_timestamp(t.schema.field("window_start").type)
    rows = t.to_pylist()
    assert rows[1]["failed_criteria"] == ["nodes_verified", "proof_success", "shard_balance"]
    assert rows[0]["unverified_node_ids"] == ["node-0003"]
    assert rows[0]["partition"] == dt.date(2026, 3, 2)
    # a non-contract activity keyed by failure id: evidence_key joins its detail tables
    t = run_query(store, "SELECT v.evidence_key, v.failed_at, v.clawback_nod, p.to_node_id FROM node_failure_response_verdicts v "
                         "JOIN node_failure_plan p ON p.partition_key = v.evidence_key")
    r = t.to_pylist()[0]
    assert r["evidence_key"] == "node-0004_20260303" and r["clawback_nod"] == 56_551_950 and r["to_node_id"] == "node-0001"
    assert r["failed_at"] == dt.datetime(2026, 3, 3, 10, 17, tzinfo=UTC)


def test_hive_tables_join_their_verdicts(store):
    t = run_query(store, "SELECT v.partition, count(*) FILTER (WHERE NOT a.verified AND a.in_service) AS unverified "
                         "FROM node_health_aegis a JOIN node_health_assessment_verdicts v ON a.partition_key = v.partition "
                         "GROUP BY 1 ORDER BY 1")
    assert t.column("unverified").to_pylist() == [1, 1, 1]
    t = run_query(store, "SELECT category FROM dual_write_diff_ledger WHERE resolved_at IS NULL ORDER BY 1")
    assert t.column("category").to_pylist() == ["missing_in_storage", "version_mismatch"]
    t = run_query(store, "SELECT activity, criterion FROM evidence_criteria WHERE NOT passed AND activity = "
                         "'economics_sanity_check'")
    assert t.to_pylist() == [{"activity": "economics_sanity_check", "criterion": "conservation"}]
    t = run_query(store, "SELECT sum(margin_atr) AS s FROM economics_sanity_check_verdicts")
    assert t.column("s").to_pylist()[0] == (10_000_000_000 - 8_000_000_000 - 500_000_000) + (9_000_000_000 - 9_400_000_000 - 450_000_000)


def test_activities_without_evidence_have_empty_contract_views(tmp_path):
    root = build_store(tmp_path / "ev", only_node_health=True)
    t = run_query(root, "SELECT * FROM dual_write_verification_verdicts")
    assert t.num_rows == 0
    assert {"inconsistencies", "missing_in_sor", "unresolved_over_24h", "passed"} <= set(t.column_names)
    t = run_query(root, "SELECT events_replayed, chain_intact, mismatched_components FROM storage_replay_drill_verdicts")
    assert t.num_rows == 0 and t.schema.field("chain_intact").type == pa.bool_()


def test_query_errors_are_one_line_and_exit_2(store, tmp_path, capsys):
    assert main_query(tmp_path / "missing", "SELECT 1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    assert main_query(store, "SELECT * FROM no_such_table") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qfs-assure: SQL error:")
    assert main_query(store, "SELEC 1") == 2
    assert main_query(store, "   ") == 2
    with pytest.raises(QueryError):
        run_query(store, "SELECT nope FROM evidence_verdicts")
    capsys.readouterr()
    assert main_query(store, "SELECT activity, count(*) AS n FROM evidence_verdicts GROUP BY 1 ORDER BY 1") == 0
    out = capsys.readouterr().out
    assert "node_health_assessment" in out and "(5 rows)" in out
    assert main_query(store, "SELECT partition, margin_atr FROM economics_sanity_check_verdicts ORDER BY 1", fmt="csv") == 0
    assert capsys.readouterr().out.splitlines() == ["partition,margin_atr", "2026-03-02,1500000000", "2026-03-09,-850000000"]


def test_main_tables_lists_views_rows_and_columns(store, tmp_path, capsys):
    assert main_tables(store) == 0
    out = capsys.readouterr().out
    assert re.search(r"node_health_aegis\s+table\s+12\s+3", out)
    assert re.search(r"node_health_assessment_verdicts\s+verdicts\s+3", out)
    assert "node_health_aegis: node_id VARCHAR" in out
    assert main_tables(tmp_path / "missing") == 2


def test_format_table():
    t = pa.table({"name": ["a", None, "x" * 100], "n": pa.array([1, 22, 333], pa.int64()), "r": [0.5, None, 1 / 3]})
    text = format_table(t, max_rows=2)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "n", "r"]
    assert "NULL" in lines[3]
    assert lines[-1] == "(3 rows, first 2 shown)"
    assert lines[2].endswith(" 1    0.5") or lines[2].rstrip().endswith("0.5")
    assert "…" in format_table(t, max_rows=10, max_width=20)
    assert format_table(t.slice(0, 0)).splitlines()[-1] == "(0 rows)"


# ---- dashboard -----------------------------------------------------------------------------------------

CHART_IDS = ("chart-verdict-timeline", "chart-in-service-nodes", "chart-verified-ratio", "chart-proof-success",
             "chart-utilisation-latest", "chart-utilisation-cv", "chart-aegis-status", "chart-aegis-reasons",
             "chart-econ-weekly", "chart-econ-margin", "chart-econ-daily", "chart-dual-write-categories",
             "chart-dual-write-open", "chart-replay-events", "chart-replay-rate", "chart-replay-checkpoints")


def test_money_is_exact():
    assert exact_units(27_401_926_501) == "274.01926501"
    assert exact_units(-5_480_384_976) == "-54.80384976"
    assert exact_units(100_000_000) == "1"
    assert exact_units(123_456_789_000_000_001) == "1,234,567,890.00000001"


def test_render_dashboard_has_every_panel_and_chart_and_no_url(store, tmp_path):
    out = render_dashboard(store, tmp_path / "out" / "index.html")
    html = out.read_text(encoding="utf-8")
    for pid, _ in PANELS:
        assert f'id="{pid}"' in html and f'data-testid="{pid}"' in html
        assert re.search(rf'id="{pid}"[^>]*data-state="data"', html), pid
    for cid in CHART_IDS:
        assert re.search(rf'<svg class="chart[^"]*" id="{cid}" data-testid="{cid}"', html), cid
    assert "no evidence yet" not in html.split('id="panel-storage-health"')[1]
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    # every chart has a title and two axis labels
    for svg in re.findall(r'<svg class="chart.*?</svg>', html, flags=re.S):
        assert 'class="chart-title"' in svg and svg.count("axis-label") >= 2
    # money stays integer (thousands separators), with the exact ATR amount beside it
    assert "10,000,000,000" in html and "100 ATR" in html and "-850,000,000" in html
    assert "12,346" in html  # events/s of the drill, from the evidence
    assert html.count("<script") == 1 and "us-&lt;script&gt;alert(1)&lt;/script&gt;" in html  # evidence text is escaped
    assert "Last successful drill" in html and "node-0004_20260303" in html
    assert "stake below minimum" in html and "version_mismatch" in html


def test_dashboard_shows_no_evidence_panels(tmp_path):
    root = build_store(tmp_path / "ev", only_node_health=True)
    page = build_dashboard(root)
    assert set(page.panels) == {p for p, _ in PANELS}
    assert set(page.panels_with_data) == {"panel-verdicts", "panel-storage-health", "panel-aegis"}
    for pid in ("panel-economics", "panel-dual-write", "panel-replay", "panel-node-failures"):
        assert re.search(rf'id="{pid}"[^>]*data-state="no-evidence"', page.html)
    assert set(CHART_IDS) <= set(page.charts)  # frames stay, with "no evidence yet"
    empty = build_dashboard(tmp_path / "does-not-exist")
    assert empty.panels_with_data == [] and empty.partitions == {}


def _chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("QFS_REQUIRE_CHROMIUM"):
        pytest.fail(f"QFS_REQUIRE_CHROMIUM is set but {CHROMIUM} is absent (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); set QFS_REQUIRE_CHROMIUM=1 to make this a failure")


def chromium_dump_dom(page: Path, profile: Path) -> str:
    cmd = [_chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--window-size=1400,4000", "--virtual-time-budget=5000", "--dump-dom",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_dashboard_renders_in_headless_chromium(store, tmp_path):
    _chromium_or_skip()
    page = render_dashboard(store, tmp_path / "index.html")
    dom = chromium_dump_dom(page, tmp_path / "chromium-profile")
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-rendered="true"' in root, root
    n = int(re.search(r'data-charts="(\d+)"', root).group(1))
    assert n >= len(CHART_IDS) and f'data-charts-visible="{n}"' in root
    for cid in CHART_IDS:
        tag = re.search(rf'<svg [^>]*id="{cid}"[^>]*>', dom).group(0)
        assert int(re.search(r'data-width="(\d+)"', tag).group(1)) > 100, tag
        assert int(re.search(r'data-marks="(\d+)"', tag).group(1)) > 0, tag
    svgs = re.findall(r"<svg .*?</svg>", dom, flags=re.S)
    assert sum(s.count("<rect") for s in svgs) > 50 and sum(s.count("<circle") for s in svgs) > 5
    assert sum(s.count("<path") for s in svgs) >= 4


# ---- Dagster asset and sensor -----------------------------------------------------------------------------

def test_dashboard_asset_and_sensor(store, tmp_path):
    import dagster as dg

    from qfs_assets.definitions import defs
    from qfs_assets.defs.dashboard.assets import storage_assurance_dashboard, storage_assurance_dashboard_job
    from qfs_assets.defs.dashboard.sensors import dashboard_after_runs
    from qfs_assets.defs.resources import EvidenceResource

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([storage_assurance_dashboard], instance=instance,
                            resources={"evidence": EvidenceResource(evidence_root=str(store))})
    assert result.success
    md = result.asset_materializations_for_node("storage_assurance_dashboard")[0].metadata
    assert Path(md["path"].value) == (store / "dashboard" / "index.html").resolve()
    assert md["panels"].value == len(PANELS) and md["partitions_covered"].value == 3 + 2 + 2 + 1 + 1
    assert (store / "dashboard" / "index.html").is_file()
    # the dashboard folder is not evidence
    con = connect()
    try:
        assert "dashboard" not in register_views(con, store)
    finally:
        con.close()
    assert storage_assurance_dashboard_job.name == "storage_assurance_dashboard_job"
    assert "dashboard_after_runs" in {s.name for s in defs.sensors}
    assert dashboard_after_runs.default_status == dg.DefaultSensorStatus.RUNNING

    @dg.op
    def noop():
        return 1

    def run_of(job_name):
        job = dg.GraphDefinition(name=job_name, node_defs=[noop]).to_job()
        res = job.execute_in_process(instance=instance)
        return instance.get_run_by_id(res.run_id), res.get_run_success_event()

    run, event = run_of("node_health_assessment_job")
    ctx = dg.build_run_status_sensor_context(sensor_name="dashboard_after_runs", dagster_event=event,
                                             dagster_instance=instance, dagster_run=run)
    req = dashboard_after_runs(ctx)
    assert isinstance(req, dg.RunRequest) and req.run_key == run.run_id
    run, event = run_of("storage_assurance_dashboard_job")
    ctx = dg.build_run_status_sensor_context(sensor_name="dashboard_after_runs", dagster_event=event,
                                             dagster_instance=instance, dagster_run=run)
    assert isinstance(dashboard_after_runs(ctx), dg.SkipReason)


# ---- the charts plot the evidence --------------------------------------------------------------------------
# A richer store: a fourth day of node health whose node ids are markup, and a second, failing replay drill
# whose throughput is only recorded as a duration. Every chart is read back from the page's SVG (marks decoded
# through the chart's own axis ticks) and compared with the evidence files, read here without the dashboard.

HOSTILE = "<script>alert('n')</script>"
HOSTILE2 = 'node-"q"&<b>x'
DAY4 = dt.date(2026, 3, 5)
Q2 = dt.date(2026, 4, 1)


def build_rich_store(root: Path) -> Path:
    build_store(root)
    store = EvidenceStore(root)
    nodes = ["node-0001", "node-0002", HOSTILE, HOSTILE2, "node-0005"]
    aegis = pa.table({
        "node_id": nodes, "region": ["eu"] * 5, "status": ["active"] * 4 + ["failed"],
        "in_service": [True, True, True, True, False], "verified": [True, True, False, False, False],
        "challenges": pa.array([24, 24, 24, 24, 0], pa.int64()), "passed": pa.array([24, 24, 10, 24, 0], pa.int64()),
        "stake_nod": pa.array([200_000_000_000, 200_000_000_000, 200_000_000_000, 50_000_000_000, 0], pa.int64()),
        "last_heartbeat": pa.array([_t(DAY4, 23)] * 5, TS),
        "reasons": ["", "", "pass rate below minimum", "stake below minimum, pass rate below minimum",
                    "not in service (failed)"],
    })
    dist = pa.table({"node_id": nodes[:4], "capacity_bytes": pa.array([10**12] * 4, pa.int64()),
                     "shard_count": pa.array([10, 14, 3, 8], pa.int64()),
                     "shard_bytes": pa.array([35 * 10**10, 5 * 10**11, 10**11, 25 * 10**10], pa.int64()),
                     "utilization": [0.35, 0.5, 0.1, 0.25]})
    _publish(store, "node_health_assessment", DAY4, _t(DAY4), _t(DAY4 + dt.timedelta(days=1)), {
        "in_service_nodes": 4, "verified_nodes": 2, "verified_ratio": 0.5, "unverified_node_ids": [HOSTILE, HOSTILE2],
        "proof_challenges": 96, "proof_success_rate": 0.985, "utilization_cv": 0.31, "utilization_max_over_mean": 1.67,
        "objects_degraded": 1, "objects_unrecoverable": 0,
    }, [("nodes_verified", False, 0.5, 0.95), ("proof_success", False, 0.985, 0.99),
        ("shard_balance", False, {"utilization_cv": 0.31}, {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}),
        ("no_unrecoverable_objects", True, 0, 0)],
        tables={"node_health_aegis": aegis, "node_health_distribution": dist})
    # a week whose rewards are worth half their NOD amount in ATR
    week = dt.date(2026, 3, 16)
    fees, rewards_nod, rewards_atr, buffer = 12_000_000_000, 20_000_000_000, 10_000_000_000, 600_000_000
    margin = fees - rewards_atr - buffer
    flow = pa.table({"day": [week + dt.timedelta(days=d) for d in range(7)],
                     "fees_atr": pa.array([1_000_000_000 + d * 100_000_000 for d in range(7)], pa.int64()),
                     "rewards_in_atr": pa.array([900_000_000 - d * 50_000_000 for d in range(7)], pa.int64()),
                     "margin_atr": pa.array([40_000_000 + d * 140_000_000 for d in range(7)], pa.int64())})
    _publish(store, "economics_sanity_check", week, _t(week), _t(week + dt.timedelta(days=7)), {
        "fees_atr": fees, "rewards_nod": rewards_nod, "rewards_in_atr": rewards_atr, "buffer_atr": buffer,
        "margin_atr": margin, "duplicate_tx_ids": 0, "duplicate_reward_ids": 0, "rewards_to_failed_nodes": 0,
        "ledger_vs_log_atr": 0,
    }, [("conservation", True, {"margin_atr": margin}, {"margin_atr_min": 0}), ("ledger_integrity", True, 0, 0),
        ("no_rewards_to_failed_nodes", True, 0, 0), ("ledger_matches_log", True, 0, 0)],
        tables={"economics_daily_flow": flow})
    _publish(store, "storage_replay_drill", Q2, _t(Q2), _t(dt.date(2026, 7, 1)), {
        "events_replayed": 75_000, "chain_intact": True, "first_broken_seq": None, "invalid_events": 0,
        "checkpoints_compared": 3, "checkpoints_matched": 2, "first_mismatch_seq": 300,
        "mismatched_components": ["balances"], "final_state_root": "cd" * 32,
    }, [("chain_intact", True, True, True), ("no_invalid_events", True, 0, 0), ("deterministic_match", False, 2, 3)],
        extra={"timing": {"replay_seconds": 6.0}})
    return root


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    root = build_rich_store(tmp_path_factory.mktemp("rich") / "evidence")
    return root, build_dashboard(root).html


def evidence(root: Path, activity: str) -> list[dict]:
    """The activity's JSON verdicts, read straight from the files (oldest first)."""
    return [json.loads(p.read_text()) for p in sorted((root / activity).glob("*.json"))]


def metric(root: Path, activity: str, key: str) -> list:
    return [d["metrics"][key] for d in evidence(root, activity)]


def svg_of(html: str, cid: str) -> ET.Element:
    m = re.search(rf'<svg class="chart[^"]*" id="{cid}".*?</svg>', html, flags=re.S)
    assert m, cid
    return ET.fromstring(m.group(0))


def tick_value(label: str) -> float:
    s = label.replace(",", "")
    if s.endswith("%"):
        return float(s[:-1]) / 100
    for suffix, mult in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if s.endswith(suffix):
            return float(s[:-1]) * mult
    return float(s)


def axis(points: list[tuple[float, float]]):
    """value(coordinate) fitted through the (coordinate, value) of the first and last tick; every tick on it."""
    (c0, v0), (c1, v1) = points[0], points[-1]
    slope = (v1 - v0) / (c1 - c0)
    for c, v in points:
        assert v0 + (c - c0) * slope == pytest.approx(v, abs=abs(slope) * 0.2), points
    return (lambda c: v0 + (c - c0) * slope), abs(slope)


def y_axis(svg: ET.Element):
    """The vertical axis of a line or bar chart: its tick labels sit at x = M_LEFT - 6, 4 px under their line."""
    ticks = [(float(t.get("y")) - 4, tick_value(t.text)) for t in svg.iter("text")
             if t.get("class") == "tick" and t.get("x") == str(svg_mod.M_LEFT - 6)]
    assert len(ticks) >= 2
    value, per_px = axis(ticks)
    assert value(0) > value(100), "values must grow upwards"
    return value, per_px


def plot_box(svg: ET.Element) -> tuple[float, float]:
    h = float(svg.get("height"))
    return svg_mod.M_TOP - 0.5, h - svg_mod.M_BOTTOM + 0.5


def points(svg: ET.Element) -> list[float]:
    """The values of a line chart's points, series after series."""
    value, _ = y_axis(svg)
    top, bottom = plot_box(svg)
    out = []
    for c in svg.iter("circle"):
        cy = float(c.get("cy"))
        assert top <= cy <= bottom
        out.append(value(cy))
    return out


def bars(svg: ET.Element, categories: int) -> list[list[float]]:
    """The signed values of a bar chart's bars per category, left to right (stacked: bottom up).

    A bar belongs to the category band its centre falls in; its value is read through the y axis."""
    value, _ = y_axis(svg)
    zero = float(next(ln.get("y1") for ln in svg.iter("line") if ln.get("class") == "axis zero"))
    assert value(zero) == pytest.approx(0, abs=abs(value(0) - value(1)))
    top, bottom = plot_box(svg)
    band = (float(svg.get("width")) - svg_mod.M_LEFT - svg_mod.M_RIGHT) / categories
    found = []
    for r in svg.iter("rect"):
        if r.get("class") != "bar":
            continue
        x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
        assert top <= y and y + h <= bottom
        size = value(y) - value(y + h) if h > 0.5 else 0.0
        found.append((int((x + w / 2 - svg_mod.M_LEFT) // band), x, -(y + h), -size if y >= zero - 0.05 else size))
    out: list[list[float]] = [[] for _ in range(categories)]
    for cat, _, _, v in sorted(found, key=lambda f: f[:3]):
        out[cat].append(v)
    return out


def hbars(svg: ET.Element) -> dict[str, float]:
    """label -> value of a horizontal bar chart (x decoded through its tick labels)."""
    ticks = [(float(t.get("x")), tick_value(t.text)) for t in svg.iter("text")
             if t.get("class") == "tick" and t.get("text-anchor") == "middle"]
    value, _ = axis(ticks)
    labels = [t.text for t in svg.iter("text") if t.get("class") == "tick" and t.get("text-anchor") == "end"]
    rects = [r for r in svg.iter("rect") if r.get("class") == "bar"]
    assert len(labels) == len(rects)
    return {lab: value(float(r.get("x")) + float(r.get("width"))) - value(float(r.get("x")))
            for lab, r in zip(labels, rects)}


def tol(svg: ET.Element) -> float:
    return y_axis(svg)[1] * 0.6  # coordinates are written to 0.1 px; zero bars are 0.5 px tall


def assert_values(got: list[float], want: list, svg: ET.Element) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g == pytest.approx(float(w), abs=tol(svg)), (got, want)


def assert_bars(svg: ET.Element, want: list[list]) -> None:
    """Bars per category (left to right) equal ``want``, one list of series values per category."""
    got = bars(svg, len(want))
    assert [len(g) for g in got] == [len(w) for w in want], (got, want)
    assert_values([v for g in got for v in g], [v for w in want for v in w], svg)


def test_storage_health_charts_plot_the_daily_metrics(rich):
    root, html = rich
    a = "node_health_assessment"
    svg = svg_of(html, "chart-in-service-nodes")
    assert_values(points(svg), metric(root, a, "in_service_nodes") + metric(root, a, "verified_nodes"), svg)
    assert metric(root, a, "in_service_nodes") == [3, 3, 3, 4]
    for cid, key in (("chart-verified-ratio", "verified_ratio"), ("chart-proof-success", "proof_success_rate"),
                     ("chart-utilisation-cv", "utilization_cv")):
        svg = svg_of(html, cid)
        assert_values(points(svg), metric(root, a, key), svg)
    # points past their recorded threshold are red: ratio <= 0.95 every day; proof success 0.97 and 0.985
    fills = [c.get("fill") for c in svg_of(html, "chart-proof-success").iter("circle")]
    assert fills == [svg_mod.TEAL, svg_mod.RED, svg_mod.TEAL, svg_mod.RED]
    fills = [c.get("fill") for c in svg_of(html, "chart-utilisation-cv").iter("circle")]
    assert fills == [svg_mod.RED] * 4  # 0.27 and 0.31 are above the recorded 0.25


def test_utilisation_chart_plots_the_latest_distribution(rich):
    root, html = rich
    dist = pq.read_table(root / "node_health_distribution" / f"partition_key={DAY4}").to_pylist()
    dist.sort(key=lambda r: r["node_id"])
    svg = svg_of(html, "chart-utilisation-latest")
    assert_bars(svg, [[r["utilization"]] for r in dist])
    tips = [r.find("title").text for r in svg.iter("rect") if r.get("class") == "bar"]
    assert [t.split(": ")[0] for t in tips] == [r["node_id"] for r in dist]  # markup ids, as text
    mean = sum(r["utilization"] for r in dist) / len(dist)
    value, _ = y_axis(svg)
    mean_y = float(next(ln.get("y1") for ln in svg.iter("line") if ln.get("class") == "mean"))
    assert value(mean_y) == pytest.approx(mean, abs=tol(svg))
    # max/mean 1.67 > 1.5: only the bar above 1.5 x mean is red
    colors = [r.get("fill") for r in svg.iter("rect") if r.get("class") == "bar"]
    assert colors == [svg_mod.RED if r["utilization"] > 1.5 * mean else svg_mod.BLUE for r in dist]


def test_aegis_charts_count_the_latest_day(rich):
    root, html = rich
    aegis = pq.read_table(root / "node_health_aegis" / f"partition_key={DAY4}").to_pylist()
    assert hbars(svg_of(html, "chart-aegis-status")) == pytest.approx({
        "verified": sum(1 for r in aegis if r["in_service"] and r["verified"]),
        "unverified (in service)": sum(1 for r in aegis if r["in_service"] and not r["verified"]),
        "not in service": sum(1 for r in aegis if not r["in_service"])}, abs=0.05)
    reasons: dict[str, int] = {}
    for r in aegis:
        if not r["verified"]:
            for reason in r["reasons"].split(", "):
                reasons[reason] = reasons.get(reason, 0) + 1
    assert hbars(svg_of(html, "chart-aegis-reasons")) == pytest.approx(reasons, abs=0.05)
    assert reasons == {"pass rate below minimum": 2, "stake below minimum": 1, "not in service (failed)": 1}


def test_economics_charts_plot_the_weekly_ledgers(rich):
    root, html = rich
    a = "economics_sanity_check"
    fees, rewards, margin = (metric(root, a, k) for k in ("fees_atr", "rewards_in_atr", "margin_atr"))
    svg = svg_of(html, "chart-econ-weekly")
    assert_bars(svg, [[f / 10**8, r / 10**8] for f, r in zip(fees, rewards)])
    svg = svg_of(html, "chart-econ-margin")
    assert_bars(svg, [[m / 10**8] for m in margin])
    assert margin[1] < 0 < margin[0] and rewards[2] != metric(root, a, "rewards_nod")[2]
    assert [r.get("fill") for r in svg.iter("rect") if r.get("class") == "bar"] == [svg_mod.GREEN, svg_mod.RED,
                                                                                    svg_mod.GREEN]
    week = max(p.name for p in (root / "economics_daily_flow").iterdir())
    flow = pq.read_table(root / "economics_daily_flow" / week).to_pylist()
    svg = svg_of(html, "chart-econ-daily")
    assert_bars(svg, [[r[k] / 10**8 for k in ("fees_atr", "rewards_in_atr", "margin_atr")] for r in flow])


def test_dual_write_charts_plot_categories_and_open_diffs(rich):
    root, html = rich
    a = "dual_write_verification"
    cats = ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")
    svg = svg_of(html, "chart-dual-write-categories")
    assert_bars(svg, [[d["metrics"][c] for c in cats] for d in evidence(root, a)])
    ledger = pq.read_table(root / "dual_write_diff_ledger" / "ledger.parquet").to_pylist()
    open_by_cat: dict[str, int] = {}
    for r in ledger:
        if r["resolved_at"] is None:
            open_by_cat[r["category"]] = open_by_cat.get(r["category"], 0) + 1
    assert hbars(svg_of(html, "chart-dual-write-open")) == pytest.approx(open_by_cat, abs=0.05)
    assert "content_mismatch" not in open_by_cat  # resolved in the ledger


def test_replay_charts_and_last_successful_drill(rich):
    root, html = rich
    a = "storage_replay_drill"
    docs = evidence(root, a)
    svg = svg_of(html, "chart-replay-events")
    assert_bars(svg, [[v] for v in metric(root, a, "events_replayed")])
    assert [r.get("fill") for r in svg.iter("rect") if r.get("class") == "bar"] == [svg_mod.BLUE, svg_mod.RED]
    svg = svg_of(html, "chart-replay-rate")
    assert_bars(svg, [[docs[0]["metrics"]["events_per_second"]],
                      [docs[1]["metrics"]["events_replayed"] / docs[1]["timing"]["replay_seconds"]]])
    svg = svg_of(html, "chart-replay-checkpoints")
    assert_bars(svg, [[d["metrics"][k] for k in ("checkpoints_compared", "checkpoints_matched")] for d in docs])
    callout = re.search(r'<div class="callout good" data-testid="replay-last-success">(.*?)</div>', html).group(1)
    assert "2026-Q1 (2026-01-01), 60,541 events replayed, checkpoints 2/2 matched" in callout
    assert "abababababababab…" in callout and "storage_replay_drill_20260101.json" in callout


def test_replay_status_is_plain_data(rich):
    from qfs_assets.dashboard.catalog import open_store
    from qfs_assets.dashboard.panels import replay

    root, _ = rich
    with open_store(root) as store:
        status = replay.replay_status(store)
        panel = replay.build(store)
    assert [d.quarter for d in status.drills] == ["2026-Q1", "2026-Q2"]
    assert status.last.quarter == "2026-Q2" and not status.last.passed
    assert status.last.failed_criteria == ("deterministic_match",)
    assert status.last.mismatched_components == ("balances",) and not status.last.all_checkpoints_matched
    assert status.last_success.partition == "2026-01-01" and status.last_success.events_per_second == 12_345.6
    assert status.last.events_per_second == 75_000 / 6.0
    assert panel.data == status
    assert panel.chart("chart-replay-events").series[0].values == [60_541.0, 75_000.0]
    with open_store(root / "nothing-here") as store:
        assert replay.replay_status(store).last_success is None and not replay.build(store).has_data


def test_verdict_timeline_draws_every_verdict_over_its_window(rich):
    root, html = rich
    svg = svg_of(html, "chart-verdict-timeline")
    ticks = [(float(t.get("x")), dt.datetime.fromisoformat(t.text).replace(tzinfo=UTC).timestamp())
             for t in svg.iter("text") if t.get("class") == "tick"]
    when, per_px = axis(ticks)
    rows = [t.text for t in svg.iter("text") if t.get("class") == "row-label"]
    expected_rows = [f"{a.name} ({'per failure' if a.cadence == 'event' else a.cadence})"
                     for a in registry.with_evidence()]
    assert rows == expected_rows
    cells = [c for c in svg.iter("rect") if (c.get("class") or "").startswith("cell ")]
    for i, a in enumerate(registry.with_evidence()):
        y = str(svg_mod.M_TOP + 30 * i + 5)
        mine = sorted((c for c in cells if c.get("y") == y), key=lambda c: float(c.get("x")))
        docs = sorted(evidence(root, a.name), key=lambda d: d["window"]["start"])
        assert [c.get("class") for c in mine] == [f"cell {'pass' if d['passed'] else 'fail'}" for d in docs], a.name
        for c, d in zip(mine, docs):
            start = dt.datetime.fromisoformat(d["window"]["start"].replace("Z", "+00:00")).timestamp()
            end = dt.datetime.fromisoformat(d["window"]["end"].replace("Z", "+00:00")).timestamp()
            assert when(float(c.get("x"))) == pytest.approx(start, abs=per_px * 0.6), (a.name, d["partition"])
            # the cell ends 1 px before its window's end (a gap between neighbours): a week is 7 days wide
            assert when(float(c.get("x")) + float(c.get("width")) + 1.0) == pytest.approx(end, abs=per_px * 0.6), \
                (a.name, d["partition"])
    assert len(cells) == sum(len(evidence(root, a.name)) for a in registry.with_evidence())


def test_charts_and_kpis_judge_a_value_at_its_threshold_as_the_criterion_does(tmp_path):
    """A value exactly at a threshold is drawn as its criterion judges it: a verified ratio of 0.95 and
    a proof success of 0.99 fail (they must be above), a conservation margin of 0 passes (green bar,
    fees >= rewards + buffer), a node at exactly 1.5 x the mean utilisation passes (blue bar)."""
    from qfs_assets.dashboard.catalog import open_store
    from qfs_assets.dashboard.panels import economics, storage_health

    root = tmp_path / "evidence"
    store = EvidenceStore(root)
    day = dt.date(2026, 3, 2)
    utils = [0.25, 0.5, 0.5, 0.75]  # mean 0.5: the last node is exactly 1.5 x the mean
    dist = pa.table({"node_id": [f"node-{i}" for i in range(4)], "capacity_bytes": pa.array([10**12] * 4, pa.int64()),
                     "shard_count": pa.array([1] * 4, pa.int64()),
                     "shard_bytes": pa.array([int(u * 10**12) for u in utils], pa.int64()), "utilization": utils})
    _publish(store, "node_health_assessment", day, _t(day), _t(day + dt.timedelta(days=1)), {
        "in_service_nodes": 20, "verified_nodes": 19, "verified_ratio": 19 / 20, "proof_challenges": 100,
        "proof_success_rate": 99 / 100, "utilization_cv": 0.25, "utilization_max_over_mean": 1.5,
        "objects_degraded": 0, "objects_unrecoverable": 0,
    }, [("nodes_verified", False, 19 / 20, 0.95), ("proof_success", False, 99 / 100, 0.99),
        ("shard_balance", True, {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5},
         {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}), ("no_unrecoverable_objects", True, 0, 0)],
        tables={"node_health_distribution": dist})
    for i, margin in enumerate([0, -1, 1]):
        week = dt.date(2026, 3, 2) + dt.timedelta(weeks=i)
        fees, buffer = 10_000_000_000, 500_000_000
        _publish(store, "economics_sanity_check", week, _t(week), _t(week + dt.timedelta(days=7)), {
            "fees_atr": fees, "rewards_nod": fees - buffer - margin, "rewards_in_atr": fees - buffer - margin,
            "buffer_atr": buffer, "margin_atr": margin, "duplicate_tx_ids": 0, "duplicate_reward_ids": 0,
            "rewards_to_failed_nodes": 0, "ledger_vs_log_atr": 0,
        }, [("conservation", margin >= 0, {"margin_atr": margin}, {"margin_atr_min": 0})])
    with open_store(root) as s:
        health, econ = storage_health.build(s), economics.build(s)
    tones = {k.label: k.tone for k in health.kpis}
    assert tones["verified ratio"] == "bad" and tones["proof success"] == "bad"
    assert health.chart("chart-utilisation-latest").bar_colors == [svg_mod.BLUE] * 4
    assert econ.chart("chart-econ-margin").bar_colors == [svg_mod.GREEN, svg_mod.RED, svg_mod.GREEN]


def test_utilisation_histogram_bins_from_zero_to_the_maximum(tmp_path):
    """More than 120 in-service nodes: 20 equal bins from 0 to the highest utilisation, that one in the last."""
    from qfs_assets.dashboard.catalog import open_store
    from qfs_assets.dashboard.panels import storage_health

    root = tmp_path / "evidence"
    day = dt.date(2026, 3, 2)
    utils = [0.125] * 100 + [0.525] * 24 + [1.0]  # bins of 0.05: the 3rd, the 11th, and the last
    n = len(utils)
    dist = pa.table({"node_id": [f"node-{i:04d}" for i in range(n)], "capacity_bytes": pa.array([1000] * n, pa.int64()),
                     "shard_count": pa.array([1] * n, pa.int64()),
                     "shard_bytes": pa.array([int(u * 1000) for u in utils], pa.int64()), "utilization": utils})
    _publish(EvidenceStore(root), "node_health_assessment", day, _t(day), _t(day + dt.timedelta(days=1)), {
        "in_service_nodes": n, "verified_nodes": n, "verified_ratio": 1.0, "proof_challenges": n,
        "proof_success_rate": 1.0, "utilization_cv": 0.5, "utilization_max_over_mean": 4.0,
        "objects_degraded": 0, "objects_unrecoverable": 0,
    }, [("shard_balance", False, {"utilization_max_over_mean": 4.0}, {"utilization_max_over_mean": 1.5})],
        tables={"node_health_distribution": dist})
    with open_store(root) as s:
        chart = storage_health.build(s).chart("chart-utilisation-latest")
    want = [0.0] * 20
    want[2], want[10], want[19] = 100, 24, 1
    assert chart.series[0].values == want
    assert chart.labels[0] == "0–5%" and chart.labels[-1] == "95–100%"


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.starts: list[str] = []
        self.text: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.starts.append(tag)
        self.attrs += [v or "" for _, v in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_evidence_text_is_escaped_everywhere(rich):
    root, html = rich
    dom = _Dom()
    dom.feed(html)
    assert dom.starts.count("script") == 1 and "b" not in dom.starts  # no element came from the evidence
    text = "".join(dom.text)
    assert HOSTILE in text and HOSTILE2 in text  # shown as text: AEGIS table, chart labels, tooltips
    assert "&lt;script&gt;alert(&#39;n&#39;)&lt;/script&gt;" in html and "node-&#34;q&#34;&amp;&lt;b&gt;x" in html
    aegis = re.search(r'<table id="table-aegis-unverified".*?</table>', html, flags=re.S).group(0)
    assert "&lt;script&gt;alert(&#39;n&#39;)&lt;/script&gt;" in aegis
    svg = ET.tostring(svg_of(html, "chart-utilisation-latest"), encoding="unicode")
    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in svg  # parsed back as text, not as an element
    # an evidence root whose path is markup is shown as text too
    odd = root.parent / "ev<i>dence"
    build_store(odd, only_node_health=True)
    page = build_dashboard(odd).html
    assert "ev&lt;i&gt;dence" in page and "<i>" not in page


def test_dashboard_reads_activities_and_cadences_from_the_registry(store, monkeypatch):
    from qfs_assets.registry import Activity

    page = build_dashboard(store).html
    summary = re.search(r'<table id="table-verdict-summary".*?</table>', page, flags=re.S).group(0)
    names = re.findall(r"<tr><td><code>([a-z_]+)</code></td><td[^>]*>([^<]+)</td>", summary)
    assert names == [(a.name, "per failure" if a.cadence == "event" else a.cadence) for a in registry.with_evidence()]
    # a new activity in the registry shows on the page with no other edit
    extra = Activity(name="disk_scrub", title="Disk scrub", cadence="weekly", runbook="docs/runbooks/x.md",
                     group="disk_scrub", order=70)
    known = registry.activities()
    monkeypatch.setattr(registry, "_load", lambda: {**known, "disk_scrub": extra})
    page = build_dashboard(store).html
    assert "disk_scrub (weekly)" in page and "disk_scrub: no evidence yet" in page
    assert re.search(r'activities with evidence</div><div class="kpi-value">5 / 6<', page)


def test_templates_ship_with_a_non_editable_build(tmp_path, store):
    """setuptools' build_py (what a wheel holds) copies the templates; the page renders from that copy."""
    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "qfs_assets", src / "qfs_assets", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    lib = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=src,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shipped = {p.relative_to(lib / "qfs_assets" / "dashboard").as_posix()
               for p in (lib / "qfs_assets" / "dashboard" / "templates").rglob("*") if p.is_file()}
    in_repo = {p.relative_to(repo / "qfs_assets" / "dashboard").as_posix()
               for p in (repo / "qfs_assets" / "dashboard" / "templates").rglob("*") if p.is_file()}
    assert shipped == in_repo and "templates/page.html.j2" in shipped
    out = tmp_path / "page.html"
    code = ("import sys, qfs_assets.dashboard as d\n"
            f"assert d.__file__.startswith({str(lib)!r}), d.__file__\n"
            f"d.render_dashboard({str(store)!r}, {str(out)!r})\n")
    env = {**os.environ, "PYTHONPATH": str(lib)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'id="panel-replay"' in out.read_text()
