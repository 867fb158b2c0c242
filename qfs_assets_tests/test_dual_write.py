"""dual_write_verification: SoR reader, diff, ledger and monthly evidence, on SQLite AND PostgreSQL.

The PostgreSQL half runs against a real server (``QFS_TEST_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``): each test gets its own schema named after a
per-session unique prefix, dropped at the end. There is deliberately no skip marker: when
PostgreSQL is unreachable these tests error, and CI fails.

PostgreSQL tables declare ``object_id text COLLATE "en-x-icu"`` and SQLite tables
``COLLATE NOCASE``, so a reader that trusted the column's collation would produce keys out of
byte order and the diff would fail.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool

from qfs_assets.contract.hashing import in_sample
from qfs_assets.evidence.model import Criterion
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.base import BadInput, ExportReader
from qfs_assets.readers.sor import SOR_SCHEMA, SorError, SystemOfRecord, normalise_url, redact, scrub, to_epoch_us
from qfs_assets.activities.dual_write.classify import classify, is_live
from qfs_assets.activities.dual_write.diff import CATEGORIES, diff_snapshot
from qfs_assets.activities.dual_write.ledger import DiffLedger
from qfs_assets.activities.dual_write.assess import (
    ACTIVITY,
    METRIC_KEYS,
    TABLE_INCONSISTENCIES,
    TABLE_RECONCILIATION,
    TABLE_SAMPLE_FAILURES,
    assess_daily_diff,
    assess_dual_write,
    in_sample_sql,
    write_reconciliation_sql,
)
from qfs_assets.windows import day_end
from qfs_assets_tests.exportkit import obj, shard, ts, write

PG_URL = os.environ.get("QFS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
UTC = dt.timezone.utc
DAY = dt.date(2026, 3, 31)
MONTH = dt.date(2026, 3, 1)
END = day_end(DAY)  # 2026-04-01 00:00 UTC
AS_OF = dt.datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgresql")
LOCALE_KEYS = ("a_b", "a-b", "A", "b", "Z", "é")


# -- backends ---------------------------------------------------------------------------------------

class PgServer:
    def __init__(self) -> None:
        self.prefix = f"qfs_dw_test_{uuid.uuid4().hex[:10]}"
        self.engine = sa.create_engine(normalise_url(PG_URL), poolclass=NullPool)
        self.counter = itertools.count()
        with self.engine.begin() as c:  # unreachable: an error here fails every PostgreSQL test
            c.exec_driver_sql("SELECT 1")

    def new_schema(self) -> str:
        name = f"{self.prefix}_{next(self.counter)}"
        with self.engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {name}")
        return name

    def drop(self, schema: str) -> None:
        with self.engine.begin() as c:
            c.exec_driver_sql("SET LOCAL lock_timeout = '10s'")  # a leaked reader fails the test, not hangs it
            c.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def drop_all(self) -> None:
        with self.engine.begin() as c:
            names = [r[0] for r in c.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (self.prefix + "%",))]
            for n in names:
                c.exec_driver_sql(f"DROP SCHEMA IF EXISTS {n} CASCADE")
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer()
    yield server
    server.drop_all()


SOR_DDL = """CREATE TABLE {table} (
    object_id text {collate} PRIMARY KEY, version bigint, content_hash text, size_bytes bigint,
    data_shards smallint, total_shards smallint, updated_at {ts_type}, deleted boolean)"""


class Backend:
    """Creates ``qfs_objects`` with given rows in SQLite or PostgreSQL and returns a SystemOfRecord."""

    def __init__(self, kind: str, tmp_path: Path, pg: PgServer | None) -> None:
        self.kind, self.tmp_path, self.pg = kind, tmp_path, pg
        self.schemas: list[str] = []
        self.path: Path | None = None
        self.schema: str | None = None

    def create(self, rows: list[dict], *, columns: tuple[str, ...] | None = None, pk: bool = True, **sor_kwargs) -> SystemOfRecord:
        cols = columns or SOR_SCHEMA.names
        if self.kind == "sqlite":
            self.path = self.tmp_path / f"sor_{uuid.uuid4().hex[:6]}.db"
            con = sqlite3.connect(self.path)
            ddl = ", ".join(
                f"{c} TEXT COLLATE NOCASE{' PRIMARY KEY' if pk else ''}" if c == "object_id" else c for c in cols
            )
            con.execute(f"CREATE TABLE qfs_objects ({ddl})")
            for i, r in enumerate(rows):
                con.execute(f"INSERT INTO qfs_objects ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            [_sqlite_value(c, r.get(c), i) for c in cols])
            con.commit()
            con.close()
            return SystemOfRecord(self.path, **sor_kwargs)
        self.schema = self.pg.new_schema()
        self.schemas.append(self.schema)
        with self.pg.engine.begin() as c:
            if columns is None and pk:
                c.exec_driver_sql(SOR_DDL.format(table=f"{self.schema}.qfs_objects", collate='COLLATE "en-x-icu"',
                                                 ts_type="timestamptz"))
            else:
                defs = {"object_id": 'text COLLATE "en-x-icu"', "version": "bigint", "content_hash": "text",
                        "size_bytes": "bigint", "data_shards": "smallint", "total_shards": "smallint",
                        "updated_at": "timestamptz", "deleted": "boolean"}
                c.exec_driver_sql(f"CREATE TABLE {self.schema}.qfs_objects ({', '.join(f'{k} {defs[k]}' for k in cols)})")
            if rows:
                c.execute(sa.text(f"INSERT INTO {self.schema}.qfs_objects ({', '.join(cols)}) VALUES ({', '.join(':' + k for k in cols)})"),
                          [{k: r.get(k) for k in cols} for r in rows])
        return SystemOfRecord(PG_URL, schema=self.schema, **sor_kwargs)

    def execute_script(self, sql: str) -> None:
        if self.kind == "sqlite":
            con = sqlite3.connect(self.path)
            con.executescript(sql)
            con.close()
        else:
            raw = self.pg.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute(f"SET search_path TO {self.schema}")
                cur.execute(sql)
                raw.commit()
            finally:
                raw.close()

    def update(self, object_id: str, **values) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        if self.kind == "sqlite":
            con = sqlite3.connect(self.path)
            vals = {k: _sqlite_value(k, v, 0) for k, v in values.items()}
            con.execute(f"UPDATE qfs_objects SET {sets} WHERE object_id = :oid", {**vals, "oid": object_id})
            con.commit()
            con.close()
        else:
            with self.pg.engine.begin() as c:
                c.execute(sa.text(f"UPDATE {self.schema}.qfs_objects SET {sets} WHERE object_id = :oid"), {**values, "oid": object_id})

    def close(self) -> None:
        for s in self.schemas:
            self.pg.drop(s)


def _sqlite_value(column: str, value: Any, i: int) -> Any:
    """SQLite holds whatever the gateway wrote: vary the encodings the reader must accept."""
    if column == "updated_at" and isinstance(value, dt.datetime):
        forms = (
            lambda v: v.isoformat(),  # 2026-03-31T12:00:00+00:00
            lambda v: v.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(sep=" "),
            lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f"),  # naive: UTC
            lambda v: v.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            lambda v: to_epoch_us(v) / 1e6 if v.microsecond == 0 else v.isoformat(),  # epoch seconds
        )
        return forms[i % len(forms)](value)
    if column == "deleted" and isinstance(value, bool):
        return (int(value), "true" if value else "false", "t" if value else "f")[i % 3]
    return value


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    pg = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    b = Backend(request.param, tmp_path, pg)
    yield b
    b.close()


# -- scenario helpers -------------------------------------------------------------------------------

def o(object_id: str, **kw) -> dict:
    kw.setdefault("updated", ts(DAY, 12))
    return obj(object_id, **kw)


def shards_for(row: dict, *, skip: tuple[int, ...] = (), node_of=None, nbytes=None) -> list[dict]:
    n, k = row["total_shards"], row["data_shards"]
    per = nbytes if nbytes is not None else -(-row["size_bytes"] // k)
    return [shard(row["object_id"], i, node_of(i) if node_of else f"n{i}", per) for i in range(n) if i not in skip]


def export(tmp_path: Path, manifest: list[dict], shards: list[dict] | None = None, day: dt.date = DAY) -> ExportReader:
    root = tmp_path / "export"
    write(root, "objects", manifest, day)
    write(root, "shards", shards if shards is not None else [s for r in manifest if not r["deleted"] for s in shards_for(r)], day)
    return ExportReader(root)


def manifest_con(tmp_path: Path, manifest: list[dict]) -> tuple[duckdb.DuckDBPyConnection, str]:
    from qfs_assets.readers.base import connect
    from qfs_assets.readers.storage import object_manifest

    reader = export(tmp_path, manifest)
    con = connect()
    return con, object_manifest(reader, con, DAY)


def sampled_ids(n: int, bps: int = 100, prefix: str = "obj-") -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if in_sample(f"{prefix}{i}", bps):
            out.append(f"{prefix}{i}")
        i += 1
    return out


def unsampled_ids(n: int, bps: int = 100, prefix: str = "obj-") -> list[str]:
    return [f"{prefix}{i}" for i in range(10 * n) if not in_sample(f"{prefix}{i}", bps)][:n]


# -- the scenario with every category ---------------------------------------------------------------

LATE = END + dt.timedelta(hours=1)

SOR_ROWS = [
    o("A"), o("a-b", version=2), o("a_b", content_hash="x" * 64), o("b"), o("Z", size=101), o("é", n=4),
    o("gone_sor_only", deleted=True),                       # tombstone, absent from manifest: consistent
    o("both_deleted", version=3, deleted=True),              # deleted both sides (versions differ): consistent
    o("del_differs", deleted=True),                          # same version, deleted differs: content_mismatch
    o("del_newer", version=2, deleted=True),                 # SoR deleted at a newer version: version_mismatch
    o("fly_sor", updated=LATE, version=2),                   # SoR in flight
    o("fly_both", updated=LATE),                             # both in flight: counted once
    o("fly_at_end", updated=END, version=9),                 # exactly at the end: in flight
    o("just_before_end", updated=END - dt.timedelta(microseconds=1)),  # judged, consistent
    o("fly_sor_only", updated=LATE),                         # in flight, absent from manifest
    o("only_sor"),                                           # missing_in_storage
    o("only_sor_2", version=7),                              # missing_in_storage
    o("man_fly"),                                            # manifest row in flight
]
MAN_ROWS = [
    o("A"), o("a-b", version=1), o("a_b"), o("b"), o("Z"), o("é"),
    o("only_man_deleted", deleted=True),                    # tombstone absent from SoR: consistent
    o("both_deleted", version=4, deleted=True),
    o("del_differs"),
    o("del_newer", version=1),
    o("fly_sor"),
    o("fly_both", updated=LATE),
    o("fly_at_end"),
    o("just_before_end", updated=END - dt.timedelta(microseconds=1)),
    o("fly_man_only", updated=LATE),                          # in flight, absent from SoR
    o("only_man"),                                            # missing_in_sor
    o("man_fly", version=2, updated=LATE),
]
EXPECTED = {
    "missing_in_storage": {"only_sor", "only_sor_2"},
    "missing_in_sor": {"only_man"},
    "version_mismatch": {"a-b", "del_newer"},
    "content_mismatch": {"a_b", "Z", "é", "del_differs"},
}
EXPECTED_COUNTS = {
    # not deleted, in flight excluded: A a-b a_b b Z é just_before_end only_sor only_sor_2
    "sor_objects": 9,
    # A a-b a_b b Z é del_differs del_newer just_before_end only_man
    "storage_objects": 10,
    "in_flight": 6,  # fly_sor fly_both fly_at_end fly_sor_only fly_man_only man_fly
    "missing_in_storage": 2, "missing_in_sor": 1, "version_mismatch": 2, "content_mismatch": 4,
    "inconsistencies": 9,
}


@pytest.mark.parametrize("method", ["pg_hash", "hash", "merge", "duckdb"])
def test_every_category_in_flight_and_tombstones(backend, tmp_path, method):
    sor = backend.create(SOR_ROWS, batch_rows=3)
    con, view = manifest_con(tmp_path, MAN_ROWS)
    res = diff_snapshot(sor, con, view, END, method=method, batch_rows=3)
    assert res.counts == EXPECTED_COUNTS
    got = {c: {r["object_id"] for r in res.inconsistencies.to_pylist() if r["category"] == c} for c in CATEGORIES}
    assert got == EXPECTED
    rows = {r["object_id"]: r for r in res.inconsistencies.to_pylist()}
    assert rows["a_b"]["differing_fields"] == "content_hash"
    assert (rows["a_b"]["sor_content_hash"], rows["a_b"]["storage_content_hash"]) == ("x" * 64, "c" * 64)
    assert rows["Z"]["differing_fields"] == "size_bytes" and (rows["Z"]["sor_size_bytes"], rows["Z"]["storage_size_bytes"]) == (101, 100)
    assert rows["é"]["differing_fields"] == "total_shards"
    assert rows["del_differs"]["differing_fields"] == "deleted"
    assert (rows["del_differs"]["sor_deleted"], rows["del_differs"]["storage_deleted"]) == (True, False)
    assert rows["a-b"]["differing_fields"] == "version" and (rows["a-b"]["sor_version"], rows["a-b"]["storage_version"]) == (2, 1)
    assert rows["only_man"]["sor_version"] is None and rows["only_man"]["storage_version"] == 1
    assert rows["only_sor"]["storage_updated_at"] is None and rows["only_sor"]["sor_updated_at"] == ts(DAY, 12)
    # the detail is in byte order of object_id
    assert res.inconsistencies.column("object_id").to_pylist() == sorted(rows)
    assert res.sor_rows == len(SOR_ROWS) and res.storage_rows == len(MAN_ROWS)


def test_keys_stream_in_byte_order_whatever_the_collation(backend, tmp_path):
    keys = [*LOCALE_KEYS, "a b", "ab", "a.b", "aa", "z", "B", "a"]
    if backend.kind == "sqlite":  # the NOCASE primary key takes one of "A"/"a" and "b"/"B"
        keys = list({k.lower(): k for k in reversed(keys)}.values())
    rows = [o(k) for k in keys]
    sor = backend.create(rows, batch_rows=2)
    got = [k for b in sor.iter_batches(2) for k in b.column("object_id").to_pylist()]
    assert got == sorted(keys, key=lambda k: k.encode("utf-8"))
    con, view = manifest_con(tmp_path, rows)
    for method in ("hash", "merge", "duckdb"):
        res = diff_snapshot(sor, con, view, END, method=method, batch_rows=2)
        assert res.counts["inconsistencies"] == 0 and res.counts["sor_objects"] == len(keys)


@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_postgresql_read_paths_agree(pg_server, tmp_path, method):
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        sor = b.create(SOR_ROWS, method=method, batch_rows=4)
        tbl = sor.read_all()
        assert tbl.schema == SOR_SCHEMA
        assert tbl.column("object_id").to_pylist() == sorted((r["object_id"] for r in SOR_ROWS), key=lambda k: k.encode())
        by_id = {r["object_id"]: r for r in tbl.to_pylist()}
        assert by_id["just_before_end"]["updated_at"] == END - dt.timedelta(microseconds=1)
        assert by_id["fly_at_end"]["updated_at"] == END
        assert by_id["del_newer"]["deleted"] is True and by_id["A"]["deleted"] is False
    finally:
        b.close()


def test_copy_stream_stops_cleanly_when_the_consumer_stops(pg_server, tmp_path):
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        sor = b.create([])
        with pg_server.engine.begin() as c:
            c.exec_driver_sql(
                f"INSERT INTO {b.schema}.qfs_objects SELECT 'k' || lpad(i::text, 8, '0'), 1, repeat('c', 64), 1, 1, 1, "
                "now() - interval '1 day', false FROM generate_series(1, 40000) i")
        sor = SystemOfRecord(PG_URL, schema=b.schema, batch_rows=1)
        it = sor.iter_batches()
        first = next(it)
        assert 0 < first.num_rows < 40000
        t0 = time.perf_counter()
        it.close()
        assert time.perf_counter() - t0 < 5
        assert sum(x.num_rows for x in sor.iter_batches()) == 40000  # the connection was released
    finally:
        b.close()


# -- property: both diff methods against the one-pair classification -----------------------------
#
# The oracle applies the product's own rule table one pair of rows at a time (classify.classify):
# this checks that the vectorised forms (Arrow windows of the merge, the SQL of the DuckDB join)
# and the streaming/joining around them agree with it. The rule table itself is pinned by
# hand-written expectations: the scenario above and qfs_assets_tests/test_classify.py.

def oracle(sor_rows: list[dict], man_rows: list[dict], end: dt.datetime) -> tuple[dict, dict]:
    s_by, m_by = {r["object_id"]: r for r in sor_rows}, {r["object_id"]: r for r in man_rows}
    counts = {k: 0 for k in EXPECTED_COUNTS}
    cats = {}
    for k in set(s_by) | set(m_by):
        s, m = s_by.get(k), m_by.get(k)
        cat = classify(s, m, end)
        counts["sor_objects"] += is_live("sor", s, m, end)
        counts["storage_objects"] += is_live("storage", s, m, end)
        if cat:
            counts[cat] += 1
            if cat != "in_flight":
                cats[k] = cat
    counts["inconsistencies"] = sum(counts[c] for c in CATEGORIES)
    return counts, cats


_key = st.text(alphabet="aAbZ_-.é0 ", min_size=0, max_size=3)
_row = st.fixed_dictionaries({
    "version": st.integers(1, 2), "content_hash": st.sampled_from(["h1", "h2"]), "size_bytes": st.integers(1, 2),
    "data_shards": st.just(2), "total_shards": st.integers(3, 4), "deleted": st.booleans(),
    "updated_at": st.sampled_from([END - dt.timedelta(hours=1), END - dt.timedelta(microseconds=1), END, LATE]),
})


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sor_map=st.dictionaries(_key, _row, max_size=10), man_map=st.dictionaries(_key, _row, max_size=10),
       batch_rows=st.integers(1, 4))
def test_diff_methods_match_the_oracle(sor_map, man_map, batch_rows):
    sor_rows = [{"object_id": k, **v} for k, v in sor_map.items()]
    man_rows = [{"object_id": k, **v} for k, v in man_map.items()]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sor.db"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE qfs_objects (object_id TEXT PRIMARY KEY, version, content_hash, size_bytes, "
                    "data_shards, total_shards, updated_at, deleted)")
        con.executemany("INSERT INTO qfs_objects VALUES (?,?,?,?,?,?,?,?)",
                        [[_sqlite_value(c, r[c], i) for c in SOR_SCHEMA.names] for i, r in enumerate(sor_rows)])
        con.commit()
        con.close()
        duck = duckdb.connect()
        duck.register("m", pa.Table.from_pylist(man_rows, schema=SOR_SCHEMA))
        want_counts, want_cats = oracle(sor_rows, man_rows, END)
        for method in ("hash", "merge", "duckdb"):
            res = diff_snapshot(SystemOfRecord(path), duck, "m", END, method=method, batch_rows=batch_rows)
            assert res.counts == want_counts, method
            assert {r["object_id"]: r["category"] for r in res.inconsistencies.to_pylist()} == want_cats, method
        duck.close()


# -- the sample -------------------------------------------------------------------------------------

_DUCK = duckdb.connect()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=30), st.integers(0, 10_000))
def test_in_sample_in_duckdb_matches_the_contract(ids, bps):
    _DUCK.register("t", pa.table({"object_id": ids}))
    got = [r[0] for r in _DUCK.execute(f"SELECT {in_sample_sql('object_id', bps)} FROM t").fetchall()]
    assert got == [in_sample(i, bps) for i in ids]


def ids_in_bucket(bucket: int, prefix: str = "edge-") -> str:
    """An id whose sample bucket (evidence-v1: ``int(sha256(id)[:8], 16) % 10000``, computed here
    from the contract's words, not by the code under test) is ``bucket``."""
    import hashlib

    i = 0
    while int(hashlib.sha256(f"{prefix}{i}".encode()).hexdigest()[:8], 16) % 10000 != bucket:
        i += 1
    return f"{prefix}{i}"


def test_the_sample_boundary_is_strict_in_python_and_in_duckdb():
    """``bucket < sample_bps``: at 1 % the ids of buckets 0 and 99 are in, 100 and 101 out (an id
    lands on the boundary once in 10,000, so random ids never test it)."""
    ids = {b: ids_in_bucket(b) for b in (0, 99, 100, 101)}
    want = {b: b < 100 for b in ids}
    assert {b: in_sample(i, 100) for b, i in ids.items()} == want
    _DUCK.register("t", pa.table({"object_id": list(ids.values())}))
    got = [r[0] for r in _DUCK.execute(f"SELECT {in_sample_sql('object_id', 100)} FROM t").fetchall()]
    assert got == list(want.values())
    assert in_sample(ids[100], 101) and not in_sample(ids[0], 0)


def test_the_default_sample_is_one_percent_with_its_boundary_out(tmp_path, backend):
    """With the evidence-v1 defaults the verification checks exactly the 1 % sample: the object
    of bucket 99 is checked (its missing shard fails it), the one of bucket 100 is not."""
    inside, boundary = ids_in_bucket(99), ids_in_bucket(100)
    rows = {i: o(i, k=2, n=3, size=100) for i in (inside, boundary)}
    shards = [*shards_for(rows[inside], skip=(1,)), *shards_for(rows[boundary], skip=(0,))]
    reader = export(tmp_path, list(rows.values()), shards)
    sor = backend.create(list(rows.values()))
    res = assess_dual_write(reader, sor, MONTH, None, tmp_path / "evidence", AS_OF)
    assert res.parameters["sample_bps"] == 100
    assert res.metrics["sampled_objects"] == 1
    assert [r["object_id"] for r in res.tables[TABLE_SAMPLE_FAILURES].to_pylist()] == [inside]


def test_sample_failures_missing_shard_and_friends(tmp_path, backend):
    good, missing, shared, short, wrong_index, extra, deleted_bad = sampled_ids(7)
    outside = unsampled_ids(1)[0]
    rows = {i: o(i, k=2, n=3, size=100) for i in (good, missing, shared, short, wrong_index, extra, outside)}
    rows[deleted_bad] = o(deleted_bad, deleted=True)
    shards = [
        *shards_for(rows[good]),
        *shards_for(rows[missing], skip=(1,)),                      # a missing shard
        *shards_for(rows[shared], node_of=lambda i: "n0" if i < 2 else "n2"),  # two shards on one node
        *shards_for(rows[short], nbytes=33),                        # 99 < 100 bytes
        *[s for s in shards_for(rows[wrong_index]) if s["shard_index"] != 2],
        shard(wrong_index, 3, "n9", 50),                            # indices 0,1,3
        *shards_for(rows[extra]), shard(extra, 3, "n9", 50),        # four shards of three
        *shards_for(rows[outside], skip=(0,)),                      # not in the sample: not checked
    ]
    reader = export(tmp_path, list(rows.values()), shards)
    sor = backend.create(list(rows.values()))
    res = assess_dual_write(reader, sor, MONTH, None, tmp_path / "evidence", AS_OF)
    assert res.metrics["sampled_objects"] == 6
    fails = {r["object_id"]: r for r in res.tables[TABLE_SAMPLE_FAILURES].to_pylist()}
    assert set(fails) == {missing, shared, short, wrong_index, extra}
    assert res.metrics["sample_failures"] == 5
    assert fails[missing]["reasons"] == "shard_count,shard_indices" and fails[missing]["missing_indices"] == [1]
    assert fails[missing]["shard_indices"] == [0, 2]
    assert fails[shared]["reasons"] == "shared_nodes" and fails[shared]["distinct_nodes"] == 2
    assert fails[short]["reasons"] == "shard_bytes" and fails[short]["shard_bytes_sum"] == 99
    assert fails[wrong_index]["reasons"] == "shard_indices" and fails[wrong_index]["missing_indices"] == [2]
    assert fails[extra]["reasons"] == "shard_count,shard_indices"
    crit = {c.name: c for c in res.criteria_specs}
    assert not all(r.holds(res.judge_table.column(r.column)[0].as_py()) for r in crit["sample_consistent"].rules)
    assert all(r.holds(res.judge_table.column(r.column)[0].as_py()) for r in crit["zero_inconsistencies"].rules)


def test_one_inconsistency_fails_the_month_and_none_passes_it(tmp_path, backend):
    """evidence-v1: ``zero_inconsistencies`` passes only at ``inconsistencies == 0``: a single
    content mismatch (same version, another content_hash; the counts still match) fails it."""
    rows = [o(f"x{i}") for i in range(4)]
    reader = export(tmp_path, rows)
    for name, sor_rows, expected in (("same", rows, 0), ("one", rows[:-1] + [o("x3", content_hash="e" * 64)], 1)):
        sor = backend.create(sor_rows)
        res = assess_dual_write(reader, sor, MONTH, None, tmp_path / f"evidence_{name}", AS_OF)
        assert (res.metrics["inconsistencies"], res.metrics["content_mismatch"]) == (expected, expected)
        got = {c.name: c.passed for c in _criteria(res)}
        assert got["counts_match"] is True
        assert got["zero_inconsistencies"] is (expected == 0), (name, got)


# -- monthly evidence ---------------------------------------------------------------------------------

def _criteria(res) -> list[Criterion]:
    """Plain-Python verdicts (what the GX adapter computes), to publish in tests."""
    out = []
    for spec in res.criteria_specs:
        ok = all(r.holds(v) for r in spec.rules for v in res.judge_table.column(r.column).to_pylist())
        observed = res.metrics[spec.observed[0]] if len(spec.observed) == 1 else {k: res.metrics[k] for k in spec.observed}
        out.append(Criterion(spec.name, ok, observed, spec.threshold))
    return out


def test_monthly_evidence_and_reconciliation_plan(backend, tmp_path):
    reader = export(tmp_path, MAN_ROWS)
    sor = backend.create(SOR_ROWS)
    root = tmp_path / "evidence"
    res = assess_dual_write(reader, sor, MONTH, {"sample_bps": 10_000}, root, AS_OF)
    assert res.activity == ACTIVITY and res.partition == "2026-03-01"
    assert (res.window_start, res.window_end) == (ts("2026-03-01"), ts("2026-04-01"))
    assert set(METRIC_KEYS) <= set(res.metrics)
    assert {k: res.metrics[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert res.metrics["unresolved_over_24h"] == 0
    assert res.metrics["sampled_objects"] == sum(1 for r in MAN_ROWS if not r["deleted"])
    assert res.metrics["sample_failures"] == 0
    assert res.parameters == {"sample_bps": 10_000, "resolution_hours": 24}
    assert [c.name for c in res.criteria_specs] == ["counts_match", "zero_inconsistencies", "sample_consistent", "diffs_resolved_in_24h"]
    assert res.judge_table.num_rows == 1
    verdicts = {c.name: c.passed for c in _criteria(res)}
    assert verdicts == {"counts_match": False, "zero_inconsistencies": False, "sample_consistent": True, "diffs_resolved_in_24h": True}
    assert res.inputs["snapshot_date"] == DAY.isoformat() and res.inputs["system_of_record"]["rows"] == len(SOR_ROWS)

    detail = res.tables[TABLE_INCONSISTENCIES]
    assert detail.num_rows == 9 and detail.column("first_seen").to_pylist() == [AS_OF] * 9
    plan = {r["object_id"]: r for r in res.tables[TABLE_RECONCILIATION].to_pylist()}
    assert set(plan) == set().union(*EXPECTED.values())
    assert plan["only_man"]["authoritative"] == "storage_engine" and plan["only_man"]["action"] == "insert_into_system_of_record"
    assert plan["a-b"]["authoritative"] == "system_of_record" and plan["a-b"]["statement"] is None   # SoR newer
    assert plan["del_newer"]["authoritative"] == "system_of_record"
    assert plan["only_sor"]["action"] == "rewrite_into_storage_engine"
    for k in ("a_b", "Z", "é", "del_differs"):  # equal versions: the StorageEngine's content hash wins
        assert plan[k]["authoritative"] == "storage_engine" and plan[k]["statement"].startswith("UPDATE ")
        assert plan[k]["statement"].endswith("AND version = 1;")
    assert "NOT APPLIED" in res.reconciliation_sql and "ON CONFLICT (object_id) DO NOTHING" in res.reconciliation_sql

    # the evidence store accepts the result as it is; the SQL goes beside the JSON
    store = EvidenceStore(root)
    json_path = store.publish(res, _criteria(res))
    sql_path = write_reconciliation_sql(root, res)
    assert sql_path.parent == json_path.parent and sql_path.read_text() == res.reconciliation_sql
    doc = json.loads(json_path.read_text())
    assert doc["passed"] is False and doc["metrics"]["inconsistencies"] == 9
    back = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{root}/{TABLE_INCONSISTENCIES}/*/*.parquet', hive_partitioning=true)").fetchall()
    assert back[0][0] == 9

    # applying the plan repairs exactly the diffs the StorageEngine is authoritative for
    backend.execute_script(res.reconciliation_sql)
    again = assess_dual_write(reader, sor, MONTH, None, tmp_path / "evidence2", AS_OF)
    left = {r["object_id"] for r in again.tables[TABLE_INCONSISTENCIES].to_pylist()}
    assert left == {k for k, r in plan.items() if r["authoritative"] == "system_of_record"}


HOSTILE_IDS = ["o'k", "back\\slash'", "new\nline; DROP TABLE qfs_objects; --", "sep\u2028x", "bidi\u202eid", "tab\tid"]


def test_reconciliation_sql_survives_hostile_object_ids(backend, tmp_path):
    # objects missing in the SoR (inserted by the plan) and with a content mismatch (updated)
    man = [o(k) for k in HOSTILE_IDS] + [o(k + "-upd", content_hash="d" * 64) for k in HOSTILE_IDS]
    reader = export(tmp_path, man)
    sor = backend.create([o(k + "-upd") for k in HOSTILE_IDS])
    res = assess_dual_write(reader, sor, MONTH, {"sample_bps": 0}, tmp_path / "evidence", AS_OF)
    assert res.metrics["missing_in_sor"] == len(HOSTILE_IDS) and res.metrics["content_mismatch"] == len(HOSTILE_IDS)
    lines = res.reconciliation_sql.splitlines()
    statements = [ln for ln in lines if ln.startswith(("INSERT ", "UPDATE "))]
    assert len(statements) == 2 * len(HOSTILE_IDS)  # every statement on its own line, nothing spilled
    assert all(ln.startswith(("--", "BEGIN;", "COMMIT;", "INSERT ", "UPDATE ")) for ln in lines)
    script = res.reconciliation_sql
    if backend.kind == "postgresql":  # the literals do not depend on the server's escape setting
        script = "SET standard_conforming_strings = off;\n" + script
    backend.execute_script(script)
    again = assess_dual_write(reader, sor, MONTH, {"sample_bps": 0}, tmp_path / "evidence2", AS_OF)
    assert again.metrics["inconsistencies"] == 0
    got = {r["object_id"] for r in sor.read_all().to_pylist()}
    assert got == {r["object_id"] for r in man}


def test_postgresql_and_sqlite_give_identical_evidence(pg_server, tmp_path):
    results = {}
    for kind in BACKENDS:
        b = Backend(kind, tmp_path / kind, pg_server)
        (tmp_path / kind).mkdir()
        try:
            sor = b.create(SOR_ROWS)
            reader = export(tmp_path / kind, MAN_ROWS)
            results[kind] = assess_dual_write(reader, sor, MONTH, None, tmp_path / kind / "evidence", AS_OF)
        finally:
            b.close()
    sq, pg = results["sqlite"], results["postgresql"]
    assert sq.metrics == pg.metrics
    assert sq.judge_table.equals(pg.judge_table)
    for name in (TABLE_INCONSISTENCIES, TABLE_SAMPLE_FAILURES):
        assert sq.tables[name].equals(pg.tables[name]), name
    assert sq.tables[TABLE_RECONCILIATION].drop_columns(["statement"]).equals(pg.tables[TABLE_RECONCILIATION].drop_columns(["statement"]))


def test_month_uses_its_last_snapshot_and_rejects_a_month_without_one(tmp_path, backend):
    root = tmp_path / "export"
    write(root, "objects", [o("x", updated=ts("2026-03-10", 1))], "2026-03-10")
    write(root, "shards", shards_for(o("x")), "2026-03-10")
    write(root, "objects", [o("x", updated=ts("2026-03-10", 1)), o("y", updated=ts("2026-03-20", 1))], "2026-03-20")
    write(root, "shards", shards_for(o("x")) + shards_for(o("y")), "2026-03-20")
    write(root, "objects", [o("z", updated=ts("2026-04-02", 1))], "2026-04-02")  # next month: ignored
    reader = ExportReader(root)
    sor = backend.create([o("x", updated=ts("2026-03-10", 1)), o("y", updated=ts("2026-03-20", 1))])
    res = assess_dual_write(reader, sor, MONTH, None, tmp_path / "ev", AS_OF)
    assert res.inputs["snapshot_date"] == "2026-03-20" and res.metrics["inconsistencies"] == 0
    assert res.inputs["snapshot_end"] == "2026-03-21T00:00:00Z"
    with pytest.raises(BadInput, match="no snapshot in 2026-02"):
        assess_dual_write(reader, sor, dt.date(2026, 2, 1), None, tmp_path / "ev", AS_OF)
    with pytest.raises(BadInput, match=r"table 'shards'.*missing partition snapshot_date=2026-04-02"):
        assess_dual_write(reader, sor, dt.date(2026, 4, 1), None, tmp_path / "ev", AS_OF)


# -- the ledger ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("hours_later,unresolved", [(12, 0), (30, 1)])
def test_diffs_resolved_within_or_beyond_24h_across_two_runs(backend, tmp_path, hours_later, unresolved):
    man = [o("fixed"), o("stuck"), o("ok")]
    reader = export(tmp_path, man)
    sor = backend.create([o("fixed", version=2), o("stuck", content_hash="e" * 64), o("ok")])
    root = tmp_path / "evidence"
    first = assess_daily_diff(reader, sor, DAY, root, AS_OF)
    assert first.metrics["inconsistencies"] == 2 and first.ledger.opened == 2 and first.metrics["unresolved_over_24h"] == 0
    backend.update("fixed", version=1)  # the gateway repairs one diff
    later = AS_OF + dt.timedelta(hours=hours_later)
    res = assess_dual_write(reader, sor, MONTH, None, root, later)
    # the monthly run is a later observation of the same snapshot day: "stuck" carries over
    assert res.daily.ledger.path_used == "append"
    assert (res.daily.ledger.opened, res.daily.ledger.carried, res.daily.ledger.resolved) == (0, 1, 1)
    assert res.metrics["inconsistencies"] == 1 and res.metrics["unresolved_over_24h"] == unresolved
    assert res.tables[TABLE_INCONSISTENCIES].column("first_seen").to_pylist() == [AS_OF]
    assert [c.passed for c in _criteria(res) if c.name == "diffs_resolved_in_24h"] == [unresolved == 0]

    # two different days: the second run resolves "fixed" and carries "stuck"
    root2 = tmp_path / "evidence2"
    backend.update("fixed", version=2)
    assess_daily_diff(reader, sor, DAY, root2, AS_OF)
    backend.update("fixed", version=1)
    day2 = DAY + dt.timedelta(days=1)
    write(tmp_path / "export", "objects", man, day2)
    write(tmp_path / "export", "shards", [s for r in man for s in shards_for(r)], day2)
    second = assess_daily_diff(reader, sor, day2, root2, later)
    assert (second.ledger.opened, second.ledger.carried, second.ledger.resolved) == (0, 1, 1)
    assert second.metrics["unresolved_over_24h"] == unresolved
    assert second.inconsistencies.column("first_seen").to_pylist() == [AS_OF]
    episodes, runs = DiffLedger(root2).load()
    by = {r["object_id"]: r for r in episodes.to_pylist()}
    assert by["fixed"]["resolved_at"] == later and by["fixed"]["resolved_run"] == f"daily:{day2.isoformat()}"
    assert by["stuck"]["resolved_at"] is None and by["stuck"]["first_seen"] == AS_OF
    assert [r.run_key for r in runs] == [f"daily:{DAY.isoformat()}", f"daily:{day2.isoformat()}"]


def test_rerunning_the_same_day_is_idempotent(backend, tmp_path):
    reader = export(tmp_path, MAN_ROWS)
    sor = backend.create(SOR_ROWS)
    root = tmp_path / "evidence"
    a = assess_dual_write(reader, sor, MONTH, None, root, AS_OF)
    path = DiffLedger(root).path
    first_bytes = path.read_bytes()
    b = assess_dual_write(reader, sor, MONTH, None, root, AS_OF)
    assert path.read_bytes() == first_bytes
    assert a.metrics == b.metrics and a.tables[TABLE_INCONSISTENCIES].equals(b.tables[TABLE_INCONSISTENCIES])
    assert b.daily.ledger.path_used == "replace_latest" and b.daily.ledger.opened == 9


_run_diffs = st.sets(st.tuples(st.sampled_from("pqrs"), st.sampled_from(CATEGORIES[:2])), max_size=4)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), _run_diffs), min_size=1, max_size=8))
def test_ledger_in_any_order_equals_the_ledger_in_order(ops):
    """Runs applied out of order, re-run, or replaced give the ledger of the final runs applied in order."""
    base = dt.datetime(2026, 1, 1, 6, tzinfo=UTC)
    final: dict[int, set] = {}
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        shuffled = DiffLedger(d1)
        for day, diffs in ops:
            final[day] = diffs
            shuffled.apply(f"2026-01-0{day + 1}", base + dt.timedelta(days=day), _keys(diffs))
        ordered = DiffLedger(d2)
        for day in sorted(final):
            ordered.apply(f"2026-01-0{day + 1}", base + dt.timedelta(days=day), _keys(final[day]))
        (e1, r1), (e2, r2) = shuffled.load(), ordered.load()
        assert r1 == r2
        assert e1.equals(e2)
        for day in final:
            key = f"2026-01-0{day + 1}"
            assert shuffled.unresolved_over(key, 24).equals(ordered.unresolved_over(key, 24))


def _keys(diffs) -> pa.Table:
    diffs = sorted(diffs)
    return pa.table({"object_id": [d[0] for d in diffs], "category": [d[1] for d in diffs]})


_LEDGER_WRITER = """
import datetime as dt, sys, time
from pathlib import Path
import pyarrow as pa
from qfs_assets.activities.dual_write.ledger import DiffLedger
root, worker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
ledger = DiffLedger(root)
for i in range(5):
    run = worker * 10 + i
    ledger.apply(f"daily:{run:03d}", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=run),
                 pa.table({"object_id": [f"o{worker}"], "category": ["missing_in_sor"]}))
"""


def test_concurrent_processes_never_lose_a_ledger_update(tmp_path):
    """Four processes apply five runs each at the same time: the file lock keeps all twenty."""
    import subprocess
    import sys

    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _LEDGER_WRITER, str(tmp_path / "ev"), str(w), str(go)],
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    episodes, runs = DiffLedger(tmp_path / "ev").load()
    assert len(runs) == 20
    assert sorted(r.run_key for r in runs) == sorted(f"daily:{w * 10 + i:03d}" for w in range(4) for i in range(5))


def test_ledger_first_seen_and_24h_boundary(tmp_path):
    ledger = DiffLedger(tmp_path)
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    ledger.apply("d1", t0, _keys({("p", "missing_in_sor")}))
    exactly = ledger.apply("d2", t0 + dt.timedelta(hours=24), _keys({("p", "missing_in_sor")}))
    assert exactly.unresolved_over_threshold == 0  # first seen exactly 24 h before: not more than 24 h
    later = ledger.apply("d3", t0 + dt.timedelta(hours=24, microseconds=1), _keys({("p", "missing_in_sor"), ("q", "missing_in_sor")}))
    assert later.unresolved_over_threshold == 1 and later.unresolved.column("object_id").to_pylist() == ["p"]
    gone = ledger.apply("d4", t0 + dt.timedelta(hours=48), _keys({("p", "missing_in_sor")}))
    assert (gone.opened, gone.carried, gone.resolved) == (0, 1, 1)
    back = ledger.apply("d5", t0 + dt.timedelta(hours=72), _keys({("q", "missing_in_sor")}))  # q returns: a new episode
    assert back.opened == 1 and back.unresolved_over_threshold == 0
    assert pq.read_table(ledger.path).num_rows == 3


# -- errors: one line, names what is wrong, never the password ------------------------------------------

def test_unreachable_postgresql_is_one_clear_line_without_the_password(tmp_path):
    reader = export(tmp_path, MAN_ROWS)
    url = "postgresql://postgres:s3cret@127.0.0.1:1/test"
    with pytest.raises(SorError) as err:
        assess_dual_write(reader, url, MONTH, None, tmp_path / "evidence", AS_OF)
    msg = str(err.value)
    assert "\n" not in msg and "s3cret" not in msg
    assert "postgresql+psycopg2://postgres:***@127.0.0.1:1/test" in msg and "unreachable" in msg and "qfs_objects" in msg
    assert isinstance(err.value, BadInput)
    assert not (tmp_path / "evidence").exists()  # no ledger written on bad input


def test_missing_table_and_column_are_named(backend, tmp_path):
    sor = backend.create([o("x")], columns=tuple(c for c in SOR_SCHEMA.names if c != "content_hash"))
    with pytest.raises(SorError, match=r"table 'qfs_objects', column 'content_hash': missing required column"):
        sor.check()
    if backend.kind == "postgresql":
        sor = SystemOfRecord("postgresql://postgres:s3cret@127.0.0.1:5432/test", schema=backend.schema, table="nope")
    else:
        sor = SystemOfRecord(backend.path, table="nope")
    with pytest.raises(SorError, match="table 'nope'.*table does not exist") as err:
        sor.check()
    assert "s3cret" not in str(err.value)
    with pytest.raises(SorError, match="database file does not exist"):
        SystemOfRecord(tmp_path / "absent.db").check()
    assert not (tmp_path / "absent.db").exists()


def test_nulls_duplicates_and_bad_values_in_the_sor(backend, tmp_path):
    sor = backend.create([o("x"), {**o("y"), "version": None}], pk=False)
    with pytest.raises(SorError, match=r"column 'version': null in required column \(object_id 'y'\)"):
        sor.read_all()
    sor = backend.create([o("x"), o("x")], pk=False)
    with pytest.raises(SorError, match="column 'object_id': duplicate object_id"):
        sor.read_all()
    if backend.kind == "sqlite":
        sor = backend.create([{**o("x"), "updated_at": "yesterday"}])
        with pytest.raises(SorError, match="column 'updated_at': value cannot be converted"):
            sor.read_all()
        sor = backend.create([{**o("x"), "data_shards": 70000}])
        with pytest.raises(SorError, match="column 'data_shards': value cannot be converted to int16"):
            sor.read_all()
    else:
        sor = backend.create([o("x")])
        with backend.pg.engine.begin() as c:
            c.exec_driver_sql(f"ALTER TABLE {backend.schema}.qfs_objects ALTER COLUMN version TYPE text")
        with pytest.raises(SorError, match=r"column 'version': wrong type TEXT, expected int64"):
            sor.check()


@pytest.mark.parametrize("method", ["pg_hash", "hash", "merge", "duckdb"])
def test_a_sor_error_mid_stream_stops_the_diff_with_one_line(backend, tmp_path, method):
    rows = [o(f"k{i:03d}") for i in range(50)] + [{**o("k999"), "content_hash": None}]
    sor = backend.create(rows, pk=False, batch_rows=4)
    con, view = manifest_con(tmp_path, [o("k000")])
    with pytest.raises(SorError, match=r"column 'content_hash': null in required column \(object_id 'k999'\)") as err:
        diff_snapshot(sor, con, view, END, method=method, batch_rows=4)
    assert "\n" not in str(err.value)


def test_urls_are_normalised_and_redacted(tmp_path):
    assert normalise_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg2"
    assert normalise_url("postgres://u:p@h:5/db").drivername == "postgresql+psycopg2"
    assert normalise_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert normalise_url(tmp_path / "x.db").render_as_string() == f"sqlite:///{tmp_path / 'x.db'}"
    assert normalise_url("sqlite:///rel.db").database == "rel.db"
    assert redact("postgresql://u:p%40ss@h/db") == "postgresql+psycopg2://u:***@h/db"
    assert scrub('FATAL: password "p@ss" failed p%40ss', "p@ss") == 'FATAL: password "***" failed ***'
    with pytest.raises(SorError) as err:
        normalise_url("postgresql://u:s3cret@h:notaport/db")
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("text,expected", [
    ("2026-03-31T12:00:00+00:00", ts(DAY, 12)),
    ("2026-03-31 14:00:00+02:00", ts(DAY, 12)),
    ("2026-03-31 12:00:00", ts(DAY, 12)),
    ("2026-03-31T12:00:00.000000Z", ts(DAY, 12)),
    ("2026-03-31 14:00:00+02", ts(DAY, 12)),
    (to_epoch_us(ts(DAY, 12)) // 1_000_000, ts(DAY, 12)),
    (to_epoch_us(ts(DAY, 12)) / 1e6 + 0.25, ts(DAY, 12) + dt.timedelta(milliseconds=250)),
    (to_epoch_us(ts(DAY, 12)) // 1000, ts(DAY, 12)),
    (str(to_epoch_us(ts(DAY, 12)) // 1_000_000), ts(DAY, 12)),
])
def test_sqlite_timestamps_are_parsed_robustly(text, expected):
    assert to_epoch_us(text) == to_epoch_us(expected)


# -- the hash method: the same verdicts, and the merge method decides what it cannot ----------------

@pytest.mark.parametrize("method", ["hash", "pg_hash"])
@pytest.mark.parametrize("dup", ["same_row", "other_content", "both_leftover"])
def test_hash_method_hands_duplicate_sor_keys_to_the_merge(backend, tmp_path, dup, method):
    """A SoR key seen twice is bad input whichever way the copies match the manifest."""
    first = {**o("x"), "content_hash": "y" * 64} if dup == "both_leftover" else o("x")
    second = o("x") if dup == "same_row" else {**o("x"), "content_hash": "z" * 64}
    sor = backend.create([o("a"), first, second, o("b")], pk=False, batch_rows=2)
    con, view = manifest_con(tmp_path, [o("a"), o("x"), o("b")])
    with pytest.raises(SorError, match="column 'object_id': duplicate object_id"):
        diff_snapshot(sor, con, view, END, method=method, batch_rows=2)


def test_hash_method_judges_by_itself_when_it_can(backend, tmp_path):
    sor = backend.create(SOR_ROWS, batch_rows=3)
    con, view = manifest_con(tmp_path, MAN_ROWS)
    res = diff_snapshot(sor, con, view, END, method="hash", batch_rows=3)
    assert res.method == "hash" and res.counts == EXPECTED_COUNTS  # no fallback to the merge
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '__dw_%'").fetchall()[0][0] == 0


def test_unordered_postgresql_stream_holds_every_row(pg_server, tmp_path):
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        sor = b.create(SOR_ROWS, batch_rows=4)
        ordered = sor.read_all()
        unordered = pa.Table.from_batches(list(sor.iter_batches(4, ordered=False)), schema=ordered.schema)
        assert unordered.sort_by("object_id").equals(ordered.sort_by("object_id"))
        assert sor.rows_read == len(SOR_ROWS)
    finally:
        b.close()


@pytest.mark.parametrize("method", ["hash", "pg_hash"])
@pytest.mark.parametrize("case", ["all_same", "one_matches", "sor_lacks", "none_match"])
def test_hash_method_finds_duplicate_manifest_keys_the_reader_left_to_it(tmp_path, backend, case, method):
    from qfs_assets.readers.base import BadInput, connect
    from qfs_assets.readers.storage import object_manifest

    other = {**o("x"), "content_hash": "q" * 64}
    man = {"all_same": [o("x"), o("x")], "one_matches": [o("x"), other], "sor_lacks": [o("x"), other],
           "none_match": [other, other]}[case]
    sor_rows = [o("a")] + ([] if case == "sor_lacks" else [o("x")])
    sor = backend.create(sor_rows, batch_rows=2)
    reader = export(tmp_path, [o("a"), *man])
    con = connect()
    view = object_manifest(reader, con, DAY, validate_keys=False)
    with pytest.raises(BadInput, match="duplicate key object_id='x'"):
        diff_snapshot(sor, con, view, END, method=method, batch_rows=2)


def test_postgresql_page_ranges_read_every_row_once_from_one_snapshot(pg_server, tmp_path, monkeypatch):
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        rows = [o(f"k{i:04d}") for i in range(3000)]
        sor = b.create(rows, batch_rows=500)
        monkeypatch.setattr(SystemOfRecord, "_MIN_SPLIT_BLOCKS", 1)
        parts = sor.iter_batch_parts(3)
        assert len(parts) == 3
        first = next(parts[0])  # the snapshot is taken before any later write
        with b.pg.engine.begin() as c:
            c.exec_driver_sql(f"INSERT INTO {b.schema}.qfs_objects SELECT 'zz_late', version, content_hash, size_bytes, "
                              f"data_shards, total_shards, updated_at, deleted FROM {b.schema}.qfs_objects LIMIT 1")
        got = [first] + [batch for p in parts[1:] for batch in p] + list(parts[0])
        ids = [k for batch in got for k in batch.column("object_id").to_pylist()]
        assert sorted(ids) == [r["object_id"] for r in rows] and sor.rows_read == len(rows)
        con, view = manifest_con(tmp_path, rows[:-1])
        res = diff_snapshot(sor, con, view, END, method="hash", batch_rows=500)  # a new snapshot: the late row too
        assert res.method == "hash" and res.counts["missing_in_storage"] == 2 and res.sor_rows == len(rows) + 1
    finally:
        b.close()


# -- the pg_hash method (PostgreSQL hashes, only differing rows read) -----------------------------------

def test_pg_hash_method_judges_by_itself_on_postgresql(backend, tmp_path):
    """PostgreSQL: judged by the server's row hashes (no fallback); SQLite: today's hash method."""
    sor = backend.create(SOR_ROWS, batch_rows=3)
    con, view = manifest_con(tmp_path, MAN_ROWS)
    res = diff_snapshot(sor, con, view, END, batch_rows=3)
    assert res.method == ("pg_hash" if backend.kind == "postgresql" else "hash")
    assert res.counts == EXPECTED_COUNTS and res.sor_rows == len(SOR_ROWS) and res.storage_rows == len(MAN_ROWS)
    assert sor.rows_read == len(SOR_ROWS)


def test_pg_hash_method_hands_over_where_the_server_cannot_hash(pg_server, tmp_path):
    """No unique index, a wider type, a row the reader rejects: today's method decides (and names it)."""
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        con, view = manifest_con(tmp_path, MAN_ROWS)
        sor = b.create(SOR_ROWS, pk=False, batch_rows=3)
        res = diff_snapshot(sor, con, view, END, batch_rows=3)
        assert res.method == "hash" and res.counts == EXPECTED_COUNTS
        sor = b.create(SOR_ROWS, batch_rows=3)
        with b.pg.engine.begin() as c:
            c.exec_driver_sql(f"ALTER TABLE {b.schema}.qfs_objects ALTER COLUMN data_shards TYPE integer")
        res = diff_snapshot(sor, con, view, END, batch_rows=3)
        assert res.method == "hash" and res.counts == EXPECTED_COUNTS
        sor = b.create([*SOR_ROWS, {**o("zz"), "deleted": True, "version": None}], batch_rows=3)
        with pytest.raises(SorError, match=r"column 'version': null in required column \(object_id 'zz'\)"):
            diff_snapshot(sor, con, view, END, batch_rows=3)
        sor = b.create([*SOR_ROWS, o("zz", updated=dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc))], batch_rows=3)
        with pytest.raises(SorError, match="column 'updated_at': timestamp outside"):
            diff_snapshot(sor, con, view, END, batch_rows=3)
    finally:
        b.close()


def _drifted(rng, n: int) -> tuple[list[dict], list[dict]]:
    """``n`` objects with random drift of every kind on either side (keys with non-ASCII and collation traps)."""
    import random as _r  # noqa: F401

    base = [o(f"{rng.choice(['k', 'K', 'é', 'ß', 'a-', 'a_', ''])}{i:05d}", version=rng.randint(1, 3),
              size=rng.randint(1, 10**6), deleted=rng.random() < 0.1,
              updated=rng.choice([ts(DAY, 1), END - dt.timedelta(microseconds=1), END, LATE])) for i in range(n)]
    sor, man = [], []
    for r in base:
        roll = rng.random()
        if roll < 0.03:
            sor.append(r)
        elif roll < 0.06:
            man.append(r)
        else:
            other = dict(r)
            if roll < 0.15:
                field, value = rng.choice([("version", r["version"] + 1), ("content_hash", "f" * 64),
                                           ("size_bytes", r["size_bytes"] + 1), ("data_shards", 3), ("total_shards", 5),
                                           ("deleted", not r["deleted"]), ("updated_at", LATE), ("updated_at", ts(DAY, 2))])
                other[field] = value
            sor.append(r)
            man.append(other)
    rng.shuffle(sor)
    return sor, man


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pg_hash_method_agrees_with_the_merge_on_random_drift(pg_server, tmp_path, monkeypatch, seed):
    import random

    rng = random.Random(seed)
    sor_rows, man_rows = _drifted(rng, 3000)
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        sor = b.create(sor_rows, batch_rows=700)
        con, view = manifest_con(tmp_path, man_rows)
        if seed == 2:  # the table read as page ranges, side by side
            monkeypatch.setattr(SystemOfRecord, "_MIN_SPLIT_BLOCKS", 1)
        got = diff_snapshot(sor, con, view, END, method="pg_hash", batch_rows=700)
        want = diff_snapshot(sor, con, view, END, method="merge", batch_rows=700)
        assert got.method == "pg_hash"
        assert got.counts == want.counts == oracle(sor_rows, man_rows, END)[0]
        assert got.inconsistencies.equals(want.inconsistencies)
        assert (got.sor_rows, got.storage_rows) == (len(sor_rows), len(man_rows))
    finally:
        b.close()


@pytest.mark.parametrize("ready,small_table", [("after_the_scan", False), ("after_the_first_batch", False),
                                               ("after_the_first_batch", True)])
def test_pg_hash_rows_that_arrive_before_the_kernels_are_loaded_are_kept(pg_server, tmp_path, monkeypatch, ready,
                                                                         small_table):
    """The pg_hash kernels load in a thread while the rows stream in, and the stream never waits
    for them: the batches received before they are loaded (all of them, or only the first) go into
    the table later, and the verdict is the merge's. ``small_table``: the table, sized for one row,
    grows while rows are kept and inserted (every row once)."""
    import random
    import threading

    from qfs_assets.activities.dual_write import diff as diff_mod
    from qfs_assets.readers.sor import SnapshotReader

    release = threading.Event()
    load = diff_mod._KernelLoader.run

    def slow_load(self):  # loads once the stream let it: a stream that waits for the kernels fails
        if not release.wait(60):
            self.error = TimeoutError("the stream waited for the kernels")
            return
        load(self)

    scan = SnapshotReader.scan
    seen = {"batches": 0, "before": 0}
    one_at_a_time = threading.Lock()  # (the two page ranges' threads: the count is then exact)

    def scan_then_release(self, select_list, on_batch):
        def counted(part, batch):
            with one_at_a_time:
                loading = any(t.name == "pghash-warm-up" and t.is_alive() for t in threading.enumerate())
                seen["batches"] += 1
                seen["before"] += loading
                on_batch(part, batch)
                if ready == "after_the_first_batch" and not release.is_set():
                    release.set()
                    for t in threading.enumerate():
                        if t.name == "pghash-warm-up":
                            t.join(60)

        try:
            scan(self, select_list, counted)
        finally:
            release.set()

    monkeypatch.setattr(diff_mod._KernelLoader, "run", slow_load)
    monkeypatch.setattr(SnapshotReader, "scan", scan_then_release)
    monkeypatch.setattr(SystemOfRecord, "_MIN_SPLIT_BLOCKS", 1)  # two page ranges: a batch each, at least
    if small_table:
        monkeypatch.setattr(diff_mod, "_expected_sor_rows", lambda estimate, manifest_rows: 1)
    sor_rows, man_rows = _drifted(random.Random(7), 3000)
    b = Backend("postgresql", tmp_path, pg_server)
    try:
        sor = b.create(sor_rows, batch_rows=500)
        con, view = manifest_con(tmp_path, man_rows)
        got = diff_snapshot(sor, con, view, END, method="pg_hash", batch_rows=500)
        assert got.method == "pg_hash"
        assert seen["batches"] >= 2
        # every batch before the kernels were loaded, or exactly the first one
        assert seen["before"] == (seen["batches"] if ready == "after_the_scan" else 1)
        want = diff_snapshot(sor, con, view, END, method="merge", batch_rows=500)
        assert got.counts == want.counts == oracle(sor_rows, man_rows, END)[0]
        assert got.inconsistencies.equals(want.inconsistencies)
        assert (got.sor_rows, got.storage_rows) == (len(sor_rows), len(man_rows))
    finally:
        b.close()
