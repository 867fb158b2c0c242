"""dual_write_verification (evidence-v1): the system of record against the StorageEngine's snapshot.

Pure logic, no Dagster and no Great Expectations: :func:`assess_dual_write` returns a
:class:`DualWriteResult` (an :class:`~qfs_assets.evidence.model.ActivityResult` with the
reconciliation SQL attached), whose criteria are :class:`CriterionSpec` data for the GX
adapter; :func:`assess_daily_diff` is the daily diff that keeps the diff ledger current.

Inputs of a month: the ``objects`` and ``shards`` snapshots of the month's last day that has
an ``objects`` snapshot (bad input when the month has none, or when that day's ``shards``
snapshot is missing: a manifest is only comparable with the shard map of the same day), and
the live system of record. Export inputs are validated before the system of record is read.

Metrics (all keys of the contract, plus ``objects_count_difference``, ``sor_rows`` and
``storage_rows``): see :mod:`.diff` for the comparison rules (in flight, tombstones,
categories). The sample is the contract's reproducible 1%: manifest objects not deleted with
``int(sha256(object_id)[:8], 16) % 10000 < sample_bps``, computed in DuckDB (checked against
:func:`qfs_assets.contract.hashing.in_sample` in the tests). In-flight objects stay in the
sample: it checks the snapshot against its own shard map, where the live SoR plays no part.
A sampled object fails unless its shards in the snapshot are exactly ``total_shards``, with
indices exactly ``0..total_shards-1``, on ``total_shards`` distinct nodes, and
``sum(shard_bytes) >= size_bytes``; the detail table says which of these failed.

Reconciliation (a plan, never applied): for each inconsistency the newer version is
authoritative; at equal versions (``content_mismatch``) the StorageEngine is, since its
content hash describes the bytes it actually stores. A side that has no row has no version,
so the side that has one is newer. Repairs of the system of record are guarded SQL
(``INSERT ... ON CONFLICT (object_id) DO NOTHING``, ``UPDATE ... WHERE object_id = ... AND
version = <version seen>``) so a write made since the diff is never overwritten; repairs of the
StorageEngine (``missing_in_storage``, or a SoR version newer than the manifest's) are
listed as actions with no SQL: the object must be rewritten through the gateway.
"""

from __future__ import annotations

import os
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import duckdb
import pyarrow as pa

from qfs_assets.contract.schema import TS
from qfs_assets.evidence.model import ActivityResult, CriterionSpec, Rule
from qfs_assets.evidence.atomic import write_bytes_atomic
from qfs_assets.evidence.store import EvidenceStore, iso_utc
from qfs_assets.readers.base import BadInput, ExportReader, connect, read_tables_evidence
from qfs_assets.readers.sor import SystemOfRecord
from qfs_assets.readers.storage import latest_snapshot_on_or_before, object_manifest, shard_map
from qfs_assets.activities.dual_write.diff import (
    CATEGORIES,
    DEFAULT_BATCH_ROWS,
    DETAIL_SCHEMA,
    DiffResult,
    diff_snapshot,
    settle,
)
from qfs_assets.activities.dual_write.ledger import DiffLedger, LedgerUpdate
from qfs_assets.activities.dual_write.params import DualWriteParams
from qfs_assets.sqltext import SqlTextError, comment_text, quote_ident, sql_value
from qfs_assets.windows import ONE_DAY, day_end, month_window

ACTIVITY = "dual_write_verification"
# DuckDB's sort of the manifest is the diff's largest allocation: capped so a 10M-object diff
# stays under 2 GiB (measured: 1.78 GB peak at 512MB, 2.9 GB uncapped, for ~15 % more CPU).
def diff_memory_limit() -> str:
    return os.environ.get("QFS_DUCKDB_MEMORY_LIMIT") or "512MB"
TABLE_INCONSISTENCIES = "dual_write_inconsistencies"
TABLE_SAMPLE_FAILURES = "dual_write_sample_failures"
TABLE_RECONCILIATION = "dual_write_reconciliation"

