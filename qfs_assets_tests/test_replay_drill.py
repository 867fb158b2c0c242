"""The quarterly replay drill on the demo deployment and on tampered copies of it."""

import datetime as dt
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qfs_assets.defs.common import judge
from qfs_assets.activities.replay_drill.assess import assess_replay_drill
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets.readers.eqm import stream_eqm
from qfs_assets.replay.columnar import replay

Q1, Q2 = dt.date(2026, 1, 1), dt.date(2026, 4, 1)


def verdicts(result):
    return {c.name: c for c in judge(result)}


@pytest.fixture
def export_copy(demo, tmp_path):
    dst = tmp_path / "export"
    shutil.copytree(demo.export_root, dst)
    return dst


def rewrite(path, fn):
    t = pq.read_table(path)
    pq.write_table(fn(t), path)


def eqm_file(root, day="2026-03-05"):
    return root / "eqm" / f"date={day}" / "part-0.parquet"


def test_demo_quarter_passes_and_the_whole_log_matches_the_generator(demo):
    r = assess_replay_drill(ExportReader(demo.export_root), Q1)
    assert all(c.passed for c in verdicts(r).values()), r.metrics
    assert r.metrics["last_event_ts"] <= dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    whole = replay(stream_eqm(ExportReader(demo.export_root)))
    assert whole.final_state_root == demo.final_state_root
    assert whole.events_replayed == demo.event_count
    # the demo's log stops on its last day: the drill of the quarter it stops in is bad input
    with pytest.raises(BadInput) as e:
        assess_replay_drill(ExportReader(demo.export_root), Q2)
    assert e.value.table == "eqm" and "date=" in e.value.problem


def test_edited_payload_breaks_the_chain_at_that_seq(export_copy):
    path = eqm_file(export_copy)
    t = pq.read_table(path)
    seq = t.column("seq")[5].as_py()
    payload = t.column("payload").to_pylist()
    payload[5] = payload[5].replace('"', ' "', 1) if payload[5] else payload[5]
    t = t.set_column(t.schema.get_field_index("payload"), "payload", pa.array(payload, pa.string()))
    pq.write_table(t, path)
    r = assess_replay_drill(ExportReader(export_copy), Q1)
    assert r.metrics["chain_intact"] is False and r.metrics["first_broken_seq"] == seq
    v = verdicts(r)
    assert not v["chain_intact"].passed
    assert r.tables["replay_chain_breaks"].column("seq").to_pylist() == [seq]


def test_deleted_event_is_a_seq_gap(export_copy):
    path = eqm_file(export_copy)
    t = pq.read_table(path)
    seq = t.column("seq")[10].as_py()
    pq.write_table(t.filter(pc.not_equal(t.column("seq"), seq)), path)
    r = assess_replay_drill(ExportReader(export_copy), Q1)
    assert r.metrics["first_broken_seq"] == seq + 1
    assert "seq gap" in r.metrics["chain_break_reason"]


def test_wrong_component_root_is_localised(export_copy):
    path = next((export_copy / "checkpoints").glob("*.parquet"))
    t = pq.read_table(path)
    roots = t.column("ledger_root").to_pylist()
    roots[3] = "f" * 64
    pq.write_table(t.set_column(t.schema.get_field_index("ledger_root"), "ledger_root", pa.array(roots)), path)
    seq = t.column("seq")[3].as_py()
    r = assess_replay_drill(ExportReader(export_copy), Q1)
    assert r.metrics["first_mismatch_seq"] == seq
    assert r.metrics["mismatched_components"] == ["ledger"]
    assert r.metrics["checkpoints_matched"] == r.metrics["checkpoints_compared"] - 1
    assert not verdicts(r)["deterministic_match"].passed
    assert "replay_mismatch_ledger" in r.tables and r.tables["replay_mismatch_ledger"].num_rows > 0


def test_two_drills_give_identical_evidence_but_for_timings(demo, tmp_path):
    docs = []
    for i in range(2):
        store = EvidenceStore(tmp_path / f"ev{i}")
        r = assess_replay_drill(ExportReader(demo.export_root), Q1)
        path = store.publish(r, judge(r))
        doc = json.loads(path.read_text())
        doc.pop("timings")
        docs.append(json.dumps(doc, sort_keys=True))
        tables = sorted(p.relative_to(store.root) for p in store.root.rglob("*.parquet"))
        docs.append([pq.read_table(store.root / p).to_pylist() for p in tables])
    assert docs[0] == docs[2] and docs[1] == docs[3]
