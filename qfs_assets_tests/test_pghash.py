"""The client's copies of PostgreSQL's extended hash functions agree with a real server, bit for bit.

Runs against ``QFS_TEST_PG_URL`` (default the local test server); random and edge values: empty,
non-ASCII and long strings (every length around the 12-byte blocks), negative, extreme and
32-bit-boundary integers, zero and non-zero seeds; and the diff's whole row hash, computed by the
very SQL the ``pg_hash`` method sends, over rows with tombstones and rows in flight.
"""

from __future__ import annotations

import datetime as dt
import os
import random

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from qfs_assets.activities.dual_write import pghash
from qfs_assets.activities.dual_write.diff import row_hash_sql
from qfs_assets.contract.schema import SOR_COLUMNS

PG_URL = os.environ.get("QFS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def pg():
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=NullPool)
    try:
        with engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    yield engine
    engine.dispose()


def _strings(rng: random.Random) -> list[str]:
    alphabet = "abcXYZ09-_/.é€😀\u00ff\u0100 '\"\\"
    out = ["", "a", "é", "😀", "x" * 1000, "obj-000000000001"]
    out += ["k" * n for n in range(0, 40)]  # every tail length, several blocks
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80))) for _ in range(300)]
    return out


SEEDS = [0, 1, -1, 2**63 - 1, -(2**63), 4294967296, 4294967295, -6939563903564495251]


def _seed_u(seed: int) -> np.uint64:
    return np.uint64(seed & (2**64 - 1))


def _text_hash(s: str, seed: int) -> int:
    b = np.frombuffer(s.encode(), dtype=np.uint8) if s else np.zeros(0, np.uint8)
    return pghash.as_signed(int(pghash.hash_bytes_extended(b, 0, len(b), _seed_u(seed))))


def test_hashtextextended_matches_postgresql(pg):
    rng = random.Random(7)
    strings = _strings(rng)
    with pg.connect() as c:
        for seed in SEEDS:
            got = c.execute(sa.text('SELECT hashtextextended(s COLLATE "C", :seed) FROM unnest(CAST(:a AS text[])) '
                                    "WITH ORDINALITY AS t(s, i) ORDER BY i"), {"a": strings, "seed": seed}).scalars().all()
            assert got == [_text_hash(s, seed) for s in strings], seed


def test_offsets_inside_a_larger_buffer_do_not_change_the_hash():
    data = np.frombuffer(b"..hello world, twelve+ bytes..", dtype=np.uint8)
    alone = np.frombuffer(b"hello world, twelve+ bytes", dtype=np.uint8)
    assert pghash.hash_bytes_extended(data, 2, len(alone), np.uint64(5)) == pghash.hash_bytes_extended(alone, 0, len(alone), np.uint64(5))


def test_integer_hashes_match_postgresql(pg):
    rng = random.Random(11)
    ints = [0, 1, -1, 2, -2, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**32 - 1, 2**32, -(2**32),
            2**63 - 1, -(2**63), 32767, -32768]
    ints += [rng.randrange(-(2**63), 2**63) for _ in range(300)] + [rng.randrange(-70000, 70000) for _ in range(100)]
    with pg.connect() as c:
        for seed in SEEDS:
            got = c.execute(sa.text("SELECT hashint8extended(v, :seed) FROM unnest(CAST(:a AS bigint[])) "
                                    "WITH ORDINALITY AS t(v, i) ORDER BY i"), {"a": ints, "seed": seed}).scalars().all()
            want = [pghash.as_signed(int(pghash.hash_int8_extended(np.int64(v), _seed_u(seed)))) for v in ints]
            assert got == want, seed
            small = [v for v in ints if -(2**31) <= v < 2**31]
            got4 = c.execute(sa.text("SELECT hashint4extended(v, :seed) FROM unnest(CAST(:a AS int[])) "
                                     "WITH ORDINALITY AS t(v, i) ORDER BY i"), {"a": small, "seed": seed}).scalars().all()
            assert got4 == [pghash.as_signed(int(pghash.hash_int8_extended(np.int64(v), _seed_u(seed)))) for v in small]
            tiny = [v for v in ints if -32768 <= v < 32768]
            got2 = c.execute(sa.text("SELECT hashint2extended(v, :seed) FROM unnest(CAST(:a AS smallint[])) "
                                     "WITH ORDINALITY AS t(v, i) ORDER BY i"), {"a": tiny, "seed": seed}).scalars().all()
            assert got2 == [pghash.as_signed(int(pghash.hash_int8_extended(np.int64(v), _seed_u(seed)))) for v in tiny]


