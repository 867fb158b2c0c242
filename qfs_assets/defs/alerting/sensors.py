"""Dagster glue of alerting: two sensors and the call an activity asset makes after publishing.

* :func:`alert_on_evidence` — called by an activity asset right after it published its evidence:
  alerts (``criteria_failed``) when the evidence did not pass. Never raises. This is the
  primary path: the alert is sent as soon as the verdict exists, with the full evidence.
* ``alert_on_failed_checks`` — a sensor over the runs that ended (success, failure or
  cancellation: ``instance.fetch_run_status_changes`` after a storage-id cursor, supported on the
  embedded SQLite instance and on PostgreSQL alike) and their asset check evaluations
  (``instance.get_records_for_run``). For failed evaluations it finds the evidence of the
  materialization the checks targeted (its ``evidence_path`` metadata) and dispatches the same
  alert :func:`alert_on_evidence` builds, so the dedupe ledger sends it once: the sensor is the
  safety net for an asset that did not call the hook, a process that died before sending, or a
  sink that failed (it also redelivers pending alerts, with backoff). Failed checks of one run,
  asset and partition make one alert listing every failed criterion (not one message per
  check). Without readable evidence it alerts from the checks' own metadata. Runs launched by
  the daemon, the UI and ``qfs-assure`` on the same instance are all covered. On its first tick
  it only sets its cursor (no flood of historical failures).
* ``alert_on_run_failure`` — a run failure sensor: the failed step's ``error_kind`` metadata
  (``bad_input``, ``source_unreachable``, ``evidence_unwritable``; see
  ``qfs_assets.defs.common.bad_input_guard``), ``run_failed`` otherwise.

The sensors default to RUNNING. A sensor tick that fails sends a ``sensor_error`` alert and
raises (visible in the UI; the cursor is not advanced, the ledger prevents repeats).
Configuration: environment only, see :mod:`qfs_assets.alerting.config`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import dagster as dg

from qfs_assets.alerting.config import AlertConfig, load_config
from qfs_assets.alerting.dispatch import DeliveryReport, dispatch, redeliver_pending
from qfs_assets.alerting.model import (FAILURE_KINDS, Alert, FailedCriterion, canonical_json, alert_for_failure,
                                       alert_from_evidence,
                                       runbook_for, sha256_hex)
from qfs_assets import registry

log = logging.getLogger("qfs_assets.alerting")

# Wrong alerting settings stop the code location from loading, with one line naming the variable
# (AlertConfigError), rather than alerts failing or going nowhere later.
load_config()

RUN_BATCH = 100            # ended runs read per tick
TICK_BUDGET_SECONDS = 40.0  # stop dispatching (and resume next tick) past this; sensor ticks time out at 60 s


def _summary(report: DeliveryReport) -> str:
    parts = [f"{d.sink}={d.status}" for d in report.deliveries] or ["no sink configured (outbox only)"]
    return f"alert {report.dedupe_key[:12]} ({report.kind} {report.activity} {report.partition}): " + ", ".join(parts)


def _log(context: Any, level: str, message: str) -> None:
    logger = getattr(context, "log", None) or log
    try:
        getattr(logger, level)(message)
    except Exception:  # noqa: BLE001
        getattr(log, level)(message)


def _config_for(evidence_path: str | os.PathLike | None) -> AlertConfig:
    """The environment's configuration; the state dir defaults to ``<evidence root>/_alerts``."""
    from qfs_assets.readers.base import as_path

    root = as_path(evidence_path).parent.parent if evidence_path else None
    return load_config(evidence_root=root)


# ---- (b) called by activity assets --------------------------------------------------------------
def alert_on_evidence(context: Any, doc: Mapping[str, Any], path: str | os.PathLike,
                      config: AlertConfig | None = None) -> DeliveryReport | None:
    """Alert when the published evidence ``doc`` (at ``path``) did not pass. Never raises.

    Returns the delivery report, or ``None`` when the evidence passed (or on an internal error,
    which is logged).
    """
    try:
        alert = alert_from_evidence(doc, path)
        if alert is None:
            return None
        run_id = getattr(context, "run_id", None)
        if run_id:
            alert = _with_details(alert, {"run_id": run_id})
        report = dispatch(alert, config or _config_for(path))
        _log(context, "warning" if report.failed or report.error else "info", _summary(report))
        return report
    except Exception as exc:  # noqa: BLE001 - alerting never fails an asset
        _log(context, "error", f"alerting failed: {type(exc).__name__}")
        return None


