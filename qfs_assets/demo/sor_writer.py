"""Write (and read back) the system-of-record table ``qfs_objects`` over SQLAlchemy.

Used by the demo generator and by tests that need a custom system-of-record fixture.
No Dagster here.

- Any SQLAlchemy URL; a plain ``postgresql://`` (or ``postgres://``) URL is mapped to
  ``postgresql+psycopg2://``.
- The table is dropped (when present) and created, then bulk loaded in one transaction:
  PostgreSQL through ``COPY ... FROM STDIN`` on the raw psycopg2 connection, SQLite through one
  ``executemany``, any other dialect through SQLAlchemy Core ``executemany``.
- ``updated_at`` is stored as UTC. PostgreSQL: ``timestamp with time zone``. SQLite (no
  timestamp type): ISO 8601 text with microseconds and an explicit offset,
  ``YYYY-MM-DD HH:MM:SS.ffffff+00:00`` (space separator, so SQLAlchemy's SQLite ``DATETIME``
  processor also parses it, and SQLite's date functions accept it).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import sqlalchemy as sa

from qfs_assets.contract.schema import SOR_COLUMNS, SOR_TABLE, TS

__all__ = [
    "SOR_ARROW_SCHEMA",
    "normalize_url",
    "sor_table_def",
    "to_sor_arrow",
    "write_sor",
    "read_sor",
    "iso_utc",
]

SOR_ARROW_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("version", pa.int64()),
        pa.field("content_hash", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("data_shards", pa.int16()),
        pa.field("total_shards", pa.int16()),
        pa.field("updated_at", TS),
        pa.field("deleted", pa.bool_()),
    ]
)
assert tuple(SOR_ARROW_SCHEMA.names) == tuple(SOR_COLUMNS)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def normalize_url(url: str) -> str:
    """The URL with a plain ``postgresql://``/``postgres://`` mapped to ``postgresql+psycopg2://``."""
    u = sa.engine.make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg2")
    return u.render_as_string(hide_password=False)


def sor_table_def(metadata: sa.MetaData, schema: str | None = None, table_name: str = SOR_TABLE) -> sa.Table:
    """The ``qfs_objects`` table as the contract defines it."""
    return sa.Table(
        table_name,
        metadata,
        sa.Column("object_id", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger),
        sa.Column("content_hash", sa.Text),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("data_shards", sa.SmallInteger),
        sa.Column("total_shards", sa.SmallInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("deleted", sa.Boolean),
        schema=schema,
    )


# --------------------------------------------------------------------------- conversions


def iso_utc(us: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff+00:00`` for microseconds since the Unix epoch."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat(sep=" ", timespec="microseconds")


def _to_us(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"updated_at: not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - _EPOCH) // _US
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day, tzinfo=timezone.utc) - _EPOCH) // _US
    # pandas.Timestamp and friends
    if hasattr(value, "to_pydatetime"):
        return _to_us(value.to_pydatetime())
    raise TypeError(f"updated_at: not a timestamp: {value!r}")


def to_sor_arrow(rows: pa.Table | Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]]) -> pa.Table:
    """Normalise rows (an Arrow table, mappings, or tuples in ``SOR_COLUMNS`` order) to
    :data:`SOR_ARROW_SCHEMA`. Extra columns/keys are ignored; missing ones are an error."""
    if isinstance(rows, pa.Table):
        missing = [c for c in SOR_COLUMNS if c not in rows.column_names]
        if missing:
            raise ValueError(f"qfs_objects rows: missing columns {missing}")
        arrays = []
        for f in SOR_ARROW_SCHEMA:
            col = rows.column(f.name)
            if f.name == "updated_at" and pa.types.is_timestamp(col.type):
                # Arrow stores UTC instants; a tz-naive timestamp is taken as UTC wall time.
                col = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64()).cast(TS)
            arrays.append(col.cast(f.type))
        return pa.Table.from_arrays(arrays, schema=SOR_ARROW_SCHEMA)
    cols: dict[str, list] = {c: [] for c in SOR_COLUMNS}
    for r in rows:
        if isinstance(r, Mapping):
            try:
                vals = [r[c] for c in SOR_COLUMNS]
            except KeyError as e:
                raise ValueError(f"qfs_objects row without column {e.args[0]!r}: {r!r}") from None
        else:
            vals = list(r)
            if len(vals) != len(SOR_COLUMNS):
                raise ValueError(f"qfs_objects row needs {len(SOR_COLUMNS)} values: {r!r}")
        for c, v in zip(SOR_COLUMNS, vals):
            cols[c].append(_to_us(v) if c == "updated_at" else v)
    return pa.Table.from_arrays(
        [pa.array(cols[f.name], type=f.type) for f in SOR_ARROW_SCHEMA], schema=SOR_ARROW_SCHEMA
    )


