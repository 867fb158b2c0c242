"""How the dashboard writes numbers, money, sizes and times (plain text; the templates escape it).

Money is exact: integer minor units with thousands separators (1 ATR = 10^8 atr), and
:func:`exact_units` gives the exact decimal of whole tokens. Only charts use floats
(:func:`atr_float`), for the picture.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

ATR_UNIT = 10**8
NOD_UNIT = 10**8
DASH = "–"


def fmt_int(v: Any) -> str:
    return DASH if v is None else f"{int(v):,}"


def exact_units(v: int, unit: int = ATR_UNIT) -> str:
    """An integer of minor units as an exact decimal of whole tokens: 27401926501 -> '274.01926501'."""
    v = int(v)
    q, r = divmod(abs(v), unit)
    digits = len(str(unit)) - 1
    frac = f"{r:0{digits}d}".rstrip("0")
    return f"{'-' if v < 0 else ''}{q:,}" + (f".{frac}" if frac else "")


def atr_amount(v: Any) -> str:
    """'274.01926501 ATR' for minor units, '–' for none."""
    return DASH if v is None else f"{exact_units(v)} ATR"


def fmt_ratio(v: Any, digits: int = 2) -> str:
    return DASH if v is None else f"{float(v) * 100:.{digits}f}%"


def fmt_float(v: Any, digits: int = 3) -> str:
    return DASH if v is None else f"{float(v):.{digits}f}"


def fmt_bytes(v: Any) -> str:
    if v is None:
        return DASH
    v = int(v)
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(v) >= size:
            return f"{v / size:.2f} {unit}"
    return f"{v} B"


def fmt_ts(v: Any) -> str:
    if v is None:
        return DASH
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep=" ", timespec="minutes") + " UTC"
    return str(v)


def atr_float(v: Any) -> float | None:
    return None if v is None else int(v) / ATR_UNIT


def quarter_label(p: Any) -> str:
    """2026-01-01 -> '2026-Q1'."""
    if isinstance(p, dt.date):
        return f"{p.year}-Q{(p.month - 1) // 3 + 1}"
    return str(p)

