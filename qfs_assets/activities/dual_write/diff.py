"""Diff the live system of record (``qfs_objects``) against one day's object manifest.

Rules (qfs-export-v1 "System of record" and evidence-v1 ``dual_write_verification``):

* **In flight.** ``end`` is the snapshot's end (the next day 00:00 UTC; a day is
  ``[00:00, 24:00)``, so a write stamped exactly ``end`` is not in the snapshot). An object
  whose ``updated_at`` is ``>= end`` on *either* side is in flight: it is counted once in
  ``in_flight`` (also when both sides are in flight, or the other side is absent) and is
  neither judged nor counted in ``sor_objects``/``storage_objects``.
* **Deleted rows.** A tombstone on one side and nothing on the other is consistent (the
  metric definitions count only rows *not deleted* as missing). A row deleted on both sides
  is consistent whatever its version or content fields: both sides agree the object is gone,
  and a tombstone's other fields carry no data.
* **Categories**, exclusive, in this order (the rule table, and the one implementation of
  it in Python, Arrow and SQL, is :mod:`qfs_assets.activities.dual_write.classify`): ``missing_in_storage`` (SoR row not deleted,
  absent from the manifest); ``missing_in_sor`` (manifest row not deleted, absent from the
  SoR); ``version_mismatch`` (both present, versions differ); ``content_mismatch`` (same
  version, but content_hash, size_bytes, data_shards, total_shards or deleted differ).
* ``sor_objects``/``storage_objects`` are the rows not deleted on that side, in flight
  excluded; ``inconsistencies`` is the sum of the four categories.

Method ``method="pg_hash"`` (the default; PostgreSQL 14+ only, anywhere else ``hash``): the
comparison is pushed into PostgreSQL instead of moving every row out of it. The server computes
one 64-bit hash of every row from PostgreSQL's own extended hash functions
(``hashtextextended(object_id COLLATE "C", 0)`` seeds a chain of ``hashtextextended`` /
``hashint8extended`` / ``hashint2extended`` over every field the classification compares; an in-flight row hashes its
key and "in flight" only, a tombstone its key and "deleted" only, so a pair the rules call
consistent whatever its other fields hashes alike; ``updated_at`` only decides "in flight").
It streams ``(object_id, row hash)`` -- 2 connections over page ranges of one exported snapshot,
~26 bytes a row through ADBC -- and the client puts the hashes into an open-addressing table
as they arrive. The manifest is streamed once from DuckDB; :mod:`~qfs_assets.activities.dual_write.pghash`
(numba, the same functions re-implemented bit for bit and tested against a real server) hashes
each row and takes its SoR entry from the table. A manifest row that finds its hash is
consistent and only counted; the others are kept, the SoR entries nobody took are read back by
key (the unique index) in the same snapshot, and both leftovers are classified by exactly the
merge method's code. Exactness: two different rows are taken for the same only if their 64-bit
hashes collide (~10^-19 a pair). The method runs only where that argument holds and hands over
to ``hash`` otherwise (SQLite, PostgreSQL before 14 or not UTF8, no unique index on object_id,
column types other than the contract's, any row the reader would reject -- nulls,
timestamps out of range -- so today's method names it, more than ``MAX_LEFTOVER_ROWS``
leftovers); a manifest key seen twice (a leftover sharing a key hash with a matched row, or two
leftovers one key) hands over to the merge, which names it.

Why not per-bucket checksums computed by a PostgreSQL aggregate (what was tried first): the
hashes are cheap (~0.1 us a row for the whole row hash), but PostgreSQL's ``GROUP BY`` into
65,536 buckets is not: ~0.45 us a row in the hash aggregate (cache misses), and the planner
estimates 10M groups from object_id, so it sorts and spills unless tricked into a partial hash
aggregate. Measured on the 10M table (load ~9): the parallel aggregate took 8.6 CPU s on the
server (3 processes), streaming ``(object_id, row hash)`` 3.3 CPU s, and a bucket aggregate
then needs a second scan to fetch the differing buckets' rows (4,096 buckets: a quarter of all
rows with 0.01% drift). Matching row hashes on the client needs no second scan and no bucket
count to tune.

Measured (10M rows, 0.01% drift, ``bench/`` data, ``diff_snapshot`` alone; the machine shared,
load average ~5, so wall times are meaningless and CPU seconds are compared; server CPU from
``/proc/<pid>/stat`` of the backends; both methods gave the same counts and detail table):

    method            client CPU   server CPU (all backends)   peak RSS (process)
    pg_hash           6.0-6.3 s    2.9-3.0 s                     1.2 GB
    pg_hash before    6.5-6.8 s    3.0-3.5 s                     1.2 GB   (4K-page table, byte-wise lookup3)
    hash              10.8 s       4.5 s                         2.4 GB

Of the pg_hash client time: DuckDB's Parquet scan into Arrow ~2.0 s (over its threads);
hashing and probing the manifest (``match_rows``) 1.2 s; receiving ``(object_id, row hash)``
through ADBC ~1.1 s; building the table 0.5 s; importing numba (~0.4 s) and loading the
kernels (0.3 s), in a thread started after the catalogue query (whose ADBC import it slowed by
competing for the interpreter lock), while the snapshot is taken and the rows stream in, which
never wait for it (``qfs-assure run dual_write_diff`` 8.88 → 8.25 s median, four alternating
pairs, 2026-12-06, evidence identical); the rest (~0.6 s) casts, the leftovers and page faults. The table is
advised to use huge pages (:func:`~qfs_assets.activities.dual_write.pghash.zeroed_table`;
``transparent_hugepage`` is ``madvise`` here): building it fell from 0.6-0.8 s to 0.5 s and its
probes got cheaper; the lookup3 of the client reads whole 32-bit words (10M rows hashed in
0.94 s instead of 1.33 s).

Where the server's time goes (one backend, 10M rows, CPU): the sequential scan 0.62 s, the row
hash +0.8 s, sending the result rows (COPY BINARY, which ADBC reads) +0.8 s. Measured and not
kept (2 connections unless said): streaming only the row hash costs 2.66 s on the server and
0.81 s on the client against 3.20 s and 1.41 s for ``(object_id, row hash)``, but the ~750 SoR
rows left over must then be found again: by their row hash that is a second scan computing it
(~1.4 s of server CPU, more than the key saved), and by ``ctid`` (a TID scan) the ``ctid``
column costs as much as the key (server 3.13 s, client 1.32 s: ADBC hands it over as opaque
binary). One ``array_agg`` of the hashes instead of 10M rows: server 2.18 s against 2.21 s (one
backend), so no gain there. ``hash_record_extended(ROW(...))`` instead of the chain: three times
slower. ``hashint2extended`` for the smallint shard counts (kept): ~0.06 s less server CPU
than ``hashint8extended`` with its cast. Reading the manifest in a producer thread beside the
probing: no difference measurable at load ~5 (not kept).

Method ``method="hash"``: only the rows that differ are compared field by field.
DuckDB hashes every manifest row twice, ``kh = hash(object_id)`` and ``rh = hash(<the row's
fields as text>)``, into a table of ~18 bytes a row; the SoR is streamed *without* ``ORDER BY``
(:meth:`SystemOfRecord.iter_batches` with ``ordered=False``: on PostgreSQL a plain sequential
scan, no sort, as Arrow batches through ADBC's ``COPY BINARY``), hashed the same way on
arrival, and matched against that table in one hash join on ``(kh, rh)``. A pair that matches
holds the same row on both sides: it is consistent and only counted (in flight, or live on both
sides). The rows left over on either side (the drift, a few per ten thousand) are then
classified by exactly the code of the merge method. Two different rows are taken for the same
only if both of their 64-bit hashes collide (about 10^-19 per row pair), the one way this
method can differ from a field-by-field comparison. Anything it cannot judge this way (a SoR
key seen twice, a manifest key hash seen twice) makes the diff start again with the merge
method, which names the problem exactly. Memory: the two hash tables (~0.2 GB each at 10M rows)
and the leftover rows; no sort on either side.

Method ``method="merge"``: the SoR arrives as Arrow batches in byte order of
object_id (:meth:`SystemOfRecord.iter_batches`), the manifest as Arrow batches from DuckDB
``ORDER BY object_id`` (DuckDB sorts VARCHAR by bytes). The two ordered streams are merged
a window at a time: the window ends at the smaller of the two buffered last keys, so every
key of the window is complete on both sides; the window is joined (Arrow hash join on at
most two batches) and classified with Arrow compute kernels. Both streams are checked to be
strictly increasing, so a collation surprise raises instead of producing a wrong diff.
The merge holds at most about two batches per side plus the detail rows; DuckDB's sort of
the manifest is bounded by its ``memory_limit`` and spills beyond it.

``method="duckdb"`` streams the SoR batches into DuckDB, which does a full outer join with
the manifest and classifies in SQL. It is kept as an independent second implementation (the
tests check that both agree with a plain-Python oracle on random cases) and as an option.

Measurements (``bench/bench_dual_write.py``: PostgreSQL 15 on localhost, SoR read with COPY,
0.01% drift spread over the four categories plus 0.0025% in flight; 2 cores shared with other
engineers, load average 3-5, so figures vary by +-20% between runs; wall time of
``diff_snapshot`` and peak RSS of the whole process, imports ~150 MB and the reader's
validation of the manifest included):

    rows  DuckDB memory_limit  merge (default)    duckdb join        checksum bisection
    1M    none                 3.3-3.6 s, 0.93 GB 2.5-3.3 s, 0.92 GB 7.1-9.0 s, 0.44 GB
    10M   none                 27.7-29.9 s, 3.0-3.9 GB  27.2 s, 4.9 GB   102 s (PostgreSQL 47 s)
    10M   1GB                  26.8 s, 2.2 GB     32.0 s, 1.4 GB

Before the two sorts were overlapped (DuckDB sorts the manifest in a worker thread while
PostgreSQL sorts for the COPY), the merge took 45-51 s at 10M. Within one run the merge's
memory is flat: RSS measured every 10 windows over a 10M diff stayed within 2.19-2.25 GB;
its level is DuckDB's sort (capped by ``memory_limit``, e.g. ``QFS_DUCKDB_MEMORY_LIMIT``,
beyond which it spills to disk) plus about 1 GB that did not grow during the run (COPY,
CSV and allocator buffers; not broken down further). The DuckDB join's
memory grows with the row count unless capped, and under a cap it spills the join. The two
are level on time, so the merge is the default: its client side is bounded by construction,
and neither the SoR nor the manifest has to fit in a hash table. Peer figure: reladiff,
PostgreSQL to PostgreSQL, 1M in 2.2 s and 10M in 16-21 s.

Checksum bisection (prototype in the benchmark: per md5 bucket of object_id, 65,536 buckets,
``count`` and a sum of 60-bit md5 prefixes of each row's canonical text, computed inside
PostgreSQL and DuckDB; then only the differing buckets' rows are fetched and diffed) moves
almost no rows, but each side needs full scans with an md5 per row, and with 0.01% drift
spread uniformly about 2% of the buckets differ, so the leaf fetch is another scan. It
agreed on every count and was 2-3.5x slower, so it was not kept.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.activities.dual_write.classify import (
    CATEGORIES,
    CONTENT_FIELDS,
    IN_FLIGHT,
    classify_arrow,
    classify_sql,
    live_sql,
)
from qfs_assets.contract.schema import SOR_COLUMNS
from qfs_assets.readers.base import BadInput
from qfs_assets.sqltext import quote_ident
from qfs_assets.readers.sor import SOR_SCHEMA, SystemOfRecord, check_strictly_increasing, to_epoch_us
# The end of a snapshot day; the name stays for existing callers, new code uses qfs_assets.windows.day_end.
from qfs_assets.windows import day_end as snapshot_end_of  # noqa: F401

COUNT_KEYS = ("sor_objects", "storage_objects", "in_flight", *CATEGORIES, "inconsistencies")
VALUE_FIELDS = tuple(c for c in SOR_COLUMNS if c != "object_id")
METHODS = ("pg_hash", "hash", "merge", "duckdb")
DEFAULT_BATCH_ROWS = 131_072

#: One row per inconsistent object: category, the fields that differ, both sides' values.
DETAIL_SCHEMA = pa.schema(
    [pa.field("object_id", pa.string(), nullable=False), pa.field("category", pa.string(), nullable=False),
     pa.field("differing_fields", pa.string(), nullable=False)]
    + [pa.field(f"{side}_{c}", SOR_SCHEMA.field(c).type) for c in VALUE_FIELDS for side in ("sor", "storage")]
)


@dataclass
class DiffResult:
    """The outcome of one diff: the counts of the contract and the detail rows."""

    snapshot_end: dt.datetime
    counts: dict[str, int]
    inconsistencies: pa.Table  # DETAIL_SCHEMA, sorted by object_id (bytes)
    sor_rows: int  # every SoR row read, tombstones and in-flight included
    storage_rows: int  # every manifest row read
    method: str
    seconds: float

    def keys(self) -> pa.Table:
        """``(object_id, category)`` of every inconsistency: what the ledger tracks."""
        return self.inconsistencies.select(["object_id", "category"])


# -- classification (Arrow) ---------------------------------------------------------------------

def _prefixed(table: pa.Table | pa.RecordBatch, prefix: str) -> pa.Table:
    names = ["object_id"] + [f"{prefix}_{c}" for c in table.column_names[1:]]
    tbl = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    return tbl.rename_columns(names)


def _ne(a, b) -> pa.ChunkedArray:
    return pc.fill_null(pc.not_equal(a, b), True)


class _Classifier:
    """Counts and detail rows over joined windows (columns ``object_id``, ``sor_*``, ``storage_*``)."""

    def __init__(self, snapshot_end: dt.datetime) -> None:
        self.end_us = to_epoch_us(snapshot_end)
        self.counts = {k: 0 for k in COUNT_KEYS if k != "inconsistencies"}
        self.parts: list[pa.Table] = []

    def add(self, j: pa.Table) -> None:
        got = classify_arrow(j, self.end_us)
        self.counts["in_flight"] += _true(got.hits[IN_FLIGHT])
        self.counts["sor_objects"] += _true(got.live["sor"])
        self.counts["storage_objects"] += _true(got.live["storage"])
        any_bad = None
        category = got.category
        for name in CATEGORIES:
            mask = got.hits[name]
            n = _true(mask)
            self.counts[name] += n
            if n:
                any_bad = mask if any_bad is None else pc.or_(any_bad, mask)
        if any_bad is None:
            return
        bad = j.filter(any_bad)
        category = category.filter(any_bad)
        differing = _differing_fields(bad)
        cols = {"object_id": bad["object_id"], "category": category, "differing_fields": differing}
        for c in VALUE_FIELDS:
            for side in ("sor", "storage"):
                cols[f"{side}_{c}"] = bad[f"{side}_{c}"]
        self.parts.append(pa.table(cols, schema=DETAIL_SCHEMA))

    def result(self) -> tuple[dict[str, int], pa.Table]:
        counts = dict(self.counts)
        counts["inconsistencies"] = sum(counts[c] for c in CATEGORIES)
        detail = pa.concat_tables(self.parts) if self.parts else DETAIL_SCHEMA.empty_table()
        if detail.num_rows:
            detail = detail.take(pc.sort_indices(detail["object_id"]))
        return {k: counts[k] for k in COUNT_KEYS}, detail.combine_chunks()


def _true(mask) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _differing_fields(bad: pa.Table) -> pa.ChunkedArray:
    """Comma-separated names of the fields whose values differ (present on both sides only)."""
    both = pc.and_(pc.is_valid(bad["sor_version"]), pc.is_valid(bad["storage_version"]))
    pieces = []
    for c in ("version", *CONTENT_FIELDS):
        d = pc.and_(both, _ne(bad[f"sor_{c}"], bad[f"storage_{c}"]))
        pieces.append(pc.if_else(d, pa.scalar(c + ","), pa.scalar("")))
    joined = pc.binary_join_element_wise(*pieces, "")
    return pc.utf8_rtrim(joined, characters=",")


# -- the two ordered streams -------------------------------------------------------------------

def settle(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Finish a pending ``execute()`` result (DuckDB 2 refuses ``con.sql`` while one is open)."""
    con.complete()
    return con


