"""Node health's storage-error part (evidence-v1.1): the day's ``storage_errors`` partition.

Four metrics (``storage_errors``, ``storage_errors_by_class``, ``corruption_errors``,
``storage_error_nodes``) and the criterion ``no_corruption_errors`` (corruption_errors == 0).
Where the feed does not cover the day (never published, or the day is before its first
partition), the four metrics are null, the criterion is left out of ``criteria`` and
``inputs.storage_errors`` says the feed is absent. Pure code, no Dagster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from qfs_assets.contract.schema import TABLES
from qfs_assets.evidence.model import CriterionSpec, Rule
from qfs_assets.readers.base import ExportReader
from qfs_assets.readers import storage_errors as feed

CRITERION = "no_corruption_errors"
METRICS = ("storage_errors", "storage_errors_by_class", "corruption_errors", "storage_error_nodes")
#: detail table: every checksum_mismatch of the day (node, object, shard)
TABLE_CORRUPTION = "node_health_corruption"


def criterion_spec() -> CriterionSpec:
    return CriterionSpec(CRITERION, (Rule("corruption_errors", max_value=0),), ("corruption_errors",), 0,
                         "corruption_errors == 0 (no checksum_mismatch among the storage errors of the day)")


@dataclass
class DayErrors:
    coverage: feed.FeedCoverage
    metrics: dict
    corruption: pa.Table | None  # None when the feed is absent

    @property
    def present(self) -> bool:
        return self.coverage.covers


def day_errors(reader: ExportReader, con: duckdb.DuckDBPyConnection, day: dt.date) -> DayErrors:
    """The day's storage-error metrics (validated read; a missing day after the first is bad input)."""
    cov = feed.coverage(reader, day)
    if not cov.covers:
        return DayErrors(cov, {k: None for k in METRICS}, None)
    view = feed.storage_errors_of_days(reader, con, [day], view="nh_storage_errors")
    return DayErrors(cov, feed.summarize(con, view), feed.corruption_rows(con, view))


def empty_corruption() -> pa.Table:
    return TABLES[feed.TABLE].schema.empty_table()
