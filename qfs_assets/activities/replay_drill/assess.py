"""Quarterly replay drill (evidence-v1 ``storage_replay_drill``), free of Dagster.

A fresh columnar replay engine (``qfs_assets.replay.columnar``) replays the EQM log from genesis
(seq 0) through the last event of the quarter, streamed one date partition at a time, and its
state roots are compared with every published checkpoint whose ``ts`` is inside the quarter.
``start_from="snapshot"`` (an operator option; the default stays genesis) starts instead from
the state a previous drill saved and verified (``qfs_assets.replay.incremental``).

Choices where the contract is silent:
- Coverage (contract v1.1): every day from the log's first ``eqm`` partition to the quarter's
  last day must have a partition (a day without events holds an empty file); the first missing
  day is bad input naming table ``eqm`` and that day. No partition at all is bad input too.
- The replay stops at the first event whose ``ts`` is at or after the quarter's end.
- A quarter with no checkpoint fails ``deterministic_match`` (the contract requires
  ``checkpoints_compared > 0``) with a reason in the criterion's detail table, not a crash.
- Timings (events/s, elapsed seconds, peak RSS) are reported under ``timings`` in the JSON and
  not among the metrics, so two drills of the same log give identical evidence but for them.
- On a mismatch the replayed state of each mismatched component at the first mismatching
  checkpoint is written as ``replay_mismatch_<component>`` so an operator can diff it key by key
  against the production engine's state.
"""

from __future__ import annotations

import datetime as dt
import resource
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.evidence.model import ActivityResult, CriterionSpec, Rule
from qfs_assets.readers.base import BadInput, ExportReader, parquet_metadata
from qfs_assets.readers.eqm import eqm_dates, read_checkpoints, stream_eqm
from qfs_assets.activities.replay_drill.params import DrillParams
from qfs_assets.replay import ReplayInputError  # the replay engine itself is imported by the run (numba)
from qfs_assets.windows import quarter_window

ACTIVITY = "storage_replay_drill"


def criteria_specs() -> list[CriterionSpec]:
    return [
        CriterionSpec("chain_intact", (Rule("chain_intact", equals=1),), ("chain_intact",), True, "chain_intact is true"),
        CriterionSpec("no_invalid_events", (Rule("invalid_events", max_value=0),), ("invalid_events",), 0,
                      "invalid_events == 0"),
        CriterionSpec(
            "deterministic_match",
            (Rule("checkpoints_compared", min_value=1), Rule("checkpoints_unmatched", max_value=0)),
            ("checkpoints_compared", "checkpoints_matched"),
            {"checkpoints_compared": "> 0", "checkpoints_matched": "== checkpoints_compared"},
            "checkpoints_compared > 0 and checkpoints_matched == checkpoints_compared",
        ),
    ]


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def first_missing_day(days: list[dt.date], last_day: dt.date) -> dt.date | None:
    """The first day from ``days[0]`` to ``last_day`` without a partition (None when complete)."""
    have = set(days)
    d = days[0]
    while d <= last_day:
        if d not in have:
            return d
        d += dt.timedelta(days=1)
    return None


def log_rows(reader: ExportReader, days: list[dt.date]) -> int | None:
    """The log's row count from the Parquet footers (a few ms), so the engine can size its tables
    for the whole log at once; None when a file cannot be read (the replay then reports it)."""
    try:
        return sum(parquet_metadata(f).num_rows for f in reader.files("eqm", days))
    except Exception:  # noqa: BLE001 - only a sizing hint: the replay reads and validates every file
        return None


