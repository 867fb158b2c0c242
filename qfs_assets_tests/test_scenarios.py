"""The five cross-system scenarios of the assurance plan, end to end through `defs`.

Production shape: the Dagster instance is PostgreSQL-backed (dagster-postgres, the storage block of
deploy/postgres/dagster.yaml), the system of record is a real PostgreSQL database, the export is
the demo deployment, alerts go to a real local HTTP server. Each test makes its own databases
and drops them; PostgreSQL being down fails these tests (it is never a skip).
"""

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from qfs_assets import cli
from qfs_assets.analytics.trace import trace_tx
from qfs_assets.definitions import defs
from qfs_assets.defs.node_failure.sensors import node_failure_sensor
from qfs_assets.defs.resources import EvidenceResource, ExportResource
from qfs_assets.demo import DemoConfig, generate

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
REPO = Path(__file__).resolve().parents[1]


def _admin():
    return sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def pg_databases():
    """Two fresh PostgreSQL databases: the Dagster instance's and the system of record's."""
    suffix = uuid.uuid4().hex[:10]
    names = {"dagster": f"qfs_dagster_{suffix}", "sor": f"qfs_sor_{suffix}"}
    eng = _admin()
    with eng.connect() as c:
        for name in names.values():
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield {k: f"postgresql+psycopg2://postgres@127.0.0.1:5432/{v}" for k, v in names.items()}
    with eng.connect() as c:
        for name in names.values():
            c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    eng.dispose()


@pytest.fixture(scope="module")
def deployment(pg_databases, tmp_path_factory):
    """The demo deployment with its system of record in PostgreSQL (a plain postgresql:// URL)."""
    url = pg_databases["sor"].replace("postgresql+psycopg2://", "postgresql://")
    return generate(tmp_path_factory.mktemp("pgdemo"), DemoConfig(), sor_url=url)


@pytest.fixture(scope="module")
def instance(pg_databases):
    """A Dagster instance whose runs, events and schedules live in PostgreSQL."""
    storage = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())["storage"]
    storage["postgres"]["postgres_url"] = pg_databases["dagster"]
    with dg.instance_for_test(overrides={"storage": storage}) as inst:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        yield inst


@pytest.fixture
def evidence_root(tmp_path):
    return tmp_path / "evidence"


def run(instance, deployment, evidence_root, activity, partition, **kw):
    o = cli.execute(activity, partition, export_root=str(deployment.export_root), sor_url=deployment.sor_url,
                    evidence_root=str(evidence_root), defs=defs, instance=instance, **kw)
    assert o.exit_code in (cli.EXIT_PASSED, cli.EXIT_FAILED), o.message
    return o


def evidence(o):
    return json.loads(Path(o.evidence_path).read_text())


class Hook:
    """A real local HTTP server that records JSON POSTs."""

    def __init__(self):
        self.posts = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/s3cret-token"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_1_transaction_write_fee_rewards_replay(instance, deployment, evidence_root):
    """user transaction → storage write → ATR fee → NOD rewards → replay, traced end to end."""
    fees = pq.read_table(deployment.export_root / "fees" / "date=2026-03-11")
    tx = next(r for r in fees.to_pylist() if r["operation"] == "put")
    week = run(instance, deployment, evidence_root, "economics_sanity_check", "2026-03-09")
    drill = run(instance, deployment, evidence_root, "storage_replay_drill", "2026-01-01")
    run(instance, deployment, evidence_root, "node_health_assessment", "2026-03-11")
    assert evidence(drill)["passed"] is True

    t = trace_tx(deployment.export_root, evidence_root, tx["tx_id"])
    fee = t.section("fee ledger").rows[0]
    assert fee["amount_atr"] == tx["amount_atr"] and fee["object_id"] == tx["object_id"]
    event = t.section("EQM fee_charged").rows[0]
    assert event["amounts_agree"] and event["hash_ok"]
    object_events = t.section(f"object {tx['object_id']}: EQM events").rows
    assert any(e["event_type"] == "object_written" for e in object_events)  # the storage write
    assert any(e["event_type"] == "shard_placed" for e in object_events)
    rewards = t.section("rewards on 2026-03-11").rows
    assert rewards and all(r["amount_nod"] > 0 for r in rewards)  # NOD rewards of the holding nodes
    econ = t.section("economics").rows[0]
    assert str(econ["week"]) == "2026-03-09" and econ["passed"] == evidence(week)["passed"]
    replayed = t.section("replay drill covering the fee event").rows[0]
    assert str(replayed["drill_partition"]) == "2026-01-01" and replayed["event_seq"] == event["seq"]
    assert replayed["replayed"] and replayed["checkpoint_matched"]


