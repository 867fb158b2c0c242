"""The replay drill on small generated exports: coverage (contract v1.1), last_event_ts, and
incremental drills that start from a saved verified state."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qfs_assets.contract.schema import TABLES
from qfs_assets.defs.common import judge
from qfs_assets.activities.replay_drill.assess import assess_replay_drill
from qfs_assets.activities.replay_drill.params import DrillParams
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets.replay.snapshot import STATE_DIR, state_folder
from qfs_assets_tests import exportkit
from qfs_assets_tests import reference_engine as reference
from qfs_assets_tests.test_replay_engine import build_log, fee, place, reg, reward, write

UTC = dt.timezone.utc
Q1, Q2, Q3 = dt.date(2026, 1, 1), dt.date(2026, 4, 1), dt.date(2026, 7, 1)


def _day_events(d: int) -> list:
    """A few events for day d (every event type that changes the state)."""
    ev = [write(f"o{d}", 1), place(f"o{d}", 0, "n1"), place(f"o{d}", 1, "n2"), fee(f"t{d}", f"acct{d % 3}", 5 + d),
          reward(f"r{d}", "n1", 7)]
    if d == 0:
        ev = [reg("n1"), reg("n2")] + ev
    return ev


def make_export(root, first: dt.date, last: dt.date, *, skip=(), quiet=(), checkpoint_days=None,
                until: dt.date | None = None) -> list[dict]:
    """An export whose log has events every day from ``first`` to ``until`` (default ``last``) and
    an (empty) partition every day to ``last``; ``skip``: days without a partition; ``quiet``: days
    whose partition is empty. Checkpoints (true roots, by the reference engine) at the last event
    of each of ``checkpoint_days`` (default: every 10th day with events). Returns the log rows."""
    until = until or last
    events, owner = [], []
    d, i = first, 0
    while d <= until:
        if d not in skip and d not in quiet:
            evs = _day_events(i)
            events += evs
            owner += [d] * len(evs)
        i += 1
        d += dt.timedelta(days=1)
    rows = build_log(events)
    for k, (r, day) in enumerate(zip(rows, owner)):  # events at 12:00:<k> of their day
        r["ts"] = dt.datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC) + dt.timedelta(microseconds=k)
    by_day: dict[dt.date, list] = {}
    for r, day in zip(rows, owner):
        by_day.setdefault(day, []).append(r)
    d = first
    while d <= last:
        if d not in skip:
            exportkit.write(root, "eqm", by_day.get(d, []), d)
        d += dt.timedelta(days=1)
    days_with_events = sorted(by_day)
    cdays = checkpoint_days if checkpoint_days is not None else days_with_events[9::10]
    write_checkpoints(root, rows, [by_day[day][-1]["seq"] for day in cdays if day in by_day])
    return rows


def write_checkpoints(root, rows: list[dict], seqs: list[int]) -> None:
    """Checkpoints at ``seqs`` with the true roots (the reference engine's), ts the event's."""
    res = reference.replay([pa.Table.from_pylist(rows, schema=TABLES["eqm"].schema)], checkpoint_seqs=seqs)
    cps = [{"seq": s, "ts": r.ts, "state_root": r.state, "nodes_root": r.nodes, "objects_root": r.objects,
            "shards_root": r.shards, "ledger_root": r.ledger} for s, r in sorted(res.checkpoint_roots.items())]
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(cps, schema=TABLES["checkpoints"].schema), root / "checkpoints" / "part-0.parquet")


def passed(r) -> bool:
    return all(c.passed for c in judge(r))


# ------------------------------------------------------------------------------- coverage


def test_complete_log_passes_and_reports_last_event_ts(tmp_path):
    rows = make_export(tmp_path, dt.date(2025, 12, 20), dt.date(2026, 4, 3), quiet={dt.date(2026, 2, 2)})
    r = assess_replay_drill(ExportReader(tmp_path), Q1)
    assert passed(r), r.metrics
    in_q1 = [x for x in rows if x["ts"] < dt.datetime(2026, 4, 1, tzinfo=UTC)]
    assert r.metrics["events_replayed"] == len(in_q1)
    assert r.metrics["last_event_ts"] == in_q1[-1]["ts"] == dt.datetime(2026, 3, 31, 12, 0, tzinfo=UTC) + \
        dt.timedelta(microseconds=len(in_q1) - 1)
    from qfs_assets.evidence.store import EvidenceStore

    doc = json.loads(EvidenceStore(tmp_path / "ev").publish(r, judge(r)).read_text())
    assert doc["metrics"]["last_event_ts"] == in_q1[-1]["ts"].isoformat().replace("+00:00", "Z")
    assert doc["inputs"]["replay_start"] == {"from": "genesis", "seq": 0}


@pytest.mark.parametrize("missing", [dt.date(2026, 2, 10), dt.date(2026, 3, 31), dt.date(2025, 12, 21)])
def test_a_missing_day_up_to_the_quarters_end_is_bad_input(tmp_path, missing):
    make_export(tmp_path, dt.date(2025, 12, 20), dt.date(2026, 3, 31), skip={missing})
    with pytest.raises(BadInput) as e:
        assess_replay_drill(ExportReader(tmp_path), Q1)
    assert e.value.table == "eqm"
    assert f"missing partition date={missing.isoformat()}" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_log_cut_short_is_bad_input_naming_the_first_missing_day(tmp_path):
    make_export(tmp_path, dt.date(2026, 1, 1), dt.date(2026, 3, 19))
    with pytest.raises(BadInput, match=r"table 'eqm'.*missing partition date=2026-03-20"):
        assess_replay_drill(ExportReader(tmp_path), Q1)


def test_days_before_the_first_partition_are_before_the_network_existed(tmp_path):
    make_export(tmp_path, dt.date(2026, 3, 10), dt.date(2026, 3, 31))
    assert passed(assess_replay_drill(ExportReader(tmp_path), Q1))


def test_a_checkpoint_stamped_at_the_quarters_end_belongs_to_the_next_quarter(tmp_path):
    """The quarter is [Jan 1 00:00, Apr 1 00:00) UTC: an event and its checkpoint at exactly Apr 1
    00:00 are the next quarter's; this drill neither replays nor compares them, and passes."""
    end = dt.datetime(2026, 4, 1, tzinfo=UTC)
    rows = make_export(tmp_path, dt.date(2026, 3, 20), dt.date(2026, 4, 2), checkpoint_days=[])
    at_end = next(r for r in rows if r["ts"] >= end)
    at_end["ts"] = end  # the first event of Q2 at exactly the quarter's end (ts is not hashed)
    exportkit.write(tmp_path, "eqm", [r for r in rows if r["ts"].date() == end.date()], end.date())
    last_q1 = max(r["seq"] for r in rows if r["ts"] < end)
    write_checkpoints(tmp_path, rows, [last_q1, at_end["seq"]])
    r = assess_replay_drill(ExportReader(tmp_path), Q1)
    assert r.metrics["checkpoints_published_total"] == 2
    assert (r.metrics["checkpoints_compared"], r.metrics["checkpoints_matched"]) == (1, 1)
    assert r.metrics["events_replayed"] == last_q1 + 1 and r.metrics["first_mismatch_seq"] is None
    assert passed(r), r.metrics


def test_quarter_without_checkpoint_fails_with_a_reason(tmp_path):
    make_export(tmp_path, dt.date(2026, 3, 1), dt.date(2026, 9, 30), until=dt.date(2026, 4, 20),
                checkpoint_days=[dt.date(2026, 3, 20)])
    r = assess_replay_drill(ExportReader(tmp_path), Q3)
    v = {c.name: c for c in judge(r)}
    assert r.metrics["checkpoints_compared"] == 0
    assert not v["deterministic_match"].passed and not v["deterministic_match"].could_not_run
    assert r.extra["notes"] and "no checkpoint" in r.extra["notes"][-1]
    assert r.metrics["last_event_ts"].date() == dt.date(2026, 4, 20)  # the last event before the quarter's end


def test_cli_drill_over_a_log_cut_short_exits_2_and_writes_no_evidence(tmp_path):
    from qfs_assets.cli import EXIT_BAD_INPUT, main

    export = tmp_path / "export"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 3, 19))
    ev = tmp_path / "ev"
    code = main(["run", "storage_replay_drill", "--partition", "2026-01-01", "--export-root", str(export),
                 "--evidence-root", str(ev)])
    assert code == EXIT_BAD_INPUT == 2
    assert not list(ev.rglob("*.json")) or not list((ev / "storage_replay_drill").glob("*.json"))


