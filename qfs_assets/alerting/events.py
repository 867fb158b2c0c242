"""Alerts for operational events that are not a failed verdict ("nothing fails silently").

Pure Python (no Dagster, no data library): each builder takes plain values and returns an
:class:`~qfs_assets.alerting.model.Alert` that goes through the same sinks, dedupe ledger and
redaction as every other alert. Free text that comes from the export (a storage error's
``detail``) is passed through :func:`qfs_assets.redact.scrub` first.

| kind | raised by | dedupe fingerprint (sent once per) |
|---|---|---|
| ``storage_corruption`` (critical) | the ``storage_errors_sensor`` | the error ids of the alert |
| ``storage_error_burst`` | the ``storage_errors_sensor`` | node and UTC hour |
| ``node_failure`` (critical) | the ``node_failure_sensor`` | failure id |
| ``redundancy_lost`` | the node health asset | the day's newly degraded objects |
| ``diff_unresolved`` | the daily dual-write diff | the differences that reached the limit in that run |
| ``evidence_missing`` | the ``evidence_watchdog`` sensor | the activity's missing partitions |
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Sequence

from qfs_assets import redact
from qfs_assets.alerting.model import Alert, canonical_json, sha256_hex

#: at most this many items are listed in an alert's message and details (the count is always exact)
MAX_LISTED = 20


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.timezone.utc)
        return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return str(ts)


def _fingerprint(value: Any) -> str:
    return sha256_hex(canonical_json(value))


def _more(n_total: int, n_listed: int) -> str:
    return f" (and {n_total - n_listed} more)" if n_total > n_listed else ""


# ---- storage errors --------------------------------------------------------------------------
def _error_line(e: Mapping[str, Any]) -> str:
    where = f"node {e.get('node_id') or '?'}, object {e.get('object_id') or '?'}, shard {e.get('shard_index') if e.get('shard_index') is not None else '?'}"
    return f"{where} ({e.get('operation')}, {_iso(e.get('ts'))}, error {e.get('error_id')})"


def storage_corruption(day: dt.date, errors: Sequence[Mapping[str, Any]], *, source: str | None = None) -> Alert:
    """``checksum_mismatch`` rows of the feed: stored bytes no longer match their hash. Critical."""
    errors = sorted(errors, key=lambda e: (str(e.get("ts")), str(e.get("error_id"))))
    listed = [{"error_id": e.get("error_id"), "ts": _iso(e.get("ts")), "node_id": e.get("node_id"),
               "object_id": e.get("object_id"), "shard_index": e.get("shard_index"), "operation": e.get("operation"),
               "detail": redact.scrub(e["detail"]) if e.get("detail") else None} for e in errors[:MAX_LISTED]]
    nodes = sorted({str(e.get("node_id")) for e in errors if e.get("node_id")})
    lines = [f"  - {_error_line(e)}" for e in listed]
    message = (f"{len(errors)} checksum_mismatch error(s) in storage_errors/date={day.isoformat()}: stored bytes no "
               f"longer match their hash (silent corruption, never transient). Nodes: {', '.join(nodes) or 'unknown'}.\n"
               + "\n".join(lines) + _more(len(errors), len(listed)))
    details: dict[str, Any] = {"errors": listed, "count": len(errors), "nodes": nodes}
    if source:
        details["source"] = source
    return Alert(kind="storage_corruption", activity="storage_errors", partition=day.isoformat(), message=message,
                 fingerprint=_fingerprint(sorted(str(e.get("error_id")) for e in errors)), details=details)


def storage_error_burst(day: dt.date, node_id: str, hour: dt.datetime, count: int, threshold: int,
                        by_class: Mapping[str, int]) -> Alert:
    """More than ``threshold`` storage errors of one node in one UTC hour."""
    classes = ", ".join(f"{k} {v}" for k, v in sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0])))
    message = (f"{count} storage errors on {node_id} between {_iso(hour)} and "
               f"{_iso(hour + dt.timedelta(hours=1))} (more than {threshold} an hour): {classes}.")
    return Alert(kind="storage_error_burst", activity="storage_errors", partition=day.isoformat(), message=message,
                 fingerprint=_fingerprint([node_id, _iso(hour)]),
                 details={"node_id": node_id, "hour": _iso(hour), "errors": count, "threshold": threshold,
                          "by_class": dict(sorted(by_class.items()))})


# ---- node failure and redundancy ----------------------------------------------------------------
def node_failure(failure: Mapping[str, Any], evidence_path: str, *, evidence_written: bool = False,
                 response: Mapping[str, Any] | None = None) -> Alert:
    """A node newly ``failed``, sent the moment the sensor sees it; ``evidence_path`` is where the
    response writes (or wrote) its evidence, summarised in ``response`` when already written."""
    fid = str(failure["failure_id"])
    state = "written" if evidence_written else "being written by the response run"
    message = (f"{failure['node_id']} failed at {_iso(failure.get('failed_at'))} (seen in the "
               f"{'EQM log, seq ' + str(failure.get('seq')) if failure.get('seq') is not None else 'nodes snapshot'}). "
               f"A node_failure_response run ({fid}) plans the shard redistribution, re-verifies the receivers and "
               f"proposes the reward claw-back; its evidence is {state}: {evidence_path}")
    details: dict[str, Any] = {"failure": dict(failure), "response_run_key": fid,
                               "response_evidence": "written" if evidence_written else "pending"}
    if response:
        details["response"] = dict(response)
    return Alert(kind="node_failure", activity="node_failure_response", partition=fid, message=message,
                 evidence_path=evidence_path, fingerprint=_fingerprint(fid), details=details)


def redundancy_lost(day: dt.date, degraded: int, unrecoverable: int, newly_degraded: int, threshold: int,
                    worst: Sequence[Mapping[str, Any]], evidence_path: str | None,
                    new_ids: Iterable[str] = ()) -> Alert:
    """More than ``threshold`` objects below their full shard count, some of them newly so."""
    listed = [dict(w) for w in worst[:MAX_LISTED]]
    lines = [f"  - {w['object_id']}: {w['healthy_shards']} of {w['total_shards']} shards healthy "
             f"(needs {w['data_shards']}){' UNRECOVERABLE' if w['healthy_shards'] < w['data_shards'] else ''}"
             for w in listed]
    message = (f"{degraded} object(s) degraded at the end of {day.isoformat()} ({newly_degraded} newly), "
               f"{unrecoverable} unrecoverable (threshold: more than {threshold} degraded). Worst objects:\n"
               + "\n".join(lines) + _more(degraded, len(listed)))
    return Alert(kind="redundancy_lost", activity="node_health_assessment", partition=day.isoformat(),
                 message=message, evidence_path=evidence_path,
                 severity="critical" if unrecoverable else "warning",
                 fingerprint=_fingerprint(sorted(new_ids)),
                 details={"objects_degraded": degraded, "objects_unrecoverable": unrecoverable,
                          "newly_degraded": newly_degraded, "threshold": threshold, "worst_objects": listed})


# ---- the 24-hour rule ---------------------------------------------------------------------------
def diff_unresolved(day: dt.date, as_of: dt.datetime, hours: float, diffs: Sequence[Mapping[str, Any]],
                    still_open_total: int) -> Alert:
    """Dual-write differences that reached ``hours`` unresolved in this daily run."""
    diffs = sorted(diffs, key=lambda d: (str(d["first_seen"]), d["object_id"], d["category"]))
    listed = [{"object_id": d["object_id"], "category": d["category"], "first_seen": _iso(d["first_seen"])}
              for d in diffs[:MAX_LISTED]]
    lines = [f"  - {d['object_id']} ({d['category']}), first seen {d['first_seen']}" for d in listed]
    message = (f"{len(diffs)} dual-write difference(s) reached {hours:g} h unresolved at the daily diff of "
               f"{day.isoformat()} (as of {_iso(as_of)}); {still_open_total} difference(s) are over the limit in "
               f"all. The month's diffs_resolved_in_24h will fail even if they are resolved now.\n"
               + "\n".join(lines) + _more(len(diffs), len(listed)))
    return Alert(kind="diff_unresolved", activity="dual_write_diff", partition=day.isoformat(), message=message,
                 fingerprint=_fingerprint(sorted(f"{d['object_id']}|{d['category']}|{_iso(d['first_seen'])}"
                                                 for d in diffs)),
                 details={"as_of": _iso(as_of), "resolution_hours": hours, "reached": listed,
                          "reached_count": len(diffs), "over_limit_total": still_open_total})


# ---- freshness --------------------------------------------------------------------------------
def evidence_missing(activity: str, missing: Sequence[Mapping[str, Any]], grace_hours: float,
                     fill: Sequence[str]) -> Alert:
    """Closed partitions of ``activity`` without evidence ``grace_hours`` after their scheduled run."""
    missing = sorted(missing, key=lambda m: m["partition"])
    listed = [{"partition": m["partition"], "due": _iso(m.get("due"))} for m in missing[:MAX_LISTED]]
    lines = [f"  - {m['partition']} (due {m['due']})" for m in listed]
    message = (f"{len(missing)} closed partition(s) of {activity} have no evidence {grace_hours:g} h after their "
               f"scheduled run (a stopped daemon, a schedule turned off, or evidence deleted):\n" + "\n".join(lines)
               + _more(len(missing), len(listed)) + "\nFill them with:\n" + "\n".join(f"  {c}" for c in fill[:5]))
    return Alert(kind="evidence_missing", activity=activity, partition=missing[0]["partition"] if missing else None,
                 message=message, fingerprint=_fingerprint([m["partition"] for m in missing]),
                 details={"missing": listed, "missing_count": len(missing), "grace_hours": grace_hours,
                          "fill": list(fill)})
