"""Benchmark of the dual-write diff against a real PostgreSQL (not a test).

    python bench/bench_dual_write.py --rows 1000000            # load (once) and diff, both methods
    python bench/bench_dual_write.py --rows 10000000 --methods merge
    python bench/bench_dual_write.py --rows 1000000 --read-paths   # COPY vs server-side cursor
    python bench/bench_dual_write.py --rows 1000000 --bisect       # checksum-bisection prototype

Data: ``rows`` objects with ids ``obj-<20 hex>`` (random order), 2% tombstones; 0.01% drift
split evenly over the four categories, plus 0.0025% rows in flight. The system of record is
loaded with COPY into ``<schema>.qfs_objects`` (schema ``bench_dual_write_<rows>``, kept
between runs, dropped with ``--drop``); the manifest is written as Parquet with the
contract's schema under ``--workdir``. Each diff runs in a fresh child process, which prints
its wall time and peak RSS (``ru_maxrss``), so the figures are those of the diff alone.

Environment: ``QFS_BENCH_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from qfs_assets.readers.sor import SystemOfRecord, normalise_url  # noqa: E402

DAY = dt.date(2024, 1, 31)
END = "2024-02-01 00:00:00+00"
DRIFT_PERIOD = 40_000  # i % 40000 in {1,2,3,4}: one of each category -> 0.01% drift in all
PG_URL = os.environ.get("QFS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def schema_name(rows: int) -> str:
    return f"bench_dual_write_{rows}"


def _base_sql(rows: int) -> str:
    return f"""
        SELECT i,
               'obj-' || substr(md5(i::VARCHAR), 1, 20) AS object_id,
               (i % 7 + 1)::BIGINT AS version,
               sha256(i::VARCHAR) AS content_hash,
               (i * 37 % 1000000 + 1)::BIGINT AS size_bytes,
               10::SMALLINT AS data_shards,
               14::SMALLINT AS total_shards,
               TIMESTAMPTZ '2023-06-01 00:00:00+00' + to_microseconds(i * 1000) AS updated_at,
               (i % 50 = 0) AS deleted
        FROM range({rows}) t(i)
    """


def generate(rows: int, workdir: Path) -> tuple[Path, Path]:
    """The manifest Parquet and the SoR CSV (drifted), written by DuckDB."""
    csv_path = workdir / f"sor_{rows}.csv"
    manifest = workdir / f"export_{rows}" / "objects" / f"snapshot_date={DAY.isoformat()}" / "part-0.parquet"
    if csv_path.exists() and manifest.exists():
        return csv_path, manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'").fetchall()
    con.execute(f"CREATE TABLE base AS {_base_sql(rows)}").fetchall()
    p = DRIFT_PERIOD
    # manifest: drop "missing in storage" rows (i%p=1); SoR: drop "missing in sor" rows (i%p=2);
    # SoR bumps the version of i%p=3, changes the hash of i%p=4; i%p=5 is written after the end.
    con.execute(f"""
        COPY (SELECT object_id, version, content_hash, size_bytes, data_shards, total_shards, updated_at, deleted
              FROM base WHERE i % {p} <> 1)
        TO '{manifest}' (FORMAT parquet, COMPRESSION zstd)
    """).fetchall()
    con.execute(f"""
        COPY (SELECT object_id,
                     CASE WHEN i % {p} IN (3, 5) THEN version + 1 ELSE version END,
                     CASE WHEN i % {p} = 4 THEN sha256('x' || i::VARCHAR) ELSE content_hash END,
                     size_bytes, data_shards, total_shards,
                     strftime(CASE WHEN i % {p} = 5 THEN TIMESTAMPTZ '{END}' + INTERVAL 1 HOUR ELSE updated_at END,
                              '%Y-%m-%d %H:%M:%S.%f+00'),
                     CASE WHEN deleted THEN 't' ELSE 'f' END
              FROM base WHERE i % {p} <> 2)
        TO '{csv_path}' (FORMAT csv, HEADER false)
    """).fetchall()
    con.close()
    return csv_path, manifest


def load_pg(rows: int, csv_path: Path, force: bool = False) -> None:
    """COPY the SoR CSV into <schema>.qfs_objects (skipped when already loaded)."""
    schema = schema_name(rows)
    eng = sa.create_engine(normalise_url(PG_URL))
    with eng.begin() as c:
        exists = c.exec_driver_sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'qfs_objects'", (schema,)
        ).scalar_one()
    if exists and not force:
        return
    t0 = time.perf_counter()
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        cur.execute(f"""CREATE TABLE {schema}.qfs_objects (
            object_id text PRIMARY KEY, version bigint NOT NULL, content_hash text NOT NULL,
            size_bytes bigint NOT NULL, data_shards smallint NOT NULL, total_shards smallint NOT NULL,
            updated_at timestamptz NOT NULL, deleted boolean NOT NULL)""")
        with open(csv_path, "rb") as fh:
            cur.copy_expert(f"COPY {schema}.qfs_objects FROM STDIN WITH (FORMAT csv)", fh, size=1 << 20)
        raw.commit()
        cur.execute(f"ANALYZE {schema}.qfs_objects")
        raw.commit()
    finally:
        raw.close()
    print(f"loaded {rows} rows into {schema}.qfs_objects with COPY in {time.perf_counter() - t0:.1f} s", flush=True)


def drop_pg(rows: int) -> None:
    eng = sa.create_engine(normalise_url(PG_URL))
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema_name(rows)} CASCADE")


# -- child-process measurements ----------------------------------------------------------------

def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_diff(rows: int, method: str, workdir: Path, memory_limit: str | None) -> dict:
    from qfs_assets.activities.dual_write.diff import diff_snapshot
    from qfs_assets.windows import day_end as snapshot_end_of
    from qfs_assets.readers.base import ExportReader, connect
    from qfs_assets.readers.storage import object_manifest

    reader = ExportReader(workdir / f"export_{rows}")
    con = connect(memory_limit=memory_limit)
    t0 = time.perf_counter()
    view = object_manifest(reader, con, DAY)
    t_validate = time.perf_counter() - t0
    sor = SystemOfRecord(PG_URL, schema=schema_name(rows))
    res = diff_snapshot(sor, con, view, snapshot_end_of(DAY), method=method)
    return {"what": f"diff/{method}", "rows": rows, "seconds_total": round(time.perf_counter() - t0, 2),
            "seconds_manifest_validation": round(t_validate, 2), "seconds_diff": round(res.seconds, 2),
            "peak_rss_mb": round(_peak_rss_mb()), "counts": res.counts}


def child_read(rows: int, method: str) -> dict:
    sor = SystemOfRecord(PG_URL, schema=schema_name(rows), method=method)
    t0 = time.perf_counter()
    n = 0
    for b in sor.iter_batches():
        n += b.num_rows
    return {"what": f"read/{method}", "rows": n, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(_peak_rss_mb())}


def child_bisect(rows: int, workdir: Path, buckets_hex: int) -> dict:
    """Prototype: checksum per md5 bucket on both sides, then fetch only the differing buckets."""
    from qfs_assets.activities.dual_write.diff import _Classifier, _prefixed
    from qfs_assets.windows import day_end as snapshot_end_of
    from qfs_assets.readers.base import ExportReader, connect
    from qfs_assets.readers.sor import SOR_SCHEMA
    from qfs_assets.readers.storage import object_manifest
    import pyarrow as pa

    reader = ExportReader(workdir / f"export_{rows}")
    con = connect()
    t0 = time.perf_counter()
    view = object_manifest(reader, con, DAY)
    end_us = int(snapshot_end_of(DAY).timestamp() * 1_000_000)
    schema = schema_name(rows)
    k = buckets_hex
    pg_row = ("concat_ws('|', object_id, version, content_hash, size_bytes, data_shards, total_shards, "
              "(extract(epoch FROM updated_at) * 1000000)::bigint, deleted::int)")
    dk_row = ("concat_ws('|', object_id, version, content_hash, size_bytes, data_shards, total_shards, "
              "epoch_us(updated_at), deleted::int)")
    pg_sql = (f"SELECT substr(md5(object_id), 1, {k}) AS b, count(*), sum(('x' || substr(md5({pg_row}), 1, 15))::bit(60)::bigint), "
              f"count(*) FILTER (WHERE NOT deleted AND (extract(epoch FROM updated_at) * 1000000)::bigint < {end_us}), "
              f"count(*) FILTER (WHERE (extract(epoch FROM updated_at) * 1000000)::bigint >= {end_us}) "
              f"FROM {schema}.qfs_objects GROUP BY 1")
    dk_sql = (f"SELECT substr(md5(object_id), 1, {k}) AS b, count(*), sum(('0x' || substr(md5({dk_row}), 1, 15))::BIGINT), "
              f"count(*) FILTER (WHERE NOT deleted AND epoch_us(updated_at) < {end_us}), "
              f"count(*) FILTER (WHERE epoch_us(updated_at) >= {end_us}) FROM \"{view}\" GROUP BY 1")
    eng = sa.create_engine(normalise_url(PG_URL))
    t1 = time.perf_counter()
    with eng.connect() as c:
        pg = {r[0]: tuple(int(x) for x in r[1:]) for r in c.exec_driver_sql(pg_sql)}
    t_pg = time.perf_counter() - t1
    t1 = time.perf_counter()
    dk = {r[0]: tuple(int(x) for x in r[1:]) for r in con.execute(dk_sql).fetchall()}
    t_dk = time.perf_counter() - t1
    differing = sorted(b for b in set(pg) | set(dk) if pg.get(b, (0, 0))[:2] != dk.get(b, (0, 0))[:2])
    counts = {"sor_objects": 0, "storage_objects": 0, "in_flight": 0}
    for b in set(pg) - set(differing):  # identical buckets: both sides hold the same rows
        counts["sor_objects"] += pg[b][2]
        counts["storage_objects"] += pg[b][2]
        counts["in_flight"] += pg[b][3]
    t1 = time.perf_counter()
    blist = ", ".join(f"'{b}'" for b in differing) or "''"
    cols = "object_id, version, content_hash, size_bytes, data_shards, total_shards, updated_at, deleted"
    with eng.connect() as c:
        res = c.exec_driver_sql(f"SELECT {cols} FROM {schema}.qfs_objects WHERE substr(md5(object_id), 1, {k}) IN ({blist})")
        pg_rows = [tuple(r) for r in res]
    sor_tbl = pa.Table.from_pylist([dict(zip(SOR_SCHEMA.names, r)) for r in pg_rows], schema=SOR_SCHEMA)
    man_tbl = con.sql(f"SELECT {cols} FROM \"{view}\" WHERE substr(md5(object_id), 1, {k}) IN ({blist})").to_arrow_table().cast(SOR_SCHEMA)
    clf = _Classifier(snapshot_end_of(DAY))
    clf.add(_prefixed(sor_tbl, "sor").join(_prefixed(man_tbl, "storage"), keys="object_id", join_type="full outer"))
    leaf_counts, detail = clf.result()
    t_leaf = time.perf_counter() - t1
    for key, v in leaf_counts.items():
        counts[key] = counts.get(key, 0) + v
    return {"what": f"bisect/{16 ** k} buckets", "rows": rows, "seconds_total": round(time.perf_counter() - t0, 2),
            "seconds_pg_checksums": round(t_pg, 2), "seconds_duckdb_checksums": round(t_dk, 2),
            "seconds_leaf_fetch_and_diff": round(t_leaf, 2), "differing_buckets": len(differing),
            "leaf_rows": len(pg_rows) + man_tbl.num_rows, "peak_rss_mb": round(_peak_rss_mb()), "counts": counts}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("QFS_BENCH_WORKDIR", "/tmp/qfs_bench_dual_write")))
    ap.add_argument("--methods", default="merge,duckdb")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the diff, e.g. 1GB")
    ap.add_argument("--read-paths", action="store_true", help="compare the PostgreSQL read paths (copy, cursor)")
    ap.add_argument("--bisect", action="store_true", help="run the checksum-bisection prototype")
    ap.add_argument("--bucket-hex", type=int, default=4, help="md5 hex digits per bisection bucket")
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the PostgreSQL schema at the end")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, _, method = args.child.partition(":")
        if kind == "diff":
            print(json.dumps(child_diff(args.rows, method, args.workdir, args.memory_limit)))
        elif kind == "read":
            print(json.dumps(child_read(args.rows, method)))
        else:
            print(json.dumps(child_bisect(args.rows, args.workdir, args.bucket_hex)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    csv_path, manifest = generate(args.rows, args.workdir)
    print(f"generated {args.rows} rows in {time.perf_counter() - t0:.1f} s "
          f"(manifest {manifest.stat().st_size / 1e6:.0f} MB Parquet)", flush=True)
    load_pg(args.rows, csv_path, force=args.reload)
    common = ["--rows", str(args.rows), "--workdir", str(args.workdir)]
    if args.memory_limit:
        common += ["--memory-limit", args.memory_limit]
    results = []
    if args.read_paths:
        for m in ("copy", "cursor"):
            results.append(run_child([*common, "--child", f"read:{m}"]))
            print(json.dumps(results[-1]), flush=True)
    for m in [m for m in args.methods.split(",") if m]:
        results.append(run_child([*common, "--child", f"diff:{m}"]))
        print(json.dumps(results[-1]), flush=True)
    if args.bisect:
        results.append(run_child([*common, "--bucket-hex", str(args.bucket_hex), "--child", "bisect"]))
        print(json.dumps(results[-1]), flush=True)
    counts = {json.dumps(r["counts"], sort_keys=True) for r in results if "counts" in r}
    if len(counts) > 1:
        print("WARNING: methods disagree on counts", flush=True)
    if args.drop:
        drop_pg(args.rows)


if __name__ == "__main__":
    main()
