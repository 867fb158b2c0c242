"""New ``storage_errors`` partitions and files: corruption and error bursts, as alerts.

:func:`scan` walks the feed's partitions newer than a small cursor (:class:`ErrorsCursor`: the
last date considered final, and the files already read of the recent dates), reads only what
is new, and yields one :class:`PartitionScan` per partition with new files:

- every ``checksum_mismatch`` row of the new files: one ``storage_corruption`` alert (critical,
  naming node, object and shard of each);
- every (node, UTC hour) of the partition with more errors than ``burst_per_hour``: one
  ``storage_error_burst`` alert each (the dedupe ledger sends each node-hour once, however the
  partition's files arrive).

A cursor of ``None`` starts at the newest partition (history is judged by node health's daily
``no_corruption_errors``); :meth:`ErrorsCursor.from_start` reads the whole feed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Iterator

from qfs_assets.alerting import events
from qfs_assets.alerting.model import Alert
from qfs_assets.contract.schema import TABLES
from qfs_assets.readers import storage_errors as feed
from qfs_assets.readers.base import ExportReader, connect

#: dates newer than (newest date read - this) are re-listed for late files
RECENT_DAYS = 2


@dataclass
class ErrorsCursor:
    after: dt.date | None = None  # partitions on or before this date are final (never re-read)
    files: dict[str, list[str]] = field(default_factory=dict)  # recent date -> file names already read

    @classmethod
    def from_start(cls) -> "ErrorsCursor":
        return cls(None, {})

    @classmethod
    def from_json(cls, text: str | None) -> "ErrorsCursor | None":
        if not text:
            return None
        d = json.loads(text)
        return cls(dt.date.fromisoformat(d["after"]) if d.get("after") else None, dict(d.get("files") or {}))

    def to_json(self) -> str:
        return json.dumps({"after": self.after.isoformat() if self.after else None, "files": self.files},
                          sort_keys=True, separators=(",", ":"))

    def mark(self, day: dt.date, names: list[str]) -> None:
        """Record the files of ``day`` as read, and retire dates older than the recent window."""
        self.files[day.isoformat()] = sorted(set(self.files.get(day.isoformat(), [])) | set(names))
        newest = max(dt.date.fromisoformat(k) for k in self.files)
        horizon = newest - dt.timedelta(days=RECENT_DAYS)
        for key in [k for k in self.files if dt.date.fromisoformat(k) < horizon]:
            del self.files[key]
            self.after = max(self.after or horizon, dt.date.fromisoformat(key))


@dataclass
class PartitionScan:
    day: dt.date
    new_files: list[str]
    new_rows: int
    alerts: list[Alert]


def _start(reader: ExportReader, cursor: ErrorsCursor | None) -> ErrorsCursor:
    if cursor is not None:
        return cursor
    dates = reader.available_dates(feed.TABLE)
    return ErrorsCursor(dates[-1] - dt.timedelta(days=1) if dates else None, {})


def scan(reader: ExportReader, cursor: ErrorsCursor | None, burst_per_hour: int) -> tuple[ErrorsCursor, Iterator[PartitionScan]]:
    """``(cursor, partitions)``: iterate the partitions with new files; call ``cursor.mark(scan.day,
    scan.new_files)`` after dispatching a partition's alerts (a crash re-reads it; dedupe sends once)."""
    cursor = _start(reader, cursor)
    spec = TABLES[feed.TABLE]

    def partitions() -> Iterator[PartitionScan]:
        for day in reader.available_dates(feed.TABLE):
            if cursor.after is not None and day <= cursor.after:
                continue
            names = sorted(p.name for p in reader.partition_dir(spec, day).glob("*.parquet"))
            new = [n for n in names if n not in set(cursor.files.get(day.isoformat(), []))]
            if not new:
                continue
            con = connect()
            try:
                view = feed.new_rows_of_day(reader, con, day, new)
                rows = int(con.execute(f'SELECT count(*) FROM "{view}"').fetchall()[0][0])
                corrupt = feed.corruption_rows(con, view).to_pylist()
                hourly = feed.hourly_counts(con, f"{view}_day")
            finally:
                con.close()
            alerts: list[Alert] = []
            if corrupt:
                alerts.append(events.storage_corruption(day, corrupt))
            for node, hour, count, by_class in hourly:
                if count > burst_per_hour:
                    alerts.append(events.storage_error_burst(day, node, hour, count, burst_per_hour, by_class))
            yield PartitionScan(day, new, rows, alerts)

    return cursor, partitions()