# ------------------------------------------------------------------------------- incremental drills


def _drill(root, q, start_from="genesis", state_root=None):
    return assess_replay_drill(ExportReader(root), q, DrillParams(start_from=start_from), state_root=state_root)


def _same_verdict(a, b):
    keys = ("chain_intact", "first_broken_seq", "invalid_events", "checkpoints_compared", "checkpoints_matched",
            "first_mismatch_seq", "mismatched_components", "final_state_root", "last_event_ts", "last_seq")
    return {k: a.metrics[k] for k in keys} == {k: b.metrics[k] for k in keys}


def test_a_drill_saves_its_verified_state_and_the_next_quarter_starts_from_it(tmp_path):
    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    q1 = _drill(export, Q1, state_root=ev)
    assert passed(q1)
    saved = q1.extra["replay_state_saved"]
    last_cp = max(x["seq"] for x in q1.tables["replay_checkpoints"].to_pylist())
    assert saved["seq"] == last_cp and saved["quarter"] == "2026-01-01"
    folder = state_folder(ev, Q1)
    assert {p.name for p in folder.iterdir()} >= {"nodes.parquet", "objects.parquet", "shards.parquet",
                                                  "ledger.parquet", "tx_ids.parquet", "reward_ids.parquet",
                                                  "state.json"}
    genesis = _drill(export, Q2, state_root=None)
    inc = _drill(export, Q2, "snapshot", state_root=ev)
    assert passed(inc) and _same_verdict(inc, genesis)
    start = inc.inputs["replay_start"]
    assert start["from"] == "snapshot" and start["seq"] == last_cp + 1
    assert start["events_chain_verified_only"] == last_cp + 1
    assert inc.metrics["events_replayed"] == genesis.metrics["events_replayed"] - (last_cp + 1)
    assert inc.tables["replay_checkpoints"].to_pylist() == genesis.tables["replay_checkpoints"].to_pylist()
    assert not inc.extra["notes"]
    # the default stays genesis even when a state is saved
    assert _drill(export, Q2, state_root=ev).inputs["replay_start"]["from"] == "genesis"


