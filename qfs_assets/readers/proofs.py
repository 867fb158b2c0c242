"""Proof-of-storage challenges (`proofs/date=YYYY-MM-DD/`)."""

from __future__ import annotations

import datetime as dt

import duckdb

from qfs_assets.readers.base import ExportReader


def proofs_of_day(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, view: str = "proofs") -> str:
    """A validated view of the challenges issued on ``day``."""
    return reader.relation(con, "proofs", [day], view_name=view)
