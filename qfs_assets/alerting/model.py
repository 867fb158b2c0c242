"""The Alert: what failed, where the evidence is, which runbook to follow, and a dedupe key.

Pure Python (no Dagster import). Two builders:

* :func:`alert_from_evidence` turns an evidence-v1 document into a ``criteria_failed`` alert
  (``None`` when the document passed);
* :func:`alert_for_failure` describes a failure that left no evidence: ``run_failed`` (a bug),
  ``bad_input``, ``source_unreachable`` (the system of record did not answer),
  ``evidence_unwritable`` (the evidence root cannot be written) or ``sensor_error``.

The dedupe key is ``sha256(kind | activity | partition | sorted failed criterion names |
fingerprint)``, where the fingerprint is the hash of the evidence's judged content (window,
verdict and every criterion with its observed value and threshold) for ``criteria_failed``,
and the normalised error text otherwise. So re-running a partition that fails the same way,
or re-dispatching after a retry, yields the same key (not sent twice), while a different
failure of the same partition (another criterion, another observed value, another error)
yields a new key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from qfs_assets import registry
from qfs_assets.registry import TRIAGE_RUNBOOK

#: Operational events (issue "nothing fails silently"): see :mod:`qfs_assets.alerting.events`.
EVENT_KINDS = ("storage_corruption", "storage_error_burst", "node_failure", "redundancy_lost", "diff_unresolved",
               "evidence_missing")
#: the kinds of a failure that left no evidence, by the failed step's ``error_kind`` (else run_failed)
FAILURE_KINDS = ("bad_input", "source_unreachable", "evidence_unwritable")
KINDS = frozenset({"criteria_failed", "run_failed", "sensor_error", *FAILURE_KINDS, *EVENT_KINDS})

#: The runbook of each kind that is not a failed criterion (alert triage for the rest).
#: A node's failure and lost redundancy are the node failure response's business, an unresolved
#: difference the dual-write's: their runbooks are the registry's (written once, there).
KIND_RUNBOOKS = {
    "storage_corruption": "docs/runbooks/storage-errors.md",
    "storage_error_burst": "docs/runbooks/storage-errors.md",
    "node_failure": registry.get("node_failure_response").runbook,  # (get: a renamed activity fails loudly)
    "redundancy_lost": registry.get("node_failure_response").runbook,
    "diff_unresolved": registry.get("dual_write_diff").runbook,
    "evidence_missing": "docs/runbooks/backfills.md",
}

#: ``critical``: act now (data may be lost); ``error``: a check or a run failed; ``warning``: look today.
SEVERITIES = ("critical", "error", "warning")
DEFAULT_SEVERITY = {"storage_corruption": "critical", "node_failure": "critical", "storage_error_burst": "warning",
                    "redundancy_lost": "warning", "diff_unresolved": "error", "evidence_missing": "error"}


_MAX_MESSAGE = 4000


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def runbook_for(activity: str, kind: str = "criteria_failed", runbooks: Mapping[str, str] | None = None) -> str:
    """The runbook of an alert: the activity's own (the registry's) for failed criteria, alert
    triage otherwise."""
    if kind != "criteria_failed":
        return KIND_RUNBOOKS.get(kind, TRIAGE_RUNBOOK)
    if runbooks is not None:
        return runbooks.get(activity, TRIAGE_RUNBOOK)
    return registry.runbook_for(activity)


def normalise_error(text: str) -> str:
    """Error text as a stable fingerprint: trimmed, whitespace collapsed, object addresses removed."""
    text = re.sub(r"0x[0-9a-fA-F]{6,}", "0x…", text or "")
    return " ".join(text.split())


@dataclass(frozen=True)
class FailedCriterion:
    name: str
    observed: Any = None
    threshold: Any = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "observed": self.observed, "threshold": self.threshold}
        if self.detail:
            out["detail"] = self.detail
        return out


def fmt_value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return canonical_json(value)
    return str(value)


@dataclass(frozen=True)
class Alert:
    """One alert. ``dedupe_key`` is computed from the other fields when not given."""

    kind: str
    activity: str
    partition: str | None
    message: str
    failed_criteria: tuple[FailedCriterion, ...] = ()
    evidence_path: str | None = None
    runbook: str | None = None
    fingerprint: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"))
    dedupe_key: str = ""
    severity: str = ""  # default per kind (DEFAULT_SEVERITY, else "error")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if not self.severity:
            object.__setattr__(self, "severity", DEFAULT_SEVERITY.get(self.kind, "error"))
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {list(SEVERITIES)}")
        object.__setattr__(self, "failed_criteria", tuple(self.failed_criteria))
        if self.runbook is None:
            object.__setattr__(self, "runbook", runbook_for(self.activity, self.kind))
        if not self.dedupe_key:
            object.__setattr__(self, "dedupe_key", self.compute_dedupe_key())

    def compute_dedupe_key(self) -> str:
        names = ",".join(sorted(c.name for c in self.failed_criteria))
        parts = [self.kind, self.activity, self.partition or "", names, self.fingerprint]
        return sha256_hex("|".join(parts))

    # ---- rendering -----------------------------------------------------------------------
    @property
    def title(self) -> str:
        where = f"{self.activity} {self.partition}" if self.partition else self.activity
        urgent = "CRITICAL " if self.severity == "critical" else ""
        return f"[QFS Assure] {urgent}{self.kind.replace('_', ' ').upper()}: {where}"

    def criteria_lines(self) -> list[str]:
        return [f"{c.name}: observed {fmt_value(c.observed)} (threshold {fmt_value(c.threshold)})"
                for c in self.failed_criteria]

    def text(self) -> str:
        """Plain-text rendering (email body, Slack fallback, webhook ``text``)."""
        lines = [self.title, "", self.message]
        if self.failed_criteria:
            lines += ["", "Failed criteria:"] + [f"  - {line}" for line in self.criteria_lines()]
        lines.append("")
        lines.append(f"Severity: {self.severity}")
        lines.append(f"Activity: {self.activity}")
        lines.append(f"Partition: {self.partition or '-'}")
        if self.evidence_path:
            lines.append(f"Evidence: {self.evidence_path}")
        lines.append(f"Runbook: {self.runbook}")
        for key, value in sorted(self.details.items()):
            lines.append(f"{key}: {fmt_value(value)}")
        lines.append(f"Dedupe key: {self.dedupe_key}")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Alert":
        """The inverse of :meth:`to_dict` (the dedupe key is kept as recorded)."""
        return cls(
            kind=data["kind"], activity=data["activity"], partition=data.get("partition"),
            message=data.get("message") or "",
            failed_criteria=tuple(FailedCriterion(name=c["name"], observed=c.get("observed"),
                                                  threshold=c.get("threshold"), detail=c.get("detail"))
                                  for c in data.get("failed_criteria") or []),
            evidence_path=data.get("evidence_path"), runbook=data.get("runbook"),
            fingerprint=data.get("fingerprint") or "", details=dict(data.get("details") or {}),
            dedupe_key=data.get("dedupe_key") or "", severity=data.get("severity") or "",
            **({"created_at": data["created_at"]} if data.get("created_at") else {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "qfs-alert-v1",
            "kind": self.kind,
            "severity": self.severity,
            "activity": self.activity,
            "partition": self.partition,
            "message": self.message,
            "failed_criteria": [c.to_dict() for c in self.failed_criteria],
            "evidence_path": self.evidence_path,
            "runbook": self.runbook,
            "details": dict(self.details),
            "created_at": self.created_at,
            "fingerprint": self.fingerprint,
            "dedupe_key": self.dedupe_key,
        }


def evidence_fingerprint(doc: Mapping[str, Any]) -> str:
    """Hash of what the evidence judged (not of the file bytes, which carry run-specific detail)."""
    judged = {k: doc.get(k) for k in ("activity", "partition", "evidence_key", "window", "passed", "criteria")}
    return sha256_hex(canonical_json(judged))


def alert_from_evidence(doc: Mapping[str, Any], evidence_path: str | os.PathLike | None,
                        runbooks: Mapping[str, str] | None = None) -> Alert | None:
    """A ``criteria_failed`` alert for an evidence-v1 document, or ``None`` when it passed."""
    criteria = [c for c in (doc.get("criteria") or []) if isinstance(c, Mapping)]
    passed = doc.get("passed")
    if passed is None:
        passed = bool(criteria) and all(c.get("passed") is True for c in criteria)
    if passed is True:
        return None
    failed = tuple(
        FailedCriterion(name=str(c.get("name")), observed=c.get("observed"), threshold=c.get("threshold"),
                        detail=c.get("detail"))
        for c in criteria if c.get("passed") is not True
    )
    activity = str(doc.get("activity") or "unknown_activity")
    partition = doc.get("partition")
    names = ", ".join(c.name for c in failed) or "no criterion recorded"
    message = f"{activity} {partition}: {len(failed)} of {len(criteria)} criteria failed ({names})."
    return Alert(
        kind="criteria_failed",
        activity=activity,
        partition=str(partition) if partition is not None else None,
        message=message,
        failed_criteria=failed,
        evidence_path=os.fspath(evidence_path) if evidence_path is not None else None,
        runbook=runbook_for(activity, "criteria_failed", runbooks),
        fingerprint=evidence_fingerprint(doc),
    )


def alert_for_failure(kind: str, activity: str, partition: str | None, message: str, *,
                      evidence_path: str | os.PathLike | None = None, runbook: str | None = None,
                      details: Mapping[str, Any] | None = None) -> Alert:
    """An alert for a failure that left no evidence (``run_failed``, ``bad_input``, ``sensor_error``).

    The fingerprint is the normalised message, so the same error of the same partition is sent
    once however many times the run is retried, and another error is sent again.
    """
    message = (message or "").strip() or f"{kind} without a message"
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + " …(truncated)"
    return Alert(
        kind=kind,
        activity=activity,
        partition=partition,
        message=message,
        evidence_path=os.fspath(evidence_path) if evidence_path is not None else None,
        runbook=runbook,
        fingerprint=sha256_hex(normalise_error(message)),
        details=dict(details or {}),
    )
