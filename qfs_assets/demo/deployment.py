"""What :func:`~qfs_assets.demo.generator.generate` made: :class:`DemoDeployment`, with helpers
to read it back (partition paths, the system of record as of a day and its expected diffs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from qfs_assets.demo.config import DemoConfig
from qfs_assets.demo.export_writer import partition_file
from qfs_assets.demo.incidents import Incident
from qfs_assets.demo.sor_table import build_sor_table, compare_sor
from qfs_assets.demo.sor_writer import read_sor, write_sor


@dataclass
class DemoDeployment:
    out_dir: Path
    export_root: Path
    sor_url: str
    sor_schema: str | None
    start: date
    end: date
    days: list[date]
    incidents: list[Incident]
    expected_dual_write_diffs: dict[str, str]  # object_id -> one of DIFF_CATEGORIES
    checkpoint_count: int
    event_count: int
    row_counts: dict[str, int]
    final_state_root: str
    config: DemoConfig

    def incident(self, name: str) -> Incident | None:
        return next((i for i in self.incidents if i.name == name), None)

    def partition_path(self, table: str, day: date | None = None) -> Path:
        return partition_file(self.export_root, table, day)

    def sor_table(self, as_of: date | None = None, drift: bool | None = None) -> tuple[pa.Table, dict[str, str]]:
        """The system of record as it would look at the end of ``as_of`` (default: the last
        day, i.e. exactly what was written), with its expected diffs against that day's manifest."""
        as_of = as_of or self.end
        if drift is None:
            drift = self.config.dual_write_drift
        objs = pq.read_table(self.partition_path("objects", as_of))
        if as_of == self.end and drift == self.config.dual_write_drift:  # exactly what was written
            from qfs_assets.demo.generator import demo_sor_table

            tbl, diffs, _ = demo_sor_table(self.config, objs, self.start, as_of)
            return tbl, diffs
        return build_sor_table(objs, as_of, self.config.seed, self.config.drift if drift else None, since=self.start)

    def write_sor_as_of(
        self, url: str, as_of: date, schema: str | None = None, drift: bool | None = None
    ) -> dict[str, str]:
        """Write the system of record as of the end of ``as_of`` to ``url``; returns its expected diffs."""
        tbl, diffs = self.sor_table(as_of, drift)
        write_sor(url, tbl, schema=schema)
        return diffs

    def live_sor_diffs(self, day: date) -> dict[str, str]:
        """What comparing the written (live) system of record with the manifest of ``day``
        shows: {object_id: category}, in-flight rows included (a plain reference comparison,
        for tests of the dual-write activity; for the last day it equals
        ``expected_dual_write_diffs``)."""
        manifest = pq.read_table(self.partition_path("objects", day))
        return compare_sor(read_sor(self.sor_url, self.sor_schema), manifest, day)

    def to_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["start"] = self.config.start.isoformat()
        return {
            "export_root": str(self.export_root),
            "sor_url": sa.engine.make_url(self.sor_url).render_as_string(hide_password=True),
            "sor_schema": self.sor_schema,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": len(self.days),
            "incidents": [i.to_json() for i in self.incidents],
            "expected_dual_write_diffs": self.expected_dual_write_diffs,
            "checkpoint_count": self.checkpoint_count,
            "event_count": self.event_count,
            "row_counts": self.row_counts,
            "final_state_root": self.final_state_root,
            "config": cfg,
        }
