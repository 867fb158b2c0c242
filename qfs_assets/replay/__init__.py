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
from .result import EQM_COLUMNS, ChainBreak, InvalidEvent, ReplayInputError, ReplayResult, Roots
from .payloads import EVENT_FIELDS, EVENT_TYPES, parse_payload
from .rows import COMPONENT_FIELDS, COMPONENT_SCHEMAS, row_text

#: loaded on first use (PEP 562): the columnar engine imports numba and compiles its kernels, which
#: every process that imports the definitions (and so this package, through the drill's module)
#: would otherwise pay for; only a drill run needs them
_LAZY = {"replay": ("columnar", "replay"), "ReplayEngine": ("columnar", "ColumnarEngine")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