def send_event(context: Any, alert: Alert, evidence_root: str | os.PathLike | None = None,
               config: AlertConfig | None = None) -> DeliveryReport | None:
    """Dispatch an operational alert (:mod:`qfs_assets.alerting.events`) from an asset or a sensor.
    Never raises; the state dir defaults to ``<evidence root>/_alerts``."""
    try:
        run_id = getattr(context, "run_id", None)
        if run_id:
            alert = _with_details(alert, {"run_id": run_id})
        report = dispatch(alert, config or load_config(evidence_root=evidence_root))
        _log(context, "warning" if report.failed or report.error else "info", _summary(report))
        return report
    except Exception as exc:  # noqa: BLE001 - alerting never fails an asset or a tick
        _log(context, "error", f"alerting failed: {type(exc).__name__}")
        return None


def _with_details(alert: Alert, extra: Mapping[str, Any]) -> Alert:
    """The same alert (same dedupe key) with more context details."""
    data = alert.to_dict()
    data["details"] = {**data.get("details", {}), **extra}
    return Alert.from_dict(data)


# ---- (a) run failure sensor ----------------------------------------------------------------------
def _innermost(error: Any) -> Any:
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def _activity_of(run: dg.DagsterRun, step_keys: list[str]) -> str:
    """The activity a failed run belongs to: its job's, from the registry."""
    spec = registry.by_job(run.job_name or "")
    if spec is not None:
        return spec.name
    known = registry.activities()
    for key in step_keys:
        if key in known:
            return key
    return run.job_name or "unknown_job"


def alert_for_run_failure(context: dg.RunFailureSensorContext) -> Alert:
    run = context.dagster_run
    step_events = context.get_step_failure_events()
    kinds: list[str] = []
    messages: list[str] = []
    tables: list[str] = []
    step_keys: list[str] = []
    for event in step_events:
        step_keys.append(event.step_key or "")
        data = event.step_failure_data
        user = data.user_failure_data
        metadata = dict(user.metadata or {}) if user is not None else {}
        kind = metadata.get("error_kind")
        kind = str(getattr(kind, "value", kind)) if kind is not None else ("bad_input" if "bad_input" in metadata else None)
        if kind in FAILURE_KINDS:
            kinds.append(kind)
            table = metadata.get("table")
            if table is not None:
                tables.append(str(getattr(table, "value", table)))
        if user is not None and user.description:
            text = user.description
        elif data.error is not None:
            inner = _innermost(data.error)
            text = (inner.message or "").strip() or data.error.message.strip()
        else:
            text = event.message or "step failed"
        messages.append(f"step {event.step_key}: {text.strip()}")
    if not messages:
        messages.append(context.failure_event.message or "run failed")
    kind = kinds[0] if kinds else "run_failed"
    activity = _activity_of(run, step_keys)
    partition = run.tags.get("dagster/partition")
    prefix = {"bad_input": "Bad input, no evidence written",
              "source_unreachable": "System of record unreachable, no evidence written",
              "evidence_unwritable": "Evidence root cannot be written, no evidence written"}.get(kind, "Run failed")
    message = f"{prefix}: job {run.job_name}" + (f", partition {partition}" if partition else "") + ".\n" + "\n".join(messages)
    details = {"run_id": run.run_id, "job": run.job_name}
    if tables:
        details["tables"] = sorted(set(tables))
    alert = alert_for_failure(kind, activity, partition, message, details=details)
    # the fingerprint is the error text without the run id, so a re-run failing the same way is not re-sent
    return alert


def sensor_error(name: str, exc: BaseException) -> None:
    try:
        dispatch(alert_for_failure("sensor_error", name, None, f"sensor {name} failed: {type(exc).__name__}: {exc}",
                                   runbook=runbook_for(name, "sensor_error")), load_config())
    except Exception:  # noqa: BLE001
        log.error("sensor %s: could not send the sensor_error alert", name)


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Sends a run_failed, bad_input, source_unreachable or evidence_unwritable alert to the configured "
                "webhooks, Slack and email (qfs_assets.alerting; deduplicated).",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    try:
        report = dispatch(alert_for_run_failure(context), load_config())
        _log(context, "warning" if report.failed or report.error else "info", _summary(report))
    except Exception as exc:
        sensor_error("alert_on_run_failure", exc)
        raise


# ---- (c) failed asset checks sensor ---------------------------------------------------------------
RUN_ENDINGS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)


def _run_endings(instance: dg.DagsterInstance, after: int | None, limit: int, ascending: bool = True) -> list:
    """Run-ending records (success, failure, cancellation) after storage id ``after``, in storage order.

    ``fetch_run_status_changes`` is the instance's supported cross-run query: on the embedded
    SQLite instance it reads the index shard (which mirrors run status events), on PostgreSQL the
    event table; one storage-id sequence either way."""
    records = []
    for event_type in RUN_ENDINGS:
        records += instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=limit, ascending=ascending).records
    records.sort(key=lambda r: r.storage_id, reverse=not ascending)
    return records[:limit]


