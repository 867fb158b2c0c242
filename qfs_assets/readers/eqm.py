"""The EQM event log (`eqm/date=YYYY-MM-DD/`) and the published `checkpoints/`.

The log is streamed in seq order one date partition at a time, so replay memory is bounded
by the largest day, never the whole log.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator

import pyarrow as pa

from qfs_assets.readers.base import ExportReader, connect
from qfs_assets.sqltext import quote_ident


def eqm_dates(reader: ExportReader, through: dt.date | None = None) -> list[dt.date]:
    """Every EQM partition date, up to and including ``through``."""
    return [d for d in reader.available_dates("eqm") if through is None or d <= through]


def stream_eqm(reader: ExportReader, through: dt.date | None = None, batch_rows: int = 262_144) -> Iterator[pa.RecordBatch]:
    """Validated EQM record batches in seq order, partition by partition (genesis first)."""
    con = connect()
    try:
        for day in eqm_dates(reader, through):
            view = reader.relation(con, "eqm", [day], view_name="eqm_day")
            cur = con.execute(f"SELECT * FROM {quote_ident(view)} ORDER BY seq")
            reader_ = cur.to_arrow_reader(batch_rows)
            for batch in reader_:
                if batch.num_rows:
                    yield batch
    finally:
        con.close()


def read_checkpoints(reader: ExportReader) -> pa.Table:
    """Every published checkpoint, sorted by seq (validated; an absent table reads empty)."""
    tbl = reader.read("checkpoints", required=False)
    return tbl.sort_by("seq")