def test_2_sharding_assignment_proofs_verification(instance, deployment, evidence_root):
    """content sharding → node assignment → proof generation → verification."""
    good = run(instance, deployment, evidence_root, "node_health_assessment", "2026-03-03")
    bad = run(instance, deployment, evidence_root, "node_health_assessment", "2026-03-18")
    assert good.exit_code == cli.EXIT_PASSED and bad.failed_criteria == ["proof_success"]
    day = deployment.export_root
    shards = pq.read_table(day / "shards" / "snapshot_date=2026-03-03").to_pylist()
    objects = {o["object_id"]: o for o in pq.read_table(day / "objects" / "snapshot_date=2026-03-03").to_pylist()}
    by_object = {}
    for s in shards:
        by_object.setdefault(s["object_id"], []).append(s)
    for oid, rows in list(by_object.items())[:200]:  # every shard of an object on a distinct node, indices 0..n-1
        assert len({r["node_id"] for r in rows}) == len(rows) == objects[oid]["total_shards"]
        assert sorted(r["shard_index"] for r in rows) == list(range(objects[oid]["total_shards"]))
    proofs = pq.read_table(day / "proofs" / "date=2026-03-03").to_pylist()
    # every challenge targets a shard its node held that day (at the day's start or its end)
    placed = {(s["object_id"], s["shard_index"], s["node_id"]) for s in shards}
    placed |= {(s["object_id"], s["shard_index"], s["node_id"])
               for s in pq.read_table(day / "shards" / "snapshot_date=2026-03-02").to_pylist()}
    assert all((p["object_id"], p["shard_index"], p["node_id"]) in placed for p in proofs)
    aegis = ds.dataset(evidence_root / "node_health_aegis", partitioning="hive").to_table().to_pylist()
    aegis = [r for r in aegis if str(r["partition_key"]) == "2026-03-03"]
    doc = evidence(good)
    assert sum(r["verified"] for r in aegis) == doc["metrics"]["verified_nodes"]
    assert doc["metrics"]["proof_challenges"] == len(proofs)


def test_3_node_failure_redistribution_reverification_rewards(instance, deployment, evidence_root):
    """node failure → shard redistribution → AEGIS re-verification → reward adjustment (the sensor fires)."""
    resources = {"export": ExportResource(export_root=str(deployment.export_root)),
                 "evidence": EvidenceResource(evidence_root=str(evidence_root))}
    tick = node_failure_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in tick.run_requests] == ["node-0007_20260311"]
    again = node_failure_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=resources))
    assert again.run_requests == []
    o = run(instance, deployment, evidence_root, "node_failure_response", "node-0007_20260311")
    doc = evidence(o)
    assert doc["passed"] is True
    plan = pq.read_table(evidence_root / "node_failure_plan").to_pylist()
    assert len(plan) == doc["metrics"]["shards_to_move"] > 0
    assert all(p["to_node_id"] and p["to_node_id"] != "node-0007" for p in plan)
    receivers = pq.read_table(evidence_root / "node_failure_receivers").to_pylist()
    assert receivers and all(r["verified"] for r in receivers)
    # the reward paid to the failed node was already clawed back the next day: the proposal nets it out
    claws = pq.read_table(evidence_root / "node_failure_reward_adjustments").to_pylist()
    assert all(c["amount_nod"] < 0 and c["kind"] == "adjustment" for c in claws)
    assert doc["metrics"]["clawback_nod"] == doc["metrics"]["clawback_gross_nod"] + doc["metrics"]["existing_adjustments_nod"]
    # the run and a schedule tick live in the PostgreSQL-backed instance
    assert instance.get_runs(filters=dg.RunsFilter(job_name="node_failure_response_job"))
    schedule = defs.resolve_schedule_def("node_health_assessment_schedule")
    ctx = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                    scheduled_execution_time=dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.timezone.utc))
    assert [r.partition_key for r in schedule.evaluate_tick(ctx).run_requests] == ["2026-03-31"]


def test_4_conservation_violation_alerts(instance, deployment, evidence_root, monkeypatch, caplog):
    """conservation check → ATR vs NOD balance → alert on violation (the alert arrives)."""
    hook = Hook()
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        monkeypatch.setenv("QFS_ALERT_BASE_DELAY_SECONDS", "0.01")
        o = run(instance, deployment, evidence_root, "economics_sanity_check", "2026-03-23")
        assert o.exit_code == cli.EXIT_FAILED and o.failed_criteria == ["conservation"]
        doc = evidence(o)
        m = doc["metrics"]
        assert m["margin_atr"] == m["fees_atr"] - m["rewards_in_atr"] - m["buffer_atr"] < 0
        assert len(hook.posts) == 1
        path, alert = hook.posts[0]
        assert path == "/hooks/s3cret-token"
        assert alert["activity"] == "economics_sanity_check" and alert["partition"] == "2026-03-23"
        crit = {c["name"]: c for c in alert["failed_criteria"]}
        assert crit["conservation"]["observed"] == doc["criteria"][0]["observed"]
        assert alert["runbook"].endswith("conservation-violation.md") and alert["evidence_path"]
        # a re-run of the same failing week is not sent twice
        run(instance, deployment, evidence_root, "economics_sanity_check", "2026-03-23")
        assert len(hook.posts) == 1
        assert "s3cret-token" not in caplog.text
    finally:
        hook.close()


