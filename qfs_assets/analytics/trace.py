"""Trace one fee transaction or one object through the export and the evidence store.

An operator's question is rarely "did the week pass?" but "where did *this* show up?".
:func:`trace_tx` follows a fee transaction: its fee-ledger row, its ``fee_charged`` event in
the EQM log (and whether both agree), the object it paid for (everything
:func:`trace_object` shows), the rewards that day of the nodes holding the object's shards,
the economics evidence of its week, and the replay drill that covered its event.
:func:`trace_object` follows an object: its manifest over time, its EQM events, its shards on
a day with their nodes' status and AEGIS verdict, the day's proof challenges, its fees, its
dual-write status, whether it is in the reproducible 1% sample, and the replay drill that
covered its last event.

A :class:`Trace` is a list of :class:`Section` (title, rows as dicts, notes); it renders to
terminal text (:meth:`Trace.render_text`) and JSON (:meth:`Trace.to_json`).
:func:`main_trace` is the CLI entry point: it prints the trace and returns 0, or returns 2
after printing one line (no traceback) when the id is found nowhere, a root is missing, or
the input is bad.

No Dagster here. Reads are DuckDB over the export's Parquet partitions (footer schemas
checked by :class:`~qfs_assets.readers.base.ExportReader`, no full validation pass: a trace is
a lookup, and a duplicate key simply shows as two rows) and over the evidence store's JSON
verdicts and Hive-partitioned detail tables.

Cost (what each lookup reads; ``D`` = days of the export)
    - a tx whose date is unknown: the ``fees`` partitions of all ``D`` days, with the filter
      ``tx_id = ?`` pushed into the Parquet scan (only the ``tx_id`` column is read in full;
      row groups are skipped by their min/max statistics where the writer sorts by tx_id);
    - its ``fee_charged`` event: the one ``eqm`` partition of the fee's day (``contains`` on the
      raw payload as a cheap prefilter, then ``json_extract_string``); only when it is not there,
      the whole log;
    - an object: its manifest history reads the ``object_id`` column of every ``objects``
      snapshot (``D`` files); its events and fees read the ``eqm`` and ``fees`` partitions from
      the object's first manifest snapshot on (an object has no valid event before its first
      write); shards, nodes and proofs read the one day traced;
    - evidence: one JSON per activity partition concerned, and the detail-table partitions of
      that day / week / quarter (dual-write tables and the diff ledger: every partition, they
      are small).
    On the demo (42 days) a trace takes well under a second; on a year of a 1B-shard
    deployment the full ``objects``/``fees`` scans dominate (one column of each, streamed).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

from qfs_assets.activities.dual_write.classify import IN_FLIGHT, classify
from qfs_assets.contract.hashing import event_hash, in_sample
from qfs_assets.evidence.store import PARTITION_COLUMN, iso_utc, json_scalar
from qfs_assets.readers.base import BadInput, ExportReader, connect
from qfs_assets.sqltext import list_literal, quote_ident
from qfs_assets.windows import day_end, day_of, monday_of

__all__ = ["Section", "Trace", "TraceError", "TraceNotFound", "trace_tx", "trace_object", "main_trace", "SAMPLE_BPS"]

SAMPLE_BPS = 100  # the contract's 1% sample
OBJECT_EVENTS = ("object_written", "object_deleted", "shard_placed", "shard_moved")
IN_SERVICE = ("active", "degraded")


class TraceError(Exception):
    """A usage error of the trace (missing root, bad argument): one line, for the CLI."""


class TraceNotFound(TraceError):
    """The id appears nowhere the trace looks."""


# --------------------------------------------------------------------------- the result


def _plain(value: Any) -> Any:
    """A JSON-friendly value (see :func:`qfs_assets.evidence.store.json_scalar`), containers recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return json_scalar(value)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _cell(value: Any, short: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = _plain(value)
    if isinstance(value, list):
        return ", ".join(_cell(v, short) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if short and _is_hash(value):
        return value[:12] + "…"
    return str(value)


@dataclass
class Section:
    """One part of a trace: rows (dicts, all keys kept in JSON) and notes.

    ``columns`` optionally restricts (and orders) what the text rendering shows.
    """

    title: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    columns: list[str] | None = None

    def to_dict(self) -> dict:
        return {"title": self.title, "rows": _plain(self.rows), "notes": list(self.notes)}

    def render_text(self) -> str:
        out = [f"== {self.title} =="]
        if len(self.rows) == 1:  # one record: key / value lines, full values
            row = self.rows[0]
            keys = [k for k in (self.columns or list(row)) if k in row]
            width = max((len(k) for k in keys), default=0)
            out += [f"  {k.ljust(width)}  {_cell(row[k], short=False)}" for k in keys]
        elif self.rows:
            keys: list[str] = []
            for row in self.rows:
                keys += [k for k in row if k not in keys]
            if self.columns:
                keys = [k for k in self.columns if k in keys]
            cells = [[_cell(r.get(k), short=True) for k in keys] for r in self.rows]
            widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
            out.append("  " + "  ".join(k.ljust(w) for k, w in zip(keys, widths)).rstrip())
            out.append("  " + "  ".join("-" * w for w in widths))
            out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        else:
            out.append("  (none)")
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


@dataclass
class Trace:
    """A trace of one fee transaction (``kind='tx'``) or one object (``kind='object'``)."""

    kind: str
    id: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title_prefix: str) -> Section:
        """The first section whose title starts with ``title_prefix`` (KeyError if none)."""
        for s in self.sections:
            if s.title.startswith(title_prefix):
                return s
        raise KeyError(title_prefix)

    def titles(self) -> list[str]:
        return [s.title for s in self.sections]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "sections": [s.to_dict() for s in self.sections]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def render_text(self) -> str:
        head = f"QFS trace of {'fee transaction' if self.kind == 'tx' else 'object'} {self.id}"
        return "\n\n".join([head + "\n" + "=" * len(head)] + [s.render_text() for s in self.sections]) + "\n"


# --------------------------------------------------------------------------- helpers


def _json_pattern(value: str) -> str:
    """``value`` as it appears inside a JSON string (escaped), for a cheap ``contains`` prefilter."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _as_date(day: dt.date | str | None) -> dt.date | None:
    if day is None or isinstance(day, dt.date) and not isinstance(day, dt.datetime):
        return day
    if isinstance(day, dt.datetime):
        return day_of(day)
    try:
        return dt.date.fromisoformat(str(day))
    except ValueError:
        raise TraceError(f"day {day!r} is not a date (YYYY-MM-DD)") from None


def _event_detail(event_type: str, p: dict) -> str:
    if event_type == "object_written":
        return (f"version {p.get('version')}, content {str(p.get('content_hash', ''))[:12]}…, {p.get('size_bytes')} bytes, "
                f"k={p.get('data_shards')} n={p.get('total_shards')}")
    if event_type == "object_deleted":
        return f"deleted at version {p.get('version')}"
    if event_type == "shard_placed":
        return f"shard {p.get('shard_index')} on {p.get('node_id')} ({p.get('shard_bytes')} bytes)"
    if event_type == "shard_moved":
        return f"shard {p.get('shard_index')} moved {p.get('from_node_id')} -> {p.get('to_node_id')}"
    if event_type == "fee_charged":
        return f"{p.get('operation')} by {p.get('account_id')}: {p.get('amount_atr')} atr (tx {p.get('tx_id')})"
    return json.dumps(p, sort_keys=True, separators=(",", ":"))


def _dual_values(r: dict) -> str:
    """The differing fields of a dual-write detail row, both sides: ``field: sor X / storage Y``."""
    fields = [f for f in re.split(r"[,;\s]+", r.get("differing_fields") or "") if f] or ["version"]
    return "; ".join(f"{f}: sor {_cell(r.get('sor_' + f), True)} / storage {_cell(r.get('storage_' + f), True)}" for f in fields)


# --------------------------------------------------------------------------- the tracer


class _Tracer:
    """One DuckDB connection, per-partition views registered once, evidence read on demand."""

    def __init__(self, export_root: str | Path, evidence_root: str | Path, sor_url: str | None = None):
        self.export_root = Path(export_root)
        self.evidence_root = Path(evidence_root)
        if not self.export_root.is_dir():
            raise TraceError(f"export root not found: {self.export_root}")
        if not self.evidence_root.is_dir():
            raise TraceError(f"evidence root not found: {self.evidence_root}")
        self.sor_url = sor_url
        self.reader = ExportReader(self.export_root)
        self.con = connect()
        self._dates: dict[str, list[dt.date]] = {}
        self._views: dict[tuple[str, dt.date], str] = {}
        self._objects: dict[tuple[str, dt.date | None], list[Section]] = {}

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "_Tracer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- export --------------------------------------------------------------------------
    def dates(self, table: str) -> list[dt.date]:
        if table not in self._dates:
            self._dates[table] = self.reader.available_dates(table)
        return self._dates[table]

    def _view(self, table: str, day: dt.date) -> str:
        key = (table, day)
        if key not in self._views:
            name = f"t_{table}_{day:%Y%m%d}"
            self.reader.relation(self.con, table, [day], validate=False, required=False, complete=False, view_name=name)
            self._views[key] = name
        return self._views[key]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def scan(self, table: str, days: Iterable[dt.date], where: str, params: Sequence[Any] = (),
             columns: str = "*", order: str | None = None) -> list[dict]:
        """Rows of ``table`` over the given partitions matching ``where``, each with ``part_date``."""
        have = set(self.dates(table))
        days = [d for d in days if d in have]
        if not days:
            return []
        branches = [f"SELECT DATE '{d.isoformat()}' AS part_date, {columns} FROM {quote_ident(self._view(table, d))} "
                    f"WHERE {where}" for d in days]
        sql = " UNION ALL ".join(branches)
        if order:
            sql = f"SELECT * FROM ({sql}) ORDER BY {order}"
        return self.query(sql, list(params) * len(days))

    def eqm_events(self, days: Iterable[dt.date], where: str, params: Sequence[Any], needle: str) -> list[dict]:
        """EQM events over ``days`` whose payload contains ``needle`` and satisfies ``where``."""
        rows = self.scan("eqm", days, f"contains(payload, ?) AND ({where})", [needle, *params],
                         columns="seq, ts, event_type, payload, prev_hash, event_hash", order="seq")
        for r in rows:
            try:
                r["payload_fields"] = json.loads(r["payload"])
            except ValueError:
                r["payload_fields"] = {}
            r["hash_ok"] = event_hash(r["prev_hash"], r["seq"], r["event_type"], r["payload"]) == r["event_hash"]
        return rows

    # -- evidence ------------------------------------------------------------------------
    def evidence_json(self, activity: str, partition: dt.date | str) -> dict | None:
        stem = str(partition).replace("-", "")
        path = self.evidence_root / activity / f"{activity}_{stem}.json"
        return self._load_json(path, activity)

    def _load_json(self, path: Path, activity: str) -> dict | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"evidence {activity}", f"unreadable JSON ({str(exc).splitlines()[0]})", file=path) from None

    def evidence_jsons(self, activity: str) -> list[dict]:
        folder = self.evidence_root / activity
        if not folder.is_dir():
            return []
        docs = [self._load_json(p, activity) for p in sorted(folder.glob(f"{activity}_*.json"))]
        return [d for d in docs if d]

    def has_evidence_table(self, table: str) -> bool:
        return any((self.evidence_root / table).glob(f"{PARTITION_COLUMN}=*/*.parquet"))

    def evidence_rows(self, table: str, partition: dt.date | str | None, where: str = "true",
                      params: Sequence[Any] = (), order: str | None = None) -> list[dict] | None:
        """Rows of a detail table (one partition, or every partition when ``partition`` is None);
        None when that table or partition is absent from the store."""
        base = self.evidence_root / table
        pattern = f"{PARTITION_COLUMN}={partition}/*.parquet" if partition is not None else f"{PARTITION_COLUMN}=*/*.parquet"
        files = sorted(base.glob(pattern))
        if not files:
            return None
        sql = (f"SELECT * FROM read_parquet({list_literal([str(f) for f in files])}, hive_partitioning=true, "
               f"hive_types_autocast=false, union_by_name=true) WHERE {where}")
        if order:
            sql += f" ORDER BY {order}"
        try:
            return self.query(sql, params)
        except duckdb.Error as exc:
            raise BadInput(f"evidence {table}", f"unreadable detail table ({str(exc).splitlines()[0]})", file=base) from None

    # -- shared sections -----------------------------------------------------------------
    def replay_section(self, seq: int | None, ts: dt.datetime | None, what: str) -> Section:
        """The storage_replay_drill whose window contains ``ts``, and the first checkpoint at/after ``seq``."""
        sec = Section(f"replay drill covering {what}")
        if seq is None or ts is None:
            sec.notes.append("no EQM event to locate in a drill")
            return sec
        docs = self.evidence_jsons("storage_replay_drill")
        if not docs:
            sec.notes.append("no storage_replay_drill evidence")
            return sec

        def window(d: dict) -> tuple[dt.datetime, dt.datetime]:
            return (dt.datetime.fromisoformat(d["window"]["start"].replace("Z", "+00:00")),
                    dt.datetime.fromisoformat(d["window"]["end"].replace("Z", "+00:00")))

        covering = [d for d in docs if window(d)[0] <= ts < window(d)[1]]
        if not covering:
            later = sorted((d for d in docs if window(d)[0] > ts), key=lambda d: window(d)[0])
            if not later:
                sec.notes.append(f"no storage_replay_drill evidence covers {iso_utc(ts)} (no drill of its quarter or later)")
                return sec
            covering = later[:1]
            sec.notes.append(f"no drill of the event's own quarter; the next drill replays from genesis and covers seq {seq}")
        doc = covering[0]
        m = doc.get("metrics", {})
        partition = doc.get("partition")
        first_broken = m.get("first_broken_seq")
        invalid = self.evidence_rows("replay_invalid_events", partition, "seq = ?", [seq]) or []
        cps = self.evidence_rows("replay_checkpoints", partition, "seq >= ?", [seq], order="seq LIMIT 1") or []
        cp = cps[0] if cps else None
        start, end = window(doc)
        last_seq = m.get("last_seq")
        sec.rows.append({
            "drill_partition": partition,
            "window": f"{iso_utc(start)} .. {iso_utc(end)}",
            "passed": doc.get("passed"),
            "failed_criteria": [c["name"] for c in doc.get("criteria", []) if not c.get("passed")],
            "event_seq": seq,
            "event_ts": ts,
            "replayed": last_seq is not None and seq <= last_seq,
            "chain_intact": m.get("chain_intact"),
            "chain_intact_through_event": first_broken is None or first_broken > seq,
            "event_invalid": [r["reason"] for r in invalid] or False,
            "checkpoint_seq": cp["seq"] if cp else None,
            "checkpoint_ts": cp["ts"] if cp else None,
            "checkpoint_reached": cp.get("reached") if cp else None,
            "checkpoint_matched": cp.get("matched") if cp else None,
            "mismatched_components": cp.get("mismatched_components") if cp else None,
        })
        if cp is None:
            sec.notes.append(f"no checkpoint at or after seq {seq} in the drill's quarter: its effect was not compared")
        return sec

    # -- object --------------------------------------------------------------------------
    def object_sections(self, object_id: str, day: dt.date | None, prefix: str = "",
                        require_found: bool = False) -> tuple[list[Section], dict]:
        """Every section of an object trace, and facts for the caller (shards, last event...)."""
        facts: dict[str, Any] = {}
        manifest = self.scan("objects", self.dates("objects"), "object_id = ?", [object_id], order="part_date")
        obj_days = self.dates("objects")
        first_present = manifest[0]["part_date"] if manifest else None
        # An object has no valid event or fee before its first write, which happened after the last
        # snapshot without it: read from the day after that snapshot (everything when the object is in
        # the first snapshot of all, or absent from the manifest).
        before = [d for d in obj_days if first_present and d < first_present]
        since = before[-1] + dt.timedelta(days=1) if before else None

        def from_since(days: list[dt.date]) -> list[dt.date]:
            return [d for d in days if since is None or d >= since]

        events = self.eqm_events(
            from_since(self.dates("eqm")),
            f"event_type IN ({', '.join(repr(t) for t in OBJECT_EVENTS)}) AND json_extract_string(payload, '$.object_id') = ?",
            [object_id], _json_pattern(object_id))
        fees = self.scan("fees", from_since(self.dates("fees")), "object_id = ?", [object_id],
                         columns="tx_id, ts, account_id, operation, amount_atr", order="ts, tx_id")
        dual = self.dual_write_section(object_id, manifest, prefix)

        if require_found and not manifest and not events and not fees and not dual[1]:
            raise TraceNotFound(f"object {object_id!r} not found in the export "
                                f"(objects, eqm, fees) nor in dual-write evidence" + (" or the system of record" if self.sor_url else ""))

        present_days = [r["part_date"] for r in manifest]
        if day is None:
            day = present_days[-1] if present_days else (self.dates("shards")[-1] if self.dates("shards") else None)
        facts["day"] = day
        on_day = next((r for r in manifest if r["part_date"] == day), None)

        # summary
        last = manifest[-1] if manifest else None
        summary = Section(f"{prefix}object {object_id}")
        summary.rows.append({
            "object_id": object_id,
            "in_1pct_sample": in_sample(object_id, SAMPLE_BPS),
            "first_snapshot": first_present,
            "last_snapshot": last["part_date"] if last else None,
            "latest_version": last["version"] if last else None,
            "latest_deleted": last["deleted"] if last else None,
            "day_traced": day,
            "events": len(events),
            "fees": len(fees),
            "fees_atr": sum(int(f["amount_atr"]) for f in fees),
        })
        summary.notes.append(f"the 1% sample is int(sha256(object_id)[:8], 16) % 10000 < {SAMPLE_BPS}")
        if not manifest:
            summary.notes.append("absent from every objects snapshot")

        sections = [summary, self._manifest_section(object_id, manifest, obj_days, prefix)]

        # events
        ev = Section(f"{prefix}EQM events", columns=["seq", "ts", "event_type", "detail", "hash_ok"])
        for e in events:
            ev.rows.append({"seq": e["seq"], "ts": e["ts"], "date": day_of(e["ts"]), "event_type": e["event_type"],
                            "detail": _event_detail(e["event_type"], e["payload_fields"]), "payload": e["payload_fields"],
                            "event_hash": e["event_hash"], "hash_ok": e["hash_ok"]})
        scanned = from_since(self.dates("eqm"))
        if scanned:
            ev.notes.append(f"scanned eqm {scanned[0]} .. {scanned[-1]} ({len(scanned)} partitions)")
        if any(not e["hash_ok"] for e in events):
            ev.notes.append("an event_hash does not match its fields: the log was altered")
        sections.append(ev)
        facts["last_event"] = events[-1] if events else None

        # shards, nodes, AEGIS, proofs on the day
        shards_sec, shard_rows = self.shards_section(object_id, day, on_day, prefix)
        facts["shards"] = shard_rows
        sections.append(shards_sec)
        sections.append(self.proofs_section(object_id, day, prefix))
        plans = self.evidence_rows("node_failure_plan", None, "object_id = ?", [object_id], order="partition_key, shard_index")
        if plans:
            sections.append(Section(f"{prefix}node-failure re-replication plans", rows=plans))

        # fees
        fee_sec = Section(f"{prefix}fees", columns=["date", "tx_id", "ts", "account_id", "operation", "amount_atr"])
        for f in fees:
            fee_sec.rows.append({"date": f["part_date"], **{k: v for k, v in f.items() if k != "part_date"}})
        fee_sec.notes.append(f"{len(fees)} fee(s), {sum(int(f['amount_atr']) for f in fees)} atr in total")
        sections.append(fee_sec)

        sections.append(dual[0])
        last_ev = facts["last_event"]
        sections.append(self.replay_section(last_ev["seq"] if last_ev else None, last_ev["ts"] if last_ev else None,
                                            f"the object's last event" + (f" (seq {last_ev['seq']})" if last_ev else "")))
        sections[-1].title = prefix + sections[-1].title
        return sections, facts

    def _manifest_section(self, object_id: str, manifest: list[dict], obj_days: list[dt.date], prefix: str) -> Section:
        sec = Section(f"{prefix}manifest history",
                      columns=["snapshot_date", "version", "content_hash", "size_bytes", "deleted", "updated_at", "change"])
        if not manifest:
            sec.notes.append(f"not in any of the {len(obj_days)} objects snapshots")
            return sec
        by_day = {r["part_date"]: r for r in manifest}
        days = [d for d in obj_days if d >= manifest[0]["part_date"]]
        prev = None
        for i, d in enumerate(days):
            r = by_day.get(d)
            state = None if r is None else (r["version"], r["content_hash"], r["deleted"])
            changes = []
            if i == 0:
                changes.append("first snapshot")
            elif state != prev:
                if r is None:
                    changes.append("absent from the manifest")
                elif prev is None:
                    changes.append("back in the manifest")
                else:
                    if r["version"] != prev[0]:
                        changes.append(f"version {prev[0]} -> {r['version']}")
                    elif r["content_hash"] != prev[1]:
                        changes.append("content changed at the same version")
                    if r["deleted"] != prev[2]:
                        changes.append("deleted" if r["deleted"] else "undeleted")
            if i == len(days) - 1:
                changes.append("last snapshot")
            if changes:
                row = {"snapshot_date": d}
                if r is not None:
                    row.update({k: r[k] for k in ("version", "content_hash", "size_bytes", "data_shards", "total_shards",
                                                  "deleted", "updated_at")})
                row["change"] = "; ".join(changes)
                sec.rows.append(row)
            prev = state
        sec.notes.append(f"in {len(manifest)} of {len(obj_days)} snapshots; shown: first, last and every change")
        return sec

    def shards_section(self, object_id: str, day: dt.date | None, on_day: dict | None, prefix: str) -> tuple[Section, list[dict]]:
        sec = Section(f"{prefix}shards on {day}",
                      columns=["shard_index", "node_id", "shard_bytes", "node_status", "aegis_verified", "aegis_reasons"])
        if day is None or day not in self.dates("shards"):
            sec.notes.append(f"no shards snapshot for {day}")
            return sec, []
        shards = self.scan("shards", [day], "object_id = ?", [object_id],
                           columns="shard_index, node_id, shard_bytes, shard_hash", order="shard_index, node_id")
        nodes_ids = sorted({s["node_id"] for s in shards})
        status: dict[str, str] = {}
        if nodes_ids and day in self.dates("nodes"):
            for r in self.scan("nodes", [day], f"node_id IN (SELECT unnest({list_literal(nodes_ids)}))", columns="node_id, status"):
                status[r["node_id"]] = r["status"]
        aegis_rows = self.evidence_rows("node_health_aegis", day, f"node_id IN (SELECT unnest({list_literal(nodes_ids or [''])}))")
        aegis = {r["node_id"]: r for r in aegis_rows or []}
        rows = []
        for s in shards:
            a = aegis.get(s["node_id"])
            rows.append({**s, "node_status": status.get(s["node_id"], "unknown node"),
                         "aegis_verified": a.get("verified") if a else None,
                         "aegis_reasons": (a.get("reasons") or "") if a else None})
        sec.rows = rows
        healthy = sum(1 for r in rows if r["node_status"] in IN_SERVICE)
        if on_day is not None:
            k, n = on_day["data_shards"], on_day["total_shards"]
            state = "healthy" if healthy >= n else ("degraded" if healthy >= k else "unrecoverable")
            if on_day["deleted"]:
                state = "deleted (tombstone; shards dropped)"
            sec.notes.append(f"{healthy} healthy shard(s) of n={n} (k={k}): {state}")
        elif not rows:
            sec.notes.append(f"not in the manifest of {day}")
        if aegis_rows is None:
            sec.notes.append(f"no node_health_assessment evidence for {day}: AEGIS verdicts unknown")
        else:
            doc = self.evidence_json("node_health_assessment", day)
            if doc is not None:
                sec.notes.append(f"node_health_assessment {day}: {'passed' if doc.get('passed') else 'FAILED'}")
        flagged = self.evidence_rows("node_health_objects", day, "object_id = ?", [object_id])
        for f in flagged or []:
            sec.notes.append(f"node health flagged the object {f['state']} ({f['healthy_shards']} healthy of {f['total_shards']})")
        return sec, rows

    def proofs_section(self, object_id: str, day: dt.date | None, prefix: str) -> Section:
        sec = Section(f"{prefix}proof challenges on {day}",
                      columns=["challenge_id", "issued_at", "node_id", "shard_index", "outcome", "latency_ms"])
        if day is None or day not in self.dates("proofs"):
            sec.notes.append(f"no proofs partition for {day}")
            return sec
        sec.rows = self.scan("proofs", [day], "object_id = ?", [object_id],
                             columns="challenge_id, issued_at, node_id, shard_index, outcome, latency_ms",
                             order="issued_at, challenge_id")
        for r in sec.rows:
            r.pop("part_date", None)
        if sec.rows:
            counts: dict[str, int] = {}
            for r in sec.rows:
                counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
            sec.notes.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return sec

    def dual_write_section(self, object_id: str, manifest: list[dict], prefix: str) -> tuple[Section, bool]:
        """(section, whether any dual-write record or SoR row mentions the object)."""
        sec = Section(f"{prefix}dual-write", columns=["month", "verification_passed", "snapshot_date", "status", "values",
                                                      "first_seen", "sample_failure", "in_1pct_sample"])
        docs = self.evidence_jsons("dual_write_verification")
        incons = self.evidence_rows("dual_write_inconsistencies", None, "object_id = ?", [object_id], order="partition_key")
        sample = self.evidence_rows("dual_write_sample_failures", None, "object_id = ?", [object_id], order="partition_key")
        ledger_file = self.evidence_root / "dual_write_diff_ledger" / "ledger.parquet"
        episodes = None
        if ledger_file.is_file():
            episodes = self.query(f"SELECT * FROM read_parquet({list_literal([str(ledger_file)])}) WHERE object_id = ? "
                                  "ORDER BY first_seen", [object_id])
        sampled = in_sample(object_id, SAMPLE_BPS)
        if not docs and incons is None and episodes is None:
            sec.notes.append("no dual-write evidence")
            found = self._direct_sor_comparison(sec, object_id, manifest)
            return sec, found
        by_month = {}
        for r in incons or []:
            by_month.setdefault(str(r[PARTITION_COLUMN]), []).append(r)
        fails = {str(r[PARTITION_COLUMN]): r for r in sample or []}
        for d in docs:
            p = d.get("partition")
            mine = by_month.pop(p, [])
            row = {"month": p, "verification_passed": d.get("passed"),
                   "snapshot_date": d.get("inputs", {}).get("snapshot_date"),
                   "status": ", ".join(r["category"] for r in mine) if mine else "no inconsistency (consistent or in flight)",
                   "differing_fields": ", ".join(r.get("differing_fields") or "" for r in mine) or None,
                   "in_1pct_sample": sampled}
            for r in mine[:1]:
                for k, v in r.items():
                    if k.startswith(("sor_", "storage_")) or k == "first_seen":
                        row[k] = v
                row["values"] = _dual_values(r)
            if p in fails:
                row["sample_failure"] = fails[p].get("reasons")
            sec.rows.append(row)
        for p, mine in by_month.items():  # detail partitions without a JSON verdict (an interrupted run)
            sec.rows.append({"month": p, "verification_passed": None, "status": ", ".join(r["category"] for r in mine)})
        for e in episodes or []:
            state = f"resolved {iso_utc(e['resolved_at'])} ({e['resolved_run']})" if e.get("resolved_at") else "still open"
            sec.notes.append(f"diff ledger: {e['category']} first seen {iso_utc(e['first_seen'])} ({e['first_seen_run']}), "
                             f"last seen {iso_utc(e['last_seen'])} ({e['last_seen_run']}), {state}")
        if not docs:
            sec.notes.append("no dual_write_verification verdict yet (only diff records)")
        return sec, bool(incons) or bool(episodes)

    def _direct_sor_comparison(self, sec: Section, object_id: str, manifest: list[dict]) -> bool:
        if not self.sor_url:
            sec.notes.append("no system of record given (sor_url / QFS_SOR_URL): no direct comparison")
            return False
        import sqlalchemy as sa

        from qfs_assets.contract.schema import SOR_COLUMNS
        from qfs_assets.readers.sor import SystemOfRecord, to_bool, to_epoch_us

        with SystemOfRecord(self.sor_url) as sor:
            sor.check()
            with sor.connect() as conn:
                try:
                    got = conn.execute(sa.text(f"SELECT {', '.join(SOR_COLUMNS)} FROM {sor.qualified_table} "
                                               "WHERE object_id = :oid"), {"oid": object_id}).fetchall()
                except Exception as exc:  # a driver error: one line
                    raise sor.error(f"lookup failed ({str(exc).splitlines()[0]})") from None
        sor_row = dict(zip(SOR_COLUMNS, got[0])) if got else None
        if sor_row is not None:
            sor_row["updated_at"] = dt.datetime.fromtimestamp(to_epoch_us(sor_row["updated_at"]) / 1e6, dt.timezone.utc)
            sor_row["deleted"] = to_bool(sor_row["deleted"])
        # the live SoR is compared with the latest manifest snapshot (an older one would show every later write in flight)
        snap = self.dates("objects")[-1] if self.dates("objects") else None
        storage = next((r for r in manifest if r["part_date"] == snap), None)
        row: dict[str, Any] = {"compared_with_snapshot": snap}
        fields = ("version", "content_hash", "size_bytes", "data_shards", "total_shards", "deleted", "updated_at")
        for side, r in (("sor", sor_row), ("storage", storage)):
            for f in fields:
                row[f"{side}_{f}"] = r[f] if r else None
        end = day_end(snap) if snap else None
        differing = [f for f in fields[:-1] if sor_row and storage and sor_row[f] != storage[f]]
        # the activity's own rule table; without any snapshot nothing is in flight
        category = None if sor_row is None and storage is None else classify(
            sor_row, storage, end if end is not None else dt.datetime.max.replace(tzinfo=dt.timezone.utc))
        if sor_row is None and storage is None:
            status = "absent from both"
        elif category == IN_FLIGHT:
            status = "in flight (updated after the snapshot's end): not judged"
        elif category is not None:
            status = category
        elif sor_row is None:
            status = "consistent (deleted, absent from the SoR)"
        elif storage is None:
            status = "consistent (deleted, absent from the manifest)"
        elif sor_row["deleted"] and storage["deleted"]:
            status = "consistent (deleted on both sides)"
        else:
            status = "consistent"
        row["status"] = status
        row["values"] = _dual_values({**{f"sor_{f}": row[f"sor_{f}"] for f in fields},
                                      **{f"storage_{f}": row[f"storage_{f}"] for f in fields},
                                      "differing_fields": ",".join(differing)})
        sec.rows.append(row)
        sec.columns = ["compared_with_snapshot", "status", "values", "in_1pct_sample"]
        row["in_1pct_sample"] = in_sample(object_id, SAMPLE_BPS)
        sec.notes.append("direct comparison of the live system of record with the latest manifest snapshot (not evidence)")
        return sor_row is not None

    # -- tx ------------------------------------------------------------------------------
    def trace_tx(self, tx_id: str) -> Trace:
        trace = Trace("tx", tx_id)
        fees = self.scan("fees", self.dates("fees"), "tx_id = ?", [tx_id], order="ts, part_date")
        fee_sec = Section("fee ledger", columns=["date", "tx_id", "ts", "account_id", "object_id", "operation", "amount_atr"])
        for f in fees:
            fee_sec.rows.append({"date": f.pop("part_date"), **f})
        fee_sec.notes.append(f"looked up over {len(self.dates('fees'))} fees partitions (tx_id filter pushed into the scan)")
        if len(fees) > 1:
            fee_sec.notes.append(f"tx_id occurs {len(fees)} times in the ledger: a duplicate_tx_id finding")
        fee = fees[0] if fees else None

        # the fee_charged event: the fee's day first, then the whole log
        where = "event_type = 'fee_charged' AND json_extract_string(payload, '$.tx_id') = ?"
        needle = _json_pattern(tx_id)
        hint = sorted({d for f in fee_sec.rows for d in (f["date"], day_of(f["ts"]))})
        events = self.eqm_events(hint, where, [tx_id], needle) if hint else []
        ev_sec = Section("EQM fee_charged event",
                         columns=["seq", "ts", "event_hash", "hash_ok", "amount_atr", "amounts_agree", "fields_agree", "differences"])
        if not events:
            if hint:
                ev_sec.notes.append(f"not in the eqm partition(s) {', '.join(map(str, hint))}: scanned the whole log")
            events = self.eqm_events(self.dates("eqm"), where, [tx_id], needle)
        if not fee and not events:
            raise TraceNotFound(f"tx_id {tx_id!r} not found in the fee ledger nor in the EQM log")
        for e in events:
            p = e["payload_fields"]
            diffs = []
            if fee:
                for k in ("account_id", "object_id", "operation", "amount_atr"):
                    if p.get(k) != fee[k]:
                        diffs.append(f"{k}: ledger {fee[k]!r} vs log {p.get(k)!r}")
                if e["ts"] != fee["ts"]:
                    diffs.append(f"ts: ledger {iso_utc(fee['ts'])} vs log {iso_utc(e['ts'])}")
            ev_sec.rows.append({"seq": e["seq"], "ts": e["ts"], "date": day_of(e["ts"]), "event_hash": e["event_hash"],
                                "prev_hash": e["prev_hash"], "hash_ok": e["hash_ok"], "account_id": p.get("account_id"),
                                "object_id": p.get("object_id"), "operation": p.get("operation"),
                                "amount_atr": p.get("amount_atr"),
                                "amounts_agree": (p.get("amount_atr") == fee["amount_atr"]) if fee else None,
                                "fields_agree": not diffs if fee else None, "differences": diffs})
        if not events:
            ev_sec.notes.append("no fee_charged event for this tx_id: the ledger row has no counterpart in the log "
                                "(economics ledger_matches_log)")
        if not fee:
            fee_sec.notes.append("not in the fee ledger: the log has an event the ledger lacks (economics ledger_matches_log)")
        if len(events) > 1:
            ev_sec.notes.append(f"{len(events)} fee_charged events carry this tx_id: replay marks the later ones invalid")
        event = events[0] if events else None
        trace.sections += [fee_sec, ev_sec]

        day = fee_sec.rows[0]["date"] if fee else day_of(event["ts"])
        object_id = fee["object_id"] if fee else event["payload_fields"].get("object_id")
        account = fee["account_id"] if fee else event["payload_fields"].get("account_id")
        operation = fee["operation"] if fee else event["payload_fields"].get("operation")

        # the object it paid for, and the rewards of the nodes holding it that day
        reward_ids: list[str] = []
        rewards_sec = Section(f"rewards on {day} of the nodes holding the object's shards",
                              columns=["node_id", "shard_indices", "reward_id", "ts", "epoch", "kind", "amount_nod", "finding"])
        if object_id:
            obj_sections, facts = self.object_sections(object_id, day, prefix=f"object {object_id}: ")
            obj_sections[0].title = f"object paid for: {object_id}"
            shard_rows = facts["shards"]
            shard_day = day
            if not shard_rows:  # a delete drops the shards at once: take the last snapshot that placed them
                earlier = [d for d in self.dates("shards") if d < day]
                for d in reversed(earlier[-2:]):
                    rows = self.scan("shards", [d], "object_id = ?", [object_id], columns="shard_index, node_id")
                    if rows:
                        shard_rows, shard_day = rows, d
                        rewards_sec.notes.append(f"no shards on {day} ({operation}); holders taken from the {d} snapshot")
                        break
            holders: dict[str, list[int]] = {}
            for s in shard_rows:
                holders.setdefault(s["node_id"], []).append(s["shard_index"])
            rewards = []
            if holders:
                rewards = self.scan("rewards", [day], f"node_id IN (SELECT unnest({list_literal(sorted(holders))}))",
                                    columns="reward_id, ts, epoch, node_id, kind, amount_nod", order="node_id, ts, reward_id")
                if day not in self.dates("rewards"):
                    rewards_sec.notes.append(f"no rewards partition for {day}")
            reward_ids = [r["reward_id"] for r in rewards]
            findings_by_id = self._findings(day, [tx_id, *reward_ids])
            for node in sorted(holders):
                mine = [r for r in rewards if r["node_id"] == node]
                for r in mine or [None]:
                    rewards_sec.rows.append({
                        "node_id": node, "shard_indices": sorted(holders[node]),
                        "reward_id": r["reward_id"] if r else None, "ts": r["ts"] if r else None,
                        "epoch": r["epoch"] if r else None, "kind": r["kind"] if r else "(no reward that day)",
                        "amount_nod": r["amount_nod"] if r else None,
                        "finding": ", ".join(f["kind"] for f in findings_by_id.get(r["reward_id"], [])) or None if r else None,
                    })
            if holders:
                total = sum(int(r["amount_nod"]) for r in rewards)
                rewards_sec.notes.append(f"{len(holders)} node(s) held shards on {shard_day}; their rewards that day: "
                                         f"{len(rewards)} row(s), {total} nod (the whole day's reward, not a share of this fee)")
            else:
                rewards_sec.notes.append("no shard of the object found on that day or the day before")
        else:
            obj_sections = []
            rewards_sec.notes.append("the fee names no object")

        trace.sections += obj_sections[:1] + [rewards_sec] + obj_sections[1:]
        trace.sections.append(self.economics_section(tx_id, day, reward_ids, account))
        trace.sections.append(self.replay_section(event["seq"] if event else None, event["ts"] if event else None,
                                                  f"the fee event" + (f" (seq {event['seq']})" if event else "")))
        return trace

    def _findings(self, day: dt.date, ids: list[str]) -> dict[str, list[dict]]:
        rows = self.evidence_rows("economics_findings", monday_of(day), f"id IN (SELECT unnest({list_literal(ids or [''])}))",
                                  order="kind, ts, id") or []
        out: dict[str, list[dict]] = {}
        for r in rows:
            out.setdefault(r["id"], []).append(r)
        return out

    def economics_section(self, tx_id: str, day: dt.date, reward_ids: list[str], account: str | None) -> Section:
        week = monday_of(day)
        sec = Section(f"economics week of {week}")
        doc = self.evidence_json("economics_sanity_check", week)
        if doc is None:
            sec.notes.append(f"no economics_sanity_check evidence for the week of {week}")
            return sec
        m = doc.get("metrics", {})
        sec.rows.append({
            "week": week, "passed": doc.get("passed"),
            "failed_criteria": [c["name"] for c in doc.get("criteria", []) if not c.get("passed")],
            **{k: m.get(k) for k in ("fees_atr", "rewards_nod", "rewards_in_atr", "buffer_atr", "margin_atr",
                                     "ledger_vs_log_atr", "duplicate_tx_ids", "rewards_to_failed_nodes")},
        })
        flow = self.evidence_rows("economics_daily_flow", week, "day = ?", [day]) or []
        for f in flow:
            sec.notes.append(f"{day}: {f['fee_rows']} fee rows, {f['fees_atr']} atr; running margin {f['running_margin_atr']} atr")
        findings = self._findings(day, [tx_id, *reward_ids])
        rows = [f for fs in findings.values() for f in fs]
        if rows:
            fsec_notes = [f"finding {r['kind']} on {r['ledger']} {r['id']}: {r['detail']}" for r in rows]
            sec.notes += fsec_notes
        else:
            sec.notes.append("no economics finding mentions this tx or the rewards above")
        if account:
            sec.notes.append(f"paying account: {account}")
        return sec


# --------------------------------------------------------------------------- API


def trace_tx(export_root: str | Path, evidence_root: str | Path, tx_id: str, *, sor_url: str | None = None) -> Trace:
    """Where a fee transaction appears. Raises TraceNotFound (unknown id), TraceError (missing root) or BadInput."""
    if not tx_id or not str(tx_id).strip():
        raise TraceError("empty tx_id")
    with _Tracer(export_root, evidence_root, sor_url) as t:
        return t.trace_tx(str(tx_id))


def trace_object(export_root: str | Path, evidence_root: str | Path, object_id: str, day: dt.date | str | None = None,
                 *, sor_url: str | None = None) -> Trace:
    """Where an object appears; ``day`` (default: its last manifest snapshot) picks the shards/proofs day.

    Raises TraceNotFound (unknown id), TraceError (missing root, bad day) or BadInput.
    """
    if not object_id or not str(object_id).strip():
        raise TraceError("empty object_id")
    d = _as_date(day)
    with _Tracer(export_root, evidence_root, sor_url) as t:
        sections, _ = t.object_sections(str(object_id), d, require_found=True)
        return Trace("object", str(object_id), sections)


def main_trace(export_root: str | Path | None, evidence_root: str | Path | None, tx_id: str | None = None,
               object_id: str | None = None, as_json: bool = False, *, sor_url: str | None = None,
               day: dt.date | str | None = None) -> int:
    """Print a trace (text or JSON) and return 0; or print one line to stderr and return 2."""
    try:
        if (tx_id is None) == (object_id is None):
            raise TraceError("give exactly one of --tx-id or --object-id")
        if export_root is None or evidence_root is None:
            raise TraceError("export root and evidence root are required")
        if tx_id is not None:
            trace = trace_tx(export_root, evidence_root, tx_id, sor_url=sor_url)
        else:
            trace = trace_object(export_root, evidence_root, object_id, day, sor_url=sor_url)
    except (TraceError, BadInput) as exc:
        print(f"qfs-assure trace: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    sys.stdout.write(trace.to_json() + "\n" if as_json else trace.render_text())
    return 0
