"""Node failure response parameters: the AEGIS thresholds are node health's own."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from qfs_assets.activities.node_health.params import NodeHealthParams
from qfs_assets.params import Params


class NodeFailureParams(Params):
    # batch_rows is recorded in the evidence's parameters (as it always was)
    KNOBS: ClassVar[tuple[str, ...]] = ()

    #: AEGIS thresholds of the receivers' re-verification (node health's)
    aegis: NodeHealthParams = Field(default_factory=NodeHealthParams)
    #: Arrow batch size when streaming the failed node's shards
    batch_rows: int = Field(65_536, gt=0)
