"""Calendar windows and UTC helpers, once for the whole package.

Every assessment window is half-open, ``[start, end)``, in UTC: a day runs from 00:00 to the
next day's 00:00 (so a row stamped exactly at the end belongs to the next window, and to a
snapshot it is "in flight"), a week from Monday 00:00 to the next Monday, a month from its
first day to the next month's first day, a quarter from 1 January/April/July/October to the
next one. Pure: no Dagster, no I/O, no wall clock.
"""

from __future__ import annotations

import calendar
import datetime as dt

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
ONE_DAY = dt.timedelta(days=1)
US_PER_DAY = 86_400 * 1_000_000

__all__ = [
    "UTC", "EPOCH", "ONE_DAY", "US_PER_DAY",
    "to_utc", "require_utc", "day_of",
    "day_start", "day_end", "day_window", "day_start_us", "days_between",
    "monday_of", "week_window", "week_days",
    "month_window", "quarter_window",
]


# -- instants ----------------------------------------------------------------------------------

def to_utc(ts: dt.datetime) -> dt.datetime:
    """``ts`` in UTC; a naive datetime is taken to be UTC already."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def require_utc(ts: dt.datetime, what: str = "timestamp") -> dt.datetime:
    """``ts`` in UTC; ValueError (naming ``what``) when it is naive."""
    if ts.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return ts.astimezone(UTC)


def day_of(ts: dt.datetime) -> dt.date:
    """The UTC day of an instant (naive: taken as UTC)."""
    return to_utc(ts).date()


# -- days --------------------------------------------------------------------------------------

def day_start(day: dt.date) -> dt.datetime:
    """00:00 UTC of ``day``."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(day: dt.date) -> dt.datetime:
    """The end of a UTC day (exclusive): the next midnight. Also the end of a snapshot day."""
    return day_start(day) + ONE_DAY


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return day_start(day), day_end(day)


def day_start_us(day: dt.date) -> int:
    """00:00 UTC of ``day`` in microseconds since the Unix epoch."""
    return (day.toordinal() - EPOCH.toordinal()) * US_PER_DAY


def days_between(start: dt.date, end_exclusive: dt.date) -> list[dt.date]:
    """The days of a half-open window."""
    return [start + dt.timedelta(days=i) for i in range((end_exclusive - start).days)]


# -- weeks (Monday to Sunday) ---------------------------------------------------------------------

def monday_of(day: dt.date) -> dt.date:
    """The Monday starting the week of ``day``."""
    return day - dt.timedelta(days=day.weekday())


def _check_date(value: dt.date, name: str) -> None:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise TypeError(f"{name} must be a date, not {type(value).__name__}")


def week_window(week_start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[Monday 00:00 UTC, next Monday 00:00 UTC)``; ValueError when ``week_start`` is no Monday."""
    _check_date(week_start, "week_start")
    if week_start.weekday() != 0:
        raise ValueError(f"week_start {week_start.isoformat()} is not a Monday")
    start = day_start(week_start)
    return start, start + dt.timedelta(days=7)


def week_days(week_start: dt.date) -> list[dt.date]:
    """The seven days of the week starting on ``week_start``."""
    return days_between(week_start, week_start + dt.timedelta(days=7))


# -- months and quarters ---------------------------------------------------------------------------

def month_window(month_start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[first day 00:00 UTC, next month's first day 00:00 UTC)``; ValueError when
    ``month_start`` is not the first day of a month."""
    if month_start.day != 1:
        raise ValueError(f"month_start must be the first day of a month, not {month_start}")
    last = month_start.replace(day=calendar.monthrange(month_start.year, month_start.month)[1])
    return day_start(month_start), day_end(last)


def quarter_window(quarter_start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[quarter's first day 00:00 UTC, next quarter's first day 00:00 UTC)``; ValueError when
    ``quarter_start`` is not 1 January, April, July or October."""
    if quarter_start.day != 1 or quarter_start.month not in (1, 4, 7, 10):
        raise ValueError(f"{quarter_start.isoformat()} is not the first day of a quarter")
    month = quarter_start.month + 3
    end_date = dt.date(quarter_start.year + (month > 12), (month - 1) % 12 + 1, 1)
    return day_start(quarter_start), day_start(end_date)
