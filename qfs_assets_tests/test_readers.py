"""The contract's bad-input rules, one by one: each is one line naming table, file and column."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qfs_assets.contract.schema import NODES, OBJECTS
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets_tests.exportkit import node, obj, write

DAY = dt.date(2026, 3, 2)


def read(root, table="nodes"):
    return ExportReader(root).read(table, [DAY])


def test_valid_table_reads_with_contract_types_and_ignores_extra_columns(tmp_path):
    schema = NODES.schema.append(pa.field("extra", pa.string()))
    write(tmp_path, "nodes", [{**node("n1"), "extra": "x"}], DAY, schema=schema)
    t = read(tmp_path)
    assert t.schema == NODES.schema
    assert t.column("node_id").to_pylist() == ["n1"]


def test_integer_widening_is_lossless_and_accepted(tmp_path):
    schema = pa.schema([pa.field(f.name, pa.int32() if f.name == "stake_nod" else f.type) for f in NODES.schema])
    write(tmp_path, "nodes", [node("n1", stake=5)], DAY, schema=schema)
    assert read(tmp_path).column("stake_nod").type == pa.int64()


def one_line(exc: BadInput) -> str:
    text = str(exc)
    assert "\n" not in text and text.startswith("bad input: table ")
    return text


def test_missing_column(tmp_path):
    schema = pa.schema([f for f in NODES.schema if f.name != "region"])
    path = write(tmp_path, "nodes", [{k: v for k, v in node("n1").items() if k != "region"}], DAY, schema=schema)
    with pytest.raises(BadInput) as e:
        read(tmp_path)
    assert one_line(e.value) == f"bad input: table 'nodes', file '{path}', column 'region': missing required column"


def test_wrong_type(tmp_path):
    schema = pa.schema([pa.field(f.name, pa.string() if f.name == "capacity_bytes" else f.type) for f in NODES.schema])
    path = write(tmp_path, "nodes", [{**node("n1"), "capacity_bytes": "1000"}], DAY, schema=schema)
    with pytest.raises(BadInput, match="column 'capacity_bytes': wrong type string, expected int64") as e:
        read(tmp_path)
    assert str(path) in one_line(e.value)


def test_uncastable_value(tmp_path):
    schema = pa.schema([pa.field(f.name, pa.int64() if f.name == "total_shards" else f.type) for f in OBJECTS.schema])
    write(tmp_path, "objects", [obj("o1", n=70000)], DAY, schema=schema)
    with pytest.raises(BadInput, match="column 'total_shards': value cannot be cast losslessly to int16: 1 row"):
        read(tmp_path, "objects")


def test_timestamp_without_time_zone(tmp_path):
    schema = pa.schema([pa.field(f.name, pa.timestamp("us") if f.name == "last_heartbeat" else f.type) for f in NODES.schema])
    row = node("n1")
    row["last_heartbeat"] = row["last_heartbeat"].replace(tzinfo=None)
    write(tmp_path, "nodes", [row], DAY, schema=schema)
    with pytest.raises(BadInput, match="column 'last_heartbeat': timestamp without time zone"):
        read(tmp_path)


def test_null_key(tmp_path):
    path = write(tmp_path, "nodes", [node("n1"), {**node("n2"), "node_id": None}], DAY)
    with pytest.raises(BadInput) as e:
        read(tmp_path)
    assert one_line(e.value) == f"bad input: table 'nodes', file '{path}', column 'node_id': null in required column: 1 row(s)"


def test_null_in_nullable_column_is_fine(tmp_path):
    from qfs_assets_tests.exportkit import proof
    write(tmp_path, "proofs", [proof("c1", "n1", "timeout")], DAY)
    assert read(tmp_path, "proofs").column("latency_ms").to_pylist() == [None]


def test_duplicate_key_across_files(tmp_path):
    write(tmp_path, "nodes", [node("n1")], DAY)
    write(tmp_path, "nodes", [node("n1")], DAY, name="part-1.parquet")
    with pytest.raises(BadInput, match=r"table 'nodes', file '.*part-0.parquet', column 'node_id': duplicate key node_id='n1' \(2 rows\)"):
        read(tmp_path)


def test_value_outside_enumeration(tmp_path):
    write(tmp_path, "nodes", [node("n1", status="on fire")], DAY)
    with pytest.raises(BadInput, match=r"column 'status': value outside .*\(e.g. 'on fire'\)"):
        read(tmp_path)


def test_unreadable_file(tmp_path):
    folder = tmp_path / "nodes" / "snapshot_date=2026-03-02"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"not a parquet file at all")
    with pytest.raises(BadInput, match=r"table 'nodes', file '.*part-0.parquet': unreadable Parquet file") as e:
        read(tmp_path)
    one_line(e.value)


def test_missing_partition(tmp_path):
    write(tmp_path, "nodes", [node("n1")], "2026-03-01")
    with pytest.raises(BadInput) as e:
        read(tmp_path)
    assert one_line(e.value) == (f"bad input: table 'nodes', file '{tmp_path}/nodes/snapshot_date=2026-03-02': "
                                 "missing partition snapshot_date=2026-03-02")


def test_only_the_needed_partitions_are_read(tmp_path):
    write(tmp_path, "nodes", [node("n1")], DAY)
    bad = tmp_path / "nodes" / "snapshot_date=2026-03-03"
    bad.mkdir()
    (bad / "part-0.parquet").write_bytes(b"garbage")
    reader = ExportReader(tmp_path)
    assert reader.read("nodes", [DAY]).num_rows == 1
    assert reader.available_dates("nodes") == [DAY, dt.date(2026, 3, 3)]


def test_unpartitioned_checkpoints(tmp_path):
    from qfs_assets.contract.schema import CHECKPOINTS
    (tmp_path / "checkpoints").mkdir()
    row = {"seq": 0, "ts": dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc), **{c: "0" * 64 for c in
           ("state_root", "nodes_root", "objects_root", "shards_root", "ledger_root")}}
    pq.write_table(pa.Table.from_pylist([row], schema=CHECKPOINTS.schema), tmp_path / "checkpoints" / "part-0.parquet")
    assert ExportReader(tmp_path).read("checkpoints").num_rows == 1
