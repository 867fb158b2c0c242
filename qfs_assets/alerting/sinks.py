"""Where alerts go: a generic JSON webhook, a Slack-compatible incoming webhook, and email.

Standard library only (``urllib.request``, ``smtplib``). A sink's :meth:`Sink.send` makes one
attempt, bounded as a whole by its ``timeout`` (:class:`AttemptClock`: a server trickling its
answer is cut off at the limit), and raises on failure; retries, deadlines and logging live in
:mod:`qfs_assets.alerting.dispatch`. Every sink has

* ``sink_id``: stable across processes and safe to log (kind, host and a short hash of the
  full target), the key of the dedupe ledger together with the alert's dedupe key;
* ``target``: a redacted description (``scheme://host:port/…``) for logs and reports;
* :meth:`Sink.scrub`: removes the sink's secrets (URL, URL path, password, user) from any text
  before it is logged or reported.

Webhook URLs carry their secret in the path (Slack: ``/services/T…/B…/token``), so URLs are
never logged whole.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import json
import smtplib
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Iterable, Sequence

from qfs_assets import redact
from qfs_assets.alerting.model import Alert, fmt_value

USER_AGENT = "qfs-assure-alerting/1"
_SLACK_TEXT_LIMIT = 2900  # Slack rejects section texts over 3000 characters


class DeliveryError(Exception):
    """One failed attempt. ``permanent`` errors are not retried (e.g. HTTP 400, 404, auth failure)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def redact_url(url: str) -> str:
    """A sink URL for logs and reports: ``scheme://host:port/…``, never the path (a webhook's path is
    its secret), query, fragment or user info (:func:`qfs_assets.redact.redact_url` without the path)."""
    return redact.redact_url(url, keep_path=False)


def check_http_url(url: str) -> str:
    """``url`` when it is an absolute ``http(s)://host[:port]/…`` URL; else ``ValueError`` saying why,
    with the URL shown redacted (``scheme://host:port/…``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError("not a valid URL (bad host or port)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL ({parts.scheme + '://…' if parts.scheme else 'no scheme'})")
    if not parts.hostname:
        raise ValueError(f"no host in {redact_url(url)}")
    if any(c.isspace() for c in url):
        raise ValueError(f"white space in {redact_url(url)}")
    return url


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]


class AttemptClock:
    """Bounds one delivery attempt as a whole, body read included.

    A socket timeout bounds each read, not the exchange: a server answering one byte every few
    seconds never trips it. At ``seconds`` the clock shuts the attempt's sockets down, so a read
    blocked on them returns at once and the attempt fails (``expired``)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "AttemptClock":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