CRITERION_COUNTS_MATCH = "counts_match"
CRITERION_ZERO_INCONSISTENCIES = "zero_inconsistencies"
CRITERION_SAMPLE_CONSISTENT = "sample_consistent"
CRITERION_DIFFS_RESOLVED = "diffs_resolved_in_24h"

METRIC_KEYS = (
    "sor_objects", "storage_objects", "in_flight", *CATEGORIES, "inconsistencies",
    "sampled_objects", "sample_failures", "unresolved_over_24h", "resolved_late",
)
TABLE_RESOLVED_LATE = "dual_write_resolved_late"

STORAGE = "storage_engine"
SOR = "system_of_record"

INCONSISTENCY_SCHEMA = pa.schema(list(DETAIL_SCHEMA) + [pa.field("first_seen", TS)])
SAMPLE_FAILURE_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string()),
        pa.field("total_shards", pa.int16()),
        pa.field("size_bytes", pa.int64()),
        pa.field("shards_found", pa.int64()),
        pa.field("distinct_nodes", pa.int64()),
        pa.field("shard_bytes_sum", pa.int64()),
        pa.field("shard_indices", pa.list_(pa.int32())),
        pa.field("missing_indices", pa.list_(pa.int32())),
        pa.field("reasons", pa.string()),
    ]
)
RECONCILIATION_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("authoritative", pa.string()),
        pa.field("action", pa.string()),
        pa.field("sor_version", pa.int64()),
        pa.field("storage_version", pa.int64()),
        pa.field("statement", pa.string()),
    ]
)


@dataclass
class DailyDiff:
    """One daily diff: counts, detail (with first_seen from the ledger), and the ledger update."""

    day: dt.date
    snapshot_end: dt.datetime
    as_of: dt.datetime
    diff: DiffResult
    ledger: LedgerUpdate
    inconsistencies: pa.Table  # INCONSISTENCY_SCHEMA
    inputs: dict[str, Any]

    @property
    def metrics(self) -> dict[str, int]:
        return {**self.diff.counts, "unresolved_over_24h": self.ledger.unresolved_over_threshold}


@dataclass
class DualWriteResult(ActivityResult):
    """The monthly evidence, plus the reconciliation SQL for the caller to write beside it."""

    reconciliation_sql: str = ""
    daily: DailyDiff | None = None


# -- the daily diff -----------------------------------------------------------------------------

def _as_sor(sor: SystemOfRecord | str | Path, params: DualWriteParams) -> SystemOfRecord:
    return sor if isinstance(sor, SystemOfRecord) else SystemOfRecord(sor, batch_rows=params.batch_rows)


def _run_diff(
    reader: ExportReader,
    sor: SystemOfRecord,
    con: duckdb.DuckDBPyConnection,
    manifest_view: str,
    day: dt.date,
    as_of: dt.datetime,
    evidence_root: str | Path,
    params: DualWriteParams,
    reads_from: int,
    run_key: str,
) -> DailyDiff:
    end = day_end(day)
    result = diff_snapshot(sor, con, manifest_view, end, method=params.method, batch_rows=params.batch_rows)
    update = DiffLedger(evidence_root).apply(run_key, as_of, result.keys(), params.resolution_hours)
    detail = _with_first_seen(result.inconsistencies, update)
    inputs = {
        "snapshot_date": day.isoformat(),
        "snapshot_end": iso_utc(end),
        "as_of": iso_utc(as_of),
        "system_of_record": sor.as_evidence(),
        "tables": read_tables_evidence(reader.reads[reads_from:]),
        "ledger": update.as_evidence(),
    }
    return DailyDiff(day=day, snapshot_end=end, as_of=as_of, diff=result, ledger=update, inconsistencies=detail, inputs=inputs)


def _with_first_seen(detail: pa.Table, update: LedgerUpdate) -> pa.Table:
    """The detail rows with the ledger's first_seen of each (object_id, category)."""
    if detail.num_rows == 0:
        return INCONSISTENCY_SCHEMA.empty_table()
    joined = detail.join(update.present, keys=["object_id", "category"], join_type="left outer")
    joined = joined.sort_by("object_id").select(INCONSISTENCY_SCHEMA.names)
    return joined.cast(INCONSISTENCY_SCHEMA)


