"""The dual-write rule table (qfs_assets.activities.dual_write.classify) against hand-written
expectations, and its three forms (one pair in Python, Arrow vectorised, SQL in DuckDB)
against each other on every combination of a small domain."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pyarrow as pa
import pytest

from qfs_assets.activities.dual_write import classify as cl
from qfs_assets.readers.sor import SOR_SCHEMA, to_epoch_us

UTC = dt.timezone.utc
END = dt.datetime(2026, 4, 1, tzinfo=UTC)
BEFORE = END - dt.timedelta(hours=1)
JUST_BEFORE = END - dt.timedelta(microseconds=1)
LATE = END + dt.timedelta(hours=1)
FIELDS = [f.name for f in SOR_SCHEMA][1:]  # the qfs_objects columns but object_id


def row(version=1, content_hash="h", size=100, k=4, n=6, updated=BEFORE, deleted=False) -> dict:
    return {"version": version, "content_hash": content_hash, "size_bytes": size, "data_shards": k,
            "total_shards": n, "updated_at": updated, "deleted": deleted}


# (name, sor row, manifest row, category, sor counts as an object, manifest row counts)
CASES = [
    ("equal", row(), row(), None, True, True),
    ("sor only", row(), None, "missing_in_storage", True, False),
    ("manifest only", None, row(), "missing_in_sor", False, True),
    ("sor tombstone only", row(deleted=True), None, None, False, False),
    ("manifest tombstone only", None, row(deleted=True), None, False, False),
    ("both tombstones, versions differ", row(version=3, deleted=True), row(version=4, deleted=True), None, False, False),
    ("both tombstones, contents differ", row(content_hash="x", deleted=True), row(deleted=True), None, False, False),
    ("versions differ", row(version=2), row(version=1), "version_mismatch", True, True),
    ("version beats content", row(version=2, content_hash="x"), row(), "version_mismatch", True, True),
    ("sor deleted at a newer version", row(version=2, deleted=True), row(), "version_mismatch", False, True),
    ("content_hash differs", row(content_hash="x"), row(), "content_mismatch", True, True),
    ("size differs", row(size=101), row(), "content_mismatch", True, True),
    ("data_shards differ", row(k=3), row(), "content_mismatch", True, True),
    ("total_shards differ", row(n=5), row(), "content_mismatch", True, True),
    ("deleted differs", row(deleted=True), row(), "content_mismatch", False, True),
    ("updated_at alone is not content", row(updated=BEFORE - dt.timedelta(days=1)), row(), None, True, True),
    ("sor in flight", row(updated=LATE, version=2), row(), "in_flight", False, False),
    ("manifest in flight", row(), row(updated=LATE), "in_flight", False, False),
    ("both in flight", row(updated=LATE), row(updated=LATE), "in_flight", False, False),
    ("exactly at the end is in flight", row(updated=END, version=9), row(), "in_flight", False, False),
    ("one microsecond before is judged", row(updated=JUST_BEFORE), row(updated=JUST_BEFORE), None, True, True),
    ("in flight beats missing", row(updated=LATE), None, "in_flight", False, False),
    ("in-flight tombstone", None, row(updated=LATE, deleted=True), "in_flight", False, False),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hand_written_table(case):
    _name, s, m, category, s_live, m_live = case
    assert cl.classify(s, m, END) == category
    assert cl.is_live("sor", s, m, END) is s_live
    assert cl.is_live("storage", s, m, END) is m_live


def test_integer_microseconds_work_as_well():
    s, m = row(updated=to_epoch_us(END)), row(updated=to_epoch_us(JUST_BEFORE))
    assert cl.classify(s, m, to_epoch_us(END)) == "in_flight"
    assert cl.classify(m, m, to_epoch_us(END)) is None


def test_no_row_at_all_is_an_error():
    with pytest.raises(ValueError):
        cl.classify(None, None, END)


def test_every_category_has_exactly_one_rule():
    named = [r.category for r in cl.RULES if r.category is not None]
    assert sorted(named) == sorted((cl.IN_FLIGHT, *cl.CATEGORIES))
    assert cl.RULES[0].category == cl.IN_FLIGHT  # in flight is decided before anything is judged


# -- the three forms agree ----------------------------------------------------------------------

def _joined(pairs: list[tuple[dict | None, dict | None]]) -> list[dict]:
    out = []
    for i, (s, m) in enumerate(pairs):
        r = {"object_id": f"k{i:05d}"}
        for side, v in (("sor", s), ("storage", m)):
            for f in FIELDS:
                r[f"{side}_{f}"] = None if v is None else v[f]
        out.append(r)
    return out


def _joined_schema() -> pa.Schema:
    fields = [pa.field("object_id", pa.string())]
    for f in SOR_SCHEMA:
        if f.name == "object_id":
            continue
        fields += [pa.field(f"sor_{f.name}", f.type), pa.field(f"storage_{f.name}", f.type)]
    return pa.schema(fields)


def _arrow_form(pairs) -> tuple[list, list, list]:
    tbl = pa.Table.from_pylist(_joined(pairs), schema=_joined_schema())
    got = cl.classify_arrow(tbl, to_epoch_us(END))
    cats = got.category.to_pylist()
    for name, mask in got.hits.items():  # the masks say the same as the category column
        assert [c == name for c in cats] == mask.to_pylist(), name
    return cats, got.live["sor"].to_pylist(), got.live["storage"].to_pylist()


def _sql_form(pairs) -> tuple[list, list, list]:
    tbl = pa.Table.from_pylist(_joined(pairs), schema=_joined_schema())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("j_raw", tbl)
        end = f"TIMESTAMPTZ '{END.isoformat()}'"
        rows = con.execute(
            "WITH j AS (SELECT *, sor_version IS NOT NULL AS s_present, storage_version IS NOT NULL AS m_present "
            "FROM j_raw) "
            f"SELECT {cl.classify_sql(end)}, {cl.live_sql('sor', end)}, {cl.live_sql('storage', end)} "
            "FROM j ORDER BY object_id").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _python_form(pairs) -> tuple[list, list, list]:
    return ([cl.classify(s, m, END) for s, m in pairs], [cl.is_live("sor", s, m, END) for s, m in pairs],
            [cl.is_live("storage", s, m, END) for s, m in pairs])


def _domain() -> list[dict | None]:
    """Every side state of a small domain: absent, or a row varying every field the rules read."""
    out: list[dict | None] = [None]
    for version, h, size, n, updated, deleted in itertools.product(
            (1, 2), ("a", "b"), (1, 2), (5, 6), (JUST_BEFORE, END), (False, True)):
        out.append(row(version=version, content_hash=h, size=size, n=n, updated=updated, deleted=deleted))
    return out


def test_the_three_forms_agree_on_every_pair_of_a_small_domain():
    dom = _domain()
    pairs = [(s, m) for s, m in itertools.product(dom, dom) if s is not None or m is not None]
    want = _python_form(pairs)
    assert _arrow_form(pairs) == want
    assert _sql_form(pairs) == want
    # the domain reaches every outcome, consistent included
    assert set(want[0]) == {None, cl.IN_FLIGHT, *cl.CATEGORIES}


def test_the_three_forms_agree_on_hand_written_cases_and_nulls():
    pairs = [(s, m) for _n, s, m, *_ in CASES]
    # nulls never reach the forms in the product (the readers reject them); still, they agree
    pairs += [(row(content_hash=None), row()), (row(content_hash=None), row(content_hash=None)),
              (row(updated=None), row()), (row(deleted=None), None), (row(deleted=None), row(deleted=True))]
    want = _python_form(pairs)
    assert want[0][: len(CASES)] == [c[3] for c in CASES]
    assert _arrow_form(pairs) == want
    assert _sql_form(pairs) == want


def test_sql_names_columns_as_told():
    alias = {"sor": "a", "storage": "b"}
    sql = cl.classify_sql("END", consistent="'ok'", col=lambda side, f: f"{alias[side]}.{f}",
                          present={"sor": "sp", "storage": "mp"})
    assert sql.startswith("CASE WHEN ") and sql.endswith(" ELSE 'ok' END")
    assert "coalesce(a.updated_at >= END, false)" in sql and "coalesce(b.updated_at >= END, false)" in sql
    assert "(sp AND mp AND a.version IS DISTINCT FROM b.version)" in sql
    assert "sor_" not in sql and "storage_" not in sql and "s_present" not in sql