class _WatchedHTTPConnection(http.client.HTTPConnection):
    clock: AttemptClock

    def connect(self) -> None:
        super().connect()
        self.clock.watch(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    clock: AttemptClock

    def connect(self) -> None:
        super().connect()
        self.clock.watch(self.sock)


def _watched(cls, clock: AttemptClock, *args, **kwargs):
    conn = cls(*args, **kwargs)
    conn.clock = clock
    return conn


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, clock: AttemptClock):
        super().__init__()
        self.clock = clock

    def http_open(self, req):  # noqa: D102
        return self.do_open(functools.partial(_watched, _WatchedHTTPConnection, self.clock), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, clock: AttemptClock):
        super().__init__()
        self.clock = clock

    def https_open(self, req):  # noqa: D102
        return self.do_open(functools.partial(_watched, _WatchedHTTPSConnection, self.clock), req,
                            context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: a redirected POST would carry the alert (and headers) elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


def _opener(clock: AttemptClock) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment included) on connections the clock watches."""
    return urllib.request.build_opener(_NoRedirect(), _HTTPHandler(clock), _HTTPSHandler(clock))


class Sink:
    kind = "sink"
    sink_id: str
    target: str

    def send(self, alert: Alert, timeout: float) -> str:
        """One attempt; returns a short, secret-free detail on success, raises on failure."""
        raise NotImplementedError

    def secrets(self) -> Iterable[str]:
        return ()

    def scrub(self, text: str) -> str:
        """``text`` without this sink's secrets (nor any URL's password or secret parameters)."""
        return redact.scrub(text, [s for s in self.secrets() if s and len(s) >= 4])

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}({self.sink_id}, {self.target})"


class _HttpJsonSink(Sink):
    def __init__(self, url: str, headers: dict[str, str] | None = None, name: str | None = None):
        try:
            check_http_url(url)
        except ValueError as exc:
            raise ValueError(f"{self.kind} URL: {exc}") from None
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.headers = dict(headers or {})
        self.target = redact_url(url)
        self.sink_id = f"{self.kind}:{name or parts.hostname}#{short_hash(url)}"

    def secrets(self) -> Iterable[str]:
        parts = urllib.parse.urlsplit(self.url)
        yield self.url
        yield urllib.parse.quote(self.url, safe="")
        for piece in (parts.path, parts.query, parts.username or "", parts.password or "", parts.fragment):
            yield piece
            yield from (seg for seg in piece.split("/") if len(seg) >= 8)
        yield from self.headers.values()

    def payload(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, alert: Alert, timeout: float) -> str:
        body = json.dumps(self.payload(alert), default=str, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   "X-QFS-Alert-Key": alert.dedupe_key, **self.headers}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        cut = ""
        with AttemptClock(timeout) as clock:
            try:
                with _opener(clock).open(request, timeout=timeout) as response:
                    status = response.status
                    try:
                        response.read(65536)
                    except (OSError, http.client.HTTPException):
                        if not clock.expired:
                            raise
                    if clock.expired:  # the status arrived in time: the webhook has the alert
                        cut = f" (response body cut after {timeout:g} s)"
            except urllib.error.HTTPError as exc:
                code = exc.code
                try:
                    exc.read(1024)
                except Exception:  # noqa: BLE001
                    pass
                finally:
                    exc.close()
                permanent = 300 <= code < 500 and code not in (408, 425, 429)
                raise DeliveryError(f"HTTP {code} {exc.reason}", permanent=permanent) from None
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad responses
                if clock.expired:
                    raise DeliveryError(f"no complete response within {timeout:g} s") from None
                if isinstance(exc, urllib.error.URLError):
                    raise DeliveryError(f"connection failed: {exc.reason}") from None
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}", permanent=300 <= status < 500)
        return f"HTTP {status}{cut}"


class WebhookSink(_HttpJsonSink):
    """POST the alert as JSON (``qfs-alert-v1``: every Alert field plus ``text`` and ``title``)."""

    kind = "webhook"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {**alert.to_dict(), "title": alert.title, "text": alert.text()}


def _clip(text: str, limit: int = _SLACK_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: ``{"text": fallback, "blocks": [...]}``."""
    fields = [
        {"type": "mrkdwn", "text": f"*Activity*\n{alert.activity}"},
        {"type": "mrkdwn", "text": f"*Partition*\n{alert.partition or '-'}"},
        {"type": "mrkdwn", "text": f"*Kind*\n{alert.kind} ({alert.severity})"},
        {"type": "mrkdwn", "text": f"*Runbook*\n`{alert.runbook}`"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(alert.title, 150), "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(alert.message)}},
        {"type": "section", "fields": fields},
    ]
    if alert.failed_criteria:
        lines = [f"• *{c.name}*: observed `{fmt_value(c.observed)}`, threshold `{fmt_value(c.threshold)}`"
                 for c in alert.failed_criteria]
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": _clip("*Failed criteria*\n" + "\n".join(lines))}})
    context = []
    if alert.evidence_path:
        context.append({"type": "mrkdwn", "text": _clip(f"Evidence: `{alert.evidence_path}`", 1900)})
    context.append({"type": "mrkdwn", "text": f"Dedupe key: `{alert.dedupe_key[:16]}`"})
    blocks.append({"type": "context", "elements": context})
    return {"text": _clip(alert.text(), 3900), "blocks": blocks}


class SlackSink(_HttpJsonSink):
    """A Slack (or Mattermost, Rocket.Chat, …) incoming webhook."""

    kind = "slack"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert)