def open_manifest(con: duckdb.DuckDBPyConnection, view: str, batch_rows: int) -> pa.RecordBatchReader:
    """Sort the manifest by object_id (DuckDB's VARCHAR order is byte order) and open the result."""
    cols = ", ".join(quote_ident(c) for c in SOR_COLUMNS)
    return settle(con).sql(f"SELECT {cols} FROM {quote_ident(view)} ORDER BY object_id").to_arrow_reader(batch_rows)


def manifest_batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The sorted manifest as SOR_SCHEMA batches, checked to be strictly increasing."""
    last: str | None = None
    for batch in reader:
        if not batch.num_rows:
            continue
        batch = pa.RecordBatch.from_arrays([batch.column(i).cast(SOR_SCHEMA.field(i).type) for i in range(len(SOR_COLUMNS))],
                                           schema=SOR_SCHEMA)
        bad = check_strictly_increasing(batch.column(0), last)
        if bad >= 0:  # the reader rejects duplicate keys, so this is a collation problem
            raise BadInput("objects", f"manifest not in byte order of object_id near {batch.column(0)[bad].as_py()!r} "
                           "(is DuckDB's default_collation set?)", column="object_id")
        last = batch.column(0)[-1].as_py()
        yield batch


class _Side:
    """A buffered ordered stream: a pending table and the iterator behind it."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self.it = batches
        self.buf: pa.Table = SOR_SCHEMA.empty_table()
        self.done = False
        self.rows = 0

    def fill(self) -> None:
        while not self.done and self.buf.num_rows == 0:
            batch = next(self.it, None)
            if batch is None:
                self.done = True
            else:
                self.rows += batch.num_rows
                self.buf = pa.Table.from_batches([batch])

    def last_key(self) -> str | None:
        return self.buf.column(0)[-1].as_py() if self.buf.num_rows else None

    def take_through(self, boundary: str | None) -> pa.Table:
        """Remove and return the buffered rows with object_id <= boundary (None: all)."""
        if boundary is None:
            out, self.buf = self.buf, SOR_SCHEMA.empty_table()
            return out
        n = _true(pc.less_equal(self.buf.column(0), pa.scalar(boundary)))  # sorted: a prefix
        out, self.buf = self.buf.slice(0, n), self.buf.slice(n)
        return out


