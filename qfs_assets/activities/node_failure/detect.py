"""Finding node failures: EQM ``node_status_changed`` events and the ``nodes`` snapshots.

Pure code (no Dagster). A *failure* is a node's transition into status ``failed``: the status
events of the EQM log and the end-of-day node snapshots are merged on one timeline and fed to
a small per-node state machine whose state is the set of *known failure intervals*
``[failed_at, closed_at)`` (``closed_at`` is None while the failure is open):

- an EQM event to ``failed`` for a node with no open failure opens a new failure
  (``source="eqm"``, ``failed_at`` = event ts, ``seq`` = event seq); a repeated ``failed``
  while one is open is not a new failure;
- an EQM event to any other status (``active``, ``degraded``, ``decommissioned``) closes the
  node's open failure, so a node that recovers and fails again later yields a new failure.
  ``degraded`` is in service (qfs-export-v1) and is never a failure;
- a ``nodes`` snapshot (end of day ``D``) is a fallback: a node ``failed`` there that no known
  failure interval covers at the end of ``D`` (and with no open failure) is a failure of
  ``source="snapshot"``, ``seq=None`` and ``failed_at`` = ``D`` 00:00 UTC, the earliest time
  the snapshot is consistent with (it is also the day economics_sanity_check attributes
  rewards to a failed node, so the claw-back covers every reward that check would flag).
  A node *not* failed in a snapshot that is newer than every EQM event already seen closes
  its open failure (the log may lack the recovery event). Observations are ordered by time; a
  snapshot observation sorts before EQM events stamped exactly at the next midnight.

Every snapshot newer than the cursor is an observation. In steady state (a sensor tick per
export day) that is the newest snapshot only; on a first scan it is every snapshot, so a
snapshot-only failure gets the same id (its *first* failed snapshot day) whether the history
is scanned at once or tick by tick. Only the rows that can change the state are fetched
(failed rows, each node's first row, recoveries, and the nodes the log or cursor mentions).

Stable ids: ``failure_id = f"{node_id}_{YYYYMMDD of failed_at}"``, the dynamic partition key
and evidence stem. A second failure of the same node on the same UTC day (fail, recover, fail
again) gets ``_2``, ``_3``, ... appended so that ids stay unique. Detection reports every failure,
whatever its node id; :func:`parse_failure_id` (what a partition key must pass) accepts only node
ids that are safe file names (:mod:`qfs_assets.safenames`), since the id names evidence files.

Incremental detection (a sensor): :class:`FailureCursor` is a small JSON-serialisable
state: the last EQM seq and ts read, the partition date of that seq with the files read in
it, the newest snapshot date processed, and the known failure intervals that may still matter
(open ones, and closed ones that a not-yet-seen snapshot or same-day event could still touch).
:func:`scan_failures` reads only EQM partitions newer than the cursor's (plus the cursor's own
partition when new files appeared in it), keeps only ``seq > last_seq``, and reads only the
snapshots newer than the cursor's, so the same failure is never reported twice and nothing
already read is read again.

Bad input: a ``node_status_changed`` payload that is not JSON, lacks ``node_id``/``status`` or
has a status outside the contract's enumeration raises BadInput naming the EQM partition.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from typing import Iterable


from qfs_assets.contract.schema import NODE_STATUSES, TABLES
from qfs_assets.readers.base import BadInput, ExportReader, connect, parquet_metadata
from qfs_assets.sqltext import quote_ident
from qfs_assets.windows import day_end, day_start, to_utc
from qfs_assets.safenames import NODE_ID_PATTERN, NODE_ID_RULE

UTC = dt.timezone.utc
FAILED = "failed"
#: ``<node_id>_<YYYYMMDD>[_n]``: the node id must be a safe file name (it names the evidence files)
_ID_RE = re.compile(rf"(?P<node>{NODE_ID_PATTERN})_(?P<day>[0-9]{{8}})(?:_(?P<n>[1-9][0-9]{{0,3}}))?", re.ASCII)


def base_failure_id(node_id: str, failed_at: dt.datetime) -> str:
    return f"{node_id}_{to_utc(failed_at):%Y%m%d}"


def parse_failure_id(failure_id: str) -> tuple[str, dt.date, int]:
    """``(node_id, day, ordinal)`` of a failure id (ordinal 1 without a ``_n`` suffix)."""
    m = _ID_RE.fullmatch(failure_id) if isinstance(failure_id, str) else None
    if not m:
        raise ValueError(f"not a failure id: {failure_id!r} (expected <node_id>_YYYYMMDD[_n], the node id "
                         f"{NODE_ID_RULE})")
    day = dt.datetime.strptime(m.group("day"), "%Y%m%d").date()
    return m.group("node"), day, int(m.group("n") or 1)


@dataclass(frozen=True)
class FailureEvent:
    """One failure of one node. ``failure_id`` is the dynamic partition key and evidence stem."""

    node_id: str
    failed_at: dt.datetime  # UTC
    seq: int | None  # the EQM event's seq; None for a snapshot-only failure
    source: str  # "eqm" or "snapshot"
    failure_id: str = ""  # set from node_id and failed_at when empty

    def __post_init__(self) -> None:
        object.__setattr__(self, "failed_at", to_utc(self.failed_at))
        if not self.failure_id:
            object.__setattr__(self, "failure_id", base_failure_id(self.node_id, self.failed_at))

    @property
    def failed_on(self) -> dt.date:
        return self.failed_at.date()

    def to_dict(self) -> dict:
        return {"failure_id": self.failure_id, "node_id": self.node_id, "failed_at": self.failed_at.isoformat(),
                "seq": self.seq, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "FailureEvent":
        return cls(node_id=d["node_id"], failed_at=dt.datetime.fromisoformat(d["failed_at"]), seq=d.get("seq"),
                   source=d["source"], failure_id=d.get("failure_id") or "")


@dataclass(frozen=True)
class KnownFailure:
    """A failure interval ``[failed_at, closed_at)``; ``closed_at`` None while open."""

    node_id: str
    failure_id: str
    failed_at: dt.datetime
    closed_at: dt.datetime | None = None

    def covers(self, t: dt.datetime) -> bool:
        return self.failed_at <= t and (self.closed_at is None or t < self.closed_at)

    def to_dict(self) -> dict:
        return {"node_id": self.node_id, "failure_id": self.failure_id, "failed_at": self.failed_at.isoformat(),
                "closed_at": self.closed_at.isoformat() if self.closed_at else None}

    @classmethod
    def from_dict(cls, d: dict) -> "KnownFailure":
        return cls(d["node_id"], d["failure_id"], to_utc(dt.datetime.fromisoformat(d["failed_at"])),
                   to_utc(dt.datetime.fromisoformat(d["closed_at"])) if d.get("closed_at") else None)


@dataclass(frozen=True)
class FailureCursor:
    """What a detector has seen; ``to_json()`` is the sensor cursor string."""

    last_seq: int | None = None  # last EQM seq read (any event type)
    last_ts: dt.datetime | None = None  # ts of last_seq
    eqm_date: dt.date | None = None  # partition holding last_seq
    eqm_files: tuple[str, ...] = ()  # file names read in that partition
    snapshot_date: dt.date | None = None  # newest nodes snapshot processed
    failures: tuple[KnownFailure, ...] = field(default_factory=tuple)

    def open_failures(self) -> list[KnownFailure]:
        return [f for f in self.failures if f.closed_at is None]

    def to_json(self) -> str:
        return json.dumps({
            "v": 1,
            "last_seq": self.last_seq,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "eqm_date": self.eqm_date.isoformat() if self.eqm_date else None,
            "eqm_files": list(self.eqm_files),
            "snapshot_date": self.snapshot_date.isoformat() if self.snapshot_date else None,
            "failures": [f.to_dict() for f in self.failures],
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> "FailureCursor":
        if not text:
            return cls()
        d = json.loads(text)
        return cls(
            last_seq=d.get("last_seq"),
            last_ts=to_utc(dt.datetime.fromisoformat(d["last_ts"])) if d.get("last_ts") else None,
            eqm_date=dt.date.fromisoformat(d["eqm_date"]) if d.get("eqm_date") else None,
            eqm_files=tuple(d.get("eqm_files") or ()),
            snapshot_date=dt.date.fromisoformat(d["snapshot_date"]) if d.get("snapshot_date") else None,
            failures=tuple(KnownFailure.from_dict(f) for f in d.get("failures") or ()),
        )


# -- EQM ---------------------------------------------------------------------------------------
def _file_names(reader: ExportReader, day: dt.date) -> tuple[str, ...]:
    return tuple(p.name for p in reader.files("eqm", [day], required=False))


def _max_seq_in_partition(reader: ExportReader, day: dt.date) -> int | None:
    """The largest seq of a partition from the Parquet footers (None when unknown)."""
    best = None
    for path in reader.files("eqm", [day], required=False):
        try:
            md = parquet_metadata(path)
            idx = md.schema.to_arrow_schema().get_field_index("seq")
            for rg in range(md.num_row_groups):
                st = md.row_group(rg).column(idx).statistics
                if st is None or not st.has_min_max:
                    return None
                best = st.max if best is None else max(best, st.max)
        except Exception:
            return None  # unknown: read the partition (validation will name a bad file)
    return best


def eqm_days_to_read(reader: ExportReader, cursor: FailureCursor, through: dt.date | None = None) -> list[dt.date]:
    """The EQM partitions that can hold events with ``seq > cursor.last_seq``.

    With a cursor date: the partitions after it, plus the cursor's own partition when files
    were added to it. With only a seq: partitions found newest-first from their Parquet
    footers' seq statistics (no data read). With neither: the whole log.
    """
    days = [d for d in reader.available_dates("eqm") if through is None or d <= through]
    if cursor.eqm_date is not None:
        out = [d for d in days if d > cursor.eqm_date]
        if cursor.eqm_date in days and _file_names(reader, cursor.eqm_date) != tuple(cursor.eqm_files):
            out.insert(0, cursor.eqm_date)
        return out
    if cursor.last_seq is None:
        return days
    out = []
    for d in reversed(days):
        mx = _max_seq_in_partition(reader, d)
        if mx is not None and mx <= cursor.last_seq:
            break  # seq grows with ts, and partitions are by the event's day
        out.append(d)
    return sorted(out)


def _status_events(reader: ExportReader, days: list[dt.date], since_seq: int | None):
    """(status events after since_seq as (seq, ts, node_id, status), max seq, its ts, files read)."""
    if not days:
        return [], None, None, []
    con = connect()
    try:
        view = reader.relation(con, "eqm", days, columns=["seq", "ts", "event_type", "payload"], view_name="eqm_scan")
        files_read = list(reader.reads[-1].files)
        v = quote_ident(view)
        low = -1 if since_seq is None else int(since_seq)
        last = con.execute(f"SELECT seq, ts FROM {v} WHERE seq > ? ORDER BY seq DESC LIMIT 1", [low]).fetchall()
        rows = con.execute(
            f"""
            SELECT seq, ts,
                   CASE WHEN json_valid(payload) THEN json_extract_string(payload, '$.node_id') END AS node_id,
                   CASE WHEN json_valid(payload) THEN json_extract_string(payload, '$.status') END AS status
            FROM {v}
            WHERE event_type = 'node_status_changed' AND seq > ?
            ORDER BY seq
            """,
            [low],
        ).fetchall()
    finally:
        con.close()
    spec = TABLES["eqm"]
    events = []
    for seq, ts, node_id, status in rows:
        ts = to_utc(ts)
        if node_id is None or status is None or status not in NODE_STATUSES:
            raise BadInput(
                "eqm",
                f"node_status_changed event seq={seq}: payload must be canonical JSON with node_id and a status "
                f"in {list(NODE_STATUSES)}",
                file=reader.partition_dir(spec, ts.date()), column="payload",
            )
        events.append((int(seq), ts, node_id, status))
    if not last:
        return events, None, None, files_read
    return events, int(last[0][0]), to_utc(last[0][1]), files_read


def _snapshot_statuses(reader: ExportReader, day: dt.date) -> list[tuple[str, str]]:
    con = connect()
    try:
        view = reader.relation(con, "nodes", [day], columns=["node_id", "status"], view_name="nodes_scan")
        return [(n, s) for n, s in con.execute(f"SELECT node_id, status FROM {quote_ident(view)} ORDER BY node_id").fetchall()]
    finally:
        con.close()


def _snapshot_observations(reader: ExportReader, days: list[dt.date], watch: Iterable[str] = ()) -> list[tuple[dt.date, str, str]]:
    """``(day, node_id, status)`` of the snapshots that matter to the state machine.

    A node's row is kept when it is ``failed``, when it is the node's first row in these
    snapshots, when the node was ``failed`` in its previous row (a recovery), or when the node
    is in ``watch`` (nodes with EQM status events or known failures); the other rows cannot
    change the state, and leaving them out keeps a first scan over many snapshots small.
    """
    if not days:
        return []
    con = connect()
    try:
        con.execute("CREATE TEMP TABLE nf_watch (node_id VARCHAR)")
        watched = [[n] for n in sorted(set(watch))]
        if watched:
            con.executemany("INSERT INTO nf_watch VALUES (?)", watched)
        parts = []
        for d in days:
            v = reader.relation(con, "nodes", [d], columns=["node_id", "status"], view_name=f"nodes_scan_{d:%Y%m%d}")
            parts.append(f"SELECT DATE '{d.isoformat()}' AS snapshot_date, node_id, status FROM {quote_ident(v)}")
        rows = con.execute(
            f"""
            SELECT snapshot_date, node_id, status FROM (
                SELECT *, lag(status) OVER (PARTITION BY node_id ORDER BY snapshot_date) AS prev
                FROM ({" UNION ALL ".join(parts)})
            )
            WHERE status = '{FAILED}' OR prev IS NULL OR prev = '{FAILED}' OR node_id IN (SELECT node_id FROM nf_watch)
            ORDER BY snapshot_date, node_id
            """
        ).fetchall()
    finally:
        con.close()
    return [(d, n, st) for d, n, st in rows]


# -- the state machine ----------------------------------------------------------------------------
def _unique_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def apply_observations(
    cursor_failures: Iterable[KnownFailure],
    eqm_events: list[tuple[int, dt.datetime, str, str]],
    snapshots: list[tuple[dt.date, str, str]],
    eqm_position: dt.datetime | None,
) -> tuple[list[FailureEvent], list[KnownFailure]]:
    """Apply status observations in time order; return new failures and every known interval.

    ``eqm_position`` is the ts of the last EQM event seen before these (the cursor's): a
    snapshot older than it cannot close a failure (the log already knows more).
    """
    by_node: dict[str, list[KnownFailure]] = {}
    for f in cursor_failures:
        by_node.setdefault(f.node_id, []).append(f)
    taken = {f.failure_id for fs in by_node.values() for f in fs}

    # (time, order, seq, node, status, kind): a snapshot (order 0) before events at the same instant.
    timeline: list[tuple] = [(ts, 1, seq, node, status, "eqm") for seq, ts, node, status in eqm_events]
    timeline += [(day_end(sday), 0, -1, node, status, "snapshot") for sday, node, status in snapshots]
    timeline.sort(key=lambda x: (x[0], x[1], x[2], x[3]))

    new: list[FailureEvent] = []

    def open_of(node: str) -> KnownFailure | None:
        for f in by_node.get(node, ()):
            if f.closed_at is None:
                return f
        return None

    def close(node: str, f: KnownFailure, at: dt.datetime) -> None:
        fs = by_node[node]
        fs[fs.index(f)] = replace(f, closed_at=at)

    def open_new(node: str, failed_at: dt.datetime, seq: int | None, source: str) -> None:
        fid = _unique_id(base_failure_id(node, failed_at), taken)
        taken.add(fid)
        by_node.setdefault(node, []).append(KnownFailure(node, fid, failed_at))
        new.append(FailureEvent(node_id=node, failed_at=failed_at, seq=seq, source=source, failure_id=fid))

    for t, _order, seq, node, status, kind in timeline:
        cur = open_of(node)
        if kind == "eqm":
            if status == FAILED:
                if cur is None:
                    open_new(node, t, seq, "eqm")
            elif cur is not None:
                close(node, cur, t)
        else:
            if status == FAILED:
                covered = any(f.covers(t) for f in by_node.get(node, ()))
                if not covered and cur is None:
                    open_new(node, t - dt.timedelta(days=1), None, "snapshot")
            elif cur is not None and cur.failed_at <= t and (eqm_position is None or t >= eqm_position):
                close(node, cur, t)
    known = [f for fs in by_node.values() for f in fs]
    return new, known


def _prune(failures: list[KnownFailure], eqm_date: dt.date | None, snapshot_date: dt.date | None) -> tuple[KnownFailure, ...]:
    """Drop closed intervals that no future observation can touch.

    Future EQM events are on or after ``eqm_date`` and future snapshots after
    ``snapshot_date``; a failure closed before the earlier of the two days cannot cover a future
    snapshot nor share a failure id with a future failure.
    """
    bounds = [d for d in (eqm_date, snapshot_date) if d is not None]
    if not bounds:
        return tuple(sorted(failures, key=lambda f: (f.failed_at, f.failure_id)))
    horizon = day_start(min(bounds))
    keep = [f for f in failures if f.closed_at is None or f.closed_at >= horizon]
    return tuple(sorted(keep, key=lambda f: (f.failed_at, f.failure_id)))


def scan_failures(
    reader: ExportReader, cursor: FailureCursor | None = None, *, through: dt.date | None = None
) -> tuple[list[FailureEvent], FailureCursor]:
    """New failures since ``cursor`` and the advanced cursor (feed it to the next call).

    ``through`` bounds the EQM partitions and the snapshots considered (inclusive), e.g. for a
    backfill; by default everything present is read.
    """
    cursor = cursor or FailureCursor()
    days = eqm_days_to_read(reader, cursor, through)
    events, max_seq, max_ts, files_read = _status_events(reader, days, cursor.last_seq)

    snap_days = [d for d in reader.available_dates("nodes") if through is None or d <= through]
    snap_days = [d for d in snap_days if cursor.snapshot_date is None or d > cursor.snapshot_date]
    watch = {e[2] for e in events} | {f.node_id for f in cursor.failures}
    snapshots = _snapshot_observations(reader, snap_days, watch)

    new, known = apply_observations(cursor.failures, events, snapshots, cursor.last_ts)

    last_seq, last_ts = (max_seq, max_ts) if max_seq is not None else (cursor.last_seq, cursor.last_ts)
    if days:  # every partition read holds nothing newer than last_seq any more
        eqm_date = days[-1]
        prefix = str(reader.partition_dir(TABLES["eqm"], eqm_date))
        eqm_files = sorted(posixpath.basename(f) for f in files_read if posixpath.dirname(f) == prefix)
    else:
        eqm_date, eqm_files = cursor.eqm_date, cursor.eqm_files
    snapshot_date = snap_days[-1] if snap_days else cursor.snapshot_date
    new_cursor = FailureCursor(
        last_seq=last_seq, last_ts=last_ts, eqm_date=eqm_date, eqm_files=tuple(eqm_files),
        snapshot_date=snapshot_date, failures=_prune(known, eqm_date, snapshot_date),
    )
    return new, new_cursor


def failure_events(
    reader: ExportReader,
    since_seq: int | None = None,
    *,
    since_snapshot: dt.date | None = None,
    through: dt.date | None = None,
) -> list[FailureEvent]:
    """Failures from EQM events with ``seq > since_seq`` and the nodes snapshots after ``since_snapshot``.

    Stateless: without the open failures a :class:`FailureCursor` carries, a ``failed`` event
    after ``since_seq`` counts as a failure when no earlier ``failed`` of that node is seen in
    the window. A sensor should use :func:`scan_failures` with its cursor instead.
    ``since_snapshot`` (exclusive) limits the snapshots read; by default all are read.
    """
    return scan_failures(reader, FailureCursor(last_seq=since_seq, snapshot_date=since_snapshot), through=through)[0]


def failure_from_id(reader: ExportReader, failure_id: str) -> FailureEvent:
    """Rebuild a failure from its id (the dynamic partition key): the day's EQM, else its snapshot.

    Reads the EQM partition of the id's day (the n-th transition of the node to ``failed``
    that day, its status at the day's start taken from the previous day's snapshot when there
    is one) and, when the log has none, the day's ``nodes`` snapshot.
    Raises KeyError when neither shows the failure.
    """
    node_id, day, n = parse_failure_id(failure_id)
    events = []
    if day in reader.available_dates("eqm"):
        events = _status_events(reader, [day], None)[0]
    prev_day = day - dt.timedelta(days=1)
    status = dict(_snapshot_statuses(reader, prev_day)).get(node_id) if prev_day in reader.available_dates("nodes") else None
    k = 0
    for seq, ts, node, st in events:
        if node != node_id:
            continue
        if st == FAILED and status != FAILED:
            k += 1
            if k == n:
                return FailureEvent(node_id=node_id, failed_at=ts, seq=seq, source="eqm", failure_id=failure_id)
        status = st
    if k == 0 and n == 1 and day in reader.available_dates("nodes"):
        if dict(_snapshot_statuses(reader, day)).get(node_id) == FAILED:
            return FailureEvent(node_id=node_id, failed_at=day_start(day), seq=None, source="snapshot",
                                failure_id=failure_id)
    raise KeyError(f"failure {failure_id!r}: no transition of {node_id!r} to failed on {day.isoformat()}")


__all__ = [
    "FailureCursor",
    "FailureEvent",
    "KnownFailure",
    "apply_observations",
    "failure_events",
    "failure_from_id",
    "parse_failure_id",
    "scan_failures",
]
