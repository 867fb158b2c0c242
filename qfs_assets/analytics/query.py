"""SQL over the evidence store: one DuckDB view per detail table and per activity's verdicts.

No Dagster here: this module is imported by the CLI (``qfs-assure query`` / ``qfs-assure tables``),
by the dashboard renderer and by analysts' notebooks.

Views registered by :func:`register_views` on a DuckDB connection:

* ``<table>`` for every detail table folder ``<root>/<table>/``: a view over
  ``read_parquet('<root>/<table>/*/*.parquet', hive_partitioning=true, union_by_name=true)``
  (its ``partition_key`` column is the Hive partition: a DATE for dated partitions, else
  VARCHAR, e.g. a node failure id). A folder holding Parquet files directly (the dual-write diff
  ledger, ``<root>/dual_write_diff_ledger/ledger.parquet``) is read without Hive partitioning.
* ``<activity>_verdicts`` for every activity folder holding JSON verdicts, and always for the five
  known activities (empty, with their contract metric columns, when no evidence exists yet): one
  row per JSON file with ``activity, partition, evidence_key, window_start, window_end, passed,
  criteria_total, criteria_failed, failed_criteria, evidence_file`` and one column per metric
  (scalars keep their JSON type; lists of scalars become lists; objects become JSON text;
  ISO 8601 strings become TIMESTAMP WITH TIME ZONE or DATE).
* ``evidence_verdicts``: the common columns of every activity's verdicts, in one view.
* ``evidence_criteria``: one row per criterion of every verdict (``observed`` and ``threshold``
  as JSON text).

Folders whose name starts with ``_`` or ``.`` (``_alerts``) are not evidence and are skipped, as
are temporary files (``.<name>.<uuid>.tmp``) of a write in progress.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import duckdb
import pyarrow as pa

from qfs_assets import registry
from qfs_assets.readers.base import connect
from qfs_assets.sqltext import quote_ident, quote_literal

TS = pa.timestamp("us", tz="UTC")
EXIT_OK, EXIT_USAGE = 0, 2

_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
    "list<string>": pa.list_(pa.string()), "timestamp": TS, "json": pa.string(),  # an object, as JSON text
}

#: The evidence-v1 contract's metric keys with their types (from the activity registry): the
#: columns a verdict view always has, so queries and the dashboard work before an activity has
#: written its first evidence.
CONTRACT_METRICS: dict[str, dict[str, pa.DataType]] = {
    a.name: {metric: _TYPES[kind] for metric, kind in a.metrics} for a in registry.with_evidence()
}
KNOWN_ACTIVITIES = tuple(CONTRACT_METRICS)

BASE_FIELDS = pa.schema([
    pa.field("activity", pa.string()),
    pa.field("partition", pa.date32()),
    pa.field("evidence_key", pa.string()),
    pa.field("window_start", TS),
    pa.field("window_end", TS),
    pa.field("passed", pa.bool_()),
    pa.field("criteria_total", pa.int64()),
    pa.field("criteria_failed", pa.int64()),
    pa.field("failed_criteria", pa.list_(pa.string())),
    pa.field("evidence_file", pa.string()),
])
CRITERIA_FIELDS = pa.schema([
    pa.field("activity", pa.string()),
    pa.field("partition", pa.date32()),
    pa.field("evidence_key", pa.string()),
    pa.field("criterion", pa.string()),
    pa.field("passed", pa.bool_()),
    pa.field("could_not_run", pa.bool_()),
    pa.field("observed", pa.string()),
    pa.field("threshold", pa.string()),
    pa.field("detail", pa.string()),
])
ALL_VERDICTS_VIEW = "evidence_verdicts"
CRITERIA_VIEW = "evidence_criteria"
VERDICTS_SUFFIX = "_verdicts"

_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT64 = (-(2**63), 2**63 - 1)


class QueryError(Exception):
    """A user-facing error (missing evidence root, bad SQL): one line, no traceback."""


# ---- discovery ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableSource:
    """One detail table folder and how to read it."""

    name: str
    path: Path
    hive: bool  # <table>/<key>=<value>/*.parquet (else <table>/*.parquet)
    files: int
    partitions: int

    @property
    def glob(self) -> str:
        return str(self.path / ("*/*.parquet" if self.hive else "*.parquet"))

    def sql(self) -> str:
        return (f"SELECT * FROM read_parquet({quote_literal(self.glob)}, hive_partitioning={'true' if self.hive else 'false'}, "
                f"union_by_name=true)")


@dataclass(frozen=True)
class Verdict:
    path: Path
    doc: dict


@dataclass
class Catalog:
    """What an evidence root holds: detail tables, JSON verdicts by activity, unreadable files."""

    root: Path
    tables: dict[str, TableSource] = field(default_factory=dict)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def activities(self) -> list[str]:
        """Known activities first (contract order), then any other activity found."""
        return list(KNOWN_ACTIVITIES) + sorted(a for a in self.verdicts if a not in CONTRACT_METRICS)


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_"))


def load_catalog(evidence_root: str | os.PathLike) -> Catalog:
    """Discover tables and verdicts under ``evidence_root`` (QueryError when it is not a folder)."""
    root = Path(evidence_root)
    if not root.is_dir():
        raise QueryError(f"evidence root {str(root)!r} does not exist or is not a folder "
                         "(run an activity, or `qfs-assure demo`, first)")
    cat = Catalog(root=root)
    for child in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        jsons = sorted(p for p in child.glob("*.json") if _visible(p) and p.is_file())
        for path in jsons:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(doc, dict) or "partition" not in doc:
                    raise ValueError("not an evidence document (no 'partition')")
            except (OSError, ValueError) as exc:
                cat.problems.append(f"{path}: unreadable evidence JSON: {exc}")
                continue
            cat.verdicts.setdefault(child.name, []).append(Verdict(path, doc))
        parts = [d for d in child.iterdir() if d.is_dir() and _visible(d)]
        hive_files = [f for d in parts for f in d.glob("*.parquet") if _visible(f)]
        flat_files = [f for f in child.glob("*.parquet") if _visible(f)]
        if hive_files:
            cat.tables[child.name] = TableSource(child.name, child, True, len(hive_files),
                                                 len({f.parent for f in hive_files}))
        elif flat_files:
            cat.tables[child.name] = TableSource(child.name, child, False, len(flat_files), 0)
    for name, verdicts in cat.verdicts.items():
        verdicts.sort(key=lambda v: (str(v.doc.get("partition")), v.path.name))
    return cat


# ---- JSON verdicts as Arrow ----------------------------------------------------------------------

def _kind(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return "json"


def _parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _json_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def _scalar_column(values: list, hint: pa.DataType | None) -> pa.Array:
    """An Arrow array for one metric over every verdict (types unified, see module docstring)."""
    kinds = {k for v in values if (k := _kind(v)) is not None}
    if not kinds:
        return pa.nulls(len(values), hint or pa.string())
    if kinds == {"bool"}:
        return pa.array(values, pa.bool_())
    if kinds <= {"int", "float"}:
        if "float" in kinds or (hint is not None and pa.types.is_floating(hint)):
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        if all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
            return pa.array(values, pa.int64())
        if all(abs(v) < 10**38 for v in values if v is not None):
            return pa.array([None if v is None else decimal.Decimal(v) for v in values], pa.decimal128(38, 0))
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if kinds == {"str"}:
        strs = [v for v in values if v is not None]
        if all(_TS_RE.fullmatch(s) for s in strs):
            try:
                return pa.array([None if v is None else _parse_ts(v) for v in values], TS)
            except ValueError:
                pass
        if all(_DATE_RE.fullmatch(s) for s in strs):
            try:
                return pa.array([None if v is None else dt.date.fromisoformat(v) for v in values], pa.date32())
            except ValueError:
                pass
        return pa.array(values, pa.string())
    if kinds == {"list"}:
        items = [x for v in values if v is not None for x in v]
        item_kinds = {k for x in items if (k := _kind(x)) is not None}
        value_hint = hint.value_type if hint is not None and pa.types.is_list(hint) else None
        item_type = None
        if not item_kinds:
            item_type = value_hint or pa.string()
        elif item_kinds == {"bool"}:
            item_type = pa.bool_()
        elif item_kinds == {"int"} and all(_INT64[0] <= x <= _INT64[1] for x in items if x is not None):
            item_type = pa.int64()
        elif item_kinds <= {"int", "float"}:
            item_type = pa.float64()
            values = [None if v is None else [None if x is None else float(x) for x in v] for v in values]
        elif item_kinds == {"str"}:
            item_type = pa.string()
        if item_type is not None:
            return pa.array(values, pa.list_(item_type))
    return pa.array([_json_text(v) for v in values], pa.string())


def _evidence_key(activity: str, partition: str, path: Path) -> str:
    """The detail tables' ``partition_key`` of a verdict: the partition, or the file's own key."""
    stem = path.stem
    return partition if stem == f"{activity}_{partition.replace('-', '')}" else stem


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _ts(value: Any) -> dt.datetime | None:
    try:
        return _parse_ts(str(value)) if value else None
    except ValueError:
        return None


def _base_row(activity: str, v: Verdict, root: Path) -> dict:
    doc = v.doc
    criteria = [c for c in doc.get("criteria") or [] if isinstance(c, dict)]
    failed = [str(c.get("name")) for c in criteria if not c.get("passed")]
    window = doc.get("window") or {}
    partition = str(doc.get("partition"))
    try:
        rel = str(v.path.relative_to(root))
    except ValueError:
        rel = str(v.path)
    return {
        "activity": str(doc.get("activity") or activity),
        "partition": _date(partition),
        "evidence_key": _evidence_key(activity, partition, v.path),
        "window_start": _ts(window.get("start")),
        "window_end": _ts(window.get("end")),
        "passed": bool(doc.get("passed")),
        "criteria_total": len(criteria),
        "criteria_failed": len(failed),
        "failed_criteria": failed,
        "evidence_file": rel,
    }


def verdict_table(activity: str, verdicts: list[Verdict], root: Path) -> pa.Table:
    """One row per JSON verdict: the common columns, then one column per metric."""
    rows = [_base_row(activity, v, root) for v in verdicts]
    columns = {f.name: pa.array([r[f.name] for r in rows], f.type) for f in BASE_FIELDS}
    hints = CONTRACT_METRICS.get(activity, {})
    keys: list[str] = list(hints)
    for v in verdicts:
        for k in (v.doc.get("metrics") or {}):
            if k not in keys:
                keys.append(k)
    for k in keys:
        values = [(v.doc.get("metrics") or {}).get(k) for v in verdicts]
        name = k if k not in columns else f"metric_{k}"
        columns[name] = _scalar_column(values, hints.get(k))
    return pa.table(columns)


def criteria_table(cat: Catalog) -> pa.Table:
    rows = []
    for activity, verdicts in cat.verdicts.items():
        for v in verdicts:
            base = _base_row(activity, v, cat.root)
            for c in v.doc.get("criteria") or []:
                if not isinstance(c, dict):
                    continue
                rows.append({
                    "activity": base["activity"], "partition": base["partition"], "evidence_key": base["evidence_key"],
                    "criterion": str(c.get("name")), "passed": bool(c.get("passed")),
                    "could_not_run": bool(c.get("could_not_run", False)),
                    "observed": _json_text(c.get("observed")), "threshold": _json_text(c.get("threshold")),
                    "detail": c.get("detail"),
                })
    return pa.Table.from_pylist(rows, schema=CRITERIA_FIELDS)


def all_verdicts_table(cat: Catalog) -> pa.Table:
    rows = [_base_row(a, v, cat.root) for a, vs in cat.verdicts.items() for v in vs]
    rows.sort(key=lambda r: (r["activity"], r["partition"] or dt.date.min, r["evidence_key"]))
    return pa.Table.from_pylist(rows, schema=BASE_FIELDS)


# ---- views -----------------------------------------------------------------------------------------

def register_catalog(con: duckdb.DuckDBPyConnection, cat: Catalog) -> dict[str, list[str]]:
    """Register the views of an already loaded catalog; return ``{view: [column, ...]}``."""
    views: dict[str, list[str]] = {}
    arrow: dict[str, pa.Table] = {}
    for activity in cat.activities():
        arrow[activity + VERDICTS_SUFFIX] = verdict_table(activity, cat.verdicts.get(activity, []), cat.root)
    arrow[ALL_VERDICTS_VIEW] = all_verdicts_table(cat)
    arrow[CRITERIA_VIEW] = criteria_table(cat)
    for name, tbl in arrow.items():
        con.register(name, tbl)
        views[name] = list(tbl.column_names)
    for name, src in cat.tables.items():
        if name in views:
            cat.problems.append(f"{src.path}: table name {name!r} clashes with a verdict view; not registered")
            continue
        try:
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {src.sql()}").fetchall()
            cols = con.execute(f"DESCRIBE {quote_ident(name)}").fetchall()
        except duckdb.Error as exc:
            cat.problems.append(f"{src.path}: unreadable detail table: {one_line(exc)}")
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(name)}").fetchall()
            continue
        views[name] = [c[0] for c in cols]
    return views


def register_views(con: duckdb.DuckDBPyConnection, evidence_root: str | os.PathLike) -> dict[str, list[str]]:
    """Register one view per detail table and per activity's verdicts; return ``{view: [column, ...]}``.

    Raises :class:`QueryError` when ``evidence_root`` is not a folder.
    """
    return register_catalog(con, load_catalog(evidence_root))


def open_evidence(evidence_root: str | os.PathLike) -> tuple[duckdb.DuckDBPyConnection, dict[str, list[str]], Catalog]:
    """A fresh connection (UTC, no progress bar) with every view registered; the caller closes it."""
    cat = load_catalog(evidence_root)
    con = connect()
    try:
        views = register_catalog(con, cat)
    except BaseException:
        con.close()
        raise
    return con, views, cat


def one_line(exc: BaseException) -> str:
    """DuckDB's multi-line error text as one line (the first line, plus a 'Did you mean' hint)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    hint = next((ln for ln in lines[1:] if ln.lower().startswith("did you mean")), None)
    return lines[0] + (f" ({hint})" if hint else "")


