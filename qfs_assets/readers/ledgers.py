"""The ATR fee ledger (`fees/`) and the NOD reward ledger (`rewards/`).

Duplicate ids are findings of the economics check, not bad input for it, so the ledgers can be
read without key validation (``validate_keys=False``); nulls, types and enumerations are
always enforced: by the reader's own pass, or (``validate=False``) by the caller's scan, which
computes :func:`~qfs_assets.readers.base.value_checks` with its own aggregates (economics).
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import duckdb

from qfs_assets.readers.base import ExportReader


def fee_ledger(reader: ExportReader, con: duckdb.DuckDBPyConnection, days: Sequence[dt.date], view: str = "fees", *, required: bool = True, validate_keys: bool = True,
               validate: bool = True) -> str:
    return reader.relation(con, "fees", days, view_name=view, required=required, validate_keys=validate_keys,
                           validate=validate)


def reward_ledger(reader: ExportReader, con: duckdb.DuckDBPyConnection, days: Sequence[dt.date], view: str = "rewards", *, required: bool = True, validate_keys: bool = True,
                  validate: bool = True) -> str:
    return reader.relation(con, "rewards", days, view_name=view, required=required, validate_keys=validate_keys,
                           validate=validate)
