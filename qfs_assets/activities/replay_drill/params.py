"""Replay drill parameters (execution knobs only: the drill has no thresholds)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from qfs_assets.params import Params


class DrillParams(Params):
    # batch_rows is recorded in the evidence's parameters (as it always was)
    KNOBS: ClassVar[tuple[str, ...]] = ()

    #: EQM rows per Arrow batch
    batch_rows: int = Field(262_144, gt=0)