class SmtpSink(Sink):
    """Email through an SMTP relay: STARTTLS and login optional; implicit TLS with ``ssl=True``."""

    kind = "smtp"

    def __init__(self, host: str, port: int | None, sender: str, recipients: Sequence[str], *,
                 user: str | None = None, password: str | None = None, starttls: bool = False,
                 use_ssl: bool = False, name: str | None = None, ssl_context: ssl.SSLContext | None = None):
        if not host:
            raise ValueError("smtp sink needs a host")
        if not sender:
            raise ValueError("smtp sink needs a sender (from)")
        recipients = [r.strip() for r in recipients if r and r.strip()]
        if not recipients:
            raise ValueError("smtp sink needs at least one recipient (to)")
        if starttls and use_ssl:
            raise ValueError("smtp sink: choose STARTTLS or implicit TLS, not both")
        self.host = host
        self.port = int(port) if port else (465 if use_ssl else 587 if starttls else 25)
        self.sender = sender
        self.recipients = recipients
        self.user = user or None
        self.password = password or None
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.ssl_context = ssl_context
        self.target = f"smtp://{host}:{self.port}"
        self.sink_id = f"smtp:{name or host}#{short_hash(host, str(self.port), sender, *sorted(recipients))}"

    def secrets(self) -> Iterable[str]:
        if self.password:
            yield self.password
            yield base64.b64encode(self.password.encode()).decode()
            if self.user:
                yield base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        # the user name is not a secret and is kept readable in errors

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = alert.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="qfs-assure")
        msg["X-QFS-Alert-Key"] = alert.dedupe_key
        msg["X-QFS-Alert-Severity"] = alert.severity
        if alert.severity == "critical":
            msg["Importance"] = "high"
            msg["X-Priority"] = "1"
        msg.set_content(alert.text())
        return msg

    def send(self, alert: Alert, timeout: float) -> str:
        msg = self.message(alert)
        with AttemptClock(timeout) as clock:
            return self._send(msg, timeout, clock)

    def _send(self, msg: EmailMessage, timeout: float, clock: AttemptClock) -> str:
        try:
            if self.use_ssl:
                client: smtplib.SMTP = _WatchedSMTP_SSL(self.host, self.port, timeout=timeout, clock=clock,
                                                         context=self.ssl_context or ssl.create_default_context())
            else:
                client = _WatchedSMTP(self.host, self.port, timeout=timeout, clock=clock)
            with client:
                client.ehlo()
                if self.starttls:
                    client.starttls(context=self.ssl_context or ssl.create_default_context())
                    clock.watch(client.sock)  # the TLS socket replaces the plain one
                    client.ehlo()
                if self.user:
                    client.login(self.user, self.password or "")
                refused = client.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP: {exc}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.smtp_code}: {_decode(exc.smtp_error)}",
                                permanent=500 <= exc.smtp_code < 600) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP recipients refused: {sorted(exc.recipients)}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            if clock.expired:
                raise DeliveryError(f"no complete SMTP exchange within {timeout:g} s") from None
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if refused:
            return f"sent, {len(refused)} recipient(s) refused: {sorted(refused)}"
        return f"sent to {len(self.recipients)} recipient(s)"


class _WatchedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose socket is watched by the attempt's clock from the greeting on."""

    def __init__(self, *args, clock: AttemptClock, **kwargs):
        self.clock = clock
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.clock.watch(sock)
        return sock


class _WatchedSMTP_SSL(smtplib.SMTP_SSL):  # noqa: N801
    def __init__(self, *args, clock: AttemptClock, **kwargs):
        self.clock = clock
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.clock.watch(sock)
        return sock


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
