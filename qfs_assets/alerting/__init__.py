"""External alerting for QFS Assure: webhooks, Slack-compatible webhooks and email.

Pure Python, no Dagster import (libraries: tenacity, filelock, pydantic-settings); the Dagster glue is in
:mod:`qfs_assets.defs.alerting.sensors`. Typical use::

    from qfs_assets.alerting import alert_from_evidence, dispatch

    alert = alert_from_evidence(doc, evidence_path)   # None when the evidence passed
    if alert is not None:
        report = dispatch(alert)                      # never raises; per-sink report

Configuration comes from the environment only: see :mod:`qfs_assets.alerting.config` for the
variables (``QFS_ALERT_WEBHOOK_URLS``, ``QFS_ALERT_SLACK_WEBHOOK_URLS``, ``QFS_ALERT_SMTP_*``,
``QFS_ALERT_CONFIG``, ``QFS_ALERT_STATE_DIR``, retry and time settings; a wrong one raises
:class:`AlertConfigError`, one line naming it), and
:mod:`qfs_assets.alerting.dispatch` for dedupe, retries, the ledger and the outbox.
"""

from qfs_assets.alerting.config import AlertConfig, AlertConfigError, load_config
from qfs_assets.alerting.dispatch import DeliveryReport, Ledger, SinkDelivery, dispatch, redeliver_pending
from qfs_assets.alerting.model import KINDS, Alert, FailedCriterion, alert_for_failure, alert_from_evidence
from qfs_assets.alerting.sinks import DeliveryError, Sink, SlackSink, SmtpSink, WebhookSink, redact_url

__all__ = [
    "KINDS", "Alert", "AlertConfig", "AlertConfigError", "DeliveryError", "DeliveryReport", "FailedCriterion", "Ledger", "Sink",
    "SinkDelivery", "SlackSink", "SmtpSink", "WebhookSink", "alert_for_failure", "alert_from_evidence",
    "dispatch", "load_config", "redact_url", "redeliver_pending",
]
