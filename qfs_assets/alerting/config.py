"""Operator configuration of alerting, from the environment only (secrets never in repo files).

Parsed and validated with pydantic-settings (:class:`AlertSettings`, the ``QFS_ALERT_*``
variables) and pydantic (:class:`AlertFile`, the optional JSON file). Settings that are wrong
raise :class:`AlertConfigError` with ONE line naming every wrong variable (never its value), so
``qfs-assure`` exits 2 and the Dagster code location fails to load before anything runs,
instead of alerts going nowhere. Wrong is: a value that does not parse (a URL that is not
``http(s)://host…``, a port or count that is not an integer, a boolean that is not one), a
value out of bounds, SMTP half configured, an unknown ``QFS_ALERT_*`` variable (a typo), an
unreadable or invalid config file, a config-file key that is unknown or a secret written in
clear, and a ``*_env`` reference to a variable that is not set.

Environment variables (all optional; with no sink configured, alerts are still written to the
outbox for audit):

``QFS_ALERT_WEBHOOK_URLS``
    Comma-separated URLs of generic JSON webhooks (one POST of ``qfs-alert-v1`` JSON each).
``QFS_ALERT_SLACK_WEBHOOK_URLS``
    Comma-separated Slack-compatible incoming-webhook URLs (``{"text": ..., "blocks": [...]}``).
``QFS_ALERT_SMTP_HOST``, ``QFS_ALERT_SMTP_PORT``
    SMTP relay; setting the host enables email. Port (1-65535) defaults to 587 with STARTTLS,
    465 with implicit TLS, 25 otherwise.
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
    ``headers``, SMTP ``password``) may only be given that way. Sinks from the file and from the
    variables above are all used (the same target twice is one sink).
``QFS_ALERT_STATE_DIR``
    Directory of the dedupe ledger (``sent.jsonl``) and the audit outbox (``outbox.jsonl``);
    default ``<evidence root>/_alerts``, the evidence root being ``QFS_EVIDENCE_ROOT``
    (default ``evidence_store``).
``QFS_ALERT_ATTEMPTS`` (default 3, at least 1), ``QFS_ALERT_BASE_DELAY_SECONDS`` (default 1),
``QFS_ALERT_MAX_DELAY_SECONDS`` (default 8)
    Attempts per sink, with exponential backoff ``base * 2**n`` capped at the max delay.
``QFS_ALERT_TIMEOUT_SECONDS`` (default 5, at least 0.05)
    Bound on one attempt as a whole (connect, request, response and body).
``QFS_ALERT_MAX_SECONDS`` (default 30, at least 0.1)
    Bound on the whole dispatch of one alert (sinks are tried concurrently; a sink still
    failing at the deadline is reported ``failed`` and retried by the next dispatch of the
    same alert).

Thresholds of the operational alerts (variables, or the same keys lower-case in the file):

``QFS_ALERT_BURST_ERRORS_PER_HOUR`` (default 100, at least 1)
    ``storage_error_burst`` when one node has more storage errors than this in one UTC hour.
``QFS_ALERT_DEGRADED_OBJECTS_OVER`` (default 0: any)
    ``redundancy_lost`` when more objects than this are degraded (and some newly so).
``QFS_ALERT_EVIDENCE_GRACE_HOURS`` (default 6)
    ``evidence_missing`` when a closed partition still has no evidence this long after its
    activity's scheduled run.

A variable wins over the same setting in the file.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Mapping

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from qfs_assets.alerting.sinks import SlackSink, SmtpSink, Sink, WebhookSink, check_http_url

log = logging.getLogger("qfs_assets.alerting")

ENV_PREFIX = "QFS_ALERT_"
DEFAULT_EVIDENCE_ROOT = "evidence_store"  # as the CLI's default evidence root
STATE_SUBDIR = "_alerts"
DEFAULTS = {"attempts": 3, "base_delay_seconds": 1.0, "max_delay_seconds": 8.0, "timeout_seconds": 5.0,
            "max_seconds": 30.0, "burst_errors_per_hour": 100, "degraded_objects_over": 0, "evidence_grace_hours": 6.0}


class AlertConfigError(ValueError):
    """Wrong alerting settings: one line naming each wrong variable or file key, never a value."""


@dataclass
class AlertConfig:
    sinks: list[Sink] = field(default_factory=list)
    state_dir: Path = field(default_factory=lambda: Path(DEFAULT_EVIDENCE_ROOT) / STATE_SUBDIR)
    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 8.0
    timeout: float = 5.0
    max_seconds: float = 30.0
    #: storage_error_burst: more than this many errors of one node in one UTC hour
    burst_errors_per_hour: int = 100
    #: redundancy_lost: more than this many degraded objects (0: any)
    degraded_objects_over: int = 0
    #: evidence_missing: hours after an activity's scheduled run before a closed partition without evidence alerts
    evidence_grace_hours: float = 6.0

    def describe(self) -> list[dict[str, str]]:
        """Secret-free description of the sinks (for logs and UIs)."""
        return [{"sink": s.sink_id, "target": s.target} for s in self.sinks]


# ---- value types ------------------------------------------------------------------------------
def _split(value: Any) -> list[str]:
    """``"a, b\\nc"`` -> ``["a", "b", "c"]``; a list is kept."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).replace("\n", ",").split(",") if p.strip()]