def _merge_diff(sor: SystemOfRecord, con: duckdb.DuckDBPyConnection, view: str, batch_rows: int,
                classifier: _Classifier) -> tuple[int, int]:
    """Merge the two ordered streams; DuckDB sorts the manifest while PostgreSQL sorts the SoR."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest-sort") as pool:
        sorting = pool.submit(open_manifest, con, view, batch_rows)

        def manifest() -> Iterator[pa.RecordBatch]:
            yield from manifest_batches(sorting.result())

        sor_batches = sor.iter_batches(batch_rows)
        try:
            return _merge(sor_batches, manifest(), classifier)
        except BaseException:
            if not sorting.done():
                con.interrupt()  # do not wait for a sort nobody will read
            raise
        finally:
            sor_batches.close()  # ends the read (and its transaction) even while an error is referenced


def _merge(sor_batches: Iterator[pa.RecordBatch], man_batches: Iterator[pa.RecordBatch], classifier: _Classifier) -> tuple[int, int]:
    left, right = _Side(sor_batches), _Side(man_batches)
    while True:
        left.fill()
        right.fill()
        if left.buf.num_rows == 0 and right.buf.num_rows == 0:
            return left.rows, right.rows
        # A window may end at a key only when the side that is still streaming has passed it.
        ends = [s.last_key() for s in (left, right) if not s.done]
        boundary = min(ends) if ends else None
        lw, rw = left.take_through(boundary), right.take_through(boundary)
        joined = _prefixed(lw, "sor").join(_prefixed(rw, "storage"), keys="object_id", join_type="full outer")
        classifier.add(joined)


# -- the DuckDB full outer join (alternative) -----------------------------------------------------

def _counted(batches: Iterator[pa.RecordBatch], seen: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """The SoR batches as they stream into DuckDB, their rows counted in ``seen["rows"]``; a
    ``BadInput`` is kept in ``seen["error"]`` so the caller can raise it as it is (DuckDB would wrap it)."""
    try:
        for b in batches:
            seen["rows"] += b.num_rows
            yield b
    except BadInput as exc:
        seen["error"] = exc
        raise


def _duckdb_diff(sor_batches: Iterator[pa.RecordBatch], con: duckdb.DuckDBPyConnection, view: str,
                 snapshot_end: dt.datetime) -> tuple[dict[str, int], pa.Table, int, int]:
    seen: dict[str, Any] = {"rows": 0, "error": None}
    stream = pa.RecordBatchReader.from_batches(SOR_SCHEMA, _counted(sor_batches, seen))
    name = "__dual_write_sor_stream"
    con.register(name, stream)
    end = f"TIMESTAMPTZ '{snapshot_end.astimezone(dt.timezone.utc).isoformat()}'"
    pairs = ", ".join(f"s.{c} AS sor_{c}, m.{c} AS storage_{c}" for c in VALUE_FIELDS)
    differing = " || ".join(
        f"CASE WHEN s_present AND m_present AND sor_{c} IS DISTINCT FROM storage_{c} THEN '{c},' ELSE '' END"
        for c in ("version", *CONTENT_FIELDS)
    )
    sql = f"""
        CREATE OR REPLACE TEMP TABLE __dual_write_classified AS
        WITH j AS (
            SELECT coalesce(s.object_id, m.object_id) AS object_id, {pairs},
                   s.object_id IS NOT NULL AS s_present, m.object_id IS NOT NULL AS m_present
            FROM {name} s FULL OUTER JOIN {quote_ident(view)} m ON s.object_id = m.object_id
        )
        SELECT *,
            {classify_sql(end, consistent="'consistent'")} AS category,
            rtrim({differing}, ',') AS differing_fields
        FROM j
    """
    try:
        con.execute(sql).fetchall()
    except duckdb.Error:
        if seen["error"] is not None:
            raise seen["error"] from None
        raise
    finally:
        con.unregister(name)
    row = con.execute(
        "SELECT count(*) FILTER (WHERE category = 'in_flight'), "
        f"count(*) FILTER (WHERE {live_sql('sor', end)}), "
        f"count(*) FILTER (WHERE {live_sql('storage', end)}), "
        + ", ".join(f"count(*) FILTER (WHERE category = '{c}')" for c in CATEGORIES)
        + ", count(*) FILTER (WHERE m_present) FROM __dual_write_classified"
    ).fetchall()[0]
    counts = dict(zip(("in_flight", "sor_objects", "storage_objects", *CATEGORIES), (int(v) for v in row[:-1])))
    counts["inconsistencies"] = sum(counts[c] for c in CATEGORIES)
    cats = ", ".join(f"'{c}'" for c in CATEGORIES)
    detail = settle(con).sql(
        f"SELECT {', '.join(DETAIL_SCHEMA.names)} FROM __dual_write_classified WHERE category IN ({cats}) ORDER BY object_id"
    ).to_arrow_table().cast(DETAIL_SCHEMA)
    con.execute("DROP TABLE __dual_write_classified").fetchall()
    return {k: counts[k] for k in COUNT_KEYS}, detail, seen["rows"], int(row[-1])


# -- the hash method -------------------------------------------------------------

_KH = "hash(object_id)"
# every field, the key through a different string than _KH hashes (so the two are independent)
_RH = "hash(object_id || '|', version, content_hash, size_bytes, data_shards, total_shards, updated_at, deleted)"


def check_manifest_keys(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """The exact duplicate-key check of the manifest (what the reader does with ``validate_keys``)."""
    from qfs_assets.contract.schema import TABLES
    from qfs_assets.readers.base import ExportReader

    raw = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [view + "__raw"]).fetchall()[0][0]
    if raw:  # a reader's view: its own check, with its message naming the file
        ExportReader(".").validate(con, TABLES["objects"], view, list(SOR_COLUMNS), keys=True)
        return
    dup = con.execute(f"SELECT object_id, count(*) FROM {quote_ident(view)} GROUP BY ALL HAVING count(*) > 1 LIMIT 1").fetchall()
    if dup:
        raise BadInput("objects", f"duplicate key object_id={dup[0][0]!r} ({dup[0][1]} rows)", column="object_id")


#: SoR streams read side by side by the hash method (PostgreSQL: page ranges of one snapshot)
SOR_STREAMS = 2


class _NeedsMerge(Exception):
    """The hash method met something only the field-by-field merge can judge exactly."""


def _hash_diff(sor: SystemOfRecord, con: duckdb.DuckDBPyConnection, view: str, snapshot_end: dt.datetime,
               batch_rows: int, classifier: _Classifier) -> tuple[dict[str, int], int, int]:
    """Counts of the consistent pairs, SoR rows, manifest rows; the leftovers go to ``classifier``."""
    end = f"TIMESTAMPTZ '{snapshot_end.astimezone(dt.timezone.utc).isoformat()}'"
    v = quote_ident(view)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __dw_m AS
        SELECT {_KH} AS kh, {_RH} AS rh, deleted AS del, updated_at >= {end} AS fly FROM {v}
    """).fetchall()
    m_rows, m_fly, m_live = (int(x or 0) for x in con.execute(
        "SELECT count(*), count(*) FILTER (WHERE fly), count(*) FILTER (WHERE NOT fly AND NOT del) FROM __dw_m"
    ).fetchall()[0])

    seen: dict[str, Any] = {"rows": 0, "error": None}
    parts = sor.iter_batch_parts(SOR_STREAMS, batch_rows)  # read side by side, one snapshot

    names = [f"__dw_sor_stream_{i}" for i in range(len(parts))]
    for name, batches in zip(names, parts):
        con.register(name, pa.RecordBatchReader.from_batches(SOR_SCHEMA, _counted(batches, seen)))
    source = " UNION ALL ".join(f"SELECT * FROM {n}" for n in names)
    cols = ", ".join(f"s.{c}" for c in SOR_COLUMNS)
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __dw_x AS
            SELECT {cols}, s.kh, m.kh AS m_kh, m.rh AS m_rh, m.del AS m_del, m.fly AS m_fly
            FROM (SELECT *, {_KH} AS kh, {_RH} AS rh FROM ({source})) s
            FULL OUTER JOIN __dw_m m ON s.kh = m.kh AND s.rh = m.rh
            WHERE s.kh IS NULL OR m.kh IS NULL
        """).fetchall()
    except duckdb.Error:
        if seen["error"] is not None:
            raise seen["error"] from None
        raise
    finally:
        for name, batches in zip(names, parts):
            con.unregister(name)
            batches.close()
    s_rows = seen["rows"]
    s_only, m_only, m_only_fly, m_only_live, dup_s = (int(x or 0) for x in con.execute(
        "SELECT count(*) FILTER (WHERE m_kh IS NULL), count(*) FILTER (WHERE m_kh IS NOT NULL), "
        "count(*) FILTER (WHERE m_fly), count(*) FILTER (WHERE m_kh IS NOT NULL AND NOT m_fly AND NOT m_del), "
        "count(*) FILTER (WHERE m_kh IS NULL) - count(DISTINCT object_id) FILTER (WHERE m_kh IS NULL) FROM __dw_x"
    ).fetchall()[0])
    # Every matched manifest row has exactly one SoR partner unless a key occurs twice on either
    # side; a leftover SoR row whose key hash belongs to a matched manifest row means the same.
    if s_rows - s_only != m_rows - m_only or dup_s:
        raise _NeedsMerge("a SoR key occurs twice")
    s_shadow, m_shadow = con.execute(
        "SELECT (SELECT count(*) FROM (SELECT kh FROM __dw_x WHERE m_kh IS NULL) s SEMI JOIN __dw_m m ON m.kh = s.kh "
        "        ANTI JOIN (SELECT m_kh FROM __dw_x WHERE m_kh IS NOT NULL) o ON o.m_kh = s.kh), "
        "       (SELECT count(*) FROM __dw_m WHERE kh IN (SELECT m_kh FROM __dw_x WHERE m_kh IS NOT NULL))"
    ).fetchall()[0]
    if s_shadow or m_shadow != m_only:
        raise _NeedsMerge("a leftover key hash also belongs to a consistent row")
    out_cols = ", ".join(quote_ident(c) for c in SOR_COLUMNS)
    sor_left = settle(con).sql(f"SELECT {out_cols} FROM __dw_x WHERE m_kh IS NULL").to_arrow_table()
    man_left = settle(con).sql(f"""
        WITH c AS (SELECT {out_cols}, {_KH} AS kh FROM {v} WHERE {_KH} IN (SELECT m_kh FROM __dw_x WHERE m_kh IS NOT NULL)),
             d AS (SELECT *, {_RH} AS rh FROM c)
        SELECT {out_cols} FROM d SEMI JOIN (SELECT m_kh, m_rh FROM __dw_x WHERE m_kh IS NOT NULL) x
            ON d.kh = x.m_kh AND d.rh = x.m_rh
    """).to_arrow_table()
    con.execute("DROP TABLE __dw_x").fetchall()
    con.execute("DROP TABLE __dw_m").fetchall()
    if man_left.num_rows != m_only or pc.count_distinct(man_left.column("object_id")).as_py() != m_only:
        raise _NeedsMerge("a manifest key occurs twice")
    sor_left, man_left = sor_left.cast(SOR_SCHEMA), man_left.cast(SOR_SCHEMA)
    classifier.add(_prefixed(sor_left, "sor").join(_prefixed(man_left, "storage"), keys="object_id", join_type="full outer"))
    live_both = m_live - m_only_live
    return {"in_flight": m_fly - m_only_fly, "sor_objects": live_both, "storage_objects": live_both}, s_rows, m_rows


# -- the pg_hash method (PostgreSQL)---------------------------------------------------------

_PG_KEY_HASH = 'hashtextextended(object_id COLLATE "C", 0)'


def _pg_row_hash(end_sql: str) -> str:
    """The PostgreSQL expression of a ``qfs_objects`` row's hash, exactly as
    :func:`~qfs_assets.activities.dual_write.pghash.row_hash` computes it (see pghash)."""
    from qfs_assets.activities.dual_write.pghash import IN_FLIGHT_TAG, TOMBSTONE_TAG

    live = f'hashtextextended(content_hash COLLATE "C", {_PG_KEY_HASH})'
    for col in ("data_shards", "total_shards"):  # smallint (row_hash_support): no cast to bigint first
        live = f"hashint2extended({col}, {live})"
    for col in ("version", "size_bytes"):
        live = f"hashint8extended({col}, {live})"
    return (f"CASE WHEN updated_at >= {end_sql} THEN hashint8extended({IN_FLIGHT_TAG}, {_PG_KEY_HASH}) "
            f"WHEN deleted THEN hashint8extended({TOMBSTONE_TAG}, {_PG_KEY_HASH}) ELSE {live} END")


class _NeedsHash(Exception):
    """The pg_hash method cannot judge this system of record (or this difference) by itself."""


#: leftovers (rows unmatched on either side) above which the pg_hash method hands over to ``hash``
MAX_LEFTOVER_ROWS = 1_000_000


def row_hash_sql(end_sql: str, nullable: set[str] = frozenset()) -> str:
    """The PostgreSQL expression of a row's hash (:func:`pghash.row_hash`), NULL for a row the
    reader would reject (a null in a column the catalogue lets be null, ``updated_at`` outside
    the contract's range)."""
    from qfs_assets.contract.schema import TS_MAX, TS_MIN

    row = _pg_row_hash(end_sql)
    bad = [f"{c} IS NULL" for c in SOR_COLUMNS if c in nullable]
    bad += [f"updated_at < TIMESTAMPTZ '{TS_MIN.isoformat()}'", f"updated_at >= TIMESTAMPTZ '{TS_MAX.isoformat()}'"]
    return f"CASE WHEN {' OR '.join(bad)} THEN NULL ELSE {row} END"


def _str_buffers(arr: pa.Array):
    import numpy as np

    if arr.type == pa.large_string():
        off_t = np.int64
    elif arr.type == pa.string():
        off_t = np.int32
    else:
        arr, off_t = arr.cast(pa.string()), np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], off_t, len(arr) + 1 + arr.offset)[arr.offset:]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _slots(rows: int) -> int:
    """Slots of a table for ``rows`` row hashes: a power of two, at most 70% full."""
    slots = 1024
    while 7 * slots < 10 * rows:
        slots *= 2
    return slots


