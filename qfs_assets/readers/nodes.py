"""The node inventory (`nodes/snapshot_date=YYYY-MM-DD/`)."""

from __future__ import annotations

import datetime as dt

import duckdb

from qfs_assets.contract.schema import IN_SERVICE_STATUSES
from qfs_assets.readers.base import ExportReader
from qfs_assets.sqltext import quote_literal

IN_SERVICE_SQL = "status IN (" + ", ".join(quote_literal(s) for s in IN_SERVICE_STATUSES) + ")"


def node_snapshot(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, view: str = "nodes") -> str:
    """A validated view of the node inventory at the end of ``day``."""
    return reader.relation(con, "nodes", [day], view_name=view)


def node_snapshots(reader: ExportReader, con: duckdb.DuckDBPyConnection, days: list[dt.date], view: str = "nodes") -> str:
    """Several days' inventories in one view, with a ``snapshot_date`` column added."""
    parts = []
    for d in days:
        v = reader.relation(con, "nodes", [d], view_name=f"{view}_{d:%Y%m%d}")
        parts.append(f"SELECT DATE '{d.isoformat()}' AS snapshot_date, * FROM \"{v}\"")
    body = " UNION ALL ".join(parts) if parts else "SELECT NULL::DATE AS snapshot_date, NULL::VARCHAR AS node_id, NULL::VARCHAR AS status WHERE false"
    con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS {body}')
    return view