def run_query(evidence_root: str | os.PathLike, sql: str) -> pa.Table:
    """Run ``sql`` over the evidence views and return the result as an Arrow table.

    Raises :class:`QueryError` (one line) for a missing evidence root or a SQL error.
    """
    if not sql or not sql.strip():
        raise QueryError("empty SQL query")
    con, _, _ = open_evidence(evidence_root)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {one_line(exc)}") from None
    finally:
        con.close()


# ---- terminal output ----------------------------------------------------------------------------

def _cell(v: Any, max_width: int) -> str:
    if v is None:
        s = "NULL"
    elif isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, float):
        s = f"{v:.6g}"
    elif isinstance(v, decimal.Decimal):
        s = str(int(v)) if v == v.to_integral_value() else str(v)
    elif isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc)
            s = v.replace(tzinfo=None).isoformat(sep=" ") + "Z"
        else:
            s = v.isoformat(sep=" ")
    elif isinstance(v, (dt.date, dt.time)):
        s = v.isoformat()
    elif isinstance(v, (list, dict)):
        s = json.dumps(v, default=str, ensure_ascii=False)
    elif isinstance(v, bytes):
        s = v.hex()
    else:
        s = str(v)
    s = s.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    if max_width and len(s) > max_width:
        s = s[: max_width - 1] + "…"
    return s


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def format_table(tbl: pa.Table, max_rows: int = 50, max_width: int = 80) -> str:
    """An aligned plain-text rendering of ``tbl`` (numbers right-aligned, NULL for nulls)."""
    names = list(tbl.column_names)
    if not names:
        return "(no columns)"
    shown = tbl.slice(0, max(0, max_rows)) if max_rows is not None else tbl
    rows = [[_cell(r[n], max_width) for n in names] for r in shown.to_pylist()] if shown.num_rows else []
    right = [_numeric(tbl.schema.field(i).type) for i in range(len(names))]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if ra else c.ljust(w) for c, w, ra in zip(cells, widths, right)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    n = tbl.num_rows
    footer = f"({n} row{'s' if n != 1 else ''})"
    if shown.num_rows < n:
        footer = f"({n} rows, first {shown.num_rows} shown)"
    out.append(footer)
    return "\n".join(out)


