"""qfs_assets.analytics.trace: a fee transaction and an object traced through export and evidence.

Uses the session's default demo deployment (``demo``) and a small evidence store built here
from the pure activity functions (node health of the node-failure day, economics of its week,
the Q1 replay drill), judged with ``Rule.holds`` instead of GX to keep the fixture fast.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qfs_assets.analytics.trace import (
    Section,
    Trace,
    TraceError,
    TraceNotFound,
    main_trace,
    trace_object,
    trace_tx,
)
from qfs_assets.contract.hashing import in_sample
from qfs_assets.readers.base import ExportReader

FAIL_DAY = dt.date(2026, 3, 11)  # the demo's node failure (node-0007 failed on that day's snapshot)
WEEK = dt.date(2026, 3, 9)
QUARTER = dt.date(2026, 1, 1)


def _q(sql: str, params=()) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _files(root: Path, table: str, col: str, day: dt.date) -> str:
    return f"'{root}/{table}/{col}={day.isoformat()}/*.parquet'"


def _verdicts(result) -> list:
    """The criteria in plain Python (``Rule.holds``), so the fixture needs neither GX nor Dagster."""
    from qfs_assets.evidence.model import Criterion

    out = []
    for spec in result.criteria_specs:
        ok = all(rule.holds(v) for rule in spec.rules for v in result.judge_table.column(rule.column).to_pylist())
        obs = result.metrics.get(spec.observed[0]) if len(spec.observed) == 1 else {k: result.metrics.get(k) for k in spec.observed}
        out.append(Criterion(spec.name, ok, obs, spec.threshold))
    return out


@pytest.fixture(scope="module")
def evidence(demo, tmp_path_factory) -> Path:
    from qfs_assets.activities.economics.assess import assess_economics
    from qfs_assets.activities.node_health.assess import assess_node_health
    from qfs_assets.activities.replay_drill.assess import assess_replay_drill
    from qfs_assets.evidence.store import EvidenceStore

    root = tmp_path_factory.mktemp("trace_evidence")
    reader = ExportReader(demo.export_root)
    store = EvidenceStore(root)
    for result in (assess_node_health(reader, FAIL_DAY), assess_economics(reader, WEEK), assess_replay_drill(reader, QUARTER)):
        store.publish(result, _verdicts(result))
    return root


@pytest.fixture(scope="module")
def failed_node_tx(demo) -> tuple[str, str, str]:
    """(tx_id, object_id, failed node): a fee of FAIL_DAY on an object with a shard on the failed node."""
    root = demo.export_root
    rows = _q(
        f"""SELECT f.tx_id, f.object_id, n.node_id
            FROM read_parquet({_files(root, 'fees', 'date', FAIL_DAY)}) f
            JOIN read_parquet({_files(root, 'shards', 'snapshot_date', FAIL_DAY)}) s USING (object_id)
            JOIN read_parquet({_files(root, 'nodes', 'snapshot_date', FAIL_DAY)}) n USING (node_id)
            WHERE n.status = 'failed' AND f.operation <> 'delete'
            ORDER BY f.tx_id LIMIT 1"""
    )
    assert rows, "the demo has a fee on an object held by the failed node"
    return rows[0]


def test_trace_tx_end_to_end(demo, evidence, failed_node_tx):
    tx_id, object_id, failed_node = failed_node_tx
    t = trace_tx(demo.export_root, evidence, tx_id)
    assert t.kind == "tx" and t.id == tx_id

    # fee ledger row
    (fee,) = t.section("fee ledger").rows
    ledger = _q(f"SELECT ts, account_id, object_id, operation, amount_atr FROM read_parquet("
                f"{_files(demo.export_root, 'fees', 'date', FAIL_DAY)}) WHERE tx_id = ?", [tx_id])[0]
    assert fee["date"] == FAIL_DAY and fee["object_id"] == object_id
    assert (fee["ts"], fee["account_id"], fee["operation"], fee["amount_atr"]) == (ledger[0], ledger[1], ledger[3], ledger[4])

    # its fee_charged event
    (event,) = t.section("EQM fee_charged event").rows
    assert isinstance(event["seq"], int) and event["ts"] == fee["ts"]
    assert event["hash_ok"] and event["amounts_agree"] and event["fields_agree"] and event["differences"] == []
    assert len(event["event_hash"]) == 64

    # the object, its shards that day, and the holders' rewards
    assert t.section(f"object paid for: {object_id}").rows[0]["object_id"] == object_id
    shards = t.section(f"object {object_id}: shards on {FAIL_DAY}").rows
    holders = {s["node_id"] for s in shards}
    assert failed_node in holders and len(shards) >= 4
    assert next(s for s in shards if s["node_id"] == failed_node)["aegis_verified"] is False
    rewards = t.section(f"rewards on {FAIL_DAY}").rows
    assert {r["node_id"] for r in rewards} == holders
    failed_rewards = [r for r in rewards if r["node_id"] == failed_node and r["reward_id"]]
    assert failed_rewards and all(r["finding"] == "reward_to_failed_node" for r in failed_rewards if r["kind"] != "adjustment")
    expected = _q(f"SELECT count(*) FROM read_parquet({_files(demo.export_root, 'rewards', 'date', FAIL_DAY)}) "
                  f"WHERE node_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(holders)])[0][0]
    assert sum(1 for r in rewards if r["reward_id"]) == expected

    # economics of its week: the node-failure week fails no_rewards_to_failed_nodes
    (eco,) = t.section(f"economics week of {WEEK}").rows
    assert eco["passed"] is False and "no_rewards_to_failed_nodes" in eco["failed_criteria"]
    assert isinstance(eco["margin_atr"], int)
    assert any("reward_to_failed_node" in n for n in t.section(f"economics week of {WEEK}").notes)

    # the replay drill that covered its seq
    (drill,) = t.section("replay drill covering the fee event").rows
    assert drill["drill_partition"] == QUARTER.isoformat() and drill["replayed"] and drill["chain_intact_through_event"]
    assert drill["checkpoint_seq"] >= event["seq"] and drill["checkpoint_matched"] is True

    text = t.render_text()
    assert tx_id in text and "== fee ledger ==" in text and "reward_to_failed_node" in text


def test_trace_tx_delete_takes_holders_from_day_before(demo, evidence):
    tx_id, day = _q(f"SELECT tx_id, date FROM read_parquet('{demo.export_root}/fees/*/*.parquet', hive_partitioning=true) "
                    "WHERE operation = 'delete' AND date > DATE '2026-03-03' ORDER BY tx_id LIMIT 1")[0]
    t = trace_tx(demo.export_root, evidence, tx_id)
    sec = t.section(f"rewards on {day}")
    assert sec.rows and any("holders taken from" in n for n in sec.notes)
    history = t.section(f"object {t.section('fee ledger').rows[0]['object_id']}: manifest history").rows
    assert any("deleted" in r["change"] for r in history)


def test_trace_tx_ledger_and_log_disagree(demo, evidence, tmp_path):
    """A fee row whose amount differs from its fee_charged event: the trace says so."""
    export = tmp_path / "export"
    export.mkdir()
    for table in Path(demo.export_root).iterdir():
        if table.name != "fees":
            (export / table.name).symlink_to(table)
    day = dt.date(2026, 3, 4)
    for part in (Path(demo.export_root) / "fees").iterdir():
        (export / "fees" / part.name).parent.mkdir(exist_ok=True)
        if part.name != f"date={day}":
            (export / "fees" / part.name).symlink_to(part)
    tbl = pq.read_table(Path(demo.export_root) / "fees" / f"date={day}" / "part-0.parquet")
    amounts = tbl.column("amount_atr").to_pylist()
    amounts[0] += 1
    tbl = tbl.set_column(tbl.schema.get_field_index("amount_atr"), "amount_atr", pa.array(amounts, pa.int64()))
    (export / "fees" / f"date={day}").mkdir()
    pq.write_table(tbl, export / "fees" / f"date={day}" / "part-0.parquet")
    tx_id = tbl.column("tx_id")[0].as_py()
    (event,) = trace_tx(export, evidence, tx_id).section("EQM fee_charged event").rows
    assert event["amounts_agree"] is False and event["fields_agree"] is False
    assert event["differences"] == [f"amount_atr: ledger {amounts[0]} vs log {amounts[0] - 1}"]


def test_trace_object(demo, evidence):
    # an object written on day one, updated later, whose shards moved at least once
    object_id = _q(
        f"""SELECT json_extract_string(payload, '$.object_id') AS o FROM read_parquet('{demo.export_root}/eqm/*/*.parquet')
            GROUP BY o HAVING count(*) FILTER (WHERE event_type = 'shard_moved') > 0
               AND count(*) FILTER (WHERE event_type = 'object_written') > 1
               AND count(*) FILTER (WHERE event_type = 'object_deleted') = 0
            ORDER BY o LIMIT 1""")[0][0]
    t = trace_object(demo.export_root, evidence, object_id)
    assert t.kind == "object"
    (summary,) = t.section(f"object {object_id}").rows
    assert summary["in_1pct_sample"] == in_sample(object_id, 100)
    last_day = demo.days[-1]
    assert summary["day_traced"] == last_day and summary["last_snapshot"] == last_day

    history = t.section("manifest history").rows
    assert history[0]["change"].startswith("first snapshot") and history[-1]["change"].endswith("last snapshot")
    assert any("version 1 -> 2" in r["change"] for r in history)

    events = t.section("EQM events").rows
    types = [e["event_type"] for e in events]
    assert "shard_moved" in types and types.count("object_written") >= 2
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events) and all(e["hash_ok"] for e in events)

    shards = t.section(f"shards on {last_day}").rows
    total = history[-1]["total_shards"]
    assert sorted(s["shard_index"] for s in shards) == list(range(total))
    assert any("no node_health_assessment evidence" in n for n in t.section(f"shards on {last_day}").notes)

    fees = t.section("fees").rows
    n_fees = _q(f"SELECT count(*) FROM read_parquet('{demo.export_root}/fees/*/*.parquet') WHERE object_id = ?", [object_id])[0][0]
    assert len(fees) == n_fees and n_fees >= 2  # at least the put and the update

    drill_sec = t.section("replay drill covering the object's last event")
    if events[-1]["ts"] < dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc):
        (drill,) = drill_sec.rows
        assert drill["event_seq"] == events[-1]["seq"] and drill["drill_partition"] == QUARTER.isoformat() and drill["replayed"]
    else:  # only the Q1 drill is in this store: nothing covers a Q2 event
        assert not drill_sec.rows and any("no storage_replay_drill evidence covers" in n for n in drill_sec.notes)

    # the same object on the node-failure day: AEGIS verdicts from that day's evidence, and its proofs
    t2 = trace_object(demo.export_root, evidence, object_id, day=FAIL_DAY.isoformat())
    shards2 = t2.section(f"shards on {FAIL_DAY}").rows
    assert shards2 and all(s["aegis_verified"] in (True, False) for s in shards2)
    proofs = t2.section(f"proof challenges on {FAIL_DAY}").rows
    n_proofs = _q(f"SELECT count(*) FROM read_parquet({_files(demo.export_root, 'proofs', 'date', FAIL_DAY)}) "
                  "WHERE object_id = ?", [object_id])[0][0]
    assert len(proofs) == n_proofs


def test_dual_write_section(demo, evidence, tmp_path):
    expected = demo.expected_dual_write_diffs
    object_id, category = next((o, c) for o, c in sorted(expected.items()) if c == "content_mismatch")
    # no dual-write evidence: say so; with the system of record, compare directly
    sec = trace_object(demo.export_root, evidence, object_id).section("dual-write")
    assert "no dual-write evidence" in sec.notes
    sec = trace_object(demo.export_root, evidence, object_id, sor_url=demo.sor_url).section("dual-write")
    assert sec.rows[0]["status"] == category and "content_hash" in sec.rows[0]["values"]

    ghost = next(o for o, c in sorted(expected.items()) if c == "missing_in_storage")
    with pytest.raises(TraceNotFound):
        trace_object(demo.export_root, evidence, ghost)
    assert trace_object(demo.export_root, evidence, ghost, sor_url=demo.sor_url).section("dual-write").rows[0]["status"] \
        == "missing_in_storage"
    flying = next(o for o, c in sorted(expected.items()) if c == "in_flight" and not o.startswith("obj-inflight"))
    assert trace_object(demo.export_root, evidence, flying, sor_url=demo.sor_url).section("dual-write").rows[0][
        "status"].startswith("in flight")
    dead = _q(f"SELECT object_id FROM read_parquet('{demo.export_root}/objects/snapshot_date={demo.end}/*.parquet') "
              "WHERE deleted ORDER BY object_id LIMIT 1")[0][0]
    assert trace_object(demo.export_root, evidence, dead, sor_url=demo.sor_url).section("dual-write").rows[0]["status"] \
        == "consistent (deleted on both sides)"

    # dual-write evidence present (written here in the evidence-v1 layout): discovered and reported
    ev = tmp_path / "ev"
    (ev / "dual_write_verification").mkdir(parents=True)
    (ev / "dual_write_verification" / "dual_write_verification_20260401.json").write_text(json.dumps(
        {"activity": "dual_write_verification", "partition": "2026-04-01", "passed": False,
         "window": {"start": "2026-04-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"},
         "inputs": {"snapshot_date": "2026-04-12"}, "criteria": [], "metrics": {}}))
    part = ev / "dual_write_inconsistencies" / "partition_key=2026-04-01"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"object_id": [ghost], "category": ["missing_in_storage"], "differing_fields": [""],
                             "sor_version": pa.array([1], pa.int64()), "storage_version": pa.array([None], pa.int64())}),
                   part / "part-0.parquet")
    t = trace_object(demo.export_root, ev, ghost)  # found through the evidence alone
    (row,) = t.section("dual-write").rows
    assert row["month"] == "2026-04-01" and row["status"] == "missing_in_storage" and row["values"] == "version: sor 1 / storage -"
    other = trace_object(demo.export_root, ev, "obj-0000001").section("dual-write").rows
    assert other[0]["status"].startswith("no inconsistency")


def _one_line(capsys) -> str:
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err
    return lines[0]


def test_unknown_ids_and_bad_usage_exit_2(demo, evidence, tmp_path, capsys):
    assert main_trace(demo.export_root, evidence, tx_id="tx-does-not-exist") == 2
    assert "not found" in _one_line(capsys)
    assert main_trace(demo.export_root, evidence, object_id="obj-does-not-exist") == 2
    assert "not found" in _one_line(capsys)
    assert main_trace(demo.export_root, tmp_path / "nope", object_id="obj-0000001") == 2
    assert "evidence root not found" in _one_line(capsys)
    assert main_trace(tmp_path / "nope", evidence, tx_id="x") == 2
    assert "export root not found" in _one_line(capsys)
    assert main_trace(demo.export_root, evidence) == 2
    assert "exactly one" in _one_line(capsys)
    assert main_trace(demo.export_root, evidence, tx_id="a", object_id="b") == 2
    _one_line(capsys)
    assert main_trace(demo.export_root, evidence, object_id="obj-0000001", day="2026-13-01") == 2
    assert "not a date" in _one_line(capsys)
    with pytest.raises(TraceError):
        trace_tx(demo.export_root, evidence, "  ")


def test_bad_input_exit_2(demo, evidence, tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    for table in Path(demo.export_root).iterdir():
        if table.name != "fees":
            (export / table.name).symlink_to(table)
    bad = export / "fees" / "date=2026-03-02"
    bad.mkdir(parents=True)
    (bad / "part-0.parquet").write_bytes(b"not parquet")
    assert main_trace(export, evidence, tx_id="tx-x") == 2
    line = _one_line(capsys)
    assert line.startswith("qfs-assure trace: bad input: table 'fees'") and "unreadable Parquet file" in line


def test_json_output_parses(demo, evidence, failed_node_tx, capsys):
    tx_id = failed_node_tx[0]
    assert main_trace(demo.export_root, evidence, tx_id=tx_id, as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "tx" and doc["id"] == tx_id
    titles = [s["title"] for s in doc["sections"]]
    assert titles[:2] == ["fee ledger", "EQM fee_charged event"] and any(t.startswith("economics week") for t in titles)
    fee = doc["sections"][0]["rows"][0]
    assert fee["ts"].endswith("Z") and fee["date"] == FAIL_DAY.isoformat() and isinstance(fee["amount_atr"], int)

    assert main_trace(demo.export_root, evidence, object_id=failed_node_tx[1]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"QFS trace of object {failed_node_tx[1]}") and "== EQM events ==" in text


def test_render_text_shapes():
    t = Trace("object", "o1", [
        Section("one", rows=[{"a": 1, "h": "ab" * 32}]),
        Section("many", rows=[{"a": 1, "h": "ab" * 32}, {"a": None, "b": True}], notes=["n1"], columns=["a", "b"]),
        Section("empty"),
    ])
    text = t.render_text()
    assert "ab" * 32 in text  # one record: full values
    assert "h  " not in text.split("== many ==")[1].split("\n")[1]  # columns restrict the table
    assert "(none)" in text and "note: n1" in text
    assert json.loads(t.to_json())["sections"][1]["rows"][1] == {"a": None, "b": True}


def test_trace_module_has_no_dagster_import():
    import qfs_assets.analytics.trace as mod

    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(n.split(".")[0] == "dagster" for n in names)