def test_5_dual_write_diff_and_resolution_within_24h(instance, deployment, evidence_root):
    """dual-write consistency → PostgreSQL vs StorageEngine diff → resolution tracked within 24 h.

    Timeline of observations (each a partition's run, judged "as of" the time given):
    daily 04-11 at 04-12 00:00, daily 04-12 at 04-13 00:00, then the reconciliation SQL is
    applied to the system of record, then the monthly verification at 04-13 12:00.
    """
    rc = cli.run_config()
    daily = defs.resolve_job_def("dual_write_diff_job")
    monthly = defs.resolve_job_def("dual_write_verification_job")

    def observe(job, asset, key, as_of):
        cfg = dict(rc, ops={asset: {"config": {"as_of": as_of}}})
        with cli.settings_env(export_root=str(deployment.export_root), sor_url=deployment.sor_url,
                              evidence_root=str(evidence_root)):
            assert job.execute_in_process(partition_key=key, run_config=cfg, instance=instance).success

    observe(daily, "dual_write_diff", "2026-04-11", "2026-04-12T00:00:00Z")
    observe(daily, "dual_write_diff", "2026-04-12", "2026-04-13T00:00:00Z")
    day11 = {r["object_id"] for r in ds.dataset(evidence_root / "dual_write_diff_daily", partitioning="hive")
             .to_table().to_pylist() if str(r["partition_key"]) == "2026-04-11"}

    # the monthly verification shows the injected drift exactly
    observe(monthly, "dual_write_verification", "2026-04-01", "2026-04-13T01:00:00Z")
    path = evidence_root / "dual_write_verification" / "dual_write_verification_20260401.json"
    doc = json.loads(path.read_text())
    expected = {k: 0 for k in ("missing_in_storage", "missing_in_sor", "version_mismatch", "content_mismatch")}
    diffs = {o: c for o, c in deployment.expected_dual_write_diffs.items() if c in expected}  # in flight: not judged
    for category in diffs.values():
        expected[category] += 1
    assert {k: doc["metrics"][k] for k in expected} == expected
    assert doc["metrics"]["in_flight"] == sum(c == "in_flight" for c in deployment.expected_dual_write_diffs.values())
    # the diffs already seen on 04-12 00:00 are 25 h old at 04-13 01:00: over 24 h
    assert doc["metrics"]["unresolved_over_24h"] == len(day11 & set(diffs)) > 0

    # apply the reconciliation plan's SQL to the system of record (what the rollback runbook does)
    sql = path.with_suffix(".reconciliation.sql").read_text()
    eng = sa.create_engine(deployment.sor_url.replace("postgresql://", "postgresql+psycopg2://"))
    with eng.begin() as c:
        c.exec_driver_sql(sql)
    eng.dispose()
    plan = pq.read_table(evidence_root / "dual_write_reconciliation").to_pylist()
    storage_side = {p["object_id"] for p in plan if p["authoritative"] == "system_of_record"}
    assert storage_side and storage_side < set(diffs)

    # 11 hours later: what the SQL fixed is resolved; what needs a storage rewrite is overdue if older than 24 h
    observe(monthly, "dual_write_verification", "2026-04-01", "2026-04-13T12:00:00Z")
    doc = json.loads(path.read_text())
    assert doc["metrics"]["inconsistencies"] == len(storage_side)
    assert doc["metrics"]["unresolved_over_24h"] == len(storage_side & day11)
    ledger = pq.read_table(evidence_root / "dual_write_diff_ledger" / "ledger.parquet").to_pylist()
    resolved = {r["object_id"]: r for r in ledger if r["resolved_at"] is not None}
    assert set(resolved) == set(diffs) - storage_side
    for oid, r in resolved.items():
        first = dt.datetime(2026, 4, 12 if oid in day11 else 13, tzinfo=dt.timezone.utc)
        assert r["first_seen"] == first
        assert r["resolved_at"] == dt.datetime(2026, 4, 13, 12, tzinfo=dt.timezone.utc)
    # still present but first seen 12 h ago (04-13 00:00): tracked, not yet overdue
    fresh = storage_side - day11
    assert fresh and all(r["resolved_at"] is None and r["first_seen"] == dt.datetime(2026, 4, 13, tzinfo=dt.timezone.utc)
                         for r in ledger if r["object_id"] in fresh)