def _failed_evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    """The run's failed asset check evaluations, in the order they were recorded (one run's events)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return [e for e in evaluations if e is not None and not getattr(e, "passed", True)]


def _evidence_path_of(instance: dg.DagsterInstance, asset_key: dg.AssetKey, run_id: str,
                      partition: str | None, storage_id: int | None) -> tuple[str | None, str | None]:
    """(evidence_path, partition) from the materialization the checks targeted."""
    if storage_id is not None:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=[storage_id]),
                                                  limit=1).records
    else:
        records = [r for r in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None),
            limit=5).records if r.run_id == run_id]
    for record in records[:1]:
        mat = record.asset_materialization
        value = (mat.metadata or {}).get("evidence_path") if mat is not None else None
        path = getattr(value, "path", None) or getattr(value, "value", None) or (value if isinstance(value, str) else None)
        return (os.fspath(path) if path else None), (mat.partition if mat is not None else None)
    return None, None


def _meta_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _alert_from_checks(activity: str, partition: str | None, evaluations: list, run_id: str) -> Alert:
    from qfs_assets.defs.common import unflat_metadata

    failed = tuple(FailedCriterion(name=e.check_name, observed=unflat_metadata(e.metadata, "observed"),
                                   threshold=unflat_metadata(e.metadata, "threshold"),
                                   detail=_meta_value(e.metadata.get("detail")) if e.metadata.get("detail") else None)
                   for e in sorted(evaluations, key=lambda e: e.check_name))
    fingerprint = sha256_hex(canonical_json([c.to_dict() for c in failed]))
    names = ", ".join(c.name for c in failed)
    return Alert(kind="criteria_failed", activity=activity, partition=partition,
                 message=f"{activity} {partition or ''}: {len(failed)} asset check(s) failed ({names}); "
                         "no readable evidence file was found.",
                 failed_criteria=failed, runbook=runbook_for(activity, "criteria_failed"),
                 fingerprint=fingerprint, details={"run_id": run_id})


def _alert_run(instance: dg.DagsterInstance, run_id: str, config: AlertConfig | None) -> list[DeliveryReport]:
    """One alert per (asset, partition, materialization) of the run with failed checks."""
    groups: dict[tuple, list] = {}
    for evaluation in _failed_evaluations(instance, run_id):
        target = evaluation.target_materialization_data
        key = (evaluation.asset_key, evaluation.partition, target.storage_id if target else None)
        groups.setdefault(key, []).append(evaluation)
    reports = []
    for (asset_key, partition, storage_id), evaluations in groups.items():
        path, mat_partition = _evidence_path_of(instance, asset_key, run_id, partition, storage_id)
        partition = partition or mat_partition
        alert = None
        if path:
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
                alert = alert_from_evidence(doc, path)
                if alert is None:  # the evidence passed: the failed checks are not criteria of it
                    path = None
            except (OSError, ValueError):
                path = None
        if alert is None:
            alert = _alert_from_checks(asset_key.to_user_string(), partition, evaluations, run_id)
        else:
            alert = _with_details(alert, {"run_id": run_id})
        reports.append(dispatch(alert, config or _config_for(path)))
    return reports


def process_failed_checks(instance: dg.DagsterInstance, cursor: int,
                          config: AlertConfig | None = None) -> tuple[int, list[DeliveryReport]]:
    """Alert on the failed check evaluations of the runs that ended after storage id ``cursor``.

    Returns (new cursor, reports). A run is read once it has ended (its evaluations are all
    recorded then); the dedupe ledger makes a second look at a run harmless."""
    started = time.monotonic()
    endings = _run_endings(instance, cursor, RUN_BATCH)
    reports: list[DeliveryReport] = []
    new_cursor = cursor
    for ending in endings:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break  # resume at this run next tick
        reports += _alert_run(instance, ending.run_id, config)
        new_cursor = ending.storage_id
    return new_cursor, reports


@dg.sensor(
    name="alert_on_failed_checks",
    description="Alerts once per failed evidence verdict seen in the asset check evaluations of ended runs "
                "(safety net of alert_on_evidence; deduplicated), and redelivers alerts a sink failed to take.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def alert_on_failed_checks(context: dg.SensorEvaluationContext):
    try:
        cursor = int(context.cursor) if context.cursor and context.cursor.isdigit() else None
        if cursor is None:
            latest = _run_endings(context.instance, None, 1, ascending=False)
            context.update_cursor(str(latest[0].storage_id if latest else 0))
            return dg.SkipReason("first tick: cursor set to the latest run ending; alerting on runs ending from now")
        new_cursor, reports = process_failed_checks(context.instance, cursor)
        context.update_cursor(str(new_cursor))
        reports += redeliver_pending(load_config())
        for report in reports:
            _log(context, "warning" if report.failed or report.error else "info", _summary(report))
        return dg.SkipReason(f"{len(reports)} alert dispatch(es); cursor {new_cursor}")
    except Exception as exc:
        sensor_error("alert_on_failed_checks", exc)
        raise
