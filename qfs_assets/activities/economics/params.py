"""Economics parameters (evidence-v1 defaults); the evidence records the values used."""

from __future__ import annotations

from pydantic import Field, field_serializer, field_validator

from qfs_assets.money import ONE, ExchangeRate
from qfs_assets.params import Params


class EconomicsParams(Params):
    """``atr_per_nod`` accepts an :class:`~qfs_assets.money.ExchangeRate`, its text (``"3/7"``,
    ``"1"``, an exact decimal) or a positive int; never a float."""

    #: NOD -> ATR exchange rate, a ratio of integers ("3/7"), never a float
    atr_per_nod: ExchangeRate = ONE
    #: conservation buffer, basis points of the fees
    buffer_bps: int = Field(500, ge=0, le=10_000)
    #: conservation buffer floor, ATR minor units
    buffer_min_atr: int = Field(0, ge=0, le=2**63 - 1)

    @field_validator("atr_per_nod", mode="before")
    @classmethod
    def _rate(cls, value):
        if isinstance(value, float):
            raise ValueError("atr_per_nod must be a ratio of integers such as '3/7', never a float")
        return ExchangeRate.coerce(value)

    @field_validator("buffer_bps", "buffer_min_atr", mode="before")
    @classmethod
    def _no_float(cls, value):
        if isinstance(value, (float, bool)):
            raise ValueError(f"must be an integer, not {type(value).__name__}")
        return value

    @field_serializer("atr_per_nod")
    def _rate_text(self, rate: ExchangeRate) -> str:
        return str(rate)