def test_snapshot_without_a_saved_state_replays_from_genesis_and_says_so(tmp_path):
    export = tmp_path / "export"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    r = _drill(export, Q2, "snapshot", state_root=tmp_path / "ev")
    assert passed(r) and r.inputs["replay_start"]["from"] == "genesis"
    assert any("no state saved" in n for n in r.extra["notes"])


def _rewrite(path, fn):
    t = pq.read_table(path)
    pq.write_table(fn(t), path)


@pytest.mark.parametrize("tamper", ["row", "root", "checkpoint", "ids"])
def test_a_tampered_saved_state_is_rejected(tmp_path, tamper):
    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    _drill(export, Q1, state_root=ev)
    folder = state_folder(ev, Q1)
    if tamper == "row":  # a ledger amount changed: the rows no longer give the recorded roots
        _rewrite(folder / "ledger.parquet", lambda t: t.set_column(1, "atr_paid", pa.array(
            [v + 1 for v in t.column("atr_paid").to_pylist()], pa.int64())))
    elif tamper == "root":  # the rows and the recorded roots changed together: not the published checkpoint
        doc = json.loads((folder / "state.json").read_text())
        doc["roots"]["ledger"] = "0" * 64
        (folder / "state.json").write_text(json.dumps(doc))
    elif tamper == "checkpoint":  # the published checkpoint no longer has these roots
        _rewrite(next((export / "checkpoints").glob("*.parquet")), lambda t: t.set_column(
            t.schema.get_field_index("nodes_root"), "nodes_root", pa.array(["f" * 64] * t.num_rows)))
    else:  # a tx_id dropped: duplicate detection would differ
        _rewrite(folder / "tx_ids.parquet", lambda t: t.slice(1))
    genesis = _drill(export, Q2)
    r = _drill(export, Q2, "snapshot", state_root=ev)
    assert r.inputs["replay_start"]["from"] == "genesis"
    assert any("rejected" in n for n in r.extra["notes"]), r.extra["notes"]
    assert _same_verdict(r, genesis)


def test_a_log_rewritten_before_the_saved_state_is_caught_by_the_chain(tmp_path):
    """The log before the saved state's seq was edited: the chain verification (rows up to the
    saved seq are hashed, not applied) reports the break as in a drill from genesis."""
    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    _drill(export, Q1, state_root=ev)
    day = export / "eqm" / "date=2026-01-05" / "part-0.parquet"
    _rewrite(day, lambda t: t.set_column(3, "payload", pa.array(
        [p.replace('"version":1', '"version":2') for p in t.column("payload").to_pylist()])))
    genesis = _drill(export, Q2)
    r = _drill(export, Q2, "snapshot", state_root=ev)
    assert not r.metrics["chain_intact"] and _same_verdict(r, genesis)


