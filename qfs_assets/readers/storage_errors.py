"""The StorageEngine's error feed (`storage_errors/date=YYYY-MM-DD/`, qfs-export-v1.1).

The feed is optional: a deployment that never published it has no ``storage_errors/`` folder
at all (a version 1 export). From its first partition on it is complete like every
day-partitioned table (a missing day is bad input). A day before the feed's first partition is
a day the StorageEngine published no error tracking for: it reads as "feed absent", exactly as
a version 1 export, never as a day without errors.

Pure code (DuckDB/Arrow), no Dagster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import pyarrow as pa

from qfs_assets.contract.schema import CORRUPTION_CLASS, STORAGE_ERROR_CLASSES, TABLES
from qfs_assets.readers.base import ExportReader, duck_type, quote_ident

TABLE = "storage_errors"

#: the detail columns of a listed error (every contract column)
ERROR_COLUMNS = tuple(TABLES[TABLE].column_names)


@dataclass(frozen=True)
class FeedCoverage:
    """Whether the feed covers a day, and why not (for evidence ``inputs``)."""

    day: dt.date
    first_partition: dt.date | None

    @property
    def covers(self) -> bool:
        return self.first_partition is not None and self.day >= self.first_partition

    def as_evidence(self) -> dict:
        if self.first_partition is None:
            state = "absent: the deployment has never published storage_errors/ (a qfs-export-v1 export)"
        elif not self.covers:
            state = (f"absent for this day: the feed starts on {self.first_partition.isoformat()} "
                     f"(storage_errors/date={self.first_partition.isoformat()})")
        else:
            state = "present"
        return {"table": TABLE, "feed": "present" if self.covers else "absent", "detail": state,
                "first_partition": self.first_partition.isoformat() if self.first_partition else None}


def coverage(reader: ExportReader, day: dt.date) -> FeedCoverage:
    dates = reader.available_dates(TABLE)
    return FeedCoverage(day, dates[0] if dates else None)


def storage_errors_of_days(reader: ExportReader, con: duckdb.DuckDBPyConnection, days: Sequence[dt.date],
                           view: str = TABLE) -> str:
    """A validated view of the errors of ``days`` (completeness rule applied; see the module doc)."""
    return reader.relation(con, TABLE, list(days), view_name=view, required=False)


def new_rows_of_day(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, files: Sequence[str],
                    view: str = "storage_errors_new") -> str:
    """The day's partition validated whole (keys are unique across its files), and a view of the
    rows of the given files of it (a sensor's newly landed files, by file name)."""
    day_view = storage_errors_of_days(reader, con, [day], view=f"{view}_day")
    names = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) or "NULL"
    spec = TABLES[TABLE]
    casts = ", ".join(f"CAST({quote_ident(c)} AS {duck_type(spec.column(c).type)}) AS {quote_ident(c)}"
                      for c in spec.column_names)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {casts} FROM {quote_ident(day_view + '__raw')} "
                f"WHERE parse_filename(__file) IN ({names})")
    return view


def summarize(con: duckdb.DuckDBPyConnection, view: str = TABLE) -> dict:
    """The evidence-v1.1 storage error metrics of the rows of ``view``."""
    v = quote_ident(view)
    total, corruption = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE error_class = '{CORRUPTION_CLASS}') FROM {v}").fetchall()[0]
    by_class = {c: 0 for c in STORAGE_ERROR_CLASSES}
    for cls, n in con.execute(f"SELECT error_class, count(*) FROM {v} GROUP BY 1").fetchall():
        by_class[cls] = int(n)
    nodes = [r[0] for r in con.execute(f"SELECT DISTINCT node_id FROM {v} WHERE node_id IS NOT NULL ORDER BY 1").fetchall()]
    return {"storage_errors": int(total), "storage_errors_by_class": by_class, "corruption_errors": int(corruption),
            "storage_error_nodes": nodes}


def corruption_rows(con: duckdb.DuckDBPyConnection, view: str = TABLE) -> pa.Table:
    """Every ``checksum_mismatch`` row of ``view``, by ts then error_id."""
    cols = ", ".join(quote_ident(c) for c in ERROR_COLUMNS)
    tbl = con.execute(f"SELECT {cols} FROM {quote_ident(view)} WHERE error_class = '{CORRUPTION_CLASS}' "
                      "ORDER BY ts, error_id").to_arrow_table()
    return tbl.cast(TABLES[TABLE].schema)


def hourly_counts(con: duckdb.DuckDBPyConnection, view: str = TABLE) -> list[tuple[str, dt.datetime, int, dict]]:
    """``(node_id, hour start, errors, {error_class: n})`` per node and UTC hour (rows with a node only)."""
    rows = con.execute(
        f"""
        SELECT node_id, date_trunc('hour', ts) AS hour, error_class, count(*) AS n
        FROM {quote_ident(view)} WHERE node_id IS NOT NULL GROUP BY ALL ORDER BY 1, 2, 3
        """
    ).fetchall()
    out: dict[tuple[str, dt.datetime], dict[str, int]] = {}
    for node, hour, cls, n in rows:
        out.setdefault((node, hour.astimezone(dt.timezone.utc)), {})[cls] = int(n)
    return [(node, hour, sum(c.values()), c) for (node, hour), c in sorted(out.items())]