def format_csv(tbl: pa.Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(tbl.column_names)
    for r in tbl.to_pylist():
        w.writerow(["" if r[n] is None else _cell(r[n], 0) for n in tbl.column_names])
    return buf.getvalue()


def format_jsonl(tbl: pa.Table) -> str:
    def conv(v: Any) -> Any:
        if isinstance(v, decimal.Decimal):
            return int(v) if v == v.to_integral_value() else str(v)
        if isinstance(v, (dt.datetime, dt.date, dt.time)):
            return _cell(v, 0).replace(" ", "T")
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, float) and v != v:
            return None
        return v

    return "".join(json.dumps({k: conv(v) if not isinstance(v, list) else [conv(x) for x in v] for k, v in r.items()},
                              ensure_ascii=False, default=str) + "\n" for r in tbl.to_pylist())


FORMATS = ("table", "csv", "jsonl")


def main_query(evidence_root: str | os.PathLike, sql: str, *, max_rows: int = 200, fmt: str = "table") -> int:
    """``qfs-assure query "SQL"``: print the result; 0 on success, 2 (one line on stderr) on error."""
    if fmt not in FORMATS:
        print(f"qfs-assure: unknown output format {fmt!r}; one of: {', '.join(FORMATS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tbl = run_query(evidence_root, sql)
    except QueryError as exc:
        print(f"qfs-assure: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if fmt == "csv":
        sys.stdout.write(format_csv(tbl))
    elif fmt == "jsonl":
        sys.stdout.write(format_jsonl(tbl))
    else:
        print(format_table(tbl, max_rows=max_rows))
    return EXIT_OK


def describe_views(evidence_root: str | os.PathLike) -> tuple[pa.Table, dict[str, list[tuple[str, str]]], list[str]]:
    """(summary table view/kind/rows/partitions, {view: [(column, type)]}, problems)."""
    con, views, cat = open_evidence(evidence_root)
    try:
        summary = []
        columns: dict[str, list[tuple[str, str]]] = {}
        for view in views:
            q = quote_ident(view)
            columns[view] = [(c[0], c[1]) for c in con.execute(f"DESCRIBE {q}").fetchall()]
            rows = con.execute(f"SELECT count(*) FROM {q}").fetchall()[0][0]
            if view in cat.tables:
                kind, parts = "table", cat.tables[view].partitions
            else:
                kind = "verdicts"
                parts = rows if view.endswith(VERDICTS_SUFFIX) else len({
                    (v.doc.get("activity"), v.path.stem) for vs in cat.verdicts.values() for v in vs})
            summary.append({"view": view, "kind": kind, "rows": rows, "partitions": parts,
                            "columns": len(columns[view])})
        schema = pa.schema([("view", pa.string()), ("kind", pa.string()), ("rows", pa.int64()),
                            ("partitions", pa.int64()), ("columns", pa.int64())])
        return pa.Table.from_pylist(summary, schema=schema), columns, list(cat.problems)
    finally:
        con.close()


def main_tables(evidence_root: str | os.PathLike) -> int:
    """``qfs-assure tables``: list every view with its rows and columns; 0, or 2 (one line) on error."""
    try:
        summary, columns, problems = describe_views(evidence_root)
    except QueryError as exc:
        print(f"qfs-assure: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except duckdb.Error as exc:
        print(f"qfs-assure: cannot read the evidence store: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"evidence root: {Path(evidence_root).resolve()}")
    print(format_table(summary, max_rows=10_000))
    print()
    for view, cols in columns.items():
        print(f"{view}: " + ", ".join(f"{n} {t}" for n, t in cols))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return EXIT_OK


def iter_views(evidence_root: str | os.PathLike) -> Iterable[str]:
    """The names of the views :func:`register_views` would register (no connection needed)."""
    cat = load_catalog(evidence_root)
    yield from (a + VERDICTS_SUFFIX for a in cat.activities())
    yield ALL_VERDICTS_VIEW
    yield CRITERIA_VIEW
    yield from cat.tables
