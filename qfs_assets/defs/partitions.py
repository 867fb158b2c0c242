"""The assurance cadence as partitions: daily, weekly (Monday), monthly, quarterly (UTC).

Partition keys are the window's first day, ``YYYY-MM-DD``, the same string the evidence
files carry. The first partition is ``QFS_PARTITIONS_START`` (default 2026-01-01).

``QFS_PARTITIONS_END`` (optional, ``YYYY-MM-DD``, exclusive) ends every partition set with the
window that holds the day before it: for a deployment whose export stopped, such as the demo.
The UI plots metadata over an asset's *newest* 120 partitions, which for a demo judged months
ago are all empty; with the end set they are the demo's days. Unset, partitions run to now.

The end is an ``end_offset`` (the number of windows between it and now, counted when the code
location loads), not an ``end_date``: Dagster 1.13's newest-first partition key pagination, which
the UI's plots use, ignores ``end_date`` and starts at the current time, but honours a negative
``end_offset``. A process that runs for days ends its partitions a few windows later; a reload
puts the end back.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

START = os.environ.get("QFS_PARTITIONS_START", "2026-01-01")
END = os.environ.get("QFS_PARTITIONS_END") or None
TIMEZONE = "UTC"


def _ending(pdef: dg.TimeWindowPartitionsDefinition, factory):
    """``pdef`` ended with the window holding the day before ``END`` (``pdef`` itself without END)."""
    if END is None:
        return pdef
    last_day = dt.datetime.fromisoformat(END).replace(tzinfo=dt.timezone.utc) - dt.timedelta(days=1)
    last_key = pdef.get_partition_key_for_timestamp(last_day.timestamp())
    after = sum(1 for key in pdef.get_partition_keys() if key > last_key)
    return factory(-after) if after else pdef


daily = _ending(dg.DailyPartitionsDefinition(start_date=START, timezone=TIMEZONE),
                lambda n: dg.DailyPartitionsDefinition(start_date=START, end_offset=n, timezone=TIMEZONE))
weekly = _ending(dg.WeeklyPartitionsDefinition(start_date=START, timezone=TIMEZONE, day_offset=1),  # Monday
                 lambda n: dg.WeeklyPartitionsDefinition(start_date=START, end_offset=n, timezone=TIMEZONE,
                                                         day_offset=1))
monthly = _ending(dg.MonthlyPartitionsDefinition(start_date=START, timezone=TIMEZONE),
                  lambda n: dg.MonthlyPartitionsDefinition(start_date=START, end_offset=n, timezone=TIMEZONE))
quarterly = _ending(
    dg.TimeWindowPartitionsDefinition(cron_schedule="0 0 1 */3 *", start=START, fmt="%Y-%m-%d", timezone=TIMEZONE),
    lambda n: dg.TimeWindowPartitionsDefinition(cron_schedule="0 0 1 */3 *", start=START, end_offset=n, fmt="%Y-%m-%d",
                                                timezone=TIMEZONE),
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
    if first is None or key < first:
        return None
    if END is not None and key > (partitions_def.get_last_partition_key() or ""):
        return None  # past QFS_PARTITIONS_END
    return key
