"""Reading a QFS export (qfs-export-v1) with the contract's bad-input rules.

All reads go through DuckDB over the Parquet files of the partitions a run needs, so a
1B-row shard table is scanned in a stream and never materialised in Python. Every file's
schema is checked from its Parquet footer first (cheap); nulls, duplicate keys and values
outside the contract's enumerations are then checked in one aggregate pass per table.

Any violation raises :class:`BadInput`, whose message is one line naming the table, the
file (or partition folder) and the column.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from qfs_assets import storage_uri
from qfs_assets.contract.schema import TABLES, TS_MAX, TS_MIN, TS_RANGE_TEXT, TableSpec
from qfs_assets.sqltext import list_literal, quote_ident, quote_literal


class BadInput(Exception):
    """A user-data error: one line, names table, file and column. Never a traceback.

    ``kind`` says what an operator does about it: ``bad_input`` (fix the data or the settings)
    or, for subclasses, ``source_unreachable`` (a source did not answer: retry later).
    """

    kind = "bad_input"

    def __init__(self, table: str, problem: str, file: str | os.PathLike | None = None, column: str | None = None):
        self.table = table
        self.file = str(file) if file is not None else None
        self.column = column
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"table '{self.table}'"]
        if self.file:
            parts.append(f"file '{self.file}'")
        if self.column:
            parts.append(f"column '{self.column}'")
        return "bad input: " + ", ".join(parts) + f": {self.problem}"


def connect(threads: int | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection configured for the machine (threads, memory, no progress bar)."""
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    if threads or os.environ.get("QFS_DUCKDB_THREADS"):
        con.execute(f"SET threads = {int(threads or os.environ['QFS_DUCKDB_THREADS'])}")
    mem = memory_limit or os.environ.get("QFS_DUCKDB_MEMORY_LIMIT")
    if mem:
        con.execute(f"SET memory_limit = {quote_literal(mem)}")
    return con


def _type_family(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):  # e.g. Spark or pandas categoricals: judged by their values' type
        return _type_family(t.value_type)
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
}


def duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    return _DUCK_TYPES[t]


@dataclass
class TableRead:
    """What a read touched: enough for evidence `inputs` to re-perform the check."""

    table: str
    partitions: list[str]
    files: list[str]
    rows: int | None = None

    def as_evidence(self) -> dict:
        return {"table": self.table, "partitions": self.partitions, "files": len(self.files), "rows": self.rows}


def as_path(path):
    """A file location as a path object: pathlib for local files, UPath for ``s3://`` text."""
    if hasattr(path, "fs"):
        return path
    text = os.fspath(path)
    return storage_uri.upath(text) if storage_uri.is_remote(text) else Path(text)


def read_source(path, read):
    """``read(source)`` of a local file (its path) or an object in storage (an open file, closed
    afterwards): e.g. ``pq.read_schema``, ``pq.read_metadata``, or a whole-file read."""
    p = as_path(path)
    if not hasattr(p, "fs"):
        return read(p)
    with p.open("rb") as fh:
        return read(fh)


def parquet_schema(path) -> pa.Schema:
    """A Parquet file's schema from its footer (a local file or an object in storage)."""
    return read_source(path, pq.read_schema)


def parquet_metadata(path) -> pq.FileMetaData:
    """A Parquet file's footer metadata (a local file or an object in storage)."""
    return read_source(path, pq.read_metadata)


def parquet_file(path) -> pq.ParquetFile:
    """A Parquet file opened for reading in batches (a local file or an object in storage)."""
    p = as_path(path)
    return pq.ParquetFile(p.open("rb") if hasattr(p, "fs") else p)