def assess_daily_diff(
    reader: ExportReader,
    sor: SystemOfRecord | str | Path,
    day: dt.date,
    evidence_root: str | Path,
    as_of: dt.datetime,
    params: DualWriteParams | Mapping[str, Any] | None = None,
) -> DailyDiff:
    """Diff ``qfs_objects`` against ``day``'s manifest and record the run (``daily:<day>``) in the ledger.

    Bad input (missing/invalid manifest, SoR unreachable or malformed) raises before the
    ledger is touched.
    """
    params = DualWriteParams.coerce(params)
    sor = _as_sor(sor, params)
    _require_aware(as_of)
    reads_from = len(reader.reads)
    con = connect(memory_limit=diff_memory_limit())
    try:
        # the hash diff checks manifest keys in its own join (and exactly, should it find a repeat)
        view = object_manifest(reader, con, day, view="dw_objects", validate_keys=params.method not in ("hash", "pg_hash"))
        return _run_diff(reader, sor, con, view, day, as_of, evidence_root, params, reads_from, daily_run_key(day))
    finally:
        con.close()


def daily_run_key(day: dt.date) -> str:
    """The ledger run of a daily diff: re-running the day replaces it."""
    return f"daily:{day.isoformat()}"


def monthly_run_key(month_start: dt.date) -> str:
    """The ledger run of a monthly verification: its own observation of the live SoR."""
    return f"monthly:{month_start.isoformat()}"


def _require_aware(as_of: dt.datetime) -> None:
    if not isinstance(as_of, dt.datetime) or as_of.tzinfo is None:
        raise ValueError("as_of must be a timezone-aware datetime")


# -- the sample ---------------------------------------------------------------------------------

def in_sample_sql(column: str, sample_bps: int) -> str:
    """DuckDB form of :func:`qfs_assets.contract.hashing.in_sample`."""
    return f"(('0x' || substr(sha256({column}), 1, 8))::BIGINT % 10000 < {int(sample_bps)})"


