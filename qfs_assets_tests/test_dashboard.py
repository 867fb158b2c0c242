"""Analyst views (qfs_assets.analytics.query), the HTML dashboard, its Dagster asset and sensor.

A small evidence store is built by hand in tmp_path (EvidenceStore.publish, plus the dual-write
diff ledger written as one plain Parquet file), with all five activities, so every panel has data.
The Chromium test opens the rendered page in a real headless browser and checks the charts were
laid out; it is skipped only when /usr/bin/chromium is absent and QFS_REQUIRE_CHROMIUM is unset.
"""

import datetime as dt
import os
import re
import subprocess
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
from qfs_assets.dashboard import PANELS, build_dashboard, render_dashboard
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
