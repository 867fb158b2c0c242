"""Finding 1 of issue 19: the reconciliation SQL never carries data in comments, nor unescaped.

Before the fix a system-of-record ``object_id`` holding a newline (``'obj-nl' || char(10) ||
'DROP TABLE qfs_objects;' || char(10) || '-- '``) broke out of a ``-- rewrite_into_storage_engine``
comment of the ``.reconciliation.sql`` file, and the runbook's ROLLBACK dry run then dropped
``qfs_objects`` on SQLite and on PostgreSQL; a raw NUL byte was written into the file too.

Now every value goes through :func:`qfs_assets.sqltext.sql_value` (one line, no backslash, no
control or separator character inside quotes), comments hold no data at all (the objects to
rewrite are counted and left to the ``dual_write_reconciliation`` table), identifiers are
validated, and a repair that SQL text cannot hold (an id with a NUL) has no statement and is
counted in the header. Here hostile ids of every kind sit on both sides, in all three plan
paths (insert, update, rewrite). The script is parsed back with sqlglot and must be exactly
BEGIN, the intended INSERT/UPDATE statements on ``qfs_objects`` and COMMIT; its dry run and its
run are executed on SQLite and on the real PostgreSQL (``standard_conforming_strings`` on and
off): the table survives, and applying it leaves exactly the storage-side repairs.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest
import sqlglot
from sqlglot import exp

from qfs_assets.activities.dual_write.assess import TABLE_RECONCILIATION, assess_dual_write
from qfs_assets.readers.sor import SorError, SystemOfRecord
from qfs_assets_tests.test_dual_write import AS_OF, MONTH, Backend, export, o, pg_server  # noqa: F401 - fixture

EXPLOIT = "obj-nl\nDROP TABLE qfs_objects;\n-- "  # the reported one, verbatim
HOSTILE = [
    EXPLOIT,
    "crlf\r\nDROP TABLE qfs_objects; --",
    "q'uote'); DROP TABLE qfs_objects; --",
    "back\\slash\\'; DROP TABLE qfs_objects; --",
    "E'\\x27'",
    "dollar$$; DROP TABLE qfs_objects; $$",
    "c/*omment*/x",
    "end*/; DROP TABLE qfs_objects; /*",
    "semi;colon",
    "sep\u2028DROP TABLE qfs_objects;\u2029--",
    "nel\u0085DROP TABLE qfs_objects;",
    "bidi\u202e--",
    "tab\tvt\x0bff\x0cesc\x1b",
    "zero\u200bwidth\ufeff",
    "emoji-\U0001f4a5",
]
NUL_ID = "nul\x00DROP TABLE qfs_objects;"
DIALECT = {"sqlite": "sqlite", "postgresql": "postgres"}


def _scenario(kind: str):
    """Manifest and SoR rows: each hostile id missing in the SoR (INSERT), mismatched (UPDATE) and
    missing in the StorageEngine (a rewrite, no SQL). A NUL id on the manifest side always, on the
    SoR side where the database can hold it (SQLite; PostgreSQL text cannot)."""
    man = [o(f"ins:{k}") for k in HOSTILE] + [o(f"upd:{k}", content_hash="d" * 64) for k in HOSTILE] + [o(NUL_ID)]
    sor = [o(f"upd:{k}") for k in HOSTILE] + [o(f"sor:{k}") for k in HOSTILE]
    if kind == "sqlite":
        sor.append(o("sor:" + NUL_ID))
    return man, sor


def _statements(script: str, kind: str) -> list[exp.Expression]:
    return [s for s in sqlglot.parse(script, read=DIALECT[kind]) if s is not None and not isinstance(s, exp.Semicolon)]


@pytest.fixture(params=["sqlite", "postgresql"])
def planned(request, tmp_path):
    kind = request.param
    pg = request.getfixturevalue("pg_server") if kind == "postgresql" else None
    b = Backend(kind, tmp_path, pg)
    man, sor_rows = _scenario(kind)
    reader = export(tmp_path, man)
    sor = b.create(sor_rows)
    res = assess_dual_write(reader, sor, MONTH, {"sample_bps": 0}, tmp_path / "evidence", AS_OF)
    yield kind, b, reader, sor, man, sor_rows, res
    b.close()


def test_the_plan_is_exactly_the_intended_statements(planned):
    kind, b, reader, sor, man, sor_rows, res = planned
    n = len(HOSTILE)
    assert res.metrics["missing_in_sor"] == n + 1 and res.metrics["content_mismatch"] == n
    assert res.metrics["missing_in_storage"] == len(sor_rows) - n
    script = res.reconciliation_sql
    assert "\x00" not in script
    # no data in comments: not a single object id, nor a piece of one, appears on a comment line
    comments = [ln for ln in script.splitlines() if ln.startswith("--")]
    for ln in comments:
        for piece in ("DROP", "obj-nl", "sor:", "ins:", "upd:", "nul"):
            assert piece not in ln, ln
    # every line is a comment, BEGIN, COMMIT or one complete INSERT/UPDATE statement
    for ln in script.splitlines():
        if not ln.startswith("--"):
            assert ln in ("BEGIN;", "COMMIT;") or (ln.startswith(("INSERT INTO ", "UPDATE ")) and
                                                   sqlite3.complete_statement(ln)), ln
    # parsed back: BEGIN, n INSERTs, n UPDATEs, COMMIT, all on qfs_objects, nothing else
    parsed = _statements(script, kind)
    kinds = [type(s).__name__ for s in parsed]
    assert kinds == ["Transaction"] + ["Insert"] * n + ["Update"] * n + ["Commit"] or \
        sorted(kinds) == sorted(["Transaction", "Commit"] + ["Insert"] * n + ["Update"] * n), kinds
    for s in parsed:
        if isinstance(s, (exp.Insert, exp.Update)):
            assert s.find(exp.Table).name == "qfs_objects"
            assert not list(s.find_all(exp.Drop))
    # the NUL id: its insert has no statement, and the header counts it
    plan = {r["object_id"]: r for r in res.tables[TABLE_RECONCILIATION].to_pylist()}
    assert plan[NUL_ID]["statement"] is None and plan[NUL_ID]["action"] == "insert_into_system_of_record"
    assert "-- 1 repair(s) of the system of record cannot be written as SQL" in script
    # the objects to rewrite are in the table, not in the file
    assert sum(r["action"] == "rewrite_into_storage_engine" for r in plan.values()) == len(sor_rows) - n


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_the_dry_run_and_the_run_keep_the_table_and_apply_exactly_the_plan(planned, conforming):
    kind, b, reader, sor, man, sor_rows, res = planned
    if kind == "sqlite" and conforming == "off":
        pytest.skip("standard_conforming_strings is a PostgreSQL setting")
    prefix = f"SET standard_conforming_strings = {conforming};\n" if kind == "postgresql" else ""
    before = sorted(r["object_id"] for r in sor.read_all().to_pylist())
    dry = prefix + res.reconciliation_sql.replace("\nCOMMIT;\n", "\nROLLBACK;\n")
    b.execute_script(dry)  # the runbook's dry run
    assert sorted(r["object_id"] for r in sor.read_all().to_pylist()) == before  # the table survives, unchanged
    b.execute_script(prefix + res.reconciliation_sql)
    after = {r["object_id"] for r in sor.read_all().to_pylist()}
    assert after == set(before) | {r["object_id"] for r in man if r["object_id"] != NUL_ID}
    again = assess_dual_write(reader, sor, MONTH, {"sample_bps": 0}, b.tmp_path / "evidence2", AS_OF)
    left = {(r["object_id"], r["category"]) for r in again.tables["dual_write_inconsistencies"].to_pylist()}
    assert left == {(r["object_id"], "missing_in_storage") for r in sor_rows if r["object_id"].startswith("sor:")} | \
        {(NUL_ID, "missing_in_sor")}


def test_the_reported_exploit_on_a_scratch_sqlite_copy(tmp_path):
    """The issue's reproduction: the SoR row ``'obj-nl' || char(10) || 'DROP TABLE ...'``, the
    runbook's dry run (``sed s/^COMMIT;$/ROLLBACK;/``) on a scratch copy: the table survives."""
    b = Backend("sqlite", tmp_path, None)
    reader = export(tmp_path, [o("a")])
    sor = b.create([o("a"), o(EXPLOIT)])
    res = assess_dual_write(reader, sor, MONTH, {"sample_bps": 0}, tmp_path / "evidence", AS_OF)
    scratch = tmp_path / "scratch.db"
    shutil.copy(b.path, scratch)
    con = sqlite3.connect(scratch)
    dry = "\n".join("ROLLBACK;" if ln == "COMMIT;" else ln for ln in res.reconciliation_sql.splitlines())
    con.executescript(dry)
    assert con.execute("SELECT count(*) FROM qfs_objects").fetchone()[0] == 2
    con.close()
    assert "obj-nl" not in res.reconciliation_sql


@pytest.mark.parametrize("table,schema", [("qfs_objects; DROP TABLE x", None), ("qfs_objects", "s\n--"),
                                          ('qfs"objects', None), ("qfs_objects", "a.b")])
def test_identifiers_are_validated(tmp_path, table, schema):
    with pytest.raises(SorError, match="not a plain identifier"):
        SystemOfRecord(tmp_path / "x.db", table=table, schema=schema)
