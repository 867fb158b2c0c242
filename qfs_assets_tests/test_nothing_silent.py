"""Nothing fails silently (issue 15, export and evidence contracts v1.1), on small generated exports.

- storage_errors: the table, the reader, node health's metrics and ``no_corruption_errors`` (feed
  present, absent, starting later); the completeness rule of day partitions;
- the storage errors sensor: a ``checksum_mismatch`` alerts within one tick (critical, naming
  node, object and shard), an error burst above the threshold alerts, new files only;
- node failure and redundancy alerts; the 24-hour rule every day (``diff_unresolved``) and
  ``resolved_late`` in the month; the evidence watchdog and ``qfs-assure gaps``;
- every new alert kind through the real local webhook, Slack and SMTP servers, dedupe and
  redaction, and listed in docs/runbooks/alert-triage.md with a runbook that exists.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from qfs_assets.activities.dual_write.ledger import DiffLedger
from qfs_assets.activities.node_health.assess import assess_node_health
from qfs_assets.alerting import events
from qfs_assets.alerting.model import EVENT_KINDS, KIND_RUNBOOKS
from qfs_assets.evidence import gx_suite
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import ts, write
from qfs_assets_tests.test_alerting import (SECRETS, SMTP_PASSWORD, SlackSink, SmtpSink, WebhookSink, _cfg,  # noqa: F401
                                            _isolated_env, http, smtp)
from qfs_assets_tests.test_cli_and_defs import build_healthy

UTC = dt.timezone.utc
DAY = "2026-03-02"
REPO = Path(__file__).resolve().parents[1]


def err(eid: str, cls: str = "io_error", *, day: str = DAY, hh: int = 12, mm: int = 0, node_id="n01", object_id="o1",
        shard_index=0, operation="get", detail=None) -> dict:
    return {"error_id": eid, "ts": ts(day, hh, mm), "node_id": node_id, "object_id": object_id,
            "shard_index": shard_index, "operation": operation, "error_class": cls, "detail": detail}


def verdicts(result) -> dict[str, bool]:
    return {c.name: c.passed for c in gx_suite.validate(result.activity, result.judge_table, result.criteria_specs,
                                                        result.metrics)}


# ---- the reader and node health ------------------------------------------------------------------
def test_node_health_storage_error_metrics_and_no_corruption_errors(tmp_path):
    root = build_healthy(tmp_path / "export")
    write(root, "storage_errors", [err("e1"), err("e2", "timeout", node_id="n03"), err("e3", node_id=None),
                                   err("e4", "checksum_mismatch", node_id="n02", object_id="o7", shard_index=2)], DAY)
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    m = r.metrics
    assert (m["storage_errors"], m["corruption_errors"], m["storage_error_nodes"]) == (4, 1, ["n01", "n02", "n03"])
    assert m["storage_errors_by_class"] == {"io_error": 2, "timeout": 1, "not_found": 0, "capacity_exceeded": 0,
                                           "checksum_mismatch": 1, "internal": 0}
    assert verdicts(r)["no_corruption_errors"] is False and sum(verdicts(r).values()) == 4
    assert r.inputs["storage_errors"]["feed"] == "present"
    assert r.tables["node_health_corruption"].column("object_id").to_pylist() == ["o7"]

    write(root, "storage_errors", [err("e1")], DAY)  # transient errors only: the criterion passes
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert verdicts(r)["no_corruption_errors"] is True and r.metrics["corruption_errors"] == 0


def test_an_absent_feed_is_a_v1_export_metrics_null_criterion_left_out(tmp_path):
    root = build_healthy(tmp_path / "export")
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert {k: r.metrics[k] for k in ("storage_errors", "storage_errors_by_class", "corruption_errors",
                                      "storage_error_nodes")} == dict.fromkeys(
        ("storage_errors", "storage_errors_by_class", "corruption_errors", "storage_error_nodes"))
    assert "no_corruption_errors" not in {s.name for s in r.criteria_specs}
    assert r.inputs["storage_errors"]["feed"] == "absent" and "never published" in r.inputs["storage_errors"]["detail"]
    # a feed that starts the day after: the day is not covered either (never "no errors")
    write(root, "storage_errors", [err("e1", day="2026-03-03")], "2026-03-03")
    r = assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))
    assert r.metrics["corruption_errors"] is None and r.inputs["storage_errors"]["first_partition"] == "2026-03-03"


def test_day_partitions_are_complete_from_the_first(tmp_path):
    """A day missing on or after a table's first partition is bad input naming the table and the first
    missing day (required or not); days before the first partition read as empty."""
    write(tmp_path, "fees", [], "2026-03-01")
    write(tmp_path, "fees", [], "2026-03-04")
    reader = ExportReader(tmp_path)
    days = [dt.date(2026, 3, d) for d in (4, 3, 2)]
    for required in (True, False):
        with pytest.raises(BadInput) as e:
            reader.files("fees", days, required=required)
        assert str(e.value) == (f"bad input: table 'fees', file '{tmp_path}/fees/date=2026-03-02': missing partition "
                                "date=2026-03-02 (day partitions are complete from the table's first partition "
                                "date=2026-03-01; first missing day 2026-03-02)")
    assert reader.read("fees", [dt.date(2026, 2, 27), dt.date(2026, 2, 28), dt.date(2026, 3, 1)]).num_rows == 0
    assert ExportReader(tmp_path).read("rewards", [dt.date(2026, 3, 1)], required=False).num_rows == 0  # absent table
    # the storage_errors feed too, through node health
    root = build_healthy(tmp_path / "export")
    write(root, "storage_errors", [], "2026-03-01")
    with pytest.raises(BadInput, match=r"table 'storage_errors'.*first missing day 2026-03-02"):
        assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))


def test_a_bad_storage_errors_value_is_bad_input(tmp_path):
    root = build_healthy(tmp_path / "export")
    write(root, "storage_errors", [err("e1", "bit_rot")], DAY)
    with pytest.raises(BadInput, match=r"table 'storage_errors'.*column 'error_class': value outside"):
        assess_node_health(ExportReader(root), dt.date.fromisoformat(DAY))


# ---- the storage errors scan ----------------------------------------------------------------------
def test_corruption_and_bursts_alert_once_new_files_only(tmp_path):
    from qfs_assets.monitoring.storage_errors import ErrorsCursor, scan

    burst = [err(f"b{i}", "timeout", hh=9, mm=i % 60, node_id="n05") for i in range(6)]
    write(tmp_path, "storage_errors", [err("e1")], "2026-03-01")
    write(tmp_path, "storage_errors", burst + [err("c1", "checksum_mismatch", node_id="n02", object_id="o7",
                                                   shard_index=3, detail="postgresql://u:hunter2@db/x")], DAY)
    reader = ExportReader(tmp_path)

    def run(cursor, threshold=5):
        cursor, parts = scan(reader, cursor, threshold)
        parts = list(parts)
        for p in parts:
            cursor.mark(p.day, p.new_files)
        return cursor, [a for p in parts for a in p.alerts], parts

    cursor, alerts, parts = run(ErrorsCursor.from_start())
    assert [p.day.isoformat() for p in parts] == ["2026-03-01", DAY]
    corrupt, burst_alert = sorted(alerts, key=lambda a: a.kind)
    assert corrupt.kind == "storage_corruption" and corrupt.severity == "critical"
    assert "node n02, object o7, shard 3" in corrupt.message and corrupt.partition == DAY
    assert "hunter2" not in json.dumps(corrupt.to_dict())
    assert burst_alert.kind == "storage_error_burst" and burst_alert.details["node_id"] == "n05"
    assert burst_alert.details["errors"] == 6 and burst_alert.details["hour"] == "2026-03-02T09:00:00Z"
    assert run(ErrorsCursor.from_start(), threshold=6)[1] == [corrupt] or \
        [a.kind for a in run(ErrorsCursor.from_start(), threshold=6)[1]] == ["storage_corruption"]  # 6 is not > 6

    # nothing new: nothing read; a new file in the day: only its rows are alerted
    cursor2, alerts, parts = run(ErrorsCursor.from_json(cursor.to_json()))
    assert parts == [] and alerts == []
    write(tmp_path, "storage_errors", [err("c2", "checksum_mismatch", node_id="n04", object_id="o9", hh=13)], DAY,
          name="part-1.parquet")
    _, alerts, parts = run(cursor2)
    assert [p.new_files for p in parts] == [["part-1.parquet"]]
    corrupt2 = next(a for a in alerts if a.kind == "storage_corruption")
    assert [e["error_id"] for e in corrupt2.details["errors"]] == ["c2"]
    assert corrupt2.dedupe_key != corrupt.dedupe_key
    # no cursor (a sensor's first tick): the newest partition only
    _, _, parts = run(None)
    assert [p.day.isoformat() for p in parts] == [DAY]


def test_a_burst_is_one_alert_per_node_and_hour_however_its_files_arrive(tmp_path):
    """A late file adding errors to an hour that already alerted re-counts the hour, with the same
    dedupe key (the ledger sends it once); another hour of the node is another alert."""
    from qfs_assets.monitoring.storage_errors import ErrorsCursor, scan

    write(tmp_path, "storage_errors", [err(f"b{i}", "timeout", hh=9, mm=i, node_id="n05") for i in range(6)], DAY)
    reader = ExportReader(tmp_path)

    def bursts(cursor):
        cursor, parts = scan(reader, cursor, 5)
        found = []
        for p in parts:
            found += [a for a in p.alerts if a.kind == "storage_error_burst"]
            cursor.mark(p.day, p.new_files)
        return cursor, found

    cursor, (first,) = bursts(ErrorsCursor.from_start())
    write(tmp_path, "storage_errors", [err(f"late{i}", hh=9, mm=30 + i, node_id="n05") for i in range(3)]
          + [err(f"ten{i}", hh=10, mm=i, node_id="n05") for i in range(6)], DAY, name="part-1.parquet")
    _, found = bursts(cursor)
    again, next_hour = sorted(found, key=lambda a: a.details["hour"])
    assert (first.details["errors"], again.details["errors"], next_hour.details["errors"]) == (6, 9, 6)
    assert again.dedupe_key == first.dedupe_key
    assert next_hour.dedupe_key != first.dedupe_key and next_hour.details["hour"] == "2026-03-02T10:00:00Z"


# ---- through Dagster, to the real local servers -----------------------------------------------------
def _env(monkeypatch, http, tmp_path, **extra):
    monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", http.url("/hook/tok"))
    monkeypatch.setenv("QFS_ALERT_STATE_DIR", str(tmp_path / "alert_state"))
    monkeypatch.setenv("QFS_ALERT_BASE_DELAY_SECONDS", "0.01")
    for k, v in extra.items():
        monkeypatch.setenv(k, v)


def test_storage_errors_sensor_alerts_within_one_tick(http, tmp_path, monkeypatch):
    import dagster as dg

    from qfs_assets.defs.resources import EvidenceResource, ExportResource
    from qfs_assets.defs.storage_errors.sensors import storage_errors_sensor

    _env(monkeypatch, http, tmp_path)
    root = tmp_path / "export"
    write(root, "storage_errors", [err("e1")], "2026-03-01")
    resources = {"export": ExportResource(export_root=str(root)),
                 "evidence": EvidenceResource(evidence_root=str(tmp_path / "ev"))}
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        storage_errors_sensor(ctx)
        assert http.posts("/hook/") == []
        write(root, "storage_errors", [err("c1", "checksum_mismatch", node_id="n02", object_id="o7", shard_index=3)], DAY)
        ctx2 = dg.build_sensor_context(instance=instance, cursor=ctx.cursor, resources=resources)
        storage_errors_sensor(ctx2)  # the next tick
        [post] = [p["json"] for p in http.posts("/hook/")]
        assert post["kind"] == "storage_corruption" and post["severity"] == "critical"
        assert post["title"].startswith("[QFS Assure] CRITICAL STORAGE CORRUPTION")
        assert post["details"]["errors"][0] | {} == {"error_id": "c1", "ts": "2026-03-02T12:00:00Z", "node_id": "n02",
                                                     "object_id": "o7", "shard_index": 3, "operation": "get",
                                                     "detail": None}
        assert post["runbook"] == "docs/runbooks/storage-errors.md"
        storage_errors_sensor(dg.build_sensor_context(instance=instance, cursor=ctx2.cursor, resources=resources))
        assert len(http.posts("/hook/")) == 1


def test_node_failure_sensor_alerts_the_moment_it_sees_a_failure(http, tmp_path, monkeypatch):
    import dagster as dg

    from qfs_assets.defs.node_failure.sensors import node_failure_sensor
    from qfs_assets.defs.resources import EvidenceResource, ExportResource
    from qfs_assets_tests.test_node_failure import EqmLog, snapshot

    _env(monkeypatch, http, tmp_path)
    root, evidence = tmp_path / "export", tmp_path / "ev"
    log = EqmLog()
    log.register(ts("2026-03-02", 1), "a", "b")
    seq = log.status(ts("2026-03-03", 10, 17), "a", "failed")
    log.write(root)
    snapshot(root, "2026-03-03", {"a": "failed", "b": "active"})
    resources = {"export": ExportResource(export_root=str(root)), "evidence": EvidenceResource(evidence_root=str(evidence))}
    with dg.instance_for_test() as instance:
        first = node_failure_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert [r.partition_key for r in first.run_requests] == ["a_20260303"]
        [post] = [p["json"] for p in http.posts("/hook/")]
        assert post["kind"] == "node_failure" and post["severity"] == "critical" and post["partition"] == "a_20260303"
        assert post["evidence_path"] == str(evidence / "node_failure_response" / "a_20260303.json")
        assert post["details"]["failure"]["seq"] == seq and post["details"]["response_evidence"] == "pending"
        # a restarted sensor (no cursor) sees it again: the ledger does not send it twice
        node_failure_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(http.posts("/hook/")) == 1


def test_redundancy_lost_alerts_on_new_losses_above_the_threshold():
    from qfs_assets.monitoring.redundancy import redundancy_alert

    day = dt.date(2026, 3, 11)
    detail = pa.table({"object_id": ["a", "b", "c"], "data_shards": [4, 4, 2], "total_shards": [6, 6, 3],
                       "healthy_shards": [5, 4, 1], "state": ["degraded", "degraded", "unrecoverable"]})
    alert = redundancy_alert(day, detail, None, 0, "ev/x.json")
    assert alert.kind == "redundancy_lost" and alert.severity == "critical"  # one is unrecoverable
    assert alert.details["objects_degraded"] == 3 and alert.details["newly_degraded"] == 3
    assert [w["object_id"] for w in alert.details["worst_objects"]] == ["c", "b", "a"]
    assert redundancy_alert(day, detail, None, 3, None) is None  # not above the threshold
    assert redundancy_alert(day, detail, None, 2, None) is not None
    assert redundancy_alert(day, detail, {"a", "b", "c"}, 0, None) is None  # still degraded, being repaired
    again = redundancy_alert(day, detail, {"a", "b"}, 0, None)
    assert again.details["newly_degraded"] == 1 and again.dedupe_key != alert.dedupe_key
    one = detail.slice(0, 1)
    assert redundancy_alert(day, one, set(), 0, None).severity == "warning"


def test_the_node_health_asset_alerts_lost_redundancy_once(http, tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from qfs_assets import cli

    _env(monkeypatch, http, tmp_path)
    root = build_healthy(tmp_path / "export")
    write(root, "nodes", [__import__("qfs_assets_tests.exportkit", fromlist=["node"]).node(f"n{i:02d}",
                                                                                          status="failed" if i == 3 else "active")
                          for i in range(10)], DAY)
    o = cli.execute("node_health_assessment", DAY, export_root=str(root), evidence_root=str(tmp_path / "ev"),
                    instance=DagsterInstance.ephemeral())
    assert o.exit_code in (cli.EXIT_PASSED, cli.EXIT_FAILED), o.message
    posts = [p["json"] for p in http.posts("/hook/") if p["json"]["kind"] == "redundancy_lost"]
    assert len(posts) == 1 and posts[0]["details"]["objects_degraded"] == 3 and posts[0]["partition"] == DAY
    cli.execute("node_health_assessment", DAY, export_root=str(root), evidence_root=str(tmp_path / "ev"),
                instance=DagsterInstance.ephemeral())
    assert len([p for p in http.posts("/hook/") if p["json"]["kind"] == "redundancy_lost"]) == 1  # a re-run: deduped
    monkeypatch.setenv("QFS_ALERT_DEGRADED_OBJECTS_OVER", "3")
    assert cli.execute("node_health_assessment", DAY, export_root=str(root), evidence_root=str(tmp_path / "ev2"),
                       instance=DagsterInstance.ephemeral()).exit_code in (0, 1)
    assert len([p for p in http.posts("/hook/") if p["json"]["kind"] == "redundancy_lost"]) == 1


# ---- the 24-hour rule every day -------------------------------------------------------------------
def _keys(*pairs) -> pa.Table:
    return pa.table({"object_id": [p[0] for p in pairs], "category": [p[1] for p in pairs]})


def test_a_difference_is_announced_the_day_it_reaches_24_hours_and_a_late_resolution_counts():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ledger = DiffLedger(tmp)
        t0 = dt.datetime(2026, 5, 2, tzinfo=UTC)
        d = lambda k: f"daily:2026-05-{k:02d}"  # noqa: E731
        ledger.apply(d(1), t0, _keys(("p", "missing_in_storage")))
        assert ledger.reached_limit(d(1), 24).num_rows == 0
        ledger.apply(d(2), t0 + dt.timedelta(hours=23), _keys(("p", "missing_in_storage")))
        assert ledger.reached_limit(d(2), 24).num_rows == 0  # 23 h: not yet
        ledger.apply(d(3), t0 + dt.timedelta(hours=24), _keys(("p", "missing_in_storage"), ("q", "missing_in_sor")))
        reached = ledger.reached_limit(d(3), 24)
        assert reached.column("object_id").to_pylist() == ["p"]  # exactly 24 h: it can no longer be resolved in time
        ledger.apply(d(4), t0 + dt.timedelta(hours=48), _keys(("p", "missing_in_storage"), ("q", "missing_in_sor")))
        assert ledger.reached_limit(d(4), 24).column("object_id").to_pylist() == ["q"]  # p was announced already
        ledger.apply(d(5), t0 + dt.timedelta(hours=72), _keys())  # both gone
        late = ledger.resolved_late(dt.date(2026, 5, 1), dt.date(2026, 5, 31), 24)
        assert sorted(late.column("object_id").to_pylist()) == ["p", "q"]  # 72 h and 48 h after first seen
        assert ledger.resolved_late(dt.date(2026, 5, 1), dt.date(2026, 5, 31), 72).num_rows == 0
        assert ledger.resolved_late(dt.date(2026, 6, 1), dt.date(2026, 6, 30), 24).num_rows == 0  # another month


def test_a_72_hour_episode_fails_the_month_although_it_closed(tmp_path):
    """The issue's case: first seen at the daily diff of 05-02, gone at 05-05's: announced the day it
    reaches 24 h, and the month fails diffs_resolved_in_24h with resolved_late 1 although it closed."""
    from qfs_assets.activities.dual_write.assess import assess_daily_diff, assess_dual_write
    from qfs_assets.demo.sor_writer import write_sor
    from qfs_assets.readers.sor import SystemOfRecord
    from qfs_assets_tests.exportkit import obj
    from qfs_assets_tests.test_dual_write import shards_for

    root, ev = tmp_path / "export", tmp_path / "ev"
    man = [obj("a", updated=ts("2026-05-01", 1)), obj("b", updated=ts("2026-05-01", 2))]
    late = obj("late", updated=ts("2026-05-05", 8))  # the StorageEngine applies it on 05-05
    for k in (2, 3, 4, 5, 31):
        rows = man + ([late] if k >= 5 else [])
        write(root, "objects", rows, f"2026-05-{k:02d}")
        write(root, "shards", [s for r in rows for s in shards_for(r)], f"2026-05-{k:02d}")
    url = f"sqlite:///{tmp_path / 'sor.sqlite'}"
    write_sor(url, man + [{**late, "updated_at": ts("2026-05-02", 10)}])  # the gateway recorded it on 05-02
    sor, reader = SystemOfRecord(url), ExportReader(root)
    reached = []
    for k in range(2, 6):
        daily = assess_daily_diff(reader, sor, dt.date(2026, 5, k), ev, dt.datetime(2026, 5, k + 1, tzinfo=UTC))
        reached.append(DiffLedger(ev).reached_limit(daily.ledger.run_key, 24).num_rows)
    assert reached == [0, 1, 0, 0]  # announced by the daily diff of 05-03 (24 h), once
    res = assess_dual_write(reader, sor, dt.date(2026, 5, 1), None, ev, dt.datetime(2026, 6, 1, tzinfo=UTC))
    assert res.metrics["unresolved_over_24h"] == 0 and res.metrics["resolved_late"] == 1
    got = {c.name: c for c in gx_suite.validate(res.activity, res.judge_table, res.criteria_specs, res.metrics)}
    assert got["diffs_resolved_in_24h"].passed is False
    assert got["diffs_resolved_in_24h"].observed == {"unresolved_over_24h": 0, "resolved_late": 1}
    assert res.tables["dual_write_resolved_late"].column("object_id").to_pylist() == ["late"]


def test_the_daily_diff_asset_sends_diff_unresolved(http, tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from qfs_assets import cli
    from qfs_assets.demo.sor_writer import write_sor
    from qfs_assets_tests.exportkit import obj

    _env(monkeypatch, http, tmp_path)
    root = tmp_path / "export"
    for k in (2, 3):
        write(root, "objects", [obj("a", updated=ts("2026-03-01", 1))], f"2026-03-0{k}")
    url = f"sqlite:///{tmp_path / 'sor.sqlite'}"
    write_sor(url, [obj("a", updated=ts("2026-03-01", 1), content_hash="e" * 64)])
    instance = DagsterInstance.ephemeral()
    for k in (2, 3, 3):
        o = cli.execute("dual_write_diff", f"2026-03-0{k}", export_root=str(root), sor_url=url,
                        evidence_root=str(tmp_path / "ev"), instance=instance)
        assert o.exit_code == cli.EXIT_PASSED, o.message
    [post] = [p["json"] for p in http.posts("/hook/")]
    assert post["kind"] == "diff_unresolved" and post["partition"] == "2026-03-03"
    assert post["details"]["reached"] == [{"object_id": "a", "category": "content_mismatch",
                                           "first_seen": "2026-03-03T00:00:00Z"}]
    assert post["runbook"] == "docs/runbooks/dual-write-rollback.md"


# ---- freshness -----------------------------------------------------------------------------------
def _evidence(root: Path, activity: str, day: str) -> None:
    p = root / activity / f"{activity}_{day.replace('-', '')}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("{}")


def test_gaps_are_due_a_grace_period_after_the_schedule(tmp_path):
    from qfs_assets.monitoring.gaps import find_gaps

    ev = tmp_path / "ev"
    days = [dt.date(2026, 3, d) for d in range(2, 8)]
    for d in days:
        if d.day not in (4, 5):  # two days of evidence deleted
            _evidence(ev, "node_health_assessment", d.isoformat())
    window = lambda d: (d.isoformat(), dt.datetime.combine(d, dt.time(), UTC),  # noqa: E731
                        dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), UTC))
    expected = {"node_health_assessment": [window(d) for d in days]}
    # the 03-07 partition is scheduled 03-08 02:00; with 6 h of grace it is due 08:00
    now = dt.datetime(2026, 3, 8, 8, tzinfo=UTC)
    gaps = find_gaps(ev, expected, now, 6)
    assert [(g.partition, g.due.isoformat()) for g in gaps] == [("2026-03-04", "2026-03-05T08:00:00+00:00"),
                                                                ("2026-03-05", "2026-03-06T08:00:00+00:00")]
    (ev / "node_health_assessment" / "node_health_assessment_20260307.json").unlink()
    assert [g.partition for g in find_gaps(ev, expected, now - dt.timedelta(seconds=1), 6)] == ["2026-03-04", "2026-03-05"]
    assert [g.partition for g in find_gaps(ev, expected, now, 6)] == ["2026-03-04", "2026-03-05", "2026-03-07"]
    assert find_gaps(ev, expected, now, 6, since=dt.date(2026, 3, 5))[0].partition == "2026-03-05"
    assert gaps[0].command == "qfs-assure run node_health_assessment --partition 2026-03-04"


def test_gaps_command_and_watchdog_alert(http, tmp_path, monkeypatch, capsys):
    import dagster as dg

    from qfs_assets import cli
    from qfs_assets.defs.freshness.sensors import evidence_watchdog
    from qfs_assets.defs.resources import EvidenceResource, ExportResource

    _env(monkeypatch, http, tmp_path)
    ev, export = tmp_path / "ev", tmp_path / "export"
    write(export, "nodes", [], "2026-03-02")  # the export starts on 03-02
    for d in range(2, 9):
        if d != 5:
            _evidence(ev, "node_health_assessment", f"2026-03-{d:02d}")
    args = ["gaps", "--evidence-root", str(ev), "--export-root", str(export), "--as-of", "2026-03-09T12:00:00Z"]
    assert cli.main(args) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "node_health_assessment: 1 missing\n  2026-03-05" in out
    assert ".venv/bin/qfs-assure run node_health_assessment --partition 2026-03-05" in out
    assert "dagster job backfill -j node_health_assessment_job --partitions 2026-03-05" in out
    assert "dual_write_diff: 7 missing" in out and "economics_sanity_check: 1 missing\n  2026-03-02" in out
    assert "2026-03-01" not in out  # before the export's first day: nothing expected
    _evidence(ev, "node_health_assessment", "2026-03-05")

    with dg.instance_for_test() as instance:
        resources = {"export": ExportResource(export_root=str(export)), "evidence": EvidenceResource(evidence_root=str(ev))}
        evidence_watchdog(dg.build_sensor_context(instance=instance, resources=resources))
        posts = [p["json"] for p in http.posts("/hook/")]
        kinds = {(p["kind"], p["activity"]) for p in posts}
        assert ("evidence_missing", "dual_write_diff") in kinds and ("evidence_missing", "node_health_assessment") in kinds
        node_health = next(p for p in posts if p["activity"] == "node_health_assessment")
        assert node_health["runbook"] == "docs/runbooks/backfills.md"
        assert node_health["details"]["missing_count"] > 100  # every day since the export began, up to today
        evidence_watchdog(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(http.posts("/hook/")) == len(posts)  # the same gaps: not sent again


# ---- every new kind: real sinks, dedupe, redaction, docs --------------------------------------------
def _one_of_each() -> list:
    day = dt.date(2026, 3, 25)
    return [
        events.storage_corruption(day, [err("c1", "checksum_mismatch", day="2026-03-25", node_id="node-0025",
                                            object_id="obj-1", shard_index=5,
                                            detail="s3://AKIA:wh-tok-9f8e7d6c5b4a39281706@bucket/x?token=zz")]),
        events.storage_error_burst(day, "node-0007", dt.datetime(2026, 3, 25, 9, tzinfo=UTC), 120, 100,
                                   {"io_error": 90, "timeout": 30}),
        events.node_failure({"failure_id": "node-0007_20260311", "node_id": "node-0007", "seq": 7,
                             "failed_at": "2026-03-11T10:17:00+00:00", "source": "eqm"}, "ev/x.json"),
        events.redundancy_lost(day, 2, 0, 2, 0, [{"object_id": "o", "data_shards": 4, "total_shards": 6,
                                                  "healthy_shards": 5}], None, new_ids=["o", "p"]),
        events.diff_unresolved(day, dt.datetime(2026, 3, 26, tzinfo=UTC), 24,
                               [{"object_id": "o", "category": "missing_in_sor",
                                 "first_seen": dt.datetime(2026, 3, 25, tzinfo=UTC)}], 1),
        events.evidence_missing("node_health_assessment", [{"partition": "2026-04-05", "due": "2026-04-06T08:00:00Z"}],
                                6, ["qfs-assure run node_health_assessment --partition 2026-04-05"]),
    ]


def test_every_new_kind_reaches_webhook_slack_and_email_once_without_secrets(http, smtp, tmp_path):
    from qfs_assets.alerting import dispatch

    alerts = _one_of_each()
    assert sorted(a.kind for a in alerts) == sorted(EVENT_KINDS)
    sinks = [WebhookSink(http.url("/hook/wh")), SlackSink(http.url("/services/sl")),
             SmtpSink("127.0.0.1", smtp.port, "a@example.org", ["b@example.org"], user="alerts", password=SMTP_PASSWORD,
                      starttls=False)]
    cfg = _cfg(tmp_path, sinks)
    for a in alerts:
        assert [d.status for d in dispatch(a, cfg).deliveries] == ["sent"] * 3
        assert [d.status for d in dispatch(a, cfg).deliveries] == ["duplicate"] * 3
    hooks = [p["json"] for p in http.posts("/hook/")]
    assert [h["kind"] for h in hooks] == [a.kind for a in alerts]
    assert [h["severity"] for h in hooks] == ["critical", "warning", "critical", "warning", "error", "error"]
    assert len(http.posts("/services/")) == 6 and len(smtp.messages) == 6
    critical = smtp.messages[0]["msg"]
    assert critical["X-QFS-Alert-Severity"] == "critical" and critical["Importance"] == "high"
    assert "CRITICAL STORAGE CORRUPTION" in critical["Subject"]
    assert "node node-0025, object obj-1, shard 5" in critical.get_content()
    everything = json.dumps([p["json"] for p in http.requests]) + "".join(m["msg"].as_string() for m in smtp.messages)
    assert "wh-tok-9f8e7d6c5b4a39281706" not in everything and "token=zz" not in everything


def test_every_new_kind_has_a_runbook_and_a_row_in_alert_triage():
    triage = (REPO / "docs" / "runbooks" / "alert-triage.md").read_text(encoding="utf-8")
    for kind in EVENT_KINDS:
        runbook = KIND_RUNBOOKS[kind]
        assert (REPO / runbook).is_file(), runbook
        row = next((line for line in triage.splitlines() if line.startswith(f"| `{kind}`")), None)
        assert row is not None, f"{kind} has no row in alert-triage.md"
        assert Path(runbook).name in row
