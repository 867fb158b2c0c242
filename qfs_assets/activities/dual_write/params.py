"""Dual-write parameters (evidence-v1 defaults); the evidence records the operator's ones."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from qfs_assets.params import Params

DEFAULT_BATCH_ROWS = 131_072


class DualWriteParams(Params):
    KNOBS: ClassVar[tuple[str, ...]] = ("method", "batch_rows")

    #: sample of the system of record checked against the shard map, basis points (100 = 1 %)
    sample_bps: int = Field(100, ge=0, le=10_000)
    #: a difference must be resolved within this many hours of first being seen
    resolution_hours: int | float = Field(24, gt=0)
    #: "pg_hash" (PostgreSQL hashes every row, only differing rows are read; elsewhere "hash"),
    #: "hash" (rows matched on hashes, only differences compared; see diff.py), "merge" (ordered
    #: streams, flat memory) or "duckdb" (a full outer join; more memory)
    method: Literal["pg_hash", "hash", "merge", "duckdb"] = "pg_hash"
    #: rows per batch streamed from the system of record
    batch_rows: int = Field(DEFAULT_BATCH_ROWS, gt=0)
