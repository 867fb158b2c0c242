"""Replay drill parameters (execution knobs only: the drill has no thresholds)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qfs_assets.params import Params


class DrillParams(Params):
    # batch_rows is recorded in the evidence's parameters (as it always was)
    KNOBS: ClassVar[tuple[str, ...]] = ()

    #: EQM rows per Arrow batch
    batch_rows: int = Field(262_144, gt=0)
    #: "genesis" (a fresh engine from seq 0, the plan's drill) or "snapshot" (start from the state an
    #: earlier quarter's drill verified and saved, re-checked first; qfs_assets/replay/snapshot.py)
    start_from: Literal["genesis", "snapshot"] = Field("genesis", description=(
        "genesis: replay from seq 0; snapshot: start from the verified state an earlier quarter's drill saved "
        "(re-checked against its checkpoint and the hash chain first)"))
