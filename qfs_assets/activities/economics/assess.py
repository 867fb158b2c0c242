"""economics_sanity_check: the weekly conservation check of the fee and reward ledgers.

Pure code (no Dagster, no Great Expectations): :func:`assess_economics` reads one week of the
export with DuckDB and returns an :class:`~qfs_assets.evidence.model.ActivityResult` whose
metrics, criteria and detail tables are exactly those of evidence-v1.

Window and attribution
    The week is ``[Monday 00:00, next Monday 00:00)`` UTC. Only the seven date partitions of
    the week are read (``fees``, ``rewards``, ``eqm``: ``date=``; ``nodes``:
    ``snapshot_date=``), and rows are kept only when their ``ts`` is inside the window too: a
    row stamped exactly Monday 00:00 belongs to the week that starts then. Rows of the week's
    partitions whose ``ts`` falls outside the window are left out and counted in
    ``inputs.rows_outside_window``. A reward is attributed to the UTC day of its ``ts``, and
    compared with that day's end-of-day ``nodes`` snapshot.

Missing partitions versus an empty week (the choice made here)
    The StorageEngine writes one partition per table per day from the day the table begins,
    even when the day has no rows (a Parquet file with the schema and zero rows). So:

    - a day of the week **on or after** a table's first partition that has no partition (a gap,
      or a day not exported yet) is **bad input** ("missing partition date=...");
    - days **before** a table's first partition predate the network and read as empty; they
      are listed in ``inputs.pre_genesis_days`` (the genesis week);
    - a table with no partition at all, or a week that ends before the fee or reward ledger
      begins, is bad input: there is nothing to judge, and a vacuous pass would be misleading;
    - a week whose partitions are all present but hold no fee or reward rows is an **empty
      week**: every sum is 0 and the verdict is given by the same rules (it passes with the
      default ``buffer_min_atr = 0``, and fails conservation when ``buffer_min_atr > 0``).

Money
    Every amount is an exact ``int`` of minor units: sums are DuckDB ``HUGEINT`` converted to
    Python ``int`` (a 10M-row week cannot wrap), conversions round up
    (:mod:`qfs_assets.money`), and nothing is clamped: a negative margin is reported negative.
    Values that must be stored as int64 (the judge table, the daily flow) go through
    :func:`qfs_assets.money.require_int64`; a weekly ledger sum beyond int64 is bad input.

Metric definitions beyond the contract's wording
    - ``duplicate_tx_ids`` / ``duplicate_reward_ids``: the number of distinct ids that occur
      more than once among the week's rows. Every row with such an id is a finding, and every
      row still counts in ``fees_atr`` / ``rewards_nod`` (so a duplicated fee also shows in
      ``ledger_vs_log_atr``, since the log charges it once).
    - ``non_positive_amounts``: fee rows with ``amount_atr <= 0`` plus non-adjustment reward
      rows with ``amount_nod <= 0`` (adjustments may be negative: claw-backs).
    - ``rewards_to_failed_nodes``: non-adjustment reward rows whose node is ``failed`` or
      ``decommissioned`` in the snapshot of the reward's day. A node absent from that snapshot
      is not counted here.
    - ``ledger_vs_log_atr``: ``fees_atr`` minus the sum of ``amount_atr`` of the week's
      ``fee_charged`` EQM events (windowed by event ``ts``). A ``fee_charged`` payload that is
      not JSON or has no integer ``amount_atr`` is bad input. Of ``eqm`` only ``ts``,
      ``event_type`` and ``payload`` are read (and validated: types, nulls); the log's
      ``seq`` uniqueness and continuity and its hash chain are judged by
      storage_replay_drill, not here (a replayed ``fee_charged`` event shows up here as
      ``ledger_vs_log_atr != 0``).

Method (one pass over each table where it pays)
    - **Ledgers**: one aggregate query per ledger, grouped by day of the week (NULL: outside
      the window), computes together the reader's value checks
      (:func:`~qfs_assets.readers.base.value_checks`: nulls, timestamp range, enumerations; a
      value that does not cast to the contract's type fails the query over the typed view), each
      day's rows and exact sum, the rows outside the window, the non-positive amounts and, for
      rewards, the join with the failed nodes of each day's snapshot (the count and the finding
      rows). Any violation or query error is then reported by the reader's own validation pass,
      so bad input reads exactly as before, in the order of the tables (fees, rewards, eqm,
      nodes, then the payloads). Duplicate ids: a narrow second query reads the 64-bit hashes
      of the window's ids, numpy sorts them, and only the ids whose hash repeats are grouped
      exactly (usually none; see :func:`_duplicates`).
    - **Log**: the reader's validation of ``ts``, ``event_type`` and ``payload`` stays its own
      pass (DuckDB answers those null counts from the Parquet statistics, without decoding a
      payload: cheaper than adding them to the JSON scan), and one query parses each window
      ``fee_charged`` payload once (``json_extract``) and checks ``amount_atr`` on its text
      (:func:`_int_amount`).

Detail tables
    ``economics_daily_flow``: one row per day of the week (all seven, empty days included).
    ``fees_atr`` and ``rewards_nod`` are the day's sums. The conversions are applied to the
    *cumulative* week-to-date sums, and ``rewards_in_atr``, ``buffer_atr`` and ``margin_atr``
    are the day's increments of those cumulative values, so each column sums exactly to the
    weekly metric (no rounding drift) and ``running_margin_atr`` (week-to-date margin) on
    Sunday equals ``margin_atr``. ``buffer_min_atr`` is a weekly floor: it is carried from the
    first day on.
    ``economics_findings``: every offending row (kinds ``duplicate_tx_id``,
    ``duplicate_reward_id``, ``non_positive_amount``, ``reward_to_failed_node``).
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qfs_assets.contract.schema import TABLES, TS
from qfs_assets.evidence.model import ActivityResult, CriterionSpec, Rule
from qfs_assets.money import (
    ONE,
    ExchangeRate,
    Int64Overflow,
    buffer_atr,
    check_bps,
    nod_to_atr_ceil,
    require_int,
    require_int64,
)
from qfs_assets.readers.base import BadInput, ExportReader, connect, TableRead, read_tables_evidence, value_checks
from qfs_assets.sqltext import quote_ident, quote_literal
from qfs_assets.windows import week_days, week_window
from qfs_assets.readers.ledgers import fee_ledger, reward_ledger
from qfs_assets.readers.nodes import node_snapshots
from qfs_assets.activities.economics.params import EconomicsParams

ACTIVITY = "economics_sanity_check"
DAILY_FLOW_TABLE = "economics_daily_flow"
FINDINGS_TABLE = "economics_findings"

FAILED_STATUSES = ("failed", "decommissioned")
# Economics reads only these EQM columns: the log's seq continuity, uniqueness and hash chain
# are judged by storage_replay_drill (see the module docstring).
EQM_COLUMNS = ["ts", "event_type", "payload"]
FINDING_KINDS = ("duplicate_tx_id", "duplicate_reward_id", "non_positive_amount", "reward_to_failed_node")

# The judged metric keys: the contract's required ones in the order of evidence-v1, and
# non_positive_amounts, the project's key for ledger_integrity's "no non-adjustment amount <= 0"
# (the contract names the rule but no key for it).
METRIC_KEYS = (
    "fees_atr",
    "rewards_nod",
    "rewards_in_atr",
    "buffer_atr",
    "margin_atr",
    "duplicate_tx_ids",
    "duplicate_reward_ids",
    "non_positive_amounts",
    "rewards_to_failed_nodes",
    "ledger_vs_log_atr",
)

CRITERIA: tuple[CriterionSpec, ...] = (
    CriterionSpec(
        name="conservation",
        rules=(Rule("margin_atr", min_value=0),),
        observed=("fees_atr", "rewards_in_atr", "buffer_atr", "margin_atr"),
        threshold={"margin_atr_min": 0},
        description="fees_atr >= rewards_in_atr + buffer_atr, i.e. margin_atr >= 0",
    ),
    CriterionSpec(
        name="ledger_integrity",
        rules=(
            Rule("duplicate_tx_ids", equals=0),
            Rule("duplicate_reward_ids", equals=0),
            Rule("non_positive_amounts", equals=0),
        ),
        observed=("duplicate_tx_ids", "duplicate_reward_ids", "non_positive_amounts"),
        threshold={"duplicate_tx_ids": 0, "duplicate_reward_ids": 0, "non_positive_amounts": 0},
        description="no duplicate tx_id or reward_id and no non-adjustment amount <= 0",
    ),
    CriterionSpec(
        name="no_rewards_to_failed_nodes",
        rules=(Rule("rewards_to_failed_nodes", equals=0),),
        observed=("rewards_to_failed_nodes",),
        threshold=0,
        description="rewards_to_failed_nodes == 0",
    ),
    CriterionSpec(
        name="ledger_matches_log",
        rules=(Rule("ledger_vs_log_atr", equals=0),),
        observed=("ledger_vs_log_atr",),
        threshold=0,
        description="ledger_vs_log_atr == 0",
    ),
)

DAILY_FLOW_SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("fee_rows", pa.int64(), nullable=False),
        pa.field("reward_rows", pa.int64(), nullable=False),
        pa.field("fees_atr", pa.int64(), nullable=False),
        pa.field("rewards_nod", pa.int64(), nullable=False),
        pa.field("rewards_in_atr", pa.int64(), nullable=False),
        pa.field("buffer_atr", pa.int64(), nullable=False),
        pa.field("margin_atr", pa.int64(), nullable=False),
        pa.field("running_margin_atr", pa.int64(), nullable=False),
    ]
)

FINDINGS_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("ledger", pa.string(), nullable=False),  # fees | rewards
        pa.field("id", pa.string(), nullable=False),  # tx_id | reward_id
        pa.field("ts", TS, nullable=False),
        pa.field("party_id", pa.string(), nullable=False),  # account_id (fees) | node_id (rewards)
        pa.field("amount", pa.int64(), nullable=False),  # minor units of `unit`
        pa.field("unit", pa.string(), nullable=False),  # atr | nod
        pa.field("detail", pa.string(), nullable=False),
    ]
)


def _days_to_read(reader: ExportReader, table: str, days: list[dt.date], *, ledger: bool) -> tuple[list[dt.date], list[dt.date]]:
    """(days that must be present, days before the table's first partition)."""
    available = reader.available_dates(table)
    if not available:
        raise BadInput(table, "no partitions: the table is missing from the export", file=reader.table_dir(table))
    genesis = available[0]
    expected = [d for d in days if d >= genesis]
    if ledger and not expected:
        raise BadInput(
            table,
            f"the week {days[0].isoformat()}..{days[-1].isoformat()} ends before the ledger's first partition "
            f"{TABLES[table].partition_column}={genesis.isoformat()}: nothing to judge",
            file=reader.table_dir(table),
        )
    return expected, [d for d in days if d < genesis]


_DAY_US = 86_400 * 10**6


def _ts_sql(ts: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{ts.isoformat()}'"


def _epoch_us(ts: dt.datetime) -> int:
    return (ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _ledger_sum(value: int, table: str, column: str) -> int:
    try:
        return require_int64(value, f"weekly sum of {table}.{column}")
    except Int64Overflow as exc:
        raise BadInput(table, str(exc), column=column) from None


def assess_economics(reader: ExportReader, week_start: dt.date, params: EconomicsParams | None = None) -> ActivityResult:
    """Judge the economics of the week starting on Monday ``week_start``.

    Raises :class:`BadInput` for a missing partition, column or table, a null, a value that
    breaks the contract's types, or a malformed ``fee_charged`` payload; never returns a
    partial result.
    """
    params = params or EconomicsParams()
    start, end = week_window(week_start)
    days = week_days(week_start)
    in_window = f"ts >= {_ts_sql(start)} AND ts < {_ts_sql(end)}"
    # the day of the week (0 = Monday) of an in-window ts, NULL outside the window; integer
    # arithmetic on epoch microseconds is several times cheaper than ts::DATE on TIMESTAMPTZ
    day_index = f"CASE WHEN {in_window} THEN (epoch_us(ts) - {_epoch_us(start)}) // {_DAY_US} END"
    first_read = len(reader.reads)

    plan = {
        "fees": _days_to_read(reader, "fees", days, ledger=True),
        "rewards": _days_to_read(reader, "rewards", days, ledger=True),
        "eqm": _days_to_read(reader, "eqm", days, ledger=False),
        "nodes": _days_to_read(reader, "nodes", days, ledger=False),
    }

    con = connect()
    # The log's fee_charged sum does not depend on the ledgers: it runs in a thread, on its own
    # connection and reader, while the ledgers are scanned (see _log_fees).
    early_log = ThreadPoolExecutor(max_workers=1, thread_name_prefix="economics-log")
    log_con = connect()
    log_row = early_log.submit(_fee_charged_row, log_con, ExportReader(reader.root), plan["eqm"][0], in_window)
    try:
        # One aggregate scan per ledger: its value validation (nulls, types, ranges, enumerations),
        # daily sums, window counts, non-positive amounts (and, for rewards, the rewards to failed
        # nodes with their finding rows) together; see _scan_ledger.
        fee_ledger(reader, con, plan["fees"][0], "fees", validate_keys=False, validate=False)
        fees = _scan_ledger(reader, con, reader.reads[-1], "fees", day_index, in_window, amount="amount_atr", key="tx_id")
        reward_ledger(reader, con, plan["rewards"][0], "rewards", validate_keys=False, validate=False)
        reward_read = reader.reads[-1]
        # The rewards scan joins the nodes snapshots, so they (small) and the log are read and
        # validated first; their bad input is held so that it is reported in the order of the
        # tables (fees, rewards, eqm, nodes, then the fee_charged payloads), as when each table
        # was validated in turn.
        held: dict[str, BadInput] = {}
        try:
            reader.relation(con, "eqm", plan["eqm"][0], view_name="eqm", columns=EQM_COLUMNS)
        except BadInput as exc:
            held["eqm"] = exc
        try:
            node_snapshots(reader, con, plan["nodes"][0], view="nodes")
            nodes = "nodes"
        except BadInput as exc:
            held["nodes"] = exc
            nodes = "(SELECT NULL::DATE AS snapshot_date, NULL::VARCHAR AS node_id, NULL::VARCHAR AS status WHERE false)"
        failed = ", ".join(quote_literal(s) for s in FAILED_STATUSES)
        # (snapshot_date, node_id) is unique (node_id is each snapshot's validated key): joining
        # on it never multiplies reward rows.
        con.execute(
            f"CREATE TEMP TABLE failed_nodes AS SELECT (snapshot_date - DATE '{week_start.isoformat()}') AS failed_day, "
            f"snapshot_date, node_id, status FROM {nodes} WHERE status IN ({failed})"
        )
        rewards = _scan_ledger(reader, con, reward_read, "rewards", day_index, in_window, amount="amount_nod",
                               key="reward_id", must_be_positive="kind <> 'adjustment'")
        for table in ("eqm", "nodes"):
            if table in held:
                raise held[table]
        log_events, log_fees_atr = _log_fees(con, in_window, log_row)

        fee_days, fees_outside = fees.per_day, fees.outside
        reward_days, rewards_outside = rewards.per_day, rewards.outside
        rewards_to_failed_nodes = rewards.to_failed
        non_positive = fees.non_positive + rewards.non_positive
        duplicate_tx_ids = _duplicates(con, fees.repeated, "fees_w", "tx_id", "dup_fees")
        duplicate_reward_ids = _duplicates(con, rewards.repeated, "rewards_w", "reward_id", "dup_rewards")
        findings = _findings(con, non_positive, duplicate_tx_ids, duplicate_reward_ids, rewards_to_failed_nodes)
    finally:
        if not log_row.done():  # bad input elsewhere (or an interrupt): the log's scan is not needed
            log_con.interrupt()
        early_log.shutdown(wait=True, cancel_futures=True)
        log_con.close()
        con.close()

    zero = (0, 0)
    daily = {
        d: {"fee_rows": fee_days.get(i, zero)[0], "fees": fee_days.get(i, zero)[1],
            "reward_rows": reward_days.get(i, zero)[0], "rewards": reward_days.get(i, zero)[1]}
        for i, d in enumerate(days)
    }
    fees_atr = _ledger_sum(sum(v["fees"] for v in daily.values()), "fees", "amount_atr")
    rewards_nod = _ledger_sum(sum(v["rewards"] for v in daily.values()), "rewards", "amount_nod")
    rewards_in_atr = nod_to_atr_ceil(rewards_nod, params.atr_per_nod)
    buffer = buffer_atr(fees_atr, params.buffer_bps, params.buffer_min_atr)
    metrics: dict[str, Any] = {
        "fees_atr": fees_atr,
        "rewards_nod": rewards_nod,
        "rewards_in_atr": rewards_in_atr,
        "buffer_atr": buffer,
        "margin_atr": fees_atr - rewards_in_atr - buffer,
        "duplicate_tx_ids": duplicate_tx_ids,
        "duplicate_reward_ids": duplicate_reward_ids,
        "non_positive_amounts": non_positive,
        "rewards_to_failed_nodes": rewards_to_failed_nodes,
        "ledger_vs_log_atr": fees_atr - log_fees_atr,
        "fee_rows": sum(v["fee_rows"] for v in daily.values()),
        "reward_rows": sum(v["reward_rows"] for v in daily.values()),
        "log_fee_charged_events": log_events,
        "log_fee_charged_atr": log_fees_atr,
    }
    judge_table = pa.table({k: pa.array([require_int64(metrics[k], k)], pa.int64()) for k in METRIC_KEYS})

    reads = reader.reads[first_read:]
    inputs = {
        "export_root": str(reader.root),
        "tables": read_tables_evidence(reads),
        "eqm_columns": EQM_COLUMNS,
        # rows of the partitions read whose ts is outside the window (left out of every metric)
        "rows_outside_window": {"fees": fees_outside, "rewards": rewards_outside},
        "pre_genesis_days": {t: [d.isoformat() for d in p[1]] for t, p in plan.items() if p[1]},
    }
    return ActivityResult(
        activity=ACTIVITY,
        partition=week_start.isoformat(),
        window_start=start,
        window_end=end,
        metrics=metrics,
        inputs=inputs,
        parameters=params.as_evidence(),
        criteria_specs=list(CRITERIA),
        judge_table=judge_table,
        tables={DAILY_FLOW_TABLE: daily_flow(daily, params), FINDINGS_TABLE: findings},
    )


@dataclass
class _LedgerScan:
    """What one scan of a ledger found (see :func:`_scan_ledger`)."""

    per_day: dict[int, tuple[int, int]]  # day index -> (rows, exact sum)
    outside: int  # rows of the partitions read whose ts is outside the window
    non_positive: int  # in-window rows with amount <= 0 that must be positive
    to_failed: int  # in-window non-adjustment rewards to a failed node (rewards only)
    repeated: np.ndarray  # the hash(id) values that occur more than once among the window's rows


def _scan_ledger(reader: ExportReader, con: duckdb.DuckDBPyConnection, read: TableRead, table: str, day_index: str,
                 in_window: str, *, amount: str, key: str, must_be_positive: str = "TRUE") -> _LedgerScan:
    """One aggregate scan of a ledger's rows, grouped by day of the week (NULL: outside the window).

    It computes, together: the reader's value checks (:func:`~qfs_assets.readers.base.value_checks`:
    nulls, timestamp range, enumerations; over the typed view, a value that does not cast to
    the contract's type fails the query), each day's row count and exact sum (DuckDB's ``sum``
    over BIGINT accumulates HUGEINT, 128-bit), the non-positive amounts and, for rewards, the
    join with ``failed_nodes`` (count, and the offending rows, kept in table ``rewards_failed``
    for the findings). On a violation or a query error the reader's own validation pass reports
    it (the same one-line bad input as before). Then the 64-bit hashes of the window's ids are
    read and sorted, and those that repeat kept (for :func:`_duplicates`). Defines the views
    ``<table>_d`` (with ``day_index``) and ``<table>_w`` (the window's rows).
    """
    spec = TABLES[table]
    cols = spec.column_names
    con.execute(f"CREATE TEMP VIEW {table}_d AS SELECT *, {day_index} AS day_index FROM {table}")
    con.execute(f"CREATE TEMP VIEW {table}_w AS SELECT * FROM {table}_d WHERE {in_window}")
    checks = value_checks(spec, cols, cast_check=set())
    rewards = table == "rewards"
    source = f"{table}_d"
    aggs = [
        "count(*) AS n",
        f"sum({amount}) AS total",
        f"count(*) FILTER (WHERE {amount} <= 0 AND {must_be_positive}) AS bad",
    ]
    if rewards:
        # (snapshot_date, node_id) is unique in failed_nodes: the join never multiplies rows
        source = (f"(SELECT r.*, f.node_id IS NOT NULL AND r.kind <> 'adjustment' AS to_failed__, f.status AS status__, "
                  f"f.snapshot_date AS snapshot_date__ FROM rewards_d r "
                  f"LEFT JOIN failed_nodes f ON f.node_id = r.node_id AND f.failed_day = r.day_index)")
        aggs += [
            "count(*) FILTER (WHERE to_failed__) AS to_failed",
            "list({'reward_id': reward_id, 'ts': ts, 'node_id': node_id, 'amount_nod': amount_nod, "
            "'status': status__, 'snapshot_date': snapshot_date__}) FILTER (WHERE to_failed__) AS failed_rows",
        ]
    aggs += [f"{ch.aggregate} AS check_{i}" for i, ch in enumerate(checks)]
    try:
        got = con.sql(f"SELECT day_index, {', '.join(aggs)} FROM {source} GROUP BY day_index").to_arrow_table()
    except duckdb.Error:
        reader.validate(con, spec, table, cols, keys=False)  # names the offending file and column
        raise
    if any(pc.sum(got.column(f"check_{i}")).as_py() for i in range(len(checks))):
        read.rows = reader.validate(con, spec, table, cols, keys=False)  # reports the violation
    else:
        read.rows = int(pc.sum(got.column("n")).as_py() or 0)
    per_day: dict[int, tuple[int, int]] = {}
    outside = bad = to_failed = 0
    rows = got.select(["day_index", "n", "total", "bad"] + (["to_failed"] if rewards else [])).to_pylist()
    for r in rows:
        if r["day_index"] is None:
            outside += int(r["n"])
        else:
            per_day[r["day_index"]] = (int(r["n"]), int(r["total"]))
            bad += int(r["bad"])
            to_failed += int(r.get("to_failed") or 0)
    # the window ids' hashes, sorted: a second, narrow query (collecting them in the aggregate
    # above as a list costs more than reading the id column again)
    hashes = np.sort(con.execute(f"SELECT hash({key}) AS h FROM {table}_w").fetchnumpy()["h"])
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    del hashes  # (before the next table's scan)
    if rewards:
        con.register("rewards_failed__agg", got.select(["failed_rows"]))
        con.execute("CREATE TEMP TABLE rewards_failed AS SELECT unnest(failed_rows, recursive := true) FROM rewards_failed__agg")
        con.unregister("rewards_failed__agg")
    return _LedgerScan(per_day, outside, bad, to_failed, repeated)


def _duplicates(con: duckdb.DuckDBPyConnection, repeated: np.ndarray, view: str, key: str, into: str) -> int:
    """Distinct ``key`` values occurring more than once in ``view``, kept in table ``into`` (key, n).

    Exact, and cheap when there are none: the ledger's scan sorted the 64-bit hashes of the
    window's ids (numpy; a few times cheaper than a hash group-by over millions of distinct
    strings) and kept those that occur twice or more (``repeated``); only the rows with such a
    hash are then grouped by the key itself.
    """
    if not len(repeated):
        con.execute(f"CREATE TEMP TABLE {into} AS SELECT {key}, 0::BIGINT AS n FROM {view} WHERE false")
        return 0
    con.register(f"{into}__h", pa.table({"h": repeated}))
    con.execute(
        f"CREATE TEMP TABLE {into} AS SELECT {key}, count(*) AS n FROM {view} "
        f"WHERE hash({key}) IN (SELECT h FROM {into}__h) GROUP BY {key} HAVING count(*) > 1"
    )
    return int(_row(con, f"SELECT count(*) FROM {into}")[0])


def _row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    """The first row of a query, with the result consumed (DuckDB 2 refuses new work otherwise)."""
    return con.execute(sql).fetchall()[0]


def _amount_value(amount: str) -> str:
    """SQL: the BIGINT that the text of the JSON value ``amount`` casts to, or NULL."""
    return f"TRY_CAST({amount}::VARCHAR AS BIGINT)"


def _int_amount(amount: str, value: str | None = None) -> str:
    """SQL: the JSON value ``amount`` (``json_extract``'s output) is an integer that fits int64;
    ``value`` is :func:`_amount_value` of it when already computed.

    ``json_extract`` writes a value back in canonical form: an integer as plain decimal digits,
    a real always with a fraction or exponent (``1e2`` becomes ``100.0``), a string quoted. So
    the value is an int64 exactly when its text casts to BIGINT and back to the same text. This
    casts plain text (cast to BIGINT, a JSON value would be parsed as JSON again, and
    ``json_type`` parses it once more), and agrees with ``json_type(v) IN ('UBIGINT', 'BIGINT')
    AND TRY_CAST(v AS BIGINT) IS NOT NULL`` (see the economics tests' payload cases).
    """
    return f"{value or _amount_value(amount)}::VARCHAR = {amount}::VARCHAR"


def _fee_charged(in_window: str) -> str:
    """SQL predicate: a fee_charged event of the window."""
    return f"event_type = 'fee_charged' AND {in_window}"


def _fee_charged_sql(in_window: str) -> str:
    """SQL over view ``eqm``: (events, exact sum of amount_atr, events whose amount is not an int64)
    of the window's fee_charged events; the payload is parsed once (``json_extract``)."""
    return (f"SELECT count(*), sum(value::HUGEINT), count(*) FILTER (WHERE NOT coalesce({_int_amount('amount', 'value')}, false)) "
            f"FROM (SELECT amount, {_amount_value('amount')} AS value FROM "
            f"(SELECT json_extract(payload, '$.amount_atr') AS amount FROM eqm WHERE {_fee_charged(in_window)}))")


def _fee_charged_row(con: duckdb.DuckDBPyConnection, reader: ExportReader, days: list[dt.date], in_window: str) -> tuple:
    """:func:`_fee_charged_sql` on a connection and reader of its own (run in a thread while the
    ledgers are scanned; the caller closes the connection, and interrupts it when the run stops
    early). The log is not validated here: the caller validates it, and uses this row only when
    that passed (any error here sends it back to the serial query)."""
    reader.relation(con, "eqm", days, view_name="eqm", columns=EQM_COLUMNS, validate=False)
    return _row(con, _fee_charged_sql(in_window))


def _log_fees(con: duckdb.DuckDBPyConnection, in_window: str, early: Future | None = None) -> tuple[int, int]:
    """(events, exact sum of amount_atr) of the week's fee_charged events; bad input on a malformed payload.

    The payload is parsed once (``json_extract``; ``early`` is that query already running on a
    connection of its own, whose result is taken when it succeeded); a payload that is not JSON
    makes the query fail, and only then a second, diagnostic pass finds the first offending
    event and its file. (The log's value checks stay the reader's own pass: DuckDB answers its
    null counts from the Parquet statistics without decoding the payloads, which computing them
    here would not.) Measured on the benchmark's week (6M fee_charged events, 2 cores, quiet):
    the query takes ~0.85 s wall alone, and ``assess_economics`` ~2.55 s when it ran after the
    ledger scans.
    """
    fee_charged = _fee_charged(in_window)
    row = None
    if early is not None:
        try:
            row = early.result()
        except Exception:  # noqa: BLE001 - the query on the validated view below decides and reports
            row = None
    try:
        n, total, bad = row if row is not None else _row(con, _fee_charged_sql(in_window))
    except duckdb.InvalidInputException as exc:  # a payload that is not JSON, most likely
        error: Exception | None = exc
    else:
        if not bad:
            return int(n), int(total or 0)
        error = None
    # the reader's raw view keeps each row's file, so the error can name it
    amount = "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.amount_atr') END"
    first = con.execute(
        f"SELECT count(*) OVER (), __file, ts FROM (SELECT __file, ts, {amount} AS amount "
        f"FROM {quote_ident('eqm__raw')} WHERE {fee_charged}) WHERE NOT coalesce({_int_amount('amount')}, false) "
        "ORDER BY ts, __file LIMIT 1"
    ).fetchall()
    if not first and error is not None:  # the failure was not a payload's: let DuckDB's error through
        raise error
    bad, file, ts = first[0]
    raise BadInput(
        "eqm",
        f"fee_charged payload is not JSON with an int64 amount_atr: {bad} event(s) (first at ts={ts.isoformat()})",
        file=file,
        column="payload",
    )


def _findings(con: duckdb.DuckDBPyConnection, non_positive: int, dup_tx: int, dup_rw: int, failed: int) -> pa.Table:
    parts = []
    if dup_tx:
        parts.append(
            "SELECT 'duplicate_tx_id' AS kind, 'fees' AS ledger, f.tx_id AS id, f.ts, f.account_id AS party_id, "
            "f.amount_atr AS amount, 'atr' AS unit, 'tx_id occurs ' || d.n || ' times in the week' AS detail "
            "FROM fees_w f JOIN dup_fees d USING (tx_id)"
        )
    if dup_rw:
        parts.append(
            "SELECT 'duplicate_reward_id', 'rewards', r.reward_id, r.ts, r.node_id, r.amount_nod, 'nod', "
            "'reward_id occurs ' || d.n || ' times in the week' "
            "FROM rewards_w r JOIN dup_rewards d USING (reward_id)"
        )
    if non_positive:
        parts.append(
            "SELECT 'non_positive_amount', 'fees', tx_id, ts, account_id, amount_atr, 'atr', 'amount_atr <= 0' "
            "FROM fees_w WHERE amount_atr <= 0"
        )
        parts.append(
            "SELECT 'non_positive_amount', 'rewards', reward_id, ts, node_id, amount_nod, 'nod', "
            "'amount_nod <= 0 on a ' || kind || ' reward' FROM rewards_w WHERE amount_nod <= 0 AND kind <> 'adjustment'"
        )
    if failed:
        parts.append(
            "SELECT 'reward_to_failed_node', 'rewards', reward_id, ts, node_id, amount_nod, 'nod', "
            "'node ' || status || ' in the nodes snapshot of ' || strftime(snapshot_date, '%Y-%m-%d') "
            "FROM rewards_failed"
        )
    if not parts:
        return FINDINGS_SCHEMA.empty_table()
    names = ", ".join(FINDINGS_SCHEMA.names)
    tbl = con.sql(f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS u({names}) ORDER BY kind, ledger, ts, id").to_arrow_table()
    return tbl.cast(FINDINGS_SCHEMA)


def daily_flow(daily: dict[dt.date, dict[str, int]], params: EconomicsParams) -> pa.Table:
    """The week's money flow by day; see the module docstring for the definition."""
    cols: dict[str, list] = {name: [] for name in DAILY_FLOW_SCHEMA.names}
    cum_fees = cum_rewards = 0
    prev_in_atr = prev_buffer = prev_margin = 0
    for day in sorted(daily):
        v = daily[day]
        cum_fees += v["fees"]
        cum_rewards += v["rewards"]
        in_atr = nod_to_atr_ceil(cum_rewards, params.atr_per_nod)
        buf = buffer_atr(cum_fees, params.buffer_bps, params.buffer_min_atr)
        margin = cum_fees - in_atr - buf
        row = {
            "day": day,
            "fee_rows": v["fee_rows"],
            "reward_rows": v["reward_rows"],
            "fees_atr": v["fees"],
            "rewards_nod": v["rewards"],
            "rewards_in_atr": in_atr - prev_in_atr,
            "buffer_atr": buf - prev_buffer,
            "margin_atr": margin - prev_margin,
            "running_margin_atr": margin,
        }
        for name, value in row.items():
            cols[name].append(value if name == "day" else require_int64(value, f"{DAILY_FLOW_TABLE}.{name} on {day}"))
        prev_in_atr, prev_buffer, prev_margin = in_atr, buf, margin
    return pa.table(cols, schema=DAILY_FLOW_SCHEMA)
