"""qfs_assets.windows: the calendar windows every activity judges, against hand-written values."""

from __future__ import annotations

import datetime as dt

import pytest

from qfs_assets import windows as w

UTC = dt.timezone.utc


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_day():
    assert w.day_window(dt.date(2026, 3, 31)) == (at(2026, 3, 31), at(2026, 4, 1))
    assert w.day_end(dt.date(2026, 12, 31)) == at(2027, 1, 1)
    assert w.day_start(dt.date(2024, 2, 29)) == at(2024, 2, 29)
    assert w.day_start_us(dt.date(1970, 1, 2)) == 86_400_000_000
    assert w.day_start_us(dt.date(2026, 3, 2)) == int(at(2026, 3, 2).timestamp()) * 1_000_000
    assert w.day_start_us(dt.date(1969, 12, 31)) == -86_400_000_000


def test_days_between_is_half_open():
    assert w.days_between(dt.date(2026, 2, 27), dt.date(2026, 3, 2)) == [
        dt.date(2026, 2, 27), dt.date(2026, 2, 28), dt.date(2026, 3, 1)]
    assert w.days_between(dt.date(2026, 3, 2), dt.date(2026, 3, 2)) == []


def test_weeks_run_monday_to_monday():
    assert w.week_window(dt.date(2026, 3, 30)) == (at(2026, 3, 30), at(2026, 4, 6))
    assert w.week_days(dt.date(2026, 12, 28))[-1] == dt.date(2027, 1, 3)
    assert len(w.week_days(dt.date(2026, 12, 28))) == 7
    assert w.monday_of(dt.date(2026, 4, 5)) == dt.date(2026, 3, 30)  # a Sunday
    assert w.monday_of(dt.date(2026, 3, 30)) == dt.date(2026, 3, 30)
    with pytest.raises(ValueError, match="not a Monday"):
        w.week_window(dt.date(2026, 3, 31))
    with pytest.raises(TypeError):
        w.week_window(dt.datetime(2026, 3, 30))


def test_months():
    assert w.month_window(dt.date(2024, 2, 1)) == (at(2024, 2, 1), at(2024, 3, 1))  # leap year
    assert w.month_window(dt.date(2026, 2, 1)) == (at(2026, 2, 1), at(2026, 3, 1))
    assert w.month_window(dt.date(2026, 12, 1)) == (at(2026, 12, 1), at(2027, 1, 1))
    assert w.month_window(dt.date(2026, 4, 1))[1] == at(2026, 5, 1)  # a 30-day month
    with pytest.raises(ValueError, match="first day of a month"):
        w.month_window(dt.date(2026, 4, 2))


def test_quarters():
    assert w.quarter_window(dt.date(2026, 1, 1)) == (at(2026, 1, 1), at(2026, 4, 1))
    assert w.quarter_window(dt.date(2026, 10, 1)) == (at(2026, 10, 1), at(2027, 1, 1))
    for bad in (dt.date(2026, 2, 1), dt.date(2026, 4, 2)):
        with pytest.raises(ValueError, match="first day of a quarter"):
            w.quarter_window(bad)


def test_utc_conversions():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert w.to_utc(dt.datetime(2026, 4, 1, 1, 30, tzinfo=plus2)) == at(2026, 3, 31, 23, 30)
    assert w.to_utc(dt.datetime(2026, 4, 1, 1, 30)).tzinfo is UTC  # naive: taken as UTC
    assert w.to_utc(dt.datetime(2026, 4, 1, 1, 30)) == at(2026, 4, 1, 1, 30)
    assert w.day_of(dt.datetime(2026, 4, 1, 1, 30, tzinfo=plus2)) == dt.date(2026, 3, 31)
    assert w.require_utc(dt.datetime(2026, 4, 1, tzinfo=plus2), "as_of") == at(2026, 3, 31, 22)
    with pytest.raises(ValueError, match="as_of must be timezone-aware"):
        w.require_utc(dt.datetime(2026, 4, 1), "as_of")

