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


def window(partitions_def: dg.TimeWindowPartitionsDefinition, key: str) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC window of a partition key."""
    w = partitions_def.time_window_for_partition_key(key)
    return w.start.astimezone(dt.timezone.utc), w.end.astimezone(dt.timezone.utc)