def test_a_rehashed_log_does_not_match_the_saved_state(tmp_path):
    """A log whose events before the saved state were replaced and re-hashed (chain intact):
    the stored event_hash at the saved seq differs, so the drill starts again from genesis."""
    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    _drill(export, Q1, state_root=ev)
    shutil.rmtree(export / "eqm")
    shutil.rmtree(export / "checkpoints")
    # the same shape of log, but day 0 has one more fee: every later hash differs
    import qfs_assets_tests.test_replay_drill_small as me

    orig = me._day_events
    me._day_events = lambda d: orig(d) + ([fee("extra", "acct-x", 1)] if d == 0 else [])
    try:
        make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    finally:
        me._day_events = orig
    # keep the published checkpoint at the saved seq equal to the saved roots, so check 1 passes
    saved = json.loads((state_folder(ev, Q1) / "state.json").read_text())
    cps = pq.read_table(export / "checkpoints" / "part-0.parquet").to_pylist()
    cps = [c for c in cps if c["seq"] != saved["seq"]] + [{
        "seq": saved["seq"], "ts": dt.datetime.fromisoformat(saved["ts"]),
        **{f"{k}_root": v for k, v in saved["roots"].items()}}]
    pq.write_table(pa.Table.from_pylist(sorted(cps, key=lambda c: c["seq"]), schema=TABLES["checkpoints"].schema),
                   export / "checkpoints" / "part-0.parquet")
    r = _drill(export, Q2, "snapshot", state_root=ev)
    assert r.inputs["replay_start"]["from"] == "genesis"
    assert any("is not the one the saved state was taken after" in n for n in r.extra["notes"]), r.extra["notes"]
    assert _same_verdict(r, _drill(export, Q2))


def test_the_saved_state_is_invisible_to_the_evidence_catalog(tmp_path):
    from qfs_assets.analytics.query import load_catalog
    from qfs_assets.evidence.store import EvidenceStore

    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    r = _drill(export, Q1, state_root=ev)
    EvidenceStore(ev).publish(r, judge(r))
    cat = load_catalog(ev)
    assert STATE_DIR not in cat.tables and not cat.problems


def test_cli_start_from_snapshot(tmp_path, monkeypatch):
    from qfs_assets.cli import EXIT_PASSED, main

    monkeypatch.delenv("QFS_REPLAY_START_FROM", raising=False)
    export, ev = tmp_path / "export", tmp_path / "ev"
    make_export(export, dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    base = ["--export-root", str(export), "--evidence-root", str(ev)]
    assert main(["run", "storage_replay_drill", "--partition", "2026-01-01", *base]) == EXIT_PASSED
    assert (ev / STATE_DIR / "2026-01-01" / "state.json").is_file()
    assert main(["run", "storage_replay_drill", "--partition", "2026-04-01", "--start-from", "snapshot",
                 *base]) == EXIT_PASSED
    doc = json.loads((ev / "storage_replay_drill" / "storage_replay_drill_20260401.json").read_text())
    assert doc["inputs"]["replay_start"]["from"] == "snapshot"
    assert doc["replay_state_saved"]["quarter"] == "2026-04-01"


# ------------------------------------------------------------------------------- the log's own bad input


def _day_file(root, day="2026-02-10"):
    return root / "eqm" / f"date={day}" / "part-0.parquet"


@pytest.mark.parametrize("problem", ["duplicate", "null", "lossy_ts", "missing_column", "unreadable"])
def test_bad_eqm_files_are_bad_input_naming_file_and_column(tmp_path, problem):
    make_export(tmp_path, dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    path = _day_file(tmp_path)
    t = pq.read_table(path)
    if problem == "duplicate":
        pq.write_table(pa.concat_tables([t, t.slice(1, 1)]), path)
        want, column = "duplicate key seq=", "seq"
    elif problem == "null":
        vals = t.column("payload").to_pylist()
        vals[2] = None
        pq.write_table(t.set_column(3, "payload", pa.array(vals, pa.string())), path)
        want, column = "null in required column: 1 row(s)", "payload"
    elif problem == "lossy_ts":
        ns = pa.array([x * 1000 + 1 for x in t.column("ts").cast(pa.int64()).to_pylist()],
                      pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
        pq.write_table(t.set_column(1, "ts", ns), path)
        want, column = "cannot be cast losslessly", "ts"
    elif problem == "missing_column":
        pq.write_table(t.drop_columns(["prev_hash"]), path)
        want, column = "missing required column", "prev_hash"
    else:
        path.write_bytes(b"not parquet")
        want, column = "unreadable Parquet file", None
    with pytest.raises(BadInput) as e:
        assess_replay_drill(ExportReader(tmp_path), Q1)
    assert e.value.table == "eqm" and want in e.value.problem and e.value.column == column
    assert e.value.file and e.value.file.endswith("date=2026-02-10/part-0.parquet")


def test_rows_out_of_seq_order_in_a_day_are_sorted(tmp_path):
    make_export(tmp_path, dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    path = _day_file(tmp_path)
    t = pq.read_table(path)
    pq.write_table(t.take(pa.array(list(range(t.num_rows))[::-1])), path)
    assert passed(assess_replay_drill(ExportReader(tmp_path), Q1))