@pytest.mark.parametrize("nullable", [False, True])
def test_row_hash_matches_the_sql_the_diff_sends(pg, nullable):
    """Every row's hash (tombstones, in flight, extreme values, non-ASCII) equals the client's; a
    row the reader rejects hashes to NULL."""
    rng = random.Random(3)
    end = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(3000):
        when = end + dt.timedelta(seconds=rng.choice([-86400 * 365 * 40, -1, 0, 1, -3600, 7200]), microseconds=rng.randrange(0, 10))
        rows.append({
            "object_id": rng.choice(["", "é", "obj-"]) + "".join(rng.choice("ab😀xyz019") for _ in range(rng.randrange(0, 30))) + str(i),
            "version": rng.choice([0, 1, -5, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)]),
            "content_hash": "".join(rng.choice("0123456789abcdefé") for _ in range(rng.choice([0, 1, 11, 12, 13, 64]))),
            "size_bytes": rng.choice([0, -1, 2**62, rng.randrange(0, 2**35)]),
            "data_shards": rng.choice([-32768, 32767, 0, 4, 6]),
            "total_shards": rng.choice([-32768, 32767, 0, 6, 9]),
            "updated_at": when,
            "deleted": rng.random() < 0.2,
        })
    bad = [{**rows[0], "object_id": "bad-1", "updated_at": dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc)},
           {**rows[1], "object_id": "bad-2", "deleted": True, "version": None}]
    columns = set(SOR_COLUMNS) if nullable else set()
    with pg.begin() as c:
        c.exec_driver_sql("CREATE TEMP TABLE t (i int, object_id text COLLATE \"en-x-icu\", version bigint, content_hash text, "
                          "size_bytes bigint, data_shards smallint, total_shards smallint, updated_at timestamptz, deleted boolean)")
        c.execute(sa.text("INSERT INTO t VALUES (:i, :object_id, :version, :content_hash, :size_bytes, :data_shards, "
                          ":total_shards, :updated_at, :deleted)"), [{"i": i, **r} for i, r in enumerate(rows + bad)])
        expr = row_hash_sql(f"TIMESTAMPTZ '{end.isoformat()}'", columns)
        got = c.exec_driver_sql(f"SELECT {expr} FROM t ORDER BY i").scalars().all()
    assert got[len(rows):] == [None, None if nullable else got[len(rows) + 1]]
    tbl = pa.Table.from_pylist(rows)
    hs, bases = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    oid, ch = tbl["object_id"].combine_chunks(), tbl["content_hash"].combine_chunks()
    us = tbl["updated_at"].combine_chunks().cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    end_us = int((end - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 1_000_000
    pghash.row_hashes(
        np.frombuffer(oid.buffers()[1], np.int32, len(rows) + 1), np.frombuffer(oid.buffers()[2], np.uint8),
        np.frombuffer(ch.buffers()[1], np.int32, len(rows) + 1), np.frombuffer(ch.buffers()[2], np.uint8),
        np.array([r["version"] for r in rows], np.int64), np.array([r["size_bytes"] for r in rows], np.int64),
        np.array([r["data_shards"] for r in rows], np.int16), np.array([r["total_shards"] for r in rows], np.int16),
        us.to_numpy(), np.array([r["deleted"] for r in rows], np.uint8), end_us, hs, bases)
    assert [pghash.fold(v) for v in got[:len(rows)]] == hs.tolist()
    assert bases.tolist() == [_text_hash(r["object_id"], 0) for r in rows]


def test_zeroed_table_is_a_writable_empty_table_of_the_asked_size():
    for slots in (1024, 1 << 21):  # plain np.zeros below 8 MiB; advised anonymous memory above
        table = pghash.zeroed_table(slots)
        assert table.dtype == np.int64 and len(table) == slots and not table.any()
        h = np.array([5, -7, 5, 0], np.int64)
        pghash.insert(table, h)
        assert sorted(pghash.untaken(table).tolist()) == [-7, 1, 5, 5]  # 0 folds to 1


def test_the_table_is_sized_from_the_estimate_only_when_it_is_plausible():
    """PostgreSQL's reltuples sizes the pg_hash table when it is within twice the manifest's rows;
    a stale estimate (a table emptied since ANALYZE: 10^9 for 10^4 rows) or none (-1, never
    analysed) gives way to the manifest's count."""
    from qfs_assets.activities.dual_write.diff import _expected_sor_rows, _slots

    assert _expected_sor_rows(9_000, 10_000) == 9_000
    assert _expected_sor_rows(20_000, 10_000) == 20_000  # the boundary: twice is still plausible
    assert _expected_sor_rows(20_001, 10_000) == 10_000
    assert _expected_sor_rows(10**9, 10_000) == 10_000
    assert _expected_sor_rows(-1, 10_000) == 10_000 and _expected_sor_rows(0, 10_000) == 10_000
    assert _slots(_expected_sor_rows(10**9, 10_000)) == 16_384  # 10k rows at most 70% full


def test_a_kernel_load_failure_is_an_internal_error_not_a_source_error(monkeypatch):
    """numba failing to load (llvmlite reports some failures as OSError) must reach the run as an
    internal error, not as the system of record's failure: the loader re-raises it as RuntimeError."""
    from qfs_assets.activities.dual_write import diff, pghash

    def broken():
        raise OSError("libllvmlite.so: cannot open shared object file")

    monkeypatch.setattr(pghash, "warm_up", broken)
    loader = diff._KernelLoader()
    loader.start()
    with pytest.raises(RuntimeError, match="could not load the pg_hash kernels: OSError"):
        loader.module()
    monkeypatch.undo()
    ok = diff._KernelLoader()
    ok.start()
    assert ok.module() is pghash
