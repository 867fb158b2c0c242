"""Certified integer money arithmetic for QFS: minor units, exact ceilings, rational rates.

Money is never a float here. Every amount is a Python ``int`` of minor units
(``1 ATR = ATR_UNIT atr``, ``1 NOD = NOD_UNIT nod``); Python ints are unbounded, so the
arithmetic itself cannot overflow. Where a value must fit a fixed-width column (an int64 in
Parquet or in a judge table), :func:`require_int64` checks it and fails loudly.

Rounding rule: every conversion that cannot be exact rounds **up** (toward +infinity) with
:func:`ceil_div`. The check this serves is conservation, ``fees >= rewards_in_atr + buffer``:
rounding the obligations (rewards in ATR, the buffer) up can only make the margin look
smaller, never larger, so rounding never decides a verdict in the network's favour. The rule
is the mathematical ceiling for negative numerators too (``ceil_div(-7, 2) == -3``): a net
claw-back week converts to an obligation that is rounded toward zero, i.e. up, which is
again the conservative side. Never ``int(a / b)`` (float, and truncates toward zero).

Sums over many rows are computed exactly (DuckDB ``HUGEINT``, then Python ``int``), never in
an int64 accumulator that could wrap; :func:`require_int64` guards the values that must then be
stored as int64.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

ATR_UNIT = 10**8  # atr minor units per ATR
NOD_UNIT = 10**8  # nod minor units per NOD
BPS_DENOMINATOR = 10_000  # basis points per unit (100% = 10 000 bps)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Int64Overflow(OverflowError):
    """An exact value that must be stored as int64 does not fit in one."""


def require_int(value: object, name: str) -> int:
    """``value`` itself when it is a genuine int (bool, float, Decimal are refused: no silent coercion)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (minor units), not {type(value).__name__} {value!r}")
    return value


def ceil_div(numerator: int, denominator: int) -> int:
    """The exact ceiling of ``numerator / denominator`` for a positive denominator.

    The result ``q`` is the least integer with ``q * denominator >= numerator``, for any sign
    of the numerator (ceiling toward +infinity: ``ceil_div(7, 2) == 4``,
    ``ceil_div(-7, 2) == -3``). Integer-only: exact for numerators of any size.
    """
    require_int(numerator, "numerator")
    require_int(denominator, "denominator")
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    return -((-numerator) // denominator)


_INT_RE = re.compile(r"[0-9]+")
_DEC_RE = re.compile(r"([0-9]*)\.([0-9]+)")


@dataclass(frozen=True)
class ExchangeRate:
    """A positive rational exchange rate ``num / den`` (here: ATR per NOD), kept in lowest terms.

    Construct with integers (``ExchangeRate(3, 7)``) or parse text with :meth:`parse`
    (``"3/7"``, ``"1"``, or an exact decimal such as ``"0.125"``). ``str(rate)`` gives
    ``"num/den"`` and parses back to an equal rate. Equality is equality of values.
    """

    num: int
    den: int = 1

    def __post_init__(self) -> None:
        require_int(self.num, "rate numerator")
        require_int(self.den, "rate denominator")
        if self.num <= 0 or self.den <= 0:
            raise ValueError(f"exchange rate must be positive: {self.num}/{self.den}")
        g = math.gcd(self.num, self.den)
        object.__setattr__(self, "num", self.num // g)
        object.__setattr__(self, "den", self.den // g)

    @classmethod
    def parse(cls, text: str) -> "ExchangeRate":
        """Parse ``"n/d"``, ``"n"`` or an exact decimal ``"a.b"``; anything else is a ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"exchange rate text must be a str, not {type(text).__name__} {text!r}")
        s = text.strip()
        try:
            if "/" in s:
                n, d = (p.strip() for p in s.split("/", 1))
                if _INT_RE.fullmatch(n) and _INT_RE.fullmatch(d):
                    return cls(int(n), int(d))
            elif _INT_RE.fullmatch(s):
                return cls(int(s), 1)
            elif m := _DEC_RE.fullmatch(s):
                whole, frac = m.group(1) or "0", m.group(2)
                return cls(int(whole) * 10 ** len(frac) + int(frac), 10 ** len(frac))
        except ValueError as exc:  # zero numerator or denominator
            raise ValueError(f"invalid exchange rate {text!r}: {exc}") from None
        raise ValueError(f"invalid exchange rate {text!r}: expected 'n/d', 'n' or a decimal like '0.125'")

    @classmethod
    def coerce(cls, value: "ExchangeRate | str | int | Fraction") -> "ExchangeRate":
        """An ExchangeRate from a rate, its text, a positive int or a Fraction (never a float)."""
        if isinstance(value, ExchangeRate):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Fraction):
            return cls(value.numerator, value.denominator)
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, 1)
        raise TypeError(f"exchange rate must be 'n/d' text, an int or a Fraction, not {type(value).__name__} {value!r}")

    def __str__(self) -> str:
        return f"{self.num}/{self.den}"

    def as_fraction(self) -> Fraction:
        return Fraction(self.num, self.den)


ONE = ExchangeRate(1, 1)


def nod_to_atr_ceil(amount_nod: int, atr_per_nod: ExchangeRate) -> int:
    """``ceil(amount_nod * atr_per_nod)`` in atr minor units.

    ``atr_per_nod`` is a rate between whole tokens; the unit scales enter exactly
    (``* ATR_UNIT / NOD_UNIT``, which is 1 while both are 10^8).
    """
    require_int(amount_nod, "amount_nod")
    return ceil_div(amount_nod * atr_per_nod.num * ATR_UNIT, atr_per_nod.den * NOD_UNIT)


def check_bps(bps: int, name: str = "bps") -> int:
    """A non-negative integer number of basis points (may exceed 10 000, i.e. 100%)."""
    require_int(bps, name)
    if bps < 0:
        raise ValueError(f"{name} must be >= 0, got {bps}")
    return bps


def bps_of_ceil(amount: int, bps: int) -> int:
    """``ceil(amount * bps / 10 000)``."""
    require_int(amount, "amount")
    return ceil_div(amount * check_bps(bps), BPS_DENOMINATOR)


def buffer_atr(fees_atr: int, buffer_bps: int, buffer_min_atr: int) -> int:
    """The reserve buffer ``max(buffer_min_atr, ceil(fees_atr * buffer_bps / 10 000))``."""
    require_int(buffer_min_atr, "buffer_min_atr")
    return max(buffer_min_atr, bps_of_ceil(fees_atr, buffer_bps))


def require_int64(value: int, what: str) -> int:
    """``value`` when it fits an int64; else :class:`Int64Overflow` naming ``what``.

    Use it on exact sums (DuckDB ``HUGEINT`` or Python ``int``) before storing them where an
    int64 is required, so a value that would have wrapped in an int64 accumulator is reported
    instead of silently corrupted.
    """
    require_int(value, what)
    if not INT64_MIN <= value <= INT64_MAX:
        raise Int64Overflow(f"{what} = {value} does not fit in int64 [{INT64_MIN}, {INT64_MAX}]")
    return value
