"""Properties of the certified money arithmetic (qfs_assets.money)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qfs_assets.money import (
    ATR_UNIT,
    INT64_MAX,
    INT64_MIN,
    NOD_UNIT,
    ExchangeRate,
    Int64Overflow,
    bps_of_ceil,
    buffer_atr,
    ceil_div,
    nod_to_atr_ceil,
    require_int64,
)

# per test (not a global profile: other test modules keep theirs); no example database on disk
PROPERTY = settings(max_examples=300, deadline=None, database=None)

big = st.integers(min_value=-(10**30), max_value=10**30)
positive = st.integers(min_value=1, max_value=10**18)
rates = st.builds(ExchangeRate, positive, positive)
bps = st.integers(min_value=0, max_value=50_000)
amount = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def test_units():
    assert ATR_UNIT == NOD_UNIT == 10**8


@PROPERTY
@given(big, positive)
def test_ceil_div_is_the_least_upper_bound(n, d):
    q = ceil_div(n, d)
    assert type(q) is int
    assert q * d >= n
    assert (q - 1) * d < n


def test_ceil_div_examples_negative_numerators_round_toward_plus_infinity():
    assert ceil_div(7, 2) == 4
    assert ceil_div(-7, 2) == -3
    assert ceil_div(-8, 2) == -4
    assert ceil_div(0, 5) == 0
    assert ceil_div(-1, 10**8) == 0


@pytest.mark.parametrize("n, d", [(1.0, 2), (1, 2.0), (True, 1), (1, 0), (1, -3)])
def test_ceil_div_refuses_floats_bools_and_non_positive_denominators(n, d):
    with pytest.raises((TypeError, ValueError)):
        ceil_div(n, d)


@PROPERTY
@given(big, rates)
def test_conversion_never_rounds_in_the_networks_favour(nod, rate):
    atr = nod_to_atr_ceil(nod, rate)
    assert type(atr) is int
    exact = Fraction(nod) * rate.as_fraction() * ATR_UNIT / NOD_UNIT
    assert atr >= exact  # the obligation is never understated
    assert atr - 1 < exact  # and overstated by less than one minor unit
    # the same statement in integers: result*den >= value*num and (result-1)*den < value*num
    assert atr * rate.den >= nod * rate.num and (atr - 1) * rate.den < nod * rate.num


def test_conversion_examples():
    r = ExchangeRate.parse("3/7")
    assert nod_to_atr_ceil(7, r) == 3
    assert nod_to_atr_ceil(1, r) == 1  # 3/7 of a unit rounds up to 1
    assert nod_to_atr_ceil(-1, r) == 0  # a claw-back of 3/7 unit: ceiling toward +inf
    assert nod_to_atr_ceil(-7, r) == -3
    assert nod_to_atr_ceil(10, ExchangeRate(1)) == 10


@PROPERTY
@given(rates)
def test_rate_text_round_trips(rate):
    assert ExchangeRate.parse(str(rate)) == rate
    assert str(ExchangeRate.parse(str(rate))) == str(rate)


@PROPERTY
@given(positive, positive)
def test_rate_parse_is_the_reduced_fraction(n, d):
    r = ExchangeRate.parse(f"{n}/{d}")
    assert r.as_fraction() == Fraction(n, d)
    assert type(r.num) is int and type(r.den) is int


@PROPERTY
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=12))
def test_rate_parse_decimals_exactly(units, places):
    text = f"{units // 10**places}.{units % 10**places:0{places}d}"
    if units == 0:
        with pytest.raises(ValueError):
            ExchangeRate.parse(text)
    else:
        assert ExchangeRate.parse(text).as_fraction() == Fraction(units, 10**places)


def test_rate_parse_examples():
    assert ExchangeRate.parse("1") == ExchangeRate(1, 1)
    assert ExchangeRate.parse(" 6 / 14 ") == ExchangeRate(3, 7)
    assert str(ExchangeRate.parse("6/14")) == "3/7"
    assert ExchangeRate.parse("0.125") == ExchangeRate(1, 8)
    assert ExchangeRate.coerce(Fraction(2, 4)) == ExchangeRate(1, 2)
    assert ExchangeRate.coerce(3) == ExchangeRate(3, 1)


@pytest.mark.parametrize("text", ["", " ", "0", "0/3", "3/0", "-1/2", "1/-2", "+1", "1e3", "nan", "inf", "1/2/3", "a/b", "1.", "0x10"])
def test_rate_parse_refuses(text):
    with pytest.raises(ValueError):
        ExchangeRate.parse(text)


@pytest.mark.parametrize("value", [0.5, 1.0, True, None, Fraction(0), Fraction(-1, 2)])
def test_rate_refuses_floats_and_non_positive(value):
    with pytest.raises((TypeError, ValueError)):
        ExchangeRate.coerce(value)


@PROPERTY
@given(amount, amount, bps, st.integers(min_value=0, max_value=10**12))
def test_buffer_is_monotone_in_fees(a, b, bps_, floor):
    lo, hi = min(a, b), max(a, b)
    assert buffer_atr(lo, bps_, floor) <= buffer_atr(hi, bps_, floor)


@PROPERTY
@given(st.integers(min_value=0, max_value=2**63 - 1), bps, bps, st.integers(min_value=0, max_value=10**12))
def test_buffer_is_monotone_in_bps_and_respects_floor_and_rounds_up(fees, b1, b2, floor):
    lo, hi = min(b1, b2), max(b1, b2)
    small, large = buffer_atr(fees, lo, floor), buffer_atr(fees, hi, floor)
    assert small <= large
    assert type(small) is int and type(large) is int
    assert small >= floor
    assert small * 10_000 >= fees * lo  # never below the exact share
    assert bps_of_ceil(fees, lo) * 10_000 - fees * lo < 10_000  # by less than one unit


def test_buffer_examples():
    assert buffer_atr(10_000, 500, 0) == 500
    assert buffer_atr(10_001, 500, 0) == 501  # 500.05 rounds up
    assert buffer_atr(10_000, 500, 800) == 800  # the floor
    assert buffer_atr(0, 500, 0) == 0
    assert buffer_atr(-1, 500, 0) == 0  # ceil(-0.05) = 0, max with floor 0
    with pytest.raises(ValueError):
        buffer_atr(1, -1, 0)
    with pytest.raises(TypeError):
        buffer_atr(1.0, 500, 0)


@PROPERTY
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_require_int64_accepts_exactly_int64(value):
    if INT64_MIN <= value <= INT64_MAX:
        assert require_int64(value, "x") == value
    else:
        with pytest.raises(Int64Overflow, match="weekly fees"):
            require_int64(value, "weekly fees")


def test_require_int64_bounds_and_a_sum_that_an_int64_accumulator_would_wrap():
    assert require_int64(INT64_MAX, "x") == INT64_MAX
    assert require_int64(INT64_MIN, "x") == INT64_MIN
    rows = [INT64_MAX, 1]  # each a valid int64 amount; an int64 sum would wrap to INT64_MIN
    with pytest.raises(Int64Overflow, match=r"sum of amount_atr = 9223372036854775808 does not fit in int64"):
        require_int64(sum(rows), "sum of amount_atr")
    with pytest.raises(TypeError):
        require_int64(1.0, "x")


@pytest.mark.parametrize("module", ["qfs_assets.money", "qfs_assets.activities.economics.assess"])
def test_no_float_arithmetic_in_the_money_code(module):
    """Statically: no true division, no float literal, no float() in the money code paths."""
    import ast
    import importlib

    source = Path(importlib.import_module(module).__file__).read_text(encoding="utf-8")
    offenders = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, (ast.BinOp, ast.AugAssign)) and isinstance(n.op, ast.Div):
            offenders.append(f"true division at line {n.lineno}")
        elif isinstance(n, ast.Constant) and isinstance(n.value, float):
            offenders.append(f"float literal at line {n.lineno}")
        elif isinstance(n, ast.Name) and n.id in ("float", "round"):
            offenders.append(f"{n.id} at line {n.lineno}")
    assert offenders == []
