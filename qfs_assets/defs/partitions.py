"""The assurance cadence as partitions: daily, weekly (Monday), monthly, quarterly (UTC).

Partition keys are the window's first day, ``YYYY-MM-DD``, the same string the evidence
files carry. The first partition is ``QFS_PARTITIONS_START`` (default 2026-01-01).
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

START = os.environ.get("QFS_PARTITIONS_START", "2026-01-01")
TIMEZONE = "UTC"

daily = dg.DailyPartitionsDefinition(start_date=START, timezone=TIMEZONE)
weekly = dg.WeeklyPartitionsDefinition(start_date=START, timezone=TIMEZONE, day_offset=1)  # Monday
monthly = dg.MonthlyPartitionsDefinition(start_date=START, timezone=TIMEZONE)
quarterly = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 1 */3 *", start=START, fmt="%Y-%m-%d", timezone=TIMEZONE
)

#: the partitions of each time cadence of the registry
BY_CADENCE: dict[str, dg.TimeWindowPartitionsDefinition] = {
    "daily": daily, "weekly": weekly, "monthly": monthly, "quarterly": quarterly,
}


def window(partitions_def: dg.TimeWindowPartitionsDefinition, key: str) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC window of a partition key."""
    w = partitions_def.time_window_for_partition_key(key)
    return w.start.astimezone(dt.timezone.utc), w.end.astimezone(dt.timezone.utc)


def closed_partition_before(partitions_def: dg.TimeWindowPartitionsDefinition, t: dt.datetime) -> str | None:
    """The newest partition whose window ended at or before ``t`` (None before the first one closed).

    Pure calendar arithmetic on the partitions' cron: it does not consult the wall clock, so a
    schedule evaluated for any tick (a test, a catch-up tick) targets the same partition.
    """
    current = partitions_def.get_partition_key_for_timestamp(t.timestamp())
    start = partitions_def.time_window_for_partition_key(current).start
    key = partitions_def.get_partition_key_for_timestamp((start - dt.timedelta(microseconds=1)).timestamp())
    first = partitions_def.get_first_partition_key()
    return key if first is not None and key >= first else None
