"""Replay of the EQM event log: hash-chain verification, state rebuild, state roots.

Plain Python (no Dagster). See ``engine`` for the semantics and every documented choice.

    from qfs_assets.replay import replay, compare_checkpoints
    result = replay(batches, before_ts=quarter_end, expected_checkpoints=checkpoints_table)
    result.chain_intact, result.invalid_events, result.final_roots.state
    result.checkpoint_comparison.first_mismatch_seq, result.snapshots
"""

from .compare import CheckpointCheck, CheckpointComparison, compare_checkpoints
from .engine import (
    EQM_COLUMNS,
    ChainBreak,
    InvalidEvent,
    ReplayEngine,
    ReplayInputError,
    ReplayResult,
    Roots,
    replay,
)
from .payloads import EVENT_FIELDS, EVENT_TYPES, parse_payload
from .rows import COMPONENT_FIELDS, COMPONENT_SCHEMAS, row_text

__all__ = [
    "replay",
    "ReplayEngine",
    "ReplayResult",
    "Roots",
    "ChainBreak",
    "InvalidEvent",
    "ReplayInputError",
    "compare_checkpoints",
    "CheckpointComparison",
    "CheckpointCheck",
    "EQM_COLUMNS",
    "EVENT_TYPES",
    "EVENT_FIELDS",
    "COMPONENT_FIELDS",
    "COMPONENT_SCHEMAS",
    "parse_payload",
    "row_text",
]
