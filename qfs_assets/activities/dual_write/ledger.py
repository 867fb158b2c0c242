"""The persistent dual-write diff ledger: when each difference was first seen and when it went away.

Layout: one Parquet file, ``<evidence_root>/dual_write_diff_ledger/ledger.parquet``, rewritten
atomically (temporary file, then rename) under an exclusive file lock (``filelock``) on a sibling lock file,
so concurrent partition runs never lose an update. Readable as it is by pyarrow and DuckDB.

Model. A *run* is one observation of the live system of record against a snapshot: a
``run_key`` (``daily:<day>`` for a daily diff, ``monthly:<month>`` for the monthly
verification) and the run's ``as_of`` time. Runs are ordered by ``(as_of, run_key)``; the ordered list is stored in
the file's schema metadata (key ``qfs.dual_write.runs``), so rows and runs change together in
one rename. A *diff* is an ``(object_id, category)`` pair. Each row of the file is an
*episode*: the diff was seen in every run from ``first_seen_run`` to ``last_seen_run`` (runs
consecutive in run order) and in neither neighbour; ``resolved_run``/``resolved_at`` is the
first run after the episode in which the diff was no longer seen (null while still open).
A diff that comes back after being resolved opens a new episode; a diff that changes
category is a different diff. An object in flight is not judged, so it is "not seen": a diff
whose object is in flight in a later run counts as resolved by it.

Applying a run replaces the run with the same ``run_key`` if there is one, so re-running the
same day is idempotent (same ``as_of`` and same diffs: the same file). Appending a run after
the latest one, or replacing the latest one, touches only the open episodes (O(open diffs));
a run inserted before the latest one (a backfill) re-derives every episode from the runs
(O(sum of episode lengths)) with a gaps-and-islands query. Both paths give the same ledger
(tested with Hypothesis over random sequences of runs, re-runs and backfills).

``unresolved_over(run_key, hours)``: diffs present in that run whose episode began more than
``hours`` before the run's ``as_of`` (``first_seen < as_of - hours``).

``reached_limit(run_key, hours)``: diffs present in that run that were open ``hours`` or more at
its ``as_of`` and had not been at the run before (the day a difference reaches the limit: it can
no longer be resolved in time). ``resolved_late(first_day, last_day, hours)``: episodes resolved
by a daily diff of those days more than ``hours`` after they were first seen (evidence-v1.1
``resolved_late``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from qfs_assets.contract.schema import TS
from qfs_assets.evidence.atomic import write_parquet_atomic
from qfs_assets.evidence.store import EvidenceStore
from qfs_assets.readers.sor import to_epoch_us
from qfs_assets.windows import require_utc

LEDGER_DIR = "dual_write_diff_ledger"
LEDGER_FILE = "ledger.parquet"
RUNS_METADATA_KEY = b"qfs.dual_write.runs"

EPISODE_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("first_seen", TS, nullable=False),
        pa.field("first_seen_run", pa.string(), nullable=False),
        pa.field("last_seen", TS, nullable=False),
        pa.field("last_seen_run", pa.string(), nullable=False),
        pa.field("resolved_at", TS),
        pa.field("resolved_run", pa.string()),
    ]
)
DIFF_KEY_SCHEMA = pa.schema([pa.field("object_id", pa.string()), pa.field("category", pa.string())])
UNRESOLVED_SCHEMA = pa.schema([pa.field("object_id", pa.string()), pa.field("category", pa.string()), pa.field("first_seen", TS)])


@dataclass(frozen=True)
class Run:
    run_key: str
    as_of: dt.datetime

    def as_json(self) -> dict:
        return {"run_key": self.run_key, "as_of": self.as_of.astimezone(dt.timezone.utc).isoformat()}

    @staticmethod
    def from_json(d: dict) -> "Run":
        return Run(d["run_key"], dt.datetime.fromisoformat(d["as_of"]))


@dataclass
class LedgerUpdate:
    """What one run did to the ledger (for the evidence and the daily diff's metadata)."""

    run_key: str
    as_of: dt.datetime
    path: Path
    seen: int  # diffs present in this run
    opened: int  # first seen in this run
    carried: int  # seen in this run, first seen in an earlier run
    resolved: int  # seen in the run before, not in this one
    unresolved_over_threshold: int
    resolution_hours: float
    unresolved: pa.Table  # UNRESOLVED_SCHEMA: the diffs counted in unresolved_over_threshold
    present: pa.Table  # UNRESOLVED_SCHEMA: every diff seen in this run, with its first_seen
    path_used: str  # "append", "replace_latest" or "recompute"

    def as_evidence(self) -> dict:
        return {
            "ledger": str(self.path), "run_key": self.run_key, "as_of": self.as_of.astimezone(dt.timezone.utc).isoformat(),
            "diffs_seen": self.seen, "diffs_opened": self.opened, "diffs_carried": self.carried,
            "diffs_resolved": self.resolved, "resolution_hours": self.resolution_hours,
        }


def _sort_key(r: Run) -> tuple:
    return (r.as_of, r.run_key)


class DiffLedger:
    """The ledger under ``<evidence_root>/dual_write_diff_ledger/``.

    With an evidence root in object storage (``s3://``) the ledger itself stays on a local disk
    (``QFS_STATE_DIR``: its lock and its rename need one) and every update is then copied, in one
    PUT, to ``<evidence_root>/dual_write_diff_ledger/ledger.parquet`` for readers (metrics,
    analysts). One writer host only: a lock on one machine does not protect another's copy.
    """

    def __init__(self, evidence_root: str | Path) -> None:
        from qfs_assets import storage_uri

        self.root = Path(storage_uri.local_state_dir(evidence_root))
        self.dir = self.root / LEDGER_DIR
        self.path = self.dir / LEDGER_FILE
        self.mirror = None
        if storage_uri.is_remote(str(evidence_root)):
            self.mirror = storage_uri.upath(str(evidence_root)) / LEDGER_DIR / LEDGER_FILE

    # -- storage ---------------------------------------------------------------------------
    def _locked(self) -> FileLock:
        """The exclusive lock of a read-modify-write (processes and threads alike)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / ".ledger.lock")

    def load(self) -> tuple[pa.Table, list[Run]]:
        """The episodes and the ordered runs (empty when no run was applied yet)."""
        if not self.path.exists():
            return EPISODE_SCHEMA.empty_table(), []
        tbl = pq.read_table(self.path)
        meta = (tbl.schema.metadata or {}).get(RUNS_METADATA_KEY)
        runs = [Run.from_json(d) for d in json.loads(meta)] if meta else []
        return tbl.cast(EPISODE_SCHEMA), sorted(runs, key=_sort_key)

    def _save(self, episodes: pa.Table, runs: list[Run]) -> None:
        episodes = _sorted(episodes.cast(EPISODE_SCHEMA))
        meta = json.dumps([r.as_json() for r in runs], separators=(",", ":")).encode()
        table = episodes.replace_schema_metadata({RUNS_METADATA_KEY: meta})
        write_parquet_atomic(self.path, table)
        if self.mirror is not None:
            write_parquet_atomic(self.mirror, table)

    # -- updating --------------------------------------------------------------------------
    def apply(self, run_key: str, as_of: dt.datetime, diffs: pa.Table, resolution_hours: float = 24) -> LedgerUpdate:
        """Record run ``run_key`` at ``as_of`` that saw ``diffs`` (``object_id``, ``category``)."""
        run = Run(str(run_key), require_utc(as_of, "as_of"))
        diffs = diffs.select(["object_id", "category"]).cast(DIFF_KEY_SCHEMA)
        with EvidenceStore(self.root).writing(self.path), self._locked():
            episodes, runs = self.load()
            old = next((r for r in runs if r.run_key == run.run_key), None)
            others = [r for r in runs if r.run_key != run.run_key]
            new_runs = sorted(others + [run], key=_sort_key)
            appends_last = new_runs[-1] == run and (old is None or old == runs[-1])
            con = _con()
            if appends_last:
                how = "append"
                if old is not None:
                    how = "replace_latest"
                    episodes = _undo_latest(con, episodes, old, others[-1] if others else None)
                episodes = _append(con, episodes, run, others[-1] if others else None, diffs)
            else:
                how = "recompute"
                episodes = _recompute(con, episodes, runs, run, new_runs, diffs)
            self._save(episodes, new_runs)
        return self._summary(episodes, new_runs, run, resolution_hours, how)

    def unresolved_over(self, run_key: str, resolution_hours: float = 24) -> pa.Table:
        """Diffs present in run ``run_key`` and first seen more than ``resolution_hours`` before it."""
        episodes, runs = self.load()
        run = next((r for r in runs if r.run_key == run_key), None)
        if run is None:
            raise KeyError(f"no run {run_key!r} in the diff ledger")
        return _unresolved(episodes, runs, run, resolution_hours)

    def reached_limit(self, run_key: str, resolution_hours: float = 24) -> pa.Table:
        """Diffs of run ``run_key`` open ``resolution_hours`` or more at its ``as_of`` that had not
        reached it at the run before (UNRESOLVED_SCHEMA)."""
        episodes, runs = self.load()
        keys = [r.run_key for r in runs]
        if run_key not in keys:
            raise KeyError(f"no run {run_key!r} in the diff ledger")
        i = keys.index(run_key)
        limit = dt.timedelta(hours=resolution_hours)
        now = _present(episodes, runs, runs[i]).to_pylist()
        before = {(r["object_id"], r["category"], r["first_seen"])
                  for r in (_present(episodes, runs, runs[i - 1]).to_pylist() if i else [])
                  if r["first_seen"] <= runs[i - 1].as_of - limit}
        rows = [r for r in now if r["first_seen"] <= runs[i].as_of - limit
                and (r["object_id"], r["category"], r["first_seen"]) not in before]
        return pa.Table.from_pylist([{k: r[k] for k in UNRESOLVED_SCHEMA.names} for r in rows], schema=UNRESOLVED_SCHEMA)

    def resolved_late(self, first_day: dt.date, last_day: dt.date, resolution_hours: float = 24) -> pa.Table:
        """Episodes resolved by a daily diff of ``first_day..last_day`` more than ``resolution_hours``
        after they were first seen (EPISODE_SCHEMA)."""
        episodes, _ = self.load()
        limit = dt.timedelta(hours=resolution_hours)
        first, last = f"daily:{first_day.isoformat()}", f"daily:{last_day.isoformat()}"
        rows = [r for r in episodes.to_pylist()
                if r["resolved_run"] and r["resolved_run"].startswith("daily:") and first <= r["resolved_run"] <= last
                and r["resolved_at"] - r["first_seen"] > limit]
        return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)

    def _summary(self, episodes: pa.Table, runs: list[Run], run: Run, hours: float, how: str) -> LedgerUpdate:
        seen = _present(episodes, runs, run)
        key = pa.scalar(run.run_key)
        opened = _count(pc.equal(seen.column("first_seen_run"), key))
        resolved = _count(pc.equal(episodes.column("resolved_run"), key))
        unresolved = _unresolved(episodes, runs, run, hours)
        return LedgerUpdate(
            run_key=run.run_key, as_of=run.as_of, path=self.path, seen=seen.num_rows, opened=opened,
            carried=seen.num_rows - opened, resolved=resolved, unresolved_over_threshold=unresolved.num_rows,
            resolution_hours=hours, unresolved=unresolved,
            present=seen.select(UNRESOLVED_SCHEMA.names).cast(UNRESOLVED_SCHEMA), path_used=how,
        )


# -- the pieces (DuckDB over Arrow) -------------------------------------------------------------

_LOCAL = threading.local()


def _con() -> duckdb.DuckDBPyConnection:
    """A per-thread in-memory DuckDB connection (connecting costs ~10-30 ms; a ledger update less)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = _LOCAL.con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'").fetchall()
    return con


def _count(mask) -> int:
    return int(pc.sum(pc.cast(pc.fill_null(mask, False), pa.int64())).as_py() or 0)


def _sorted(tbl: pa.Table) -> pa.Table:
    if tbl.num_rows == 0:
        return tbl
    return tbl.sort_by([("object_id", "ascending"), ("category", "ascending"), ("first_seen", "ascending")])


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pa.Table:
    return con.sql(sql, params=params).to_arrow_table().cast(EPISODE_SCHEMA)


_COLS = ", ".join(EPISODE_SCHEMA.names)


def _undo_latest(con, episodes: pa.Table, latest: Run, prev: Run | None) -> pa.Table:
    """The ledger as it was before ``latest`` (the newest run) was applied."""
    con.register("ep", episodes)
    sql = f"""
        SELECT object_id, category, first_seen, first_seen_run,
               CASE WHEN last_seen_run = $t THEN $p_at ELSE last_seen END AS last_seen,
               CASE WHEN last_seen_run = $t THEN $p_key ELSE last_seen_run END AS last_seen_run,
               CASE WHEN resolved_run = $t THEN NULL ELSE resolved_at END AS resolved_at,
               CASE WHEN resolved_run = $t THEN NULL ELSE resolved_run END AS resolved_run
        FROM ep WHERE first_seen_run <> $t
    """
    out = _query(con, sql, {"t": latest.run_key, "p_at": prev.as_of if prev else None, "p_key": prev.run_key if prev else None})
    con.unregister("ep")
    return out


def _append(con, episodes: pa.Table, run: Run, prev: Run | None, diffs: pa.Table) -> pa.Table:
    """Apply ``run`` after ``prev`` (the newest run before it): extend, resolve or open episodes."""
    con.register("ep", episodes)
    con.register("d", diffs)
    sql = f"""
        WITH seen AS (SELECT DISTINCT object_id, category FROM d),
        open_ep AS (SELECT * FROM ep WHERE resolved_run IS NULL),
        closed AS (SELECT {_COLS} FROM ep WHERE resolved_run IS NOT NULL),
        continued AS (
            SELECT o.object_id, o.category, o.first_seen, o.first_seen_run,
                   CASE WHEN s.object_id IS NULL THEN o.last_seen ELSE $at END AS last_seen,
                   CASE WHEN s.object_id IS NULL THEN o.last_seen_run ELSE $key END AS last_seen_run,
                   CASE WHEN s.object_id IS NULL THEN $at END AS resolved_at,
                   CASE WHEN s.object_id IS NULL THEN $key END AS resolved_run
            FROM open_ep o LEFT JOIN seen s USING (object_id, category)
        ),
        opened AS (
            SELECT s.object_id, s.category, $at AS first_seen, $key AS first_seen_run, $at AS last_seen,
                   $key AS last_seen_run, NULL AS resolved_at, NULL AS resolved_run
            FROM seen s ANTI JOIN open_ep o USING (object_id, category)
        )
        SELECT * FROM closed UNION ALL SELECT * FROM continued UNION ALL SELECT * FROM opened
    """
    out = _query(con, sql, {"at": run.as_of, "key": run.run_key})
    con.unregister("ep")
    con.unregister("d")
    return out


def _timestamps(values: list[dt.datetime]) -> pa.Array:
    return pa.array([to_epoch_us(v) for v in values], pa.int64()).cast(TS)


def _runs_table(runs: list[Run]) -> pa.Table:
    return pa.table(
        {"idx": pa.array(range(len(runs)), pa.int64()), "run_key": [r.run_key for r in runs], "as_of": _timestamps([r.as_of for r in runs])}
    )


def _recompute(con, episodes: pa.Table, old_runs: list[Run], run: Run, new_runs: list[Run], diffs: pa.Table) -> pa.Table:
    """Expand episodes to (diff, run) presence, replace one run's column, and re-form episodes."""
    con.register("ep", episodes)
    con.register("d", diffs)
    con.register("old_runs", _runs_table(old_runs))
    con.register("new_runs", _runs_table(new_runs))
    sql = f"""
        WITH presence AS (
            SELECT e.object_id, e.category, r.run_key
            FROM ep e
            JOIN old_runs f ON f.run_key = e.first_seen_run
            JOIN old_runs l ON l.run_key = e.last_seen_run
            JOIN old_runs r ON r.idx BETWEEN f.idx AND l.idx
            WHERE r.run_key <> $key
            UNION
            SELECT object_id, category, $key FROM d
        ),
        numbered AS (
            SELECT p.object_id, p.category, n.idx,
                   n.idx - row_number() OVER (PARTITION BY p.object_id, p.category ORDER BY n.idx) AS island
            FROM presence p JOIN new_runs n USING (run_key)
        ),
        islands AS (
            SELECT object_id, category, min(idx) AS first_idx, max(idx) AS last_idx
            FROM numbered GROUP BY object_id, category, island
        )
        SELECT i.object_id, i.category, f.as_of AS first_seen, f.run_key AS first_seen_run,
               l.as_of AS last_seen, l.run_key AS last_seen_run, n.as_of AS resolved_at, n.run_key AS resolved_run
        FROM islands i
        JOIN new_runs f ON f.idx = i.first_idx
        JOIN new_runs l ON l.idx = i.last_idx
        LEFT JOIN new_runs n ON n.idx = i.last_idx + 1
    """
    out = _query(con, sql, {"key": run.run_key})
    for name in ("ep", "d", "old_runs", "new_runs"):
        con.unregister(name)
    return out


def _run_index(column: pa.ChunkedArray, runs: list[Run]) -> pa.ChunkedArray:
    """The position in run order of each run key."""
    return pc.index_in(column, value_set=pa.array([r.run_key for r in runs], pa.string()))


def _present(episodes: pa.Table, runs: list[Run], run: Run) -> pa.Table:
    """Episodes that include ``run`` (first_seen_run <= run <= last_seen_run in run order)."""
    at = pa.scalar([r.run_key for r in runs].index(run.run_key), pa.int32())
    first = _run_index(episodes.column("first_seen_run"), runs)
    last = _run_index(episodes.column("last_seen_run"), runs)
    return episodes.filter(pc.and_(pc.less_equal(first, at), pc.greater_equal(last, at)))


def _unresolved(episodes: pa.Table, runs: list[Run], run: Run, hours: float) -> pa.Table:
    cutoff = pa.scalar(to_epoch_us(run.as_of - dt.timedelta(hours=hours)), pa.int64())
    present = _present(episodes, runs, run)
    old = present.filter(pc.less(pc.cast(present.column("first_seen"), pa.int64()), cutoff))
    return old.select(UNRESOLVED_SCHEMA.names).cast(UNRESOLVED_SCHEMA)
