"""The StorageEngine's object manifest (`objects/`) and shard placement (`shards/`) snapshots."""

from __future__ import annotations

import datetime as dt

import duckdb

from qfs_assets.readers.base import ExportReader


def object_manifest(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, view: str = "objects", columns=None,
                    validate_keys: bool = True) -> str:
    """A validated view of the object manifest at the end of ``day`` (``validate_keys=False``: the
    caller checks ``object_id`` uniqueness itself, e.g. in its own join)."""
    return reader.relation(con, "objects", [day], view_name=view, columns=columns, validate_keys=validate_keys)


def shard_map(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date, view: str = "shards", columns=None, validate_keys: bool = True) -> str:
    """A validated view of shard placement at the end of ``day`` (streamed by DuckDB, never loaded).

    ``validate_keys=False`` leaves the ``(object_id, shard_index)`` uniqueness check to the
    caller, who can fold it into its own group-by over object_id (one scan instead of two).
    """
    return reader.relation(con, "shards", [day], view_name=view, columns=columns, validate_keys=validate_keys)


def latest_snapshot_on_or_before(reader: ExportReader, table: str, last_day: dt.date, first_day: dt.date | None = None) -> dt.date | None:
    """The newest snapshot date of ``table`` in ``[first_day, last_day]``, or None."""
    days = [d for d in reader.available_dates(table) if d <= last_day and (first_day is None or d >= first_day)]
    return days[-1] if days else None
