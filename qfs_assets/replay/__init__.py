"""Replay of the EQM event log: hash-chain verification, state rebuild, state roots.

No Dagster. ``replay`` / ``ReplayEngine`` are the columnar engine (``columnar``, compiled kernels
in ``kernels``), which the drill uses; ``engine`` is the per-event reference engine with the same
semantics (documented there, every choice), kept as the tests' oracle and the benchmark's
"today's engine" (``engine.replay`` / ``engine.ReplayEngine``).

    from qfs_assets.replay import replay, compare_checkpoints
    result = replay(batches, before_ts=quarter_end, expected_checkpoints=checkpoints_table)
    result.chain_intact, result.invalid_events, result.final_roots.state
    result.checkpoint_comparison.first_mismatch_seq, result.snapshots
"""

from .compare import CheckpointCheck, CheckpointComparison, compare_checkpoints
from .columnar import ColumnarEngine as ReplayEngine
from .columnar import replay
from .result import EQM_COLUMNS, ChainBreak, InvalidEvent, ReplayInputError, ReplayResult, Roots
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