def _http_urls(value: Any) -> list[str]:
    urls = _split(value)
    for i, url in enumerate(urls, start=1):
        try:
            check_http_url(url)
        except ValueError as exc:
            raise ValueError(f"URL {i} of {len(urls)}: {exc}") from None
    return urls


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]
HttpUrls = Annotated[list[str], NoDecode, BeforeValidator(_http_urls)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0)]


class _Timing(BaseModel):
    attempts: Annotated[int, Field(ge=1)] | None = None
    base_delay_seconds: Seconds | None = None
    max_delay_seconds: Seconds | None = None
    timeout_seconds: Annotated[float, Field(ge=0.05)] | None = None
    max_seconds: Annotated[float, Field(ge=0.1)] | None = None
    state_dir: Path | None = None
    burst_errors_per_hour: Annotated[int, Field(ge=1)] | None = None
    degraded_objects_over: Annotated[int, Field(ge=0)] | None = None
    evidence_grace_hours: Annotated[float, Field(ge=0)] | None = None


# ---- the environment ----------------------------------------------------------------------------
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("qfs_alert_environ", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over ``load_config``'s mapping (``os.environ`` by default)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRON.get()
        if env is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in env.items() if v != ""}


class AlertSettings(_Timing, BaseSettings):
    """The ``QFS_ALERT_*`` variables (field ``smtp_port`` is ``QFS_ALERT_SMTP_PORT``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    webhook_urls: HttpUrls = []
    slack_webhook_urls: HttpUrls = []
    smtp_host: str | None = None
    smtp_port: Port | None = None
    smtp_from: str | None = None
    smtp_to: CommaList = []
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None
    smtp_ssl: bool | None = None
    config: Path | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _Environment(settings_cls)

    @model_validator(mode="after")
    def _smtp_complete(self) -> "AlertSettings":
        if not self.smtp_host:
            stray = [n for n in ("smtp_from", "smtp_to", "smtp_user", "smtp_password", "smtp_port")
                     if getattr(self, n) not in (None, [])]
            if stray:
                raise ValueError(f"{variable(stray[0])} is set but QFS_ALERT_SMTP_HOST is not (email is off)")
            return self
        missing = [variable(n) for n in ("smtp_from", "smtp_to") if not getattr(self, n)]
        if missing:
            raise ValueError(f"{' and '.join(missing)} required with QFS_ALERT_SMTP_HOST")
        if self.smtp_starttls and self.smtp_ssl:
            raise ValueError("QFS_ALERT_SMTP_STARTTLS and QFS_ALERT_SMTP_SSL are both true: choose one")
        return self

    def smtp_sink(self) -> SmtpSink | None:
        if not self.smtp_host:
            return None
        use_ssl = bool(self.smtp_ssl)
        starttls = self.smtp_starttls if self.smtp_starttls is not None else bool(self.smtp_user) and not use_ssl
        return SmtpSink(self.smtp_host, self.smtp_port, self.smtp_from or "", self.smtp_to, user=self.smtp_user,
                        password=self.smtp_password.get_secret_value() if self.smtp_password else None,
                        starttls=starttls, use_ssl=use_ssl)


def variable(field_name: str) -> str:
    """The environment variable of a settings field: ``smtp_port`` -> ``QFS_ALERT_SMTP_PORT``."""
    return ENV_PREFIX + field_name.upper()


#: every alerting variable (an unknown ``QFS_ALERT_*`` variable is refused as a likely typo)
VARIABLES = frozenset(variable(name) for name in AlertSettings.model_fields)


# ---- the JSON file ------------------------------------------------------------------------------
class _FileEntry(BaseModel):
    """A sink of the file; ``<field>_env`` keys are replaced by the named variable's value."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    SECRETS: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        env: Mapping[str, str] = (info.context or {}).get("env", {})
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key.endswith("_env"):
                names = value if isinstance(value, Mapping) else {None: value}
                unset = [v for v in names.values() if not isinstance(v, str) or not env.get(v)]
                if unset:
                    raise ValueError(f"{key}: environment variable {unset[0]} is not set")
                resolved = {k: env[v] for k, v in names.items()}
                out[key[:-4]] = resolved[None] if None in resolved else resolved
            elif key in cls.SECRETS:
                raise ValueError(f"{key}: secrets may not be written in the config file; use {key}_env")
            else:
                out[key] = value
        return out


class WebhookEntry(_FileEntry):
    SECRETS: ClassVar[frozenset[str]] = frozenset({"url", "headers"})
    name: str | None = None
    url: str
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_http_url(url)


