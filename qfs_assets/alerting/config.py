"""Operator configuration of alerting, from the environment only (secrets never in repo files).

Environment variables (all optional; with no sink configured, alerts are still written to the
outbox for audit):

``QFS_ALERT_WEBHOOK_URLS``
    Comma-separated URLs of generic JSON webhooks (one POST of ``qfs-alert-v1`` JSON each).
``QFS_ALERT_SLACK_WEBHOOK_URLS``
    Comma-separated Slack-compatible incoming-webhook URLs (``{"text": ..., "blocks": [...]}``).
``QFS_ALERT_SMTP_HOST``, ``QFS_ALERT_SMTP_PORT``
    SMTP relay; setting the host enables email. Port defaults to 587 with STARTTLS, 465 with
    implicit TLS, 25 otherwise.
``QFS_ALERT_SMTP_FROM``, ``QFS_ALERT_SMTP_TO``
    Sender, and comma-separated recipients (both required with a host).
``QFS_ALERT_SMTP_USER``, ``QFS_ALERT_SMTP_PASSWORD``
    Login (optional; no login when the user is unset).
``QFS_ALERT_SMTP_STARTTLS``
    ``true``/``false``; defaults to true when a user is set (never send a password in clear),
    false otherwise.
``QFS_ALERT_SMTP_SSL``
    ``true`` for implicit TLS (SMTPS, port 465); default false.
``QFS_ALERT_CONFIG``
    Path of an optional JSON file declaring more sinks and settings. Secret values are never
    written in it: they are referenced by environment variable name with a ``*_env`` key::

        {
          "webhooks": [{"name": "ops", "url_env": "OPS_HOOK",
                        "headers_env": {"Authorization": "OPS_HOOK_AUTH"}}],
          "slack":    [{"name": "assurance", "url_env": "SLACK_ASSURANCE_HOOK"}],
          "smtp":     [{"name": "oncall", "host": "smtp.example.org", "port": 587,
                        "from": "qfs-assure@example.org", "to": ["oncall@example.org"],
                        "user_env": "SMTP_USER", "password_env": "SMTP_PASSWORD",
                        "starttls": true}],
          "attempts": 3, "base_delay_seconds": 1, "timeout_seconds": 5, "max_seconds": 30
        }

    Any field may be given as ``<field>_env``; the secret fields (webhook ``url`` and
    ``headers``, SMTP ``password``) may only be given that way: a literal one is refused
    (that sink is skipped and the problem logged). Sinks from the file and from the variables
    above are all used.
``QFS_ALERT_STATE_DIR``
    Directory of the dedupe ledger (``sent.jsonl``) and the audit outbox (``outbox.jsonl``);
    default ``<evidence root>/_alerts``, the evidence root being ``QFS_EVIDENCE_ROOT``
    (default ``evidence_store``).
``QFS_ALERT_ATTEMPTS`` (default 3), ``QFS_ALERT_BASE_DELAY_SECONDS`` (default 1),
``QFS_ALERT_MAX_DELAY_SECONDS`` (default 8)
    Attempts per sink, with exponential backoff ``base * 2**n`` capped at the max delay.
``QFS_ALERT_TIMEOUT_SECONDS`` (default 5)
    Socket timeout of one attempt.
``QFS_ALERT_MAX_SECONDS`` (default 30)
    Bound on the whole dispatch of one alert (sinks are tried concurrently; a sink still
    failing at the deadline is reported ``failed`` and retried by the next dispatch of the
    same alert).

Configuration problems are logged (logger ``qfs_assets.alerting``) by variable name, never by
value, and never raised.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from qfs_assets.alerting.sinks import SlackSink, SmtpSink, Sink, WebhookSink

log = logging.getLogger("qfs_assets.alerting")

DEFAULT_EVIDENCE_ROOT = "evidence_store"  # as qfs_assets.defs.resources (not imported: it imports dagster)
STATE_SUBDIR = "_alerts"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


@dataclass
class AlertConfig:
    sinks: list[Sink] = field(default_factory=list)
    state_dir: Path = field(default_factory=lambda: Path(DEFAULT_EVIDENCE_ROOT) / STATE_SUBDIR)
    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 8.0
    timeout: float = 5.0
    max_seconds: float = 30.0
    errors: list[str] = field(default_factory=list)

    def describe(self) -> list[dict[str, str]]:
        """Secret-free description of the sinks (for logs and UIs)."""
        return [{"sink": s.sink_id, "target": s.target} for s in self.sinks]


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]


def _bool(value: Any, default: bool, what: str, errors: list[str]) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False if text else default
    errors.append(f"{what}: not a boolean; using {default}")
    return default


def _number(value: Any, default: float, what: str, errors: list[str], *, minimum: float, integer: bool = False):
    if value is None or value == "":
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        errors.append(f"{what}: not a number; using {default}")
        return default
    if number < minimum:
        errors.append(f"{what}: below {minimum}; using {minimum}")
        number = int(minimum) if integer else minimum
    return number


def _smtp_from_env(env: Mapping[str, str], errors: list[str]) -> Sink | None:
    host = env.get("QFS_ALERT_SMTP_HOST", "").strip()
    if not host:
        return None
    user = env.get("QFS_ALERT_SMTP_USER") or None
    try:
        port = _number(env.get("QFS_ALERT_SMTP_PORT"), 0, "QFS_ALERT_SMTP_PORT", errors, minimum=0, integer=True)
        use_ssl = _bool(env.get("QFS_ALERT_SMTP_SSL"), False, "QFS_ALERT_SMTP_SSL", errors)
        starttls = _bool(env.get("QFS_ALERT_SMTP_STARTTLS"), bool(user) and not use_ssl,
                         "QFS_ALERT_SMTP_STARTTLS", errors)
        return SmtpSink(host, port or None, env.get("QFS_ALERT_SMTP_FROM", "").strip(),
                        _split(env.get("QFS_ALERT_SMTP_TO")), user=user,
                        password=env.get("QFS_ALERT_SMTP_PASSWORD") or None,
                        starttls=starttls, use_ssl=use_ssl)
    except ValueError as exc:
        errors.append(f"QFS_ALERT_SMTP_*: {exc}")
        return None


_SECRET_FIELDS = {"webhooks": {"url", "headers"}, "slack": {"url", "headers"}, "smtp": {"password"}}


def _field(entry: Mapping[str, Any], name: str, env: Mapping[str, str], where: str, errors: list[str],
           secret: bool = False) -> Any:
    """``entry[name]``, or the environment variable named by ``entry[name + '_env']``."""
    env_key = f"{name}_env"
    if env_key in entry:
        ref = entry[env_key]
        if isinstance(ref, Mapping):  # e.g. headers_env: {"Authorization": "VAR"}
            out = {}
            for k, var in ref.items():
                if var not in env:
                    errors.append(f"{where}.{env_key}.{k}: environment variable {var} is not set")
                    raise LookupError
                out[str(k)] = env[var]
            return out
        if not isinstance(ref, str) or ref not in env or not env[ref]:
            errors.append(f"{where}.{env_key}: environment variable {ref} is not set")
            raise LookupError
        return env[ref]
    if name in entry:
        if secret:
            errors.append(f"{where}.{name}: secrets may not be written in the config file; use {env_key}")
            raise LookupError
        return entry[name]
    return None


def _sinks_from_file(doc: Mapping[str, Any], env: Mapping[str, str], errors: list[str]) -> list[Sink]:
    sinks: list[Sink] = []
    for section, cls in (("webhooks", WebhookSink), ("slack", SlackSink), ("smtp", SmtpSink)):
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            errors.append(f"QFS_ALERT_CONFIG {section}: expected a list")
            continue
        for i, entry in enumerate(entries):
            where = f"QFS_ALERT_CONFIG {section}[{i}]"
            if not isinstance(entry, Mapping):
                errors.append(f"{where}: expected an object")
                continue
            secret = _SECRET_FIELDS[section]
            try:
                get = lambda name: _field(entry, name, env, where, errors, secret=name in secret)  # noqa: E731
                name = get("name")
                if cls is SmtpSink:
                    to = get("to")
                    user = get("user")
                    use_ssl = _bool(get("ssl"), False, f"{where}.ssl", errors)
                    sink: Sink = SmtpSink(
                        str(get("host") or ""), int(get("port") or 0) or None, str(get("from") or ""),
                        _split(to) if isinstance(to, str) else list(to or []),
                        user=user, password=get("password"),
                        starttls=_bool(get("starttls"), bool(user) and not use_ssl, f"{where}.starttls", errors),
                        use_ssl=use_ssl, name=name)
                else:
                    url = get("url")
                    if not url:
                        errors.append(f"{where}: url_env is required")
                        continue
                    sink = cls(str(url), headers=get("headers"), name=name)
            except LookupError:
                continue
            except (TypeError, ValueError) as exc:
                errors.append(f"{where}: {exc}")
                continue
            sinks.append(sink)
    return sinks


def load_config(env: Mapping[str, str] | None = None, *, evidence_root: str | os.PathLike | None = None,
                state_dir: str | os.PathLike | None = None) -> AlertConfig:
    """Build the configuration from ``env`` (default ``os.environ``). Never raises."""
    env = dict(os.environ if env is None else env)
    errors: list[str] = []
    sinks: list[Sink] = []
    file_doc: Mapping[str, Any] = {}

    path = env.get("QFS_ALERT_CONFIG", "").strip()
    if path:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            if isinstance(loaded, Mapping):
                file_doc = loaded
            else:
                errors.append("QFS_ALERT_CONFIG: the file must hold a JSON object")
        except (OSError, ValueError) as exc:
            errors.append(f"QFS_ALERT_CONFIG: cannot read the file ({type(exc).__name__})")
        sinks += _sinks_from_file(file_doc, env, errors)

    for section, cls, var in (("webhooks", WebhookSink, "QFS_ALERT_WEBHOOK_URLS"),
                              ("slack", SlackSink, "QFS_ALERT_SLACK_WEBHOOK_URLS")):
        for i, url in enumerate(_split(env.get(var))):
            try:
                sinks.append(cls(url))
            except ValueError as exc:
                errors.append(f"{var}[{i}]: {exc}")
    smtp = _smtp_from_env(env, errors)
    if smtp is not None:
        sinks.append(smtp)

    # the same target configured twice (file and env) is one sink
    unique: dict[str, Sink] = {}
    for sink in sinks:
        unique.setdefault(sink.sink_id, sink)

    def setting(var: str, key: str, default: float, minimum: float, integer: bool = False):
        value = env.get(var)
        what = var
        if value in (None, ""):
            value, what = file_doc.get(key), f"QFS_ALERT_CONFIG {key}"
        return _number(value, default, what, errors, minimum=minimum, integer=integer)

    if state_dir is None:
        state_dir = env.get("QFS_ALERT_STATE_DIR") or file_doc.get("state_dir")
    if not state_dir:
        root = evidence_root or env.get("QFS_EVIDENCE_ROOT") or DEFAULT_EVIDENCE_ROOT
        state_dir = Path(root) / STATE_SUBDIR

    config = AlertConfig(
        sinks=list(unique.values()),
        state_dir=Path(state_dir),
        attempts=setting("QFS_ALERT_ATTEMPTS", "attempts", 3, 1, integer=True),
        base_delay=setting("QFS_ALERT_BASE_DELAY_SECONDS", "base_delay_seconds", 1.0, 0.0),
        max_delay=setting("QFS_ALERT_MAX_DELAY_SECONDS", "max_delay_seconds", 8.0, 0.0),
        timeout=setting("QFS_ALERT_TIMEOUT_SECONDS", "timeout_seconds", 5.0, 0.05),
        max_seconds=setting("QFS_ALERT_MAX_SECONDS", "max_seconds", 30.0, 0.1),
        errors=errors,
    )
    for problem in errors:
        log.warning("alerting configuration: %s", problem)
    for sink in config.sinks:
        if isinstance(sink, SmtpSink) and sink.password and not (sink.starttls or sink.use_ssl):
            log.warning("alerting configuration: %s logs in without TLS (STARTTLS disabled)", sink.sink_id)
    return config