def check_sample(con: duckdb.DuckDBPyConnection, objects_view: str, shards_view: str, sample_bps: int) -> tuple[int, pa.Table]:
    """``(sampled_objects, failures)`` of the contract's shard-map check over the sample."""
    o, s = quote_ident(objects_view), quote_ident(shards_view)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __dw_sample AS
        SELECT object_id, total_shards, size_bytes FROM {o}
        WHERE NOT deleted AND {in_sample_sql('object_id', sample_bps)}
    """).fetchall()
    sampled = int(con.execute("SELECT count(*) FROM __dw_sample").fetchall()[0][0])
    failures = settle(con).sql(f"""
        WITH agg AS (
            SELECT sh.object_id, count(*) AS shards_found, count(DISTINCT sh.node_id) AS distinct_nodes,
                   sum(sh.shard_bytes) AS shard_bytes_sum, list(sh.shard_index ORDER BY sh.shard_index) AS shard_indices
            FROM {s} sh SEMI JOIN __dw_sample USING (object_id)
            GROUP BY sh.object_id
        ),
        j AS (
            SELECT p.object_id, p.total_shards, p.size_bytes,
                   coalesce(a.shards_found, 0) AS shards_found, coalesce(a.distinct_nodes, 0) AS distinct_nodes,
                   coalesce(a.shard_bytes_sum, 0) AS shard_bytes_sum,
                   coalesce(a.shard_indices, []::INTEGER[]) AS shard_indices
            FROM __dw_sample p LEFT JOIN agg a USING (object_id)
        ),
        r AS (
            SELECT *,
                   list_filter(range(total_shards::BIGINT), lambda i: NOT list_contains(shard_indices, i::INTEGER)) AS missing,
                   concat_ws(',',
                       CASE WHEN shards_found <> total_shards THEN 'shard_count' END,
                       CASE WHEN shard_indices <> range(total_shards::BIGINT)::INTEGER[] THEN 'shard_indices' END,
                       CASE WHEN distinct_nodes <> shards_found THEN 'shared_nodes' END,
                       CASE WHEN shard_bytes_sum < size_bytes THEN 'shard_bytes' END) AS reasons
            FROM j
        )
        SELECT object_id, total_shards, size_bytes, shards_found, distinct_nodes, shard_bytes_sum::BIGINT AS shard_bytes_sum,
               shard_indices, missing::INTEGER[] AS missing_indices, reasons
        FROM r WHERE reasons <> '' ORDER BY object_id
    """).to_arrow_table().cast(SAMPLE_FAILURE_SCHEMA)
    con.execute("DROP TABLE __dw_sample").fetchall()
    return sampled, failures


# -- reconciliation -----------------------------------------------------------------------------

_ROW_FIELDS = ("version", "content_hash", "size_bytes", "data_shards", "total_shards", "updated_at", "deleted")


def _repair_sql(d: dict, table_sql: str, dialect: str, insert: bool) -> str | None:
    """The guarded INSERT or UPDATE of one SoR repair, every value through ``sqltext.sql_value``
    (one line, nothing raw inside quotes); None when a value cannot be SQL text (a NUL)."""
    try:
        oid = sql_value(d["object_id"], dialect)
        if insert:
            cols = ", ".join(("object_id",) + _ROW_FIELDS)
            vals = ", ".join([oid] + [sql_value(d[f"storage_{f}"], dialect) for f in _ROW_FIELDS])
            return f"INSERT INTO {table_sql} ({cols}) VALUES ({vals}) ON CONFLICT (object_id) DO NOTHING;"
        sets = ", ".join(f"{f} = {sql_value(d[f'storage_{f}'], dialect)}" for f in _ROW_FIELDS)
        return f"UPDATE {table_sql} SET {sets} WHERE object_id = {oid} AND version = {int(d['sor_version'])};"
    except SqlTextError:
        return None


def plan_reconciliation(detail: pa.Table, table_sql: str, dialect: str = "postgresql") -> pa.Table:
    """One row per inconsistency: the authoritative side, the action, and the SQL (SoR repairs)
    in the system of record's ``dialect`` (SQLAlchemy's name). A repair whose values SQL text
    cannot hold (an object id with a NUL character) keeps its action and has no statement."""
    rows = []
    for d in detail.to_pylist():
        cat, sv, mv = d["category"], d["sor_version"], d["storage_version"]
        if cat == "missing_in_sor" or (cat == "version_mismatch" and mv > sv) or cat == "content_mismatch":
            insert = cat == "missing_in_sor"
            action = "insert_into_system_of_record" if insert else "update_system_of_record"
            rows.append((d["object_id"], cat, STORAGE, action, sv, mv, _repair_sql(d, table_sql, dialect, insert)))
        else:  # missing_in_storage, or the SoR holds the newer version
            rows.append((d["object_id"], cat, SOR, "rewrite_into_storage_engine", sv, mv, None))
    cols = list(zip(*rows)) if rows else [[] for _ in RECONCILIATION_SCHEMA]
    return pa.table({f.name: pa.array(c, f.type) for f, c in zip(RECONCILIATION_SCHEMA, cols)}, schema=RECONCILIATION_SCHEMA)


def reconciliation_script(plan: pa.Table, *, partition: str, snapshot_date: str, as_of: dt.datetime,
                          database: str, table_sql: str) -> str:
    """The SQL file for the system of record: guarded statements in one transaction, never applied.

    Comments carry no data: the header names the run (partition, snapshot day, as-of time: dates
    the pipeline made), the database and table (settings, escaped by ``comment_text``) and counts;
    the objects to rewrite through the StorageEngine and the repairs that cannot be written as SQL
    are rows of the ``dual_write_reconciliation`` table, never comment lines."""
    statements = [s for s in plan.column("statement").to_pylist() if s]
    actions = plan.column("action").to_pylist()
    storage = sum(a == "rewrite_into_storage_engine" for a in actions)
    unwritable = sum(a != "rewrite_into_storage_engine" and not s
                     for a, s in zip(actions, plan.column("statement").to_pylist()))
    lines = [
        "-- QFS Assure: dual-write reconciliation plan for the system of record. NOT APPLIED.",
        f"-- activity {ACTIVITY}, partition {partition}, snapshot {snapshot_date}, as of {iso_utc(as_of)}",
        f"-- database {comment_text(database)}, table {comment_text(table_sql)}",
        f"-- {len(statements)} statement(s) for the system of record (authority: the StorageEngine),",
        f"-- {storage} object(s) to rewrite through the StorageEngine (authority: the system of record): rows of",
        f"-- {TABLE_RECONCILIATION} with action = 'rewrite_into_storage_engine' (not listed here).",
        "-- Every statement is guarded (ON CONFLICT DO NOTHING, WHERE version = <version seen>), so a",
        "-- write made after the diff is never overwritten. Review, then run it in one transaction.",
    ]
    if unwritable:
        lines += [f"-- {unwritable} repair(s) of the system of record cannot be written as SQL (an object id that SQL",
                  f"-- text cannot hold, e.g. a NUL character): rows of {TABLE_RECONCILIATION} with authority",
                  "-- storage_engine and no statement. Repair them by hand."]
    if statements:
        lines += ["BEGIN;", *statements, "COMMIT;"]
    return "\n".join(lines) + "\n"


SQL_SUFFIX = ".reconciliation.sql"


def reconciliation_sql_path(evidence_root: str | Path, partition: str) -> Path:
    """``<root>/dual_write_verification/dual_write_verification_YYYYMMDD.reconciliation.sql``."""
    store = EvidenceStore(evidence_root)
    return store.sidecar_path(store.json_path(ACTIVITY, partition), SQL_SUFFIX)


def write_reconciliation_sql(evidence_root: str | Path, result: DualWriteResult) -> Path:
    """Write the plan's SQL alone (the activity publishes it with its evidence, before the verdict,
    as a sidecar of the result); returns its path."""
    path = reconciliation_sql_path(evidence_root, result.partition)
    with EvidenceStore(evidence_root).writing(path):
        write_bytes_atomic(path, result.reconciliation_sql.encode("utf-8"))
    return path


# -- the monthly assessment ---------------------------------------------------------------------

def criteria_specs(params: DualWriteParams) -> list[CriterionSpec]:
    return [
        CriterionSpec(
            CRITERION_COUNTS_MATCH, (Rule("objects_count_difference", min_value=0, max_value=0),),
            observed=("sor_objects", "storage_objects"), threshold={"sor_objects - storage_objects": 0},
            description="sor_objects == storage_objects (rows not deleted, in flight excluded)",
        ),
        CriterionSpec(
            CRITERION_ZERO_INCONSISTENCIES, (Rule("inconsistencies", max_value=0),),
            observed=("inconsistencies",), threshold=0, description="inconsistencies == 0",
        ),
        CriterionSpec(
            CRITERION_SAMPLE_CONSISTENT, (Rule("sample_failures", max_value=0),),
            observed=("sample_failures",), threshold=0,
            description=f"sample_failures == 0 over the {params.sample_bps / 100:g}% sample",
        ),
        CriterionSpec(
            CRITERION_DIFFS_RESOLVED, (Rule("unresolved_over_24h", max_value=0), Rule("resolved_late", max_value=0)),
            observed=("unresolved_over_24h", "resolved_late"), threshold={"unresolved_over_24h": 0, "resolved_late": 0},
            description=f"no diff first seen more than {params.resolution_hours:g} h before this run is still present, "
                        f"and none was resolved inside the month more than {params.resolution_hours:g} h after it was "
                        "first seen (as the daily diffs recorded)",
        ),
    ]


JUDGE_COLUMNS = ("sor_objects", "storage_objects", "objects_count_difference", "inconsistencies",
                 "sample_failures", "unresolved_over_24h", "resolved_late")


def assess_dual_write(
    reader: ExportReader,
    sor: SystemOfRecord | str | Path,
    month_start: dt.date,
    params: DualWriteParams | Mapping[str, Any] | None,
    evidence_root: str | Path,
    as_of: dt.datetime,
) -> DualWriteResult:
    """The monthly dual-write verification of the month starting ``month_start``.

    Records this run in the diff ledger as its own observation of the live system of record
    (run key ``monthly:<month_start>``: re-running the month replaces it; daily diffs are
    ``daily:<day>``), and returns the evidence. Raises ``BadInput`` (or its subclass
    ``SorError``) for bad input, before any ledger write.
    """
    params = DualWriteParams.coerce(params)
    sor = _as_sor(sor, params)
    _require_aware(as_of)
    start, end = month_window(month_start)
    last_day = (end - ONE_DAY).date()
    day = latest_snapshot_on_or_before(reader, "objects", last_day, first_day=month_start)
    if day is None:
        raise BadInput("objects", f"no snapshot in {month_start:%Y-%m}", file=reader.table_dir("objects"))
    reads_from = len(reader.reads)
    con = connect(memory_limit=diff_memory_limit())
    try:
        objects = object_manifest(reader, con, day, view="dw_objects", validate_keys=params.method not in ("hash", "pg_hash"))
        shards = shard_map(reader, con, day, view="dw_shards", columns=["object_id", "shard_index", "node_id", "shard_bytes"])
        sor.check()
        sampled, sample_failures = check_sample(con, objects, shards, params.sample_bps)
        daily = _run_diff(reader, sor, con, objects, day, as_of, evidence_root, params, reads_from, monthly_run_key(month_start))
    finally:
        con.close()

    counts = daily.diff.counts
    late = DiffLedger(evidence_root).resolved_late(month_start, last_day, params.resolution_hours)
    metrics: dict[str, Any] = {k: counts[k] for k in counts}
    metrics.update(
        sampled_objects=sampled,
        sample_failures=sample_failures.num_rows,
        unresolved_over_24h=daily.ledger.unresolved_over_threshold,
        resolved_late=late.num_rows,
        objects_count_difference=counts["sor_objects"] - counts["storage_objects"],
        sor_rows=daily.diff.sor_rows,
        storage_rows=daily.diff.storage_rows,
    )
    metrics = {k: metrics[k] for k in (*METRIC_KEYS, "objects_count_difference", "sor_rows", "storage_rows")}
    judge = pa.table({c: pa.array([metrics[c]], pa.int64()) for c in JUDGE_COLUMNS})
    plan = plan_reconciliation(daily.inconsistencies, sor.qualified_table, sor.engine.dialect.name)
    partition = month_start.isoformat()
    sql = reconciliation_script(plan, partition=partition, snapshot_date=day.isoformat(), as_of=as_of,
                                database=sor.redacted, table_sql=sor.qualified_table)
    inputs = dict(daily.inputs)
    inputs["sample"] = {"rule": "int(sha256(object_id)[:8], 16) % 10000 < sample_bps", "sample_bps": int(params.sample_bps)}
    return DualWriteResult(
        activity=ACTIVITY,
        partition=partition,
        window_start=start,
        window_end=end,
        metrics=metrics,
        inputs=inputs,
        parameters=params.as_evidence(),
        criteria_specs=criteria_specs(params),
        judge_table=judge,
        tables={
            TABLE_INCONSISTENCIES: daily.inconsistencies,
            TABLE_SAMPLE_FAILURES: sample_failures,
            TABLE_RECONCILIATION: plan,
            TABLE_RESOLVED_LATE: late,
        },
        extra={
            "reconciliation": {
                "applied": False,
                "sql_file": reconciliation_sql_path(evidence_root, partition).name,
                "sor_statements": sum(1 for s in plan.column("statement").to_pylist() if s),
                "storage_rewrites": sum(1 for a in plan.column("authoritative").to_pylist() if a == SOR),
            },
            "diff": {"method": daily.diff.method, "seconds": round(daily.diff.seconds, 3)},
        },
        reconciliation_sql=sql,
        sidecars={SQL_SUFFIX: sql},
        daily=daily,
    )