class SmtpEntry(_FileEntry):
    SECRETS: ClassVar[frozenset[str]] = frozenset({"password"})
    name: str | None = None
    host: str = Field(min_length=1)
    port: Port | None = None
    sender: str = Field(alias="from", min_length=1)
    to: Annotated[list[str], BeforeValidator(_split), Field(min_length=1)]
    user: str | None = None
    password: SecretStr | None = None
    starttls: bool | None = None
    ssl: bool = False

    @model_validator(mode="after")
    def _one_tls(self) -> "SmtpEntry":
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl are both true: choose one")
        return self

    def sink(self) -> SmtpSink:
        starttls = self.starttls if self.starttls is not None else bool(self.user) and not self.ssl
        return SmtpSink(self.host, self.port, self.sender, self.to, user=self.user,
                        password=self.password.get_secret_value() if self.password else None,
                        starttls=starttls, use_ssl=self.ssl, name=self.name)


class AlertFile(_Timing):
    """The ``QFS_ALERT_CONFIG`` JSON document."""

    model_config = ConfigDict(extra="forbid")
    webhooks: list[WebhookEntry] = []
    slack: list[WebhookEntry] = []
    smtp: list[SmtpEntry] = []


# ---- loading ------------------------------------------------------------------------------------
def _problems(exc: ValidationError, where: Callable[[tuple], str]) -> list[str]:
    """One short phrase per error, named by ``where(loc)``; pydantic's input values are left out."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        msg = err["msg"].removeprefix("Value error, ")
        name = where(tuple(err["loc"]))
        out.append(f"{name}: {msg}" if name else msg)
    return out


def _file_key(loc: tuple) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return f"QFS_ALERT_CONFIG {path}" if path else "QFS_ALERT_CONFIG"


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in VARIABLES):
        close = difflib.get_close_matches(name.upper(), VARIABLES, n=1)
        out.append(f"{name}: not an alerting variable" + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def _read_file(path: Path, env: Mapping[str, str], problems: list[str]) -> AlertFile | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"QFS_ALERT_CONFIG: cannot read {path} ({exc.strerror or type(exc).__name__})")
        return None
    except ValueError as exc:
        problems.append(f"QFS_ALERT_CONFIG: {path} is not valid JSON (line {getattr(exc, 'lineno', '?')})")
        return None
    if not isinstance(doc, Mapping):
        problems.append(f"QFS_ALERT_CONFIG: {path} must hold a JSON object")
        return None
    try:
        return AlertFile.model_validate(doc, context={"env": env})
    except ValidationError as exc:
        problems.extend(_problems(exc, _file_key))
        return None


def load_config(env: Mapping[str, str] | None = None, *, evidence_root: str | os.PathLike | None = None,
                state_dir: str | os.PathLike | None = None) -> AlertConfig:
    """The configuration from ``env`` (default ``os.environ``) and the file it names.

    Raises :class:`AlertConfigError` (one line, every problem, no value) when a setting is wrong.
    """
    env = dict(os.environ if env is None else env)
    problems = _unknown_variables(env)
    token = _ENVIRON.set(env)
    try:
        settings: AlertSettings | None = AlertSettings()
    except ValidationError as exc:
        settings = None
        problems.extend(_problems(exc, lambda loc: variable(str(loc[0])) if loc else ""))
    finally:
        _ENVIRON.reset(token)
    file = _read_file(settings.config, env, problems) if settings and settings.config else None
    if problems or settings is None:
        raise AlertConfigError("alerting configuration: " + "; ".join(problems))
    file = file or AlertFile()

    sinks: list[Sink] = []
    sinks += [WebhookSink(e.url, headers=e.headers, name=e.name) for e in file.webhooks]
    sinks += [SlackSink(e.url, headers=e.headers, name=e.name) for e in file.slack]
    sinks += [e.sink() for e in file.smtp]
    sinks += [WebhookSink(url) for url in settings.webhook_urls]
    sinks += [SlackSink(url) for url in settings.slack_webhook_urls]
    smtp = settings.smtp_sink()
    if smtp is not None:
        sinks.append(smtp)
    unique: dict[str, Sink] = {}
    for sink in sinks:  # the same target configured twice (file and env) is one sink
        unique.setdefault(sink.sink_id, sink)

    def setting(name: str):
        value = getattr(settings, name)
        if value is None:
            value = getattr(file, name)
        return DEFAULTS[name] if value is None else value

    if state_dir is None:
        state_dir = settings.state_dir or file.state_dir
    if not state_dir:
        from qfs_assets.storage_uri import local_state_dir  # s3:// evidence: the ledgers stay local

        root = evidence_root or env.get("QFS_EVIDENCE_ROOT") or DEFAULT_EVIDENCE_ROOT
        state_dir = Path(local_state_dir(root)) / STATE_SUBDIR
    config = AlertConfig(
        sinks=list(unique.values()), state_dir=Path(state_dir), attempts=setting("attempts"),
        base_delay=setting("base_delay_seconds"), max_delay=setting("max_delay_seconds"),
        timeout=setting("timeout_seconds"), max_seconds=setting("max_seconds"),
        burst_errors_per_hour=setting("burst_errors_per_hour"), degraded_objects_over=setting("degraded_objects_over"),
        evidence_grace_hours=setting("evidence_grace_hours"))
    for sink in config.sinks:
        if isinstance(sink, SmtpSink) and sink.password and not (sink.starttls or sink.use_ssl):
            log.warning("alerting configuration: %s logs in without TLS (STARTTLS disabled)", sink.sink_id)
    return config