def assess_replay_drill(reader: ExportReader, quarter_start: dt.date, params: DrillParams | None = None,
                        state_root=None) -> ActivityResult:
    """Replay through the quarter and compare with its checkpoints; BadInput on bad input.

    ``state_root``: where verified states are saved and read (the evidence root); None: neither."""
    p = params or DrillParams()
    reader = ExportReader(reader.root)
    start, end = quarter_window(quarter_start)
    last_day = end.date() - dt.timedelta(days=1)
    days = eqm_dates(reader, through=last_day)
    if not days:
        raise BadInput("eqm", f"no partition up to the quarter's end {last_day.isoformat()}", file=reader.table_dir("eqm"))
    missing = first_missing_day(days, last_day)
    if missing is not None:
        raise BadInput("eqm", f"missing partition date={missing.isoformat()}: the log must cover every day from its "
                              f"first partition {days[0].isoformat()} to the quarter's end {last_day.isoformat()}",
                       file=reader.table_dir("eqm") / f"date={missing.isoformat()}")
    checkpoints = read_checkpoints(reader)
    ts = checkpoints.column("ts")
    in_quarter = checkpoints.filter(pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type))))

    from qfs_assets.replay.incremental import drill_replay  # the columnar engine: numba, only when a drill runs

    try:
        run = drill_replay(lambda: stream_eqm(reader, through=last_day, batch_rows=p.batch_rows), quarter=quarter_start,
                           end=end, checkpoints=checkpoints, in_quarter=in_quarter, start_from=p.start_from,
                           state_root=state_root, batch_rows=p.batch_rows, expected_events=log_rows(reader, days))
    except ReplayInputError as exc:
        raise BadInput("eqm", str(exc)) from None
    result = run.result

    cmp = result.checkpoint_comparison
    compared, matched = cmp.compared, cmp.matched
    metrics = {
        "events_replayed": result.events_replayed,
        "chain_intact": result.chain_intact,
        "first_broken_seq": result.first_broken_seq,
        "invalid_events": len(result.invalid_events),
        "checkpoints_compared": compared,
        "checkpoints_matched": matched,
        "first_mismatch_seq": cmp.first_mismatch_seq,
        "mismatched_components": cmp.mismatched_components,
        "final_state_root": result.final_state_root,
        "last_event_ts": result.last_ts,
        # supplementary
        "last_seq": result.last_seq,
        "chain_breaks": result.chain_breaks,
        "chain_break_reason": result.chain_break.reason if result.chain_break else None,
        "checkpoints_published_total": checkpoints.num_rows,
    }
    tables = {
        "replay_checkpoints": cmp.to_table(),
        "replay_invalid_events": pa.Table.from_pylist(
            [{"seq": e.seq, "event_type": e.event_type, "reason": e.reason} for e in result.invalid_events],
            schema=pa.schema([("seq", pa.int64()), ("event_type", pa.string()), ("reason", pa.string())])),
        "replay_chain_breaks": pa.Table.from_pylist(
            [{"seq": result.chain_break.seq, "reason": result.chain_break.reason}] if result.chain_break else [],
            schema=pa.schema([("seq", pa.int64()), ("reason", pa.string())])),
    }
    for seq, components in (result.snapshots or {}).items():
        for component, table in components.items():
            tables[f"replay_mismatch_{component}"] = table.append_column(
                "checkpoint_seq", pa.array([seq] * table.num_rows, pa.int64()))
    judge = pa.table({
        "chain_intact": pa.array([int(result.chain_intact)], pa.int64()),
        "invalid_events": pa.array([len(result.invalid_events)], pa.int64()),
        "checkpoints_compared": pa.array([compared], pa.int64()),
        "checkpoints_unmatched": pa.array([compared - matched], pa.int64()),
    })
    notes = list(run.notes)
    if compared == 0:
        notes.append("no checkpoint was published with a ts inside the quarter: deterministic_match cannot pass")
    return ActivityResult(
        activity=ACTIVITY,
        partition=quarter_start.isoformat(),
        window_start=start,
        window_end=end,
        metrics=metrics,
        inputs={
            "export_root": str(reader.root),
            "eqm_partitions": [d.isoformat() for d in days],
            "eqm_first_partition": days[0].isoformat(),
            "eqm_last_partition": days[-1].isoformat(),
            "checkpoints_in_quarter": in_quarter.num_rows,
            "replay_start": run.started_from,
            "tables": [r.as_evidence() for r in reader.reads if r.table == "checkpoints"],
        },
        parameters=p.as_evidence(),
        criteria_specs=criteria_specs(),
        judge_table=judge,
        tables=tables,
        extra={
            "notes": notes,
            "replay_state_saved": run.saved_state,
            "timings": {
                "elapsed_seconds": round(result.elapsed_seconds, 3),
                "events_per_second": round(result.events_per_second or 0.0, 1),
                "peak_rss_bytes": _peak_rss_bytes(),
            },
        },
    )