@dataclass
class ExportReader:
    """Reads the storage export rooted at ``root``: a local folder or ``s3://bucket/prefix``
    (through fsspec; see :mod:`qfs_assets.storage_uri`). Same checks, same messages on both."""

    root: Path
    reads: list[TableRead] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.root = storage_uri.upath(self.root)
        except storage_uri.StorageURIError as exc:
            raise BadInput("*", str(exc)) from None

    # -- discovery -------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, spec: TableSpec, day: dt.date) -> Path:
        return self.table_dir(spec.name) / f"{spec.partition_column}={day.isoformat()}"

    def available_dates(self, table: str) -> list[dt.date]:
        """The partition dates present for a table, sorted; empty when the table is absent."""
        spec = TABLES[table]
        tdir = self.table_dir(table)
        if not tdir.is_dir():
            return []
        prefix = f"{spec.partition_column}="
        out = []
        for p in tdir.iterdir():
            if p.is_dir() and p.name.startswith(prefix):
                try:
                    out.append(dt.date.fromisoformat(p.name[len(prefix):]))
                except ValueError:
                    raise BadInput(table, "partition folder name is not a date", file=p) from None
        return sorted(out)

    def files(self, table: str, days: Sequence[dt.date] | None = None, *, required: bool = True,
              complete: bool = True) -> list[Path]:
        """Parquet files of the given partitions; a missing partition is bad input when required.

        Day partitions are complete (qfs-export-v1.1): for a ``date=`` table, a requested day on
        or after the table's first partition with no Parquet file is bad input naming the table
        and the first missing day, ``required`` or not; a day before the first partition is
        before the network existed and reads as empty. ``required=False`` only lets an absent
        table read as empty. ``complete=False`` (exploration tools, never a check) skips the rule.
        """
        spec = TABLES[table]
        if spec.partition_column is None:
            tdir = self.table_dir(table)
            found = sorted(tdir.rglob("*.parquet")) if tdir.is_dir() else []
            if not found and required:
                raise BadInput(table, "no Parquet files (table missing from the export)", file=tdir)
            return found
        day_table = complete and spec.partition_column == "date"
        first = None
        if day_table and days:
            available = self.available_dates(table)
            first = available[0] if available else None
        out: list[Path] = []
        missing: list[tuple[dt.date, Path]] = []
        for day in days or []:
            pdir = self.partition_dir(spec, day)
            found = sorted(pdir.glob("*.parquet")) if pdir.is_dir() else []
            if found:
                out.extend(found)
            elif first is not None and day < first:
                continue  # before the table's first partition: before the network existed
            elif required or first is not None:
                missing.append((day, pdir))
        if missing:
            day, pdir = min(missing)
            col = spec.partition_column
            problem = f"missing partition {col}={day.isoformat()}"
            if first is not None:
                problem += (f" (day partitions are complete from the table's first partition {col}={first.isoformat()}; "
                            f"first missing day {day.isoformat()})")
            raise BadInput(table, problem, file=pdir)
        return out

    # -- schema ----------------------------------------------------------------------
    def check_file_schema(self, spec: TableSpec, path: Path, columns: Sequence[str]) -> set[str]:
        """Reject an unreadable file, a missing column or a wrong type; return the columns stored
        in another type of the same family (those need a value-by-value lossless-cast check)."""
        try:
            schema = parquet_schema(path)
        except Exception as exc:  # unreadable: truncated, not Parquet, permissions
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadInput(spec.name, f"unreadable Parquet file ({reason})", file=path) from None
        names = set(schema.names)
        differs: set[str] = set()
        for name in columns:
            col = spec.column(name)
            if name not in names:
                raise BadInput(spec.name, "missing required column", file=path, column=name)
            got = schema.field(name).type
            if _type_family(got) != _type_family(col.type):
                raise BadInput(spec.name, f"wrong type {got}, expected {col.type}", file=path, column=name)
            if pa.types.is_timestamp(got) and got.tz is None:
                raise BadInput(spec.name, f"timestamp without time zone ({got}); the contract requires UTC", file=path, column=name)
            if got != col.type and not (_type_family(got) == "string"):
                differs.add(name)
        return differs

    # -- relations -------------------------------------------------------------------
    def relation(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        days: Sequence[dt.date] | None = None,
        *,
        columns: Sequence[str] | None = None,
        validate: bool = True,
        view_name: str | None = None,
        required: bool = True,
        validate_keys: bool = True,
        complete: bool = True,
    ) -> str:
        """Register a validated DuckDB view over the table's partitions; returns the view name.

        The view has exactly the requested contract columns (all by default) with contract
        types. Integer narrowing is checked value by value (lossless or bad input).
        When ``required`` is false, absent partitions are skipped (and the view may be empty).
        """
        spec = TABLES[table]
        cols = list(columns or spec.column_names)
        files = self.files(table, days, required=required, complete=complete)
        cast_check: set[str] = set()
        for f in files:
            cast_check |= self.check_file_schema(spec, f, cols)
        view = view_name or table
        if files:
            storage_uri.register_with_duckdb(con, self.root)
            file_list = list_literal(str(f) for f in files)
            select = ", ".join(f"{quote_ident(c)} AS {quote_ident(c)}" for c in cols)
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {quote_ident(view + '__raw')} AS "
                f"SELECT {select}, filename AS __file FROM read_parquet({file_list}, filename=true, union_by_name=true, hive_partitioning=false)"
            )
            casts = ", ".join(
                f"CAST({quote_ident(c)} AS {duck_type(spec.column(c).type)}) AS {quote_ident(c)}" for c in cols
            )
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {casts} FROM {quote_ident(view + '__raw')}")
        else:
            empty = ", ".join(f"CAST(NULL AS {duck_type(spec.column(c).type)}) AS {quote_ident(c)}" for c in cols)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view + '__raw')} AS SELECT {empty}, CAST(NULL AS VARCHAR) AS __file WHERE false")
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT * EXCLUDE (__file) FROM {quote_ident(view + '__raw')}")
        read = TableRead(
            table=table,
            partitions=[d.isoformat() for d in (days or [])] if spec.partition_column else [],
            files=[str(f) for f in files],
        )
        if validate:
            read.rows = self.validate(con, spec, view, cols, keys=validate_keys, cast_check=cast_check)
        self.reads.append(read)
        return view

    def validate(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, view: str, cols: Sequence[str], keys: bool = True,
                 cast_check: set[str] | None = None) -> int:
        """One aggregate pass: row count, lossless casts, nulls, enumerations; then duplicate keys.

        Lossless-cast checks run only for ``cast_check`` columns (stored in a narrower or wider
        type than the contract's); nulls are counted as ``count(*) - count(col)`` (cheapest form).
        """
        raw = quote_ident(view + "__raw")
        checks = value_checks(spec, cols, cast_check)
        aggs = ", ".join(ch.aggregate for ch in checks)
        try:
            row = con.execute(f"SELECT count(*){', ' + aggs if aggs else ''} FROM {raw}").fetchall()[0]
        except duckdb.Error as exc:
            raise BadInput(spec.name, f"unreadable data ({str(exc).splitlines()[0]})") from None
        n = int(row[0])
        for ch, bad in zip(checks, row[1:]):
            if bad:
                f, example = con.execute(f"SELECT __file, {quote_ident(ch.column)}::VARCHAR FROM {raw} WHERE {ch.predicate} LIMIT 1").fetchall()[0]
                shown = "" if example is None else f" (e.g. {example!r})"
                raise BadInput(spec.name, f"{ch.problem}: {bad} row(s){shown}", file=f, column=ch.column)
        key = [k for k in spec.key if k in cols]
        if keys and key and len(key) == len(spec.key) and n:
            kcols = ", ".join(quote_ident(k) for k in key)
            dup = con.execute(
                f"SELECT {kcols}, count(*) AS n FROM {raw} GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
            if dup:
                values = dup[0][: len(key)]
                where = " AND ".join(f"{quote_ident(k)} = ?" for k in key)
                files = con.execute(f"SELECT min(__file) FROM {raw} WHERE {where}", list(values)).fetchall()
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(key, values))
                raise BadInput(spec.name, f"duplicate key {shown} ({dup[0][len(key)]} rows)", file=files[0][0], column=",".join(key))
        return n

    def read(
        self,
        table: str,
        days: Sequence[dt.date] | None = None,
        *,
        columns: Sequence[str] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
        required: bool = True,
    ) -> pa.Table:
        """A validated Arrow table of the given partitions (for tables that fit in memory)."""
        own = con is None
        con = con or connect()
        try:
            view = self.relation(con, table, days, columns=columns, view_name=f"_read_{table}", required=required)
            tbl = con.execute(f"SELECT * FROM {quote_ident(view)}").to_arrow_table()
            return tbl.cast(pa.schema([TABLES[table].schema.field(c) for c in tbl.column_names]))
        finally:
            if own:
                con.close()