def _expected_sor_rows(estimate: int, manifest_rows: int) -> int:
    """The SoR rows to size the table for: PostgreSQL's estimate (``reltuples``) when it is within
    twice the manifest's row count (the two sides hold the same objects but for the drift), else
    the manifest's count. A stale estimate (a table emptied since its last ``ANALYZE``) would
    otherwise reserve a table for rows that are gone: its probes touch every page of it, so the
    memory would be resident. Too small a guess only costs a rebuild (see ``insert_pending`` in ``_pg_hash_diff``)."""
    return estimate if 0 < estimate <= 2 * manifest_rows else manifest_rows


def _pghash():
    """The pg_hash kernels' module (imports numba: loaded by :class:`_KernelLoader` in a thread)."""
    from qfs_assets.activities.dual_write import pghash

    return pghash


class _KernelLoader(threading.Thread):
    """Imports numba and loads the pg_hash kernels in a thread; :meth:`module` waits for it and
    returns the module, or raises its failure as a ``RuntimeError`` (an internal error: the
    system-of-record reader, which calls back into the diff, would take an ``OSError`` raised by
    llvmlite for the source's failure)."""

    def __init__(self) -> None:
        super().__init__(name="pghash-warm-up", daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _pghash().warm_up()
        except BaseException as exc:  # noqa: BLE001 - reported by module(), on the diff's thread
            self.error = exc

    def module(self):
        self.join()
        if self.error is not None:
            raise RuntimeError(f"could not load the pg_hash kernels: {type(self.error).__name__}: {self.error}") \
                from self.error
        return _pghash()


def _pg_hash_diff(sor: SystemOfRecord, con: duckdb.DuckDBPyConnection, view: str, snapshot_end: dt.datetime,
                  batch_rows: int, classifier: _Classifier) -> tuple[dict[str, int], int, int]:
    """Counts of the consistent pairs, SoR rows, manifest rows; the leftovers go to ``classifier``."""
    import numpy as np

    # The server starts hashing as early as possible: the catalogue is asked (which imports the
    # ADBC driver, ~0.4 s of Python) before numba and the kernels start loading in a thread (~0.7 s
    # of Python: the two competed for the interpreter lock and the server started ~0.4-0.5 s later).
    # The kernels load while the snapshot is taken and the rows stream in; the batches that arrive
    # meanwhile are kept, and go into the table when the kernels are ready (never waited for).
    nullable, sor_estimate, why = sor.row_hash_support()
    if nullable is None:
        raise _NeedsHash(why)
    warm = _KernelLoader()
    warm.start()
    end_sql = f"TIMESTAMPTZ '{snapshot_end.astimezone(dt.timezone.utc).isoformat()}'"
    end_us = to_epoch_us(snapshot_end)
    expected = _expected_sor_rows(sor_estimate, int(settle(con).execute(f"SELECT count(*) FROM {quote_ident(view)}").fetchall()[0][0]))
    with sor.snapshot_reader(SOR_STREAMS) as snap:
        lock = threading.Lock()
        got: dict[str, Any] = {"table": None, "n": 0, "keys": [[] for _ in snap.ranges], "h": [[] for _ in snap.ranges],
                               "pending": []}

        def insert_pending() -> None:
            """(Under ``lock``, kernels loaded.) The rows received since the last insert into the table
            (the table is made when the first rows are there, sized from ``expected``)."""
            pghash = warm.module()
            if not got["n"]:
                return
            if got["table"] is None:
                got["table"] = pghash.zeroed_table(_slots(expected))
            if 10 * got["n"] > 7 * len(got["table"]):  # more rows than the statistics said: a bigger table
                got["table"] = pghash.zeroed_table(_slots(2 * got["n"]))
                for hs in got["h"]:
                    for x in hs:
                        pghash.insert(got["table"], x)
            else:
                for x in got["pending"]:
                    pghash.insert(got["table"], x)
            got["pending"] = []

        def on_batch(part: int, batch: pa.RecordBatch) -> None:
            hcol = batch.column(1)
            if hcol.null_count:  # a row the reader rejects: today's method names it
                raise _NeedsHash("a row the reader would reject")
            h = hcol.to_numpy()
            with lock:
                got["keys"][part].append(batch.column(0))
                got["h"][part].append(h)
                got["n"] += len(h)
                got["pending"].append(h)
                if not warm.is_alive():  # else the kernels are still loading: kept for later
                    insert_pending()

        snap.scan(f"object_id, {row_hash_sql(end_sql, nullable)} AS h", on_batch)
        with lock:
            insert_pending()
        pghash = warm.module()
        table = got["table"] if got["table"] is not None else pghash.zeroed_table(_slots(0))
        s_rows = got["n"]
        sor.rows_read = s_rows
        keys = [k for part in got["keys"] for k in part]
        sor_h = [x for part in got["h"] for x in part]
        del got

        cols = ", ".join(quote_ident(c) for c in SOR_COLUMNS)
        reader = settle(con).sql(f"SELECT {cols} FROM {quote_ident(view)}").to_arrow_reader(batch_rows)
        counts = np.zeros(3, np.int64)
        m_rows = 0
        left_parts: list[pa.RecordBatch] = []
        left_rows = 0
        bases_parts, unmatched_parts = [], []
        for batch in reader:
            n = batch.num_rows
            if not n:
                continue
            if any(batch.column(i).null_count for i in range(batch.num_columns)):
                raise _NeedsHash("nulls in the manifest")
            b = {name: batch.column(i) for i, name in enumerate(SOR_COLUMNS)}
            ko, kd = _str_buffers(b["object_id"])
            co, cd = _str_buffers(b["content_hash"])
            unmatched = np.zeros(n, np.uint8)
            bases = np.zeros(n, np.int64)
            pghash.match_rows(
                ko, kd, co, cd,
                b["version"].cast(pa.int64()).to_numpy(), b["size_bytes"].cast(pa.int64()).to_numpy(),
                b["data_shards"].cast(pa.int16()).to_numpy(), b["total_shards"].cast(pa.int16()).to_numpy(),
                b["updated_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(),
                b["deleted"].cast(pa.uint8()).to_numpy(zero_copy_only=False), end_us, table, unmatched, bases, counts)
            m_rows += n
            bases_parts.append(bases)
            unmatched_parts.append(unmatched)
            if unmatched.any():
                left_parts.append(batch.filter(pa.array(unmatched.astype(bool))))
                left_rows += left_parts[-1].num_rows
                if left_rows > MAX_LEFTOVER_ROWS:
                    raise _NeedsHash("too many rows differ")
        if bases_parts and pghash.shares_a_key(np.concatenate(bases_parts), np.concatenate(unmatched_parts)):
            raise _NeedsMerge("a manifest key occurs twice")
        del bases_parts, unmatched_parts
        left_h = pghash.untaken(table)
        del table
        if len(left_h) > MAX_LEFTOVER_ROWS:
            raise _NeedsHash("too many rows differ")
        sor_keys = []
        for k, h in zip(keys, sor_h):
            sel = np.zeros(len(h), np.uint8)
            if len(left_h) and pghash.rows_with(h, left_h, sel):
                sor_keys.append(k.filter(pa.array(sel.astype(bool))).cast(pa.string()))
        del keys, sor_h
        wanted = pa.concat_arrays(sor_keys) if sor_keys else pa.array([], pa.string())
        if len(wanted) != len(left_h):
            raise _NeedsHash("two SoR rows with one hash")
        sor_left = snap.rows_for_keys(wanted)
    if sor_left.num_rows != len(left_h):
        raise _NeedsMerge("the SoR rows that differ could not be read back one for one")
    man_left = (pa.Table.from_batches(left_parts).cast(SOR_SCHEMA) if left_parts else SOR_SCHEMA.empty_table())
    if pc.count_distinct(man_left.column("object_id")).as_py() != man_left.num_rows:
        raise _NeedsMerge("a manifest key occurs twice")
    classifier.add(_prefixed(sor_left, "sor").join(_prefixed(man_left, "storage"), keys="object_id", join_type="full outer"))
    matched, fly, live = (int(x) for x in counts)
    return {"in_flight": fly, "sor_objects": live, "storage_objects": live}, s_rows, m_rows


# -- entry point ---------------------------------------------------------------------------

def diff_snapshot(
    sor: SystemOfRecord,
    con: duckdb.DuckDBPyConnection,
    manifest_view: str,
    snapshot_end: dt.datetime,
    *,
    method: str = "pg_hash",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> DiffResult:
    """Compare every row of ``qfs_objects`` with the manifest view (a validated ``objects`` view).

    Raises :class:`~qfs_assets.readers.sor.SorError` (a ``BadInput``) for system-of-record
    problems and ``BadInput`` for manifest problems; nothing else is expected.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if snapshot_end.tzinfo is None:
        raise ValueError("snapshot_end must be timezone-aware (UTC)")
    t0 = time.perf_counter()
    sor.check()
    if method == "pg_hash":
        classifier = _Classifier(snapshot_end)
        try:
            consistent, sor_rows, man_rows = _pg_hash_diff(sor, con, manifest_view, snapshot_end, batch_rows, classifier)
        except _NeedsHash:
            method = "hash"  # SQLite, an older PostgreSQL, a table without a unique key, bad rows, wide drift
        except _NeedsMerge:
            check_manifest_keys(con, manifest_view)
            method = "merge"
        else:
            counts, detail = classifier.result()
            for k, n in consistent.items():
                counts[k] += n
    if method == "hash":
        classifier = _Classifier(snapshot_end)
        try:
            consistent, sor_rows, man_rows = _hash_diff(sor, con, manifest_view, snapshot_end, batch_rows, classifier)
        except _NeedsMerge:
            for table in ("__dw_x", "__dw_m"):
                con.execute(f"DROP TABLE IF EXISTS {table}").fetchall()
            check_manifest_keys(con, manifest_view)  # the merge needs unique manifest keys
            method = "merge"  # the field-by-field comparison decides (and names any bad input)
        else:
            counts, detail = classifier.result()
            for k, n in consistent.items():
                counts[k] += n
    if method == "merge":
        classifier = _Classifier(snapshot_end)
        sor_rows, man_rows = _merge_diff(sor, con, manifest_view, batch_rows, classifier)
        counts, detail = classifier.result()
    elif method == "duckdb":
        sor_batches = sor.iter_batches(batch_rows)
        try:
            counts, detail, sor_rows, man_rows = _duckdb_diff(sor_batches, con, manifest_view, snapshot_end)
        finally:
            sor_batches.close()
    return DiffResult(
        snapshot_end=snapshot_end,
        counts=counts,
        inconsistencies=detail,
        sor_rows=sor_rows,
        storage_rows=man_rows,
        method=method,
        seconds=time.perf_counter() - t0,
    )

