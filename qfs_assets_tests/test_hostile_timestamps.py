"""Finding 8 of issue 19: a timestamp the evidence cannot hold (year 20000) is bad input at reading.

Before the fix a node snapshot with ``last_heartbeat`` in year 20000 was judged, and
``qfs-assure query`` over that evidence then exited 3 (OverflowError: Python's datetime stops at
year 9999). Now the export reader and the system-of-record reader reject any timestamp outside
``[1970-01-01, 9999-01-01)`` UTC as bad input naming table, file and column.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import pyarrow as pa
import pytest

from qfs_assets import cli
from qfs_assets.contract.schema import NODES, TS

from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets.readers.sor import SorError, SystemOfRecord
from qfs_assets_tests.exportkit import node, write
from qfs_assets_tests.test_cli_and_defs import DAY, build_healthy
from qfs_assets_tests.test_dual_write import SOR_DDL, pg_server  # noqa: F401 - the fixture

YEAR_20000_US = 568_971_820_800_000_000  # 20000-01-01T00:00:00Z in epoch microseconds
BEFORE_EPOCH_US = -86_400_000_000  # 1969-12-31


def _nodes_with_heartbeat(root, epoch_us: int):
    """A nodes snapshot whose second row's last_heartbeat is ``epoch_us`` (any value int64 can hold)."""
    rows = [node("n00"), node("n01")]
    schema = pa.schema([f.with_nullable(True) for f in NODES.schema])
    table = pa.Table.from_pylist(rows, schema=schema)
    hb = pa.array([table.column("last_heartbeat")[0].value, epoch_us], pa.int64()).cast(TS)
    table = table.set_column(table.schema.get_field_index("last_heartbeat"), "last_heartbeat", hb)
    folder = root / "nodes" / f"snapshot_date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    pq.write_table(table, folder / "part-0.parquet")
    return folder / "part-0.parquet"


def test_the_bounds_are_inside_what_python_and_the_evidence_hold():
    from qfs_assets.contract.schema import TS_MAX, TS_MIN

    assert TS_MIN == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert TS_MAX == dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
    assert TS_MAX + dt.timedelta(days=364) < dt.datetime.max.replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("epoch_us,shown", [(YEAR_20000_US, "20000-01-01"), (BEFORE_EPOCH_US, "1969-12-31")])
def test_an_export_timestamp_outside_the_range_is_bad_input_naming_table_file_column(tmp_path, epoch_us, shown):
    path = _nodes_with_heartbeat(tmp_path, epoch_us)
    with pytest.raises(BadInput) as err:
        ExportReader(tmp_path).read("nodes", [dt.date.fromisoformat(DAY)])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"bad input: table 'nodes', file '{path}', column 'last_heartbeat': timestamp outside "
                          "[1970-01-01, 9999-01-01) UTC: 1 row(s)"), msg
    assert shown in msg


def test_the_range_edges_are_accepted(tmp_path):
    from qfs_assets.contract.schema import TS_MAX

    _nodes_with_heartbeat(tmp_path, 0)  # 1970-01-01T00:00:00Z exactly
    assert ExportReader(tmp_path).read("nodes", [dt.date.fromisoformat(DAY)]).num_rows == 2
    last_us = int((TS_MAX - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 1_000_000 - 1
    _nodes_with_heartbeat(tmp_path, last_us)
    assert ExportReader(tmp_path).read("nodes", [dt.date.fromisoformat(DAY)]).num_rows == 2


def test_the_cli_rejects_year_20000_and_writes_no_evidence(tmp_path, capsys):
    export = build_healthy(tmp_path / "export")
    _nodes_with_heartbeat(export, YEAR_20000_US)
    ev = tmp_path / "ev"
    assert cli.main(["run", "node_health_assessment", "--partition", DAY, "--export-root", str(export),
                     "--evidence-root", str(ev)]) == cli.EXIT_BAD_INPUT
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("qfs-assure:")]
    assert "column 'last_heartbeat': timestamp outside" in line and "Traceback" not in line
    assert not list(ev.rglob("*.json")) and not list(ev.rglob("*.parquet"))
    # and the query over that (empty) evidence is not a crash
    assert cli.main(["query", "SELECT 1", "--evidence-root", str(ev)]) in (0, 2)


def test_a_system_of_record_timestamp_outside_the_range_is_bad_input_on_sqlite(tmp_path):
    path = tmp_path / "sor.db"
    con = sqlite3.connect(path)
    con.execute(SOR_DDL.format(table="qfs_objects", collate="", ts_type="TEXT"))
    con.execute("INSERT INTO qfs_objects VALUES ('o1', 1, 'c', 1, 1, 1, ?, 0)", [YEAR_20000_US])  # epoch µs
    con.commit()
    con.close()
    with pytest.raises(SorError, match=r"column 'updated_at': timestamp outside \[1970-01-01, 9999-01-01\) UTC "
                                       r"\(object_id 'o1'") as err:
        SystemOfRecord(path).read_all()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_a_system_of_record_timestamp_outside_the_range_is_bad_input_on_postgresql(pg_server, method):  # noqa: F811
    schema = pg_server.new_schema()
    try:
        with pg_server.engine.begin() as c:
            c.exec_driver_sql(SOR_DDL.format(table=f"{schema}.qfs_objects", collate="", ts_type="timestamptz"))
            c.exec_driver_sql(f"INSERT INTO {schema}.qfs_objects VALUES "
                              "('o0', 1, 'c', 1, 1, 1, '2026-03-01T00:00:00Z', false), "
                              "('o1', 1, 'c', 1, 1, 1, '20000-01-01T00:00:00Z', false)")
        from qfs_assets_tests.test_dual_write import PG_URL

        with pytest.raises(SorError, match=r"column 'updated_at': timestamp outside \[1970-01-01, 9999-01-01\) UTC "
                                           r"\(object_id 'o1'"):
            SystemOfRecord(PG_URL, schema=schema, method=method).read_all()
    finally:
        pg_server.drop(schema)