# --------------------------------------------------------------------------- writing


def write_sor(
    url: str,
    rows: pa.Table | Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    schema: str | None = None,
    *,
    table_name: str = SOR_TABLE,
) -> int:
    """(Re)create ``qfs_objects`` at ``url`` (optionally in PostgreSQL schema ``schema``,
    created when absent) and load ``rows`` into it. Returns the number of rows written."""
    tbl = to_sor_arrow(rows)
    url = normalize_url(url)
    engine = sa.create_engine(url)
    try:
        md = sa.MetaData()
        table = sor_table_def(md, schema=schema, table_name=table_name)
        dialect = engine.dialect.name
        with engine.begin() as conn:
            if schema is not None and dialect == "postgresql":
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            table.drop(conn, checkfirst=True)
            table.create(conn)
            if tbl.num_rows:
                if dialect == "postgresql":
                    _copy_postgres(conn, table, tbl)
                elif dialect == "sqlite":
                    _insert_sqlite(conn, table, tbl)
                else:
                    _insert_generic(conn, table, tbl)
    finally:
        engine.dispose()
    return tbl.num_rows


def _columns(tbl: pa.Table) -> list[list]:
    cols = []
    for name in SOR_COLUMNS:
        col = tbl.column(name)
        if name == "updated_at":
            cols.append(col.cast(pa.int64()).to_pylist())
        else:
            cols.append(col.to_pylist())
    return cols


def _copy_postgres(conn: sa.Connection, table: sa.Table, tbl: pa.Table) -> None:
    oid, ver, ch, size, k, n, ts, deleted = _columns(tbl)
    buf = io.StringIO()
    # QUOTE_NONNUMERIC: every string is quoted, None is an unquoted empty field = NULL in COPY csv.
    w = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    for row in zip(
        oid,
        ver,
        ch,
        size,
        k,
        n,
        (None if t is None else iso_utc(t) for t in ts),
        (None if d is None else ("t" if d else "f") for d in deleted),
    ):
        w.writerow(row)
    buf.seek(0)
    target = conn.dialect.identifier_preparer.format_table(table)
    collist = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in SOR_COLUMNS)
    raw = conn.connection.dbapi_connection  # psycopg2 connection, inside the open transaction
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {target} ({collist}) FROM STDIN WITH (FORMAT csv)", buf)


def _insert_sqlite(conn: sa.Connection, table: sa.Table, tbl: pa.Table) -> None:
    oid, ver, ch, size, k, n, ts, deleted = _columns(tbl)
    params = list(
        zip(
            oid,
            ver,
            ch,
            size,
            k,
            n,
            [None if t is None else iso_utc(t) for t in ts],
            [None if d is None else int(d) for d in deleted],
        )
    )
    target = conn.dialect.identifier_preparer.format_table(table)
    collist = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in SOR_COLUMNS)
    marks = ", ".join("?" for _ in SOR_COLUMNS)
    conn.exec_driver_sql(f"INSERT INTO {target} ({collist}) VALUES ({marks})", params)


def _insert_generic(conn: sa.Connection, table: sa.Table, tbl: pa.Table) -> None:
    cols = _columns(tbl)
    ts_i = SOR_COLUMNS.index("updated_at")
    cols[ts_i] = [None if t is None else _EPOCH + timedelta(microseconds=t) for t in cols[ts_i]]
    conn.execute(table.insert(), [dict(zip(SOR_COLUMNS, r)) for r in zip(*cols)])


# --------------------------------------------------------------------------- reading


def read_sor(url: str, schema: str | None = None, *, table_name: str = SOR_TABLE) -> pa.Table:
    """Read ``qfs_objects`` back as an Arrow table of :data:`SOR_ARROW_SCHEMA`, sorted by object_id.

    A convenience for tests and the demo; the assurance readers have their own, validating reader.
    """
    engine = sa.create_engine(normalize_url(url))
    try:
        table = sor_table_def(sa.MetaData(), schema=schema, table_name=table_name)
        with engine.connect() as conn:
            target = conn.dialect.identifier_preparer.format_table(table)
            collist = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in SOR_COLUMNS)
            result = conn.exec_driver_sql(f"SELECT {collist} FROM {target}")
            raw = result.fetchall()
    finally:
        engine.dispose()
    cols = [list(c) for c in zip(*raw)] if raw else [[] for _ in SOR_COLUMNS]
    ts_i = SOR_COLUMNS.index("updated_at")
    cols[ts_i] = [_to_us(v) for v in cols[ts_i]]
    del_i = SOR_COLUMNS.index("deleted")
    cols[del_i] = [None if v is None else bool(v) for v in cols[del_i]]
    tbl = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(cols, SOR_ARROW_SCHEMA)], schema=SOR_ARROW_SCHEMA
    )
    return tbl.sort_by("object_id")  # binary order, independent of the database's collation