@dataclass(frozen=True)
class ValueCheck:
    """One value rule of a table's column: counted by ``aggregate`` (an SQL aggregate over the
    rows), each offending row matched by ``predicate``."""

    column: str
    problem: str
    predicate: str
    aggregate: str


def value_checks(spec: TableSpec, cols: Sequence[str], cast_check: set[str] | None = None) -> list[ValueCheck]:
    """The value rules of :meth:`ExportReader.validate` for ``cols``, in the order it reports them.

    Their aggregates can also be computed in an activity's own scan of the rows (economics does,
    over the typed view, where a value that does not cast is a query error instead); on a
    non-zero count it then calls :meth:`ExportReader.validate`, which reports the violation.
    Lossless-cast checks are made for the ``cast_check`` columns only (all integer and timestamp
    columns when None).
    """
    checks: list[ValueCheck] = []
    for c in cols:
        col = spec.column(c)
        q = quote_ident(c)

        def add(problem: str, pred: str, agg: str | None = None) -> None:
            checks.append(ValueCheck(c, problem, pred, agg or f"count(*) FILTER (WHERE {pred})"))

        if (cast_check is None or c in cast_check) and (pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)):
            add(f"value cannot be cast losslessly to {col.type}", f"{q} IS NOT NULL AND TRY_CAST({q} AS {duck_type(col.type)}) IS NULL")
        if pa.types.is_timestamp(col.type):  # an instant the evidence can hold (Python stops at 9999)
            add(f"timestamp outside {TS_RANGE_TEXT}",
                f"{q} IS NOT NULL AND NOT ({q} >= TIMESTAMPTZ '{TS_MIN.isoformat()}' AND {q} < TIMESTAMPTZ '{TS_MAX.isoformat()}')")
        if not col.nullable:
            add("null in required column", f"{q} IS NULL", f"count(*) - count({q})")
        allowed = spec.allowed_values.get(c)
        if allowed:
            values = ", ".join(quote_literal(v) for v in allowed)
            add(f"value outside {list(allowed)}", f"{q} IS NOT NULL AND {q}::VARCHAR NOT IN ({values})")
    return checks


def read_tables_evidence(reads: Iterable[TableRead]) -> list[dict]:
    return [r.as_evidence() for r in reads]
