"""economics_sanity_check on tiny hand-computed weeks (criteria judged with Rule.holds)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from qfs_assets.contract.hashing import canonical_json
from qfs_assets.contract.schema import EQM, FEES
from qfs_assets.activities.economics.assess import (
    DAILY_FLOW_TABLE,
    FINDINGS_SCHEMA,
    FINDING_KINDS,
    FINDINGS_TABLE,
    METRIC_KEYS,
    EconomicsParams,
    assess_economics,
)
from qfs_assets.money import INT64_MAX, ExchangeRate
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import node, ts, write

MON = dt.date(2026, 3, 2)  # a Monday
DAYS = [MON + dt.timedelta(days=i) for i in range(7)]
NEXT_MON = MON + dt.timedelta(days=7)
US = dt.timedelta(microseconds=1)


def at(day_index: int, hh: int = 12, mm: int = 0) -> dt.datetime:
    return ts(MON + dt.timedelta(days=day_index), hh, mm)


def fee(tx: str, when: dt.datetime, amount: int, account: str = "acct-1", *, partition: dt.date | None = None) -> dict:
    row = {"tx_id": tx, "ts": when, "account_id": account, "object_id": None, "operation": "put", "amount_atr": amount}
    return {**row, "_partition": partition} if partition else row


def reward(rid: str, when: dt.datetime, amount: int, node_id: str = "n1", kind: str = "storage") -> dict:
    return {"reward_id": rid, "ts": when, "epoch": 1, "node_id": node_id, "kind": kind, "amount_nod": amount}


def fee_event(f: dict, *, partition: dt.date | None = None) -> dict:
    payload = {k: f[k] for k in ("tx_id", "account_id", "object_id", "operation", "amount_atr")}
    ev = {"ts": f["ts"], "event_type": "fee_charged", "payload": canonical_json(payload)}
    return {**ev, "_partition": partition} if partition else ev


def build(root: Path, *, fees=(), rewards=(), events=None, statuses=None, days=DAYS, tables=("fees", "rewards", "eqm", "nodes")) -> Path:
    """Write a week: every day of ``days`` gets a partition of each table, empty when it has no rows.

    Rows go to the partition of their ``ts`` day unless they name ``_partition``. ``events``
    default to one ``fee_charged`` event per distinct tx_id (the log charges a fee once).
    ``statuses`` maps (day index, node_id) to a status; nodes n1..n3 are active otherwise.
    """
    if events is None:
        seen, events = set(), []
        for f in fees:
            if f["tx_id"] not in seen:
                seen.add(f["tx_id"])
                events.append(fee_event(f))
    events = sorted(events, key=lambda e: e["ts"])
    for seq, e in enumerate(events):
        e.update(seq=seq, prev_hash="0" * 64, event_hash="f" * 64)
    rows = {"fees": list(fees), "rewards": list(rewards), "eqm": events}
    all_days = sorted(set(days) | {r.get("_partition") or r["ts"].date() for t in rows.values() for r in t})
    for day in all_days:
        for table in ("fees", "rewards", "eqm"):
            if table in tables:
                mine = [{k: v for k, v in r.items() if k != "_partition"} for r in rows[table]
                        if (r.get("_partition") or r["ts"].date()) == day]
                if mine or day in days:
                    write(root, table, mine, day)
        if "nodes" in tables and day in days:
            i = (day - MON).days
            write(root, "nodes", [node(n, day=day, status=(statuses or {}).get((i, n), "active")) for n in ("n1", "n2", "n3")], day)
    return root


def assess(root: Path, **params) -> "object":
    return assess_economics(ExportReader(root), MON, EconomicsParams(**params))


def verdicts(result) -> dict[str, bool]:
    """Each criterion by plain Python: every rule holds on every row of the judge table."""
    jt = result.judge_table
    return {
        spec.name: all(rule.holds(v) for rule in spec.rules for v in jt.column(rule.column).to_pylist())
        for spec in result.criteria_specs
    }


def failing(result) -> set[str]:
    return {name for name, ok in verdicts(result).items() if not ok}


def findings(result) -> list[tuple]:
    t = result.tables[FINDINGS_TABLE]
    return list(zip(*(t.column(c).to_pylist() for c in ("kind", "ledger", "id", "party_id", "amount"))))


def check_shapes(result) -> None:
    """Invariants of every result: int metrics, one-row int64 judge table, flow consistent with metrics."""
    m = result.metrics
    for k in METRIC_KEYS:
        assert type(m[k]) is int, k
    assert m["margin_atr"] == m["fees_atr"] - m["rewards_in_atr"] - m["buffer_atr"]
    jt = result.judge_table
    assert jt.num_rows == 1 and set(METRIC_KEYS) <= set(jt.column_names)
    assert all(jt.schema.field(k).type == pa.int64() and jt.column(k)[0].as_py() == m[k] for k in METRIC_KEYS)
    flow = result.tables[DAILY_FLOW_TABLE]
    assert flow.column("day").to_pylist() == DAYS
    assert all(pa.types.is_integer(f.type) for f in flow.schema if f.name != "day")
    for col, key in (("fees_atr", "fees_atr"), ("rewards_nod", "rewards_nod"), ("rewards_in_atr", "rewards_in_atr"),
                     ("buffer_atr", "buffer_atr"), ("margin_atr", "margin_atr")):
        assert sum(flow.column(col).to_pylist()) == m[key], col
    running = flow.column("running_margin_atr").to_pylist()
    assert running[-1] == m["margin_atr"]
    assert result.tables[FINDINGS_TABLE].schema == FINDINGS_SCHEMA
    assert set(result.tables[FINDINGS_TABLE].column("kind").to_pylist()) <= set(FINDING_KINDS)
    assert result.window_start == ts(MON) and result.window_end == ts(NEXT_MON)
    assert result.partition == MON.isoformat() and result.activity == "economics_sanity_check"


# -- hand-computed weeks -------------------------------------------------------------------

PASSING_FEES = [fee("tx-1", at(0), 10_000), fee("tx-2", at(2), 10_001, "acct-2")]


def test_passing_week(tmp_path):
    # fees 20 001; buffer ceil(20 001 * 5%) = ceil(1000.05) = 1001; rewards 15 000 at 1/1
    r = assess(build(tmp_path, fees=PASSING_FEES, rewards=[reward("r-1", at(1), 9_000), reward("r-2", at(3), 6_000, "n2", "proof")]))
    check_shapes(r)
    assert {k: r.metrics[k] for k in METRIC_KEYS} == {
        "fees_atr": 20_001, "rewards_nod": 15_000, "rewards_in_atr": 15_000, "buffer_atr": 1_001, "margin_atr": 4_000,
        "duplicate_tx_ids": 0, "duplicate_reward_ids": 0, "non_positive_amounts": 0,
        "rewards_to_failed_nodes": 0, "ledger_vs_log_atr": 0,
    }
    assert verdicts(r) == {"conservation": True, "ledger_integrity": True, "no_rewards_to_failed_nodes": True, "ledger_matches_log": True}
    assert r.tables[FINDINGS_TABLE].num_rows == 0
    assert r.parameters == {"atr_per_nod": "1/1", "buffer_bps": 500, "buffer_min_atr": 0}
    flow = r.tables[DAILY_FLOW_TABLE].to_pydict()
    # week-to-date margin: Mon 10 000 - 0 - 500; Tue -9 000; Wed fees 20 001 (buffer 1001); Thu -6 000
    assert flow["running_margin_atr"] == [9_500, 500, 10_000, 4_000, 4_000, 4_000, 4_000]
    assert flow["buffer_atr"] == [500, 0, 501, 0, 0, 0, 0]
    assert flow["fee_rows"] == [1, 0, 1, 0, 0, 0, 0] and flow["reward_rows"] == [0, 1, 0, 1, 0, 0, 0]
    tables = {t["table"]: t for t in r.inputs["tables"] if t["table"] != "nodes"}
    assert tables["fees"] == {"table": "fees", "partitions": [d.isoformat() for d in DAYS], "files": 7, "rows": 2}
    assert tables["rewards"]["rows"] == 2 and tables["eqm"]["rows"] == 2
    assert sum(t["rows"] for t in r.inputs["tables"] if t["table"] == "nodes") == 21
    assert r.inputs["export_root"] == str(tmp_path)
    assert (r.metrics["fee_rows"], r.metrics["reward_rows"], r.metrics["log_fee_charged_events"]) == (2, 2, 2)
    assert r.inputs["rows_outside_window"] == {"fees": 0, "rewards": 0}
    assert r.inputs["pre_genesis_days"] == {}


def test_rewards_outrun_fees_by_one_minor_unit(tmp_path):
    # fees 20 000, buffer 1 000, rewards 19 001: margin -1, reported negative (never clamped)
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 20_000)], rewards=[reward("r-1", at(6, 23, 59), 19_001)]))
    check_shapes(r)
    assert r.metrics["margin_atr"] == -1
    assert failing(r) == {"conservation"}


def test_exactly_zero_margin_passes(tmp_path):
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 20_000)], rewards=[reward("r-1", at(6), 19_000)]))
    check_shapes(r)
    assert r.metrics["margin_atr"] == 0
    assert failing(r) == set()


def test_duplicate_ids_are_findings_and_the_duplicate_fee_shows_against_the_log(tmp_path):
    fees = [*PASSING_FEES, fee("tx-dup", at(1), 700), fee("tx-dup", at(4), 700, "acct-9")]
    rewards = [reward("r-1", at(1), 100), reward("r-1", at(1), 100), reward("r-2", at(2), 50)]
    r = assess(build(tmp_path, fees=fees, rewards=rewards))  # the log charges tx-dup once
    check_shapes(r)
    m = r.metrics
    assert m["fees_atr"] == 20_001 + 1_400  # every ledger row counts
    assert m["duplicate_tx_ids"] == 1 and m["duplicate_reward_ids"] == 1
    assert m["log_fee_charged_atr"] == 20_001 + 700
    assert m["ledger_vs_log_atr"] == 700
    assert failing(r) == {"ledger_integrity", "ledger_matches_log"}
    assert findings(r) == [
        ("duplicate_reward_id", "rewards", "r-1", "n1", 100),
        ("duplicate_reward_id", "rewards", "r-1", "n1", 100),
        ("duplicate_tx_id", "fees", "tx-dup", "acct-1", 700),
        ("duplicate_tx_id", "fees", "tx-dup", "acct-9", 700),
    ]
    assert r.tables[FINDINGS_TABLE].column("detail")[0].as_py() == "reward_id occurs 2 times in the week"


def test_claw_back_adjustment_is_netted_not_a_finding(tmp_path):
    rewards = [
        reward("r-1", at(0), 5_000),
        reward("r-2", at(3), -1_200, kind="adjustment"),  # a claw-back
        reward("r-3", at(4), 0, kind="adjustment"),  # allowed: only non-adjustment amounts must be > 0
        reward("r-4", at(5), 0, "n2", kind="proof"),  # a finding
    ]
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 10_000), fee("tx-0", at(1), -3)], rewards=rewards))
    check_shapes(r)
    assert r.metrics["rewards_nod"] == 3_800
    assert r.metrics["fees_atr"] == 9_997
    assert r.metrics["non_positive_amounts"] == 2
    # buffer ceil(9 997 * 5%) = ceil(499.85) = 500; margin 9 997 - 3 800 - 500
    assert r.metrics["margin_atr"] == 5_697
    assert failing(r) == {"ledger_integrity"}
    assert findings(r) == [
        ("non_positive_amount", "fees", "tx-0", "acct-1", -3),
        ("non_positive_amount", "rewards", "r-4", "n2", 0),
    ]
    assert r.tables[DAILY_FLOW_TABLE].column("rewards_nod").to_pylist() == [5_000, 0, 0, -1_200, 0, 0, 0]


def test_net_claw_back_week_rounds_the_obligation_up(tmp_path):
    # rewards -10 nod at 3/7: exact -30/7 = -4.28..., ceiling -4 (the conservative side)
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 100)], rewards=[reward("r-1", at(2), -10, kind="adjustment")]),
               atr_per_nod="3/7", buffer_bps=0)
    check_shapes(r)
    assert r.metrics["rewards_in_atr"] == -4
    assert r.metrics["margin_atr"] == 104


def test_reward_paid_on_the_day_its_node_failed(tmp_path):
    statuses = {(2, "n2"): "failed", (3, "n2"): "failed", (3, "n3"): "decommissioned"}
    rewards = [
        reward("r-1", at(1), 100, "n2"),  # Tuesday: n2 still active in Tuesday's snapshot
        reward("r-2", at(2, 9), 100, "n2"),  # Wednesday: n2 failed by the end of Wednesday
        reward("r-3", at(2, 10), -40, "n2", kind="adjustment"),  # claw-backs are not counted
        reward("r-4", at(3, 0, 0), 70, "n3", kind="proof"),  # Thursday 00:00: Thursday's snapshot
        reward("r-5", at(4), 100, "n2"),  # Friday: n2 active again
        reward("r-6", at(3), 100, "n9"),  # unknown node: not this metric
    ]
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 10_000)], rewards=rewards, statuses=statuses))
    check_shapes(r)
    assert r.metrics["rewards_to_failed_nodes"] == 2
    assert failing(r) == {"no_rewards_to_failed_nodes"}
    t = r.tables[FINDINGS_TABLE]
    assert findings(r) == [
        ("reward_to_failed_node", "rewards", "r-2", "n2", 100),
        ("reward_to_failed_node", "rewards", "r-4", "n3", 70),
    ]
    assert t.column("detail").to_pylist() == [
        "node failed in the nodes snapshot of 2026-03-04",
        "node decommissioned in the nodes snapshot of 2026-03-05",
    ]
    assert t.column("ts").to_pylist() == [at(2, 9), at(3, 0, 0)]


def test_week_with_no_rows_gives_a_verdict(tmp_path):
    build(tmp_path)  # every partition present, all empty
    r = assess(tmp_path)
    check_shapes(r)
    assert all(r.metrics[k] == 0 for k in METRIC_KEYS)
    assert failing(r) == set()
    assert r.tables[DAILY_FLOW_TABLE].num_rows == 7 and r.tables[FINDINGS_TABLE].num_rows == 0
    # a buffer floor makes an empty week fail conservation: no fees cannot cover a minimum reserve
    r = assess(tmp_path, buffer_min_atr=1)
    assert r.metrics["margin_atr"] == -1 and failing(r) == {"conservation"}
    assert r.tables[DAILY_FLOW_TABLE].column("running_margin_atr").to_pylist() == [-1] * 7


def test_rate_3_7_rounds_up_on_week_to_date_sums(tmp_path):
    rewards = [reward("r-1", at(0), 1), reward("r-2", at(1), 6), reward("r-3", at(2), 3)]
    r = assess(build(tmp_path, fees=[fee("tx-1", at(0), 100)], rewards=rewards), atr_per_nod=ExchangeRate(3, 7), buffer_bps=0)
    check_shapes(r)
    # 10 nod * 3/7 = 4.28... -> 5 (daily ceilings would have given 1 + 3 + 2 = 6)
    assert r.metrics["rewards_in_atr"] == 5 and r.metrics["margin_atr"] == 95
    flow = r.tables[DAILY_FLOW_TABLE].to_pydict()
    assert flow["rewards_in_atr"] == [1, 2, 2, 0, 0, 0, 0]  # ceil(3/7)=1, ceil(21/7)=3, ceil(30/7)=5
    assert r.parameters["atr_per_nod"] == "3/7"


def test_monday_midnight_boundaries(tmp_path):
    fees = [
        fee("tx-mon", ts(MON), 1_000),  # Monday 00:00 belongs to this week
        fee("tx-sun", ts(NEXT_MON) - US, 2_000),  # Sunday 23:59:59.999999 too
        fee("tx-next", ts(NEXT_MON), 4_000),  # next Monday 00:00: next week's partition, not read
        fee("tx-late", ts(NEXT_MON), 8_000, partition=DAYS[-1]),  # misfiled into Sunday: read, outside window
        fee("tx-early", ts(MON) - US, 16_000, partition=MON),  # misfiled into Monday: outside window
        fee("tx-prev", ts(MON) - US, 32_000),  # last week's partition, not read
    ]
    events = [fee_event(f, partition=f.get("_partition")) for f in fees]
    rewards = [reward("r-mon", ts(MON), 10, "n2"), reward("r-next", ts(NEXT_MON), 20, "n2")]
    statuses = {(0, "n2"): "failed"}
    r = assess(build(tmp_path, fees=fees, rewards=rewards, events=events, statuses=statuses), buffer_bps=0)
    check_shapes(r)
    assert r.metrics["fees_atr"] == 3_000
    assert r.metrics["log_fee_charged_atr"] == 3_000 and r.metrics["ledger_vs_log_atr"] == 0
    assert r.metrics["rewards_nod"] == 10 and r.metrics["rewards_to_failed_nodes"] == 1
    assert r.inputs["rows_outside_window"] == {"fees": 2, "rewards": 0}
    assert (r.metrics["fee_rows"], r.metrics["reward_rows"], r.metrics["log_fee_charged_events"]) == (2, 1, 2)
    assert r.tables[DAILY_FLOW_TABLE].column("fees_atr").to_pylist() == [1_000, 0, 0, 0, 0, 0, 2_000]
    assert all(t["partitions"] == [d.isoformat() for d in DAYS] for t in r.inputs["tables"] if t["table"] != "nodes")


# -- missing partitions, genesis, bad input ---------------------------------------------------------


def test_missing_ledger_partition_is_bad_input(tmp_path):
    build(tmp_path, fees=PASSING_FEES)
    for f in (tmp_path / "rewards" / f"date={DAYS[3].isoformat()}").iterdir():
        f.unlink()
    with pytest.raises(BadInput, match=r"table 'rewards'.*missing partition date=2026-03-05"):
        assess(tmp_path)


def test_day_not_exported_yet_is_bad_input(tmp_path):
    build(tmp_path, fees=PASSING_FEES, days=DAYS[:6])  # Sunday not there yet
    with pytest.raises(BadInput, match=r"table 'fees'.*missing partition date=2026-03-08"):
        assess(tmp_path)


def test_genesis_week_reads_days_before_the_first_partition_as_empty(tmp_path):
    build(tmp_path, fees=[fee("tx-1", at(2), 10_000)], rewards=[reward("r-1", at(3), 100)], days=DAYS[2:])
    r = assess(tmp_path)
    check_shapes(r)
    assert r.metrics["fees_atr"] == 10_000 and failing(r) == set()
    pre = [d.isoformat() for d in DAYS[:2]]
    assert r.inputs["pre_genesis_days"] == {"fees": pre, "rewards": pre, "eqm": pre, "nodes": pre}
    assert next(t for t in r.inputs["tables"] if t["table"] == "fees")["partitions"] == [d.isoformat() for d in DAYS[2:]]


def test_week_before_the_ledgers_begin_is_bad_input(tmp_path):
    later = [d + dt.timedelta(days=7) for d in DAYS]
    build(tmp_path, days=later)
    with pytest.raises(BadInput, match=r"table 'fees'.*ends before the ledger's first partition date=2026-03-09"):
        assess(tmp_path)


def test_absent_table_is_bad_input(tmp_path):
    build(tmp_path, tables=("fees", "eqm", "nodes"))
    with pytest.raises(BadInput, match=r"table 'rewards'.*no partitions"):
        assess(tmp_path)


def test_missing_column_is_bad_input(tmp_path):
    build(tmp_path, fees=PASSING_FEES)
    schema = pa.schema([f for f in FEES.schema if f.name != "amount_atr"])
    path = write(tmp_path, "fees", [{k: v for k, v in PASSING_FEES[0].items() if k != "amount_atr"}], MON, schema=schema)
    with pytest.raises(BadInput) as exc:
        assess(tmp_path)
    assert str(exc.value) == f"bad input: table 'fees', file '{path}', column 'amount_atr': missing required column"


def test_null_key_is_bad_input(tmp_path):
    build(tmp_path, fees=PASSING_FEES, rewards=[reward(None, at(1), 5)])
    with pytest.raises(BadInput, match=r"table 'rewards', file '.*date=2026-03-03.*', column 'reward_id': null in required column"):
        assess(tmp_path)


def test_malformed_fee_charged_payload_is_bad_input(tmp_path):
    events = [fee_event(f) for f in PASSING_FEES]
    events[1]["payload"] = '{"amount_atr": 10001.0, "tx_id": "tx-2"}'
    events.append({"ts": at(4), "event_type": "fee_charged", "payload": "not json"})
    build(tmp_path, fees=PASSING_FEES, events=events)
    with pytest.raises(BadInput) as exc:
        assess(tmp_path)
    msg = str(exc.value)
    assert "table 'eqm'" in msg and "date=2026-03-04" in msg and "column 'payload'" in msg
    assert "2 event(s) (first at ts=2026-03-04T12:00:00+00:00)" in msg


def test_fee_charged_amount_that_is_not_an_integer_is_bad_input(tmp_path):
    events = [fee_event(f) for f in PASSING_FEES]
    events[0]["payload"] = canonical_json({"amount_atr": "10000", "tx_id": "tx-1"})  # JSON, but a string
    build(tmp_path, fees=PASSING_FEES, events=events)
    with pytest.raises(BadInput, match=r"table 'eqm', file '.*date=2026-03-02.*', column 'payload': .*1 event\(s\)"):
        assess(tmp_path)


@pytest.mark.parametrize("amount, charged", [
    ("10000", 10_000), ("-0", 0), ("  7 ", 7), ("-5", -5), ("9223372036854775807", 2**63 - 1),
    ("1e4", None), ("10000.0", None), ("1.5", None), ('"10000"', None), ("true", None), ("null", None), ("[10000]", None),
    ("9223372036854775808", None), ("-9223372036854775809", None), ("18446744073709551616", None), ("NaN", None),
])
def test_fee_charged_amount_must_be_a_json_integer_that_fits_int64(tmp_path, amount, charged):
    events = [fee_event(f) for f in PASSING_FEES]
    events[0]["payload"] = '{"amount_atr": %s, "tx_id": "tx-1"}' % amount
    build(tmp_path, fees=PASSING_FEES, events=events)
    if charged is None:
        with pytest.raises(BadInput, match=r"table 'eqm', .*column 'payload': .*1 event\(s\)"):
            assess(tmp_path)
    else:
        r = assess(tmp_path)
        assert r.metrics["log_fee_charged_atr"] == charged + 10_001
        assert r.metrics["ledger_vs_log_atr"] == 20_001 - (charged + 10_001)


def test_only_the_weeks_fee_charged_payloads_are_parsed(tmp_path):
    # the log is validated and summed in one scan: other events' payloads, and fee_charged events
    # outside the window, are never parsed (they are not this check's to judge)
    events = [fee_event(f) for f in PASSING_FEES]
    events.append({"ts": at(1), "event_type": "node_registered", "payload": "not json"})
    events.append({"ts": at(0) - dt.timedelta(hours=13), "event_type": "fee_charged", "payload": "not json",
                   "_partition": MON})  # Sunday 23:00 of the week before, in Monday's partition
    r = assess(build(tmp_path, fees=PASSING_FEES, events=events))
    check_shapes(r)
    assert r.metrics["log_fee_charged_events"] == 2 and r.metrics["ledger_vs_log_atr"] == 0
    assert next(t for t in r.inputs["tables"] if t["table"] == "eqm")["rows"] == 4


def test_a_value_that_does_not_fit_the_contract_type_is_bad_input(tmp_path):
    build(tmp_path, fees=PASSING_FEES)
    schema = pa.schema([pa.field(f.name, pa.uint64() if f.name == "amount_atr" else f.type) for f in FEES.schema])
    path = write(tmp_path, "fees", [{**PASSING_FEES[0], "amount_atr": 2**63}], MON, schema=schema)
    with pytest.raises(BadInput) as exc:
        assess(tmp_path)
    assert str(exc.value) == (f"bad input: table 'fees', file '{path}', column 'amount_atr': "
                              "value cannot be cast losslessly to int64: 1 row(s) (e.g. '9223372036854775808')")


def test_bad_input_is_reported_in_the_order_of_the_tables(tmp_path):
    # fees, rewards, eqm, nodes, then the fee_charged payloads: the first table with bad input is
    # named, whatever the order in which the scans find it
    events = [fee_event(f) for f in PASSING_FEES]
    events[0]["payload"] = "not json"
    build(tmp_path, fees=PASSING_FEES, rewards=[reward("r-1", at(1), 5)], events=events)
    write(tmp_path, "nodes", [node("n1", day=MON, status=None)], MON)
    with pytest.raises(BadInput, match=r"table 'nodes', file '.*snapshot_date=2026-03-02.*', column 'status': null"):
        assess(tmp_path)
    bad_event = {"ts": at(1), "event_type": None, "payload": "{}", "seq": 9, "prev_hash": "0" * 64,
                 "event_hash": "f" * 64}
    write(tmp_path, "eqm", [bad_event], DAYS[1])
    with pytest.raises(BadInput, match=r"table 'eqm', file '.*date=2026-03-03.*', column 'event_type': null"):
        assess(tmp_path)
    schema = pa.schema([f for f in EQM.schema if f.name != "payload"])
    write(tmp_path, "eqm", [{k: v for k, v in bad_event.items() if k != "payload"}], DAYS[2], schema=schema)
    write(tmp_path, "rewards", [reward("r-1", at(1), None)], DAYS[1])
    with pytest.raises(BadInput, match=r"table 'rewards', file '.*date=2026-03-03.*', column 'amount_nod': null"):
        assess(tmp_path)


def test_a_weekly_sum_beyond_int64_is_bad_input_not_a_wrapped_number(tmp_path):
    half = INT64_MAX // 2 + 1
    build(tmp_path, fees=[fee("tx-1", at(0), half), fee("tx-2", at(1), half)])
    with pytest.raises(BadInput, match=r"table 'fees', column 'amount_atr': weekly sum of fees.amount_atr = 9223372036854775808 does not fit in int64"):
        assess(tmp_path)


def test_week_start_must_be_a_monday(tmp_path):
    build(tmp_path)
    with pytest.raises(ValueError, match="not a Monday"):
        assess_economics(ExportReader(tmp_path), MON + dt.timedelta(days=1), EconomicsParams())


@pytest.mark.parametrize("kwargs", [{"atr_per_nod": 0.5}, {"atr_per_nod": "0"}, {"buffer_bps": -1}, {"buffer_bps": 5.0}, {"buffer_min_atr": -1}, {"buffer_min_atr": 1.5}])
def test_params_refuse_floats_and_negatives(kwargs):
    with pytest.raises((TypeError, ValueError)):
        EconomicsParams(**kwargs)


# -- the GX adapter agrees with the plain-Python reading of the rules ---------------------------------


def test_gx_adapter_agrees_with_rule_holds(tmp_path):
    gx_suite = pytest.importorskip("qfs_assets.evidence.gx_suite")
    passing = assess(build(tmp_path / "pass", fees=PASSING_FEES, rewards=[reward("r-1", at(1), 15_000)]))
    fees = [fee("tx-1", at(0), 20_000), fee("tx-1", at(1), 1)]
    failing_week = assess(build(tmp_path / "fail", fees=fees, rewards=[reward("r-1", at(2), 19_001, "n2")], statuses={(2, "n2"): "failed"}))
    assert failing(failing_week) == {"conservation", "ledger_integrity", "no_rewards_to_failed_nodes", "ledger_matches_log"}
    for result in (passing, failing_week):
        got = gx_suite.validate("economics_sanity_check", result.judge_table, result.criteria_specs)
        assert {c.name: c.passed for c in got} == verdicts(result)
        assert not any(c.could_not_run for c in got)
        conservation = next(c for c in got if c.name == "conservation")
        assert conservation.observed["margin_atr"] == result.metrics["margin_atr"]
