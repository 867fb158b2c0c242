"""External alerting: real local HTTP and SMTP servers on 127.0.0.1, no network beyond loopback."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qfs_assets.alerting import (Alert, AlertConfig, AlertConfigError, SlackSink, SmtpSink, WebhookSink, alert_for_failure,
                                 alert_from_evidence, dispatch, load_config, redact_url)
from qfs_assets.alerting.dispatch import Ledger, redeliver_pending

WEBHOOK_TOKEN = "wh-tok-9f8e7d6c5b4a39281706"
SLACK_TOKEN = "T00ZZ/B00ZZ/slacksecretXYZ1234567890"
SMTP_PASSWORD = "s3cr3t-Pa55word-!7"
SECRETS = [WEBHOOK_TOKEN, SLACK_TOKEN, "slacksecretXYZ1234567890", SMTP_PASSWORD]


# ---- local servers ------------------------------------------------------------------------------
class HttpRecorder:
    """A real HTTP server on 127.0.0.1: records POSTs; ``fail_next`` requests get a 500."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder.lock:
                    fail = recorder.fail_next > 0
                    if fail:
                        recorder.fail_next -= 1
                    else:
                        recorder.requests.append({"path": self.path, "headers": dict(self.headers),
                                                  "json": json.loads(body)})
                self.send_response(500 if fail else 200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"boom" if fail else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, prefix: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    server = HttpRecorder()
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpRecorder:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "msg": message_from_bytes(envelope.original_content, policy=policy.default),
                              "auth": session.authenticated})
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts" and \
        auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def _start_smtp(**kwargs):
    from aiosmtpd.controller import Controller
    handler = SmtpRecorder()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), **kwargs)
    controller.start()
    return controller, handler


@pytest.fixture
def smtp():
    controller, handler = _start_smtp(authenticator=_authenticator, auth_require_tls=False)
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    import os
    for var in list(os.environ):
        if var.startswith("QFS_ALERT_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QFS_ALERT_STATE_DIR", str(tmp_path / "alert_state"))


def _cfg(tmp_path, sinks, **kw) -> AlertConfig:
    return AlertConfig(sinks=sinks, state_dir=tmp_path / "alert_state",
                       **{"attempts": 3, "base_delay": 0.01, "max_delay": 0.05, "timeout": 2.0, "max_seconds": 5.0, **kw})


def _doc(observed_ratio=0.9, proof_rate=0.999):
    return {
        "schema": "evidence-v1", "activity": "node_health_assessment", "partition": "2026-01-05",
        "window": {"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z"},
        "passed": False,
        "criteria": [
            {"name": "nodes_verified", "passed": observed_ratio > 0.95, "observed": observed_ratio, "threshold": 0.95},
            {"name": "proof_success", "passed": proof_rate > 0.99, "observed": proof_rate, "threshold": 0.99},
            {"name": "shard_balance", "passed": False,
             "observed": {"utilization_cv": 0.4, "utilization_max_over_mean": 1.2},
             "threshold": {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}},
            {"name": "no_unrecoverable_objects", "passed": True, "observed": 0, "threshold": 0},
        ],
        "metrics": {"verified_ratio": observed_ratio},
        "inputs": {"nodes": {"rows": 10}},
    }


EVIDENCE = "evidence_store/node_health_assessment/node_health_assessment_20260105.json"


# ---- model -------------------------------------------------------------------------------------
def test_alert_from_evidence_and_dedupe_key():
    alert = alert_from_evidence(_doc(), EVIDENCE)
    assert alert.kind == "criteria_failed" and alert.activity == "node_health_assessment"
    assert alert.partition == "2026-01-05" and alert.evidence_path == EVIDENCE
    assert alert.runbook == "docs/runbooks/node-failure.md"
    assert [c.name for c in alert.failed_criteria] == ["nodes_verified", "shard_balance"]
    assert alert.failed_criteria[0].observed == 0.9 and alert.failed_criteria[0].threshold == 0.95
    # stable across rebuilds (re-runs, retries), including a re-run whose evidence has new run detail
    again = {**_doc(), "inputs": {"nodes": {"rows": 10, "files": ["other"]}}}
    assert alert_from_evidence(again, EVIDENCE).dedupe_key == alert.dedupe_key
    # a different failure of the same partition: new key
    assert alert_from_evidence(_doc(observed_ratio=0.8), EVIDENCE).dedupe_key != alert.dedupe_key
    assert alert_from_evidence(_doc(proof_rate=0.5), EVIDENCE).dedupe_key != alert.dedupe_key
    passed = {**_doc(observed_ratio=0.99), "passed": True}
    assert alert_from_evidence(passed, EVIDENCE) is None
    assert Alert.from_dict(alert.to_dict()) == alert
    f1 = alert_for_failure("run_failed", "x", "2026-01-05", "ValueError: boom at 0x7f00deadbeef")
    f2 = alert_for_failure("run_failed", "x", "2026-01-05", "ValueError:  boom at 0x7f00cafebabe ")
    assert f1.dedupe_key == f2.dedupe_key and f1.runbook == "docs/runbooks/alert-triage.md"
    assert alert_for_failure("run_failed", "x", "2026-01-05", "other").dedupe_key != f1.dedupe_key
    assert alert_for_failure("bad_input", "x", "2026-01-05", "other").dedupe_key != \
        alert_for_failure("run_failed", "x", "2026-01-05", "other").dedupe_key
    with pytest.raises(ValueError):
        alert_for_failure("nope", "x", None, "m")


def test_the_same_failure_of_another_partition_is_another_alert():
    """The dedupe key holds the partition: one error repeated on the next day's run (the same
    bad input, the same sensor error) is sent again, once per partition."""
    msg = "table 'nodes': missing partition date=2026-01-06"
    day1 = alert_for_failure("bad_input", "node_health_assessment", "2026-01-05", msg)
    day2 = alert_for_failure("bad_input", "node_health_assessment", "2026-01-06", msg)
    assert day1.fingerprint == day2.fingerprint and day1.dedupe_key != day2.dedupe_key
    assert alert_for_failure("bad_input", "node_health_assessment", "2026-01-05", msg).dedupe_key == day1.dedupe_key
    assert alert_for_failure("sensor_error", "evidence_watchdog", None, msg).dedupe_key != \
        alert_for_failure("sensor_error", "evidence_watchdog", "2026-01-05", msg).dedupe_key


def test_operational_thresholds_default_to_the_documented_values():
    """docs/configuration.md: QFS_ALERT_BURST_ERRORS_PER_HOUR 100, QFS_ALERT_DEGRADED_OBJECTS_OVER 0,
    QFS_ALERT_EVIDENCE_GRACE_HOURS 6 (unset, or empty: the default)."""
    for env in ({}, {"QFS_ALERT_BURST_ERRORS_PER_HOUR": "", "QFS_ALERT_DEGRADED_OBJECTS_OVER": "",
                     "QFS_ALERT_EVIDENCE_GRACE_HOURS": ""}):
        cfg = load_config(env)
        assert (cfg.burst_errors_per_hour, cfg.degraded_objects_over, cfg.evidence_grace_hours) == (100, 0, 6)
    cfg = load_config({"QFS_ALERT_EVIDENCE_GRACE_HOURS": "2.5", "QFS_ALERT_BURST_ERRORS_PER_HOUR": "7"})
    assert (cfg.burst_errors_per_hour, cfg.degraded_objects_over, cfg.evidence_grace_hours) == (7, 0, 2.5)


def test_redact_url():
    assert redact_url(f"https://hooks.slack.com/services/{SLACK_TOKEN}") == "https://hooks.slack.com:443/…"
    assert redact_url(f"http://u:p@127.0.0.1:9/x/{WEBHOOK_TOKEN}?k=v") == "http://127.0.0.1:9/…"


@pytest.mark.parametrize("module", ["qfs_assets.alerting", "qfs_assets.alerting.config", "qfs_assets.alerting.dispatch",
                                    "qfs_assets.alerting.model", "qfs_assets.alerting.sinks", "qfs_assets.redact"])
def test_alerting_imports_without_dagster(module):
    import sys

    code = f"import sys, {module}; assert 'dagster' not in sys.modules, sorted(m for m in sys.modules if 'dagster' in m)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---- delivery ----------------------------------------------------------------------------------
def test_content_arrives_at_webhook_slack_and_email(http, smtp, tmp_path):
    hook = WebhookSink(http.url(f"/hook/{WEBHOOK_TOKEN}"))
    slack = SlackSink(http.url(f"/services/{SLACK_TOKEN}"))
    mail = SmtpSink("127.0.0.1", smtp.port, "qfs-assure@example.org", ["oncall@example.org", "ops@example.org"],
                    user="alerts", password=SMTP_PASSWORD, starttls=False)
    alert = alert_from_evidence(_doc(), EVIDENCE)
    report = dispatch(alert, _cfg(tmp_path, [hook, slack, mail]))
    assert [d.status for d in report.deliveries] == ["sent", "sent", "sent"], report.to_dict()

    [post] = http.posts("/hook/")
    body = post["json"]
    assert post["headers"]["Content-Type"].startswith("application/json")
    assert body["activity"] == "node_health_assessment" and body["partition"] == "2026-01-05"
    assert body["evidence_path"] == EVIDENCE and body["runbook"] == "docs/runbooks/node-failure.md"
    assert body["kind"] == "criteria_failed" and body["dedupe_key"] == alert.dedupe_key
    by_name = {c["name"]: c for c in body["failed_criteria"]}
    assert by_name["nodes_verified"]["observed"] == 0.9 and by_name["nodes_verified"]["threshold"] == 0.95
    assert by_name["shard_balance"]["threshold"] == {"utilization_cv": 0.25, "utilization_max_over_mean": 1.5}
    assert "proof_success" not in by_name

    [spost] = http.posts("/services/")
    payload = spost["json"]
    assert set(payload) == {"text", "blocks"} and isinstance(payload["text"], str)
    assert all(isinstance(b, dict) and "type" in b for b in payload["blocks"])
    assert payload["blocks"][0]["type"] == "header"
    rendered = json.dumps(payload)
    for needle in ("node_health_assessment", "2026-01-05", "nodes_verified", "0.9", "0.95", "shard_balance",
                   EVIDENCE, "docs/runbooks/node-failure.md"):
        assert needle in rendered

    [mail_msg] = smtp.messages
    assert mail_msg["auth"] and sorted(mail_msg["to"]) == ["oncall@example.org", "ops@example.org"]
    msg = mail_msg["msg"]
    assert "node_health_assessment 2026-01-05" in msg["Subject"]
    text = msg.get_content()
    for needle in ("nodes_verified: observed 0.9 (threshold 0.95)", "shard_balance", "utilization_cv",
                   f"Evidence: {EVIDENCE}", "Runbook: docs/runbooks/node-failure.md", "Partition: 2026-01-05"):
        assert needle in text
    assert msg["X-QFS-Alert-Key"].strip() == alert.dedupe_key


def test_same_failure_sent_once_different_failure_sent(http, tmp_path):
    cfg = _cfg(tmp_path, [WebhookSink(http.url("/a")), SlackSink(http.url("/b"))])
    first = dispatch(alert_from_evidence(_doc(), EVIDENCE), cfg)
    second = dispatch(alert_from_evidence(_doc(), EVIDENCE), load_config())  # a "re-run", config from env: no sinks
    third = dispatch(alert_from_evidence(_doc(), EVIDENCE), cfg)             # a retry / re-run
    assert [d.status for d in first.deliveries] == ["sent", "sent"]
    assert second.deliveries == []
    assert [d.status for d in third.deliveries] == ["duplicate", "duplicate"] and third.ok
    assert len(http.posts("/a")) == 1 and len(http.posts("/b")) == 1
    other = dispatch(alert_from_evidence(_doc(observed_ratio=0.5), EVIDENCE), cfg)
    assert [d.status for d in other.deliveries] == ["sent", "sent"]
    assert len(http.posts("/a")) == 2
    # every dispatch is in the outbox, sent or not
    outbox = list(Ledger(cfg.state_dir).outbox())
    assert len(outbox) == 4 and outbox[2]["report"]["deliveries"][0]["status"] == "duplicate"


def test_sink_down_does_not_raise_or_block_others(http, tmp_path):
    down = WebhookSink(f"http://127.0.0.1:{_free_port()}/hook/{WEBHOOK_TOKEN}")  # closed port
    up = WebhookSink(http.url("/up"))
    started = time.monotonic()
    report = dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [down, up]))
    assert time.monotonic() - started < 3
    status = {d.sink: d for d in report.deliveries}
    assert status[down.sink_id].status == "failed" and status[down.sink_id].attempts == 3
    assert status[up.sink_id].status == "sent" and not report.ok
    assert len(http.posts("/up")) == 1


def test_unresponsive_sink_is_bounded_in_time(tmp_path):
    with socket.socket() as blackhole:  # accepts connections (kernel backlog) and never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)
        sink = WebhookSink(f"http://127.0.0.1:{blackhole.getsockname()[1]}/x")
        started = time.monotonic()
        report = dispatch(alert_for_failure("run_failed", "a", None, "m"),
                          _cfg(tmp_path, [sink], timeout=0.3, max_seconds=0.8, attempts=5))
        assert time.monotonic() - started < 2.5
    assert report.deliveries[0].status == "failed"


def test_retry_then_success(http, tmp_path):
    http.fail_next = 1
    sleeps: list[float] = []
    report = dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [WebhookSink(http.url("/r"))]),
                      sleep=lambda s: sleeps.append(s))
    [d] = report.deliveries
    assert d.status == "sent" and d.attempts == 2 and sleeps == [0.01]
    assert len(http.posts("/r")) == 1


def test_backoff_doubles_and_caps_permanent_errors_are_not_retried_no_sleep_past_the_deadline(http, tmp_path):
    sleeps: list[float] = []
    http.fail_next = 100
    report = dispatch(alert_from_evidence(_doc(), EVIDENCE),
                      _cfg(tmp_path, [WebhookSink(http.url("/always500"))], attempts=4, base_delay=0.01,
                           max_delay=0.025), sleep=sleeps.append)
    assert report.deliveries[0].attempts == 4 and sleeps == [0.01, 0.02, 0.025]
    assert report.deliveries[0].error == "HTTP 500 Internal Server Error"

    sleeps.clear()
    gone = WebhookSink(http.url("/gone"))
    http.fail_next = 0
    http.server.RequestHandlerClass.do_POST = lambda self: (self.send_response(404), self.end_headers())
    report = dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [gone], attempts=4), sleep=sleeps.append)
    assert report.deliveries[0].attempts == 1 and sleeps == [] and "HTTP 404" in report.deliveries[0].error

    report = dispatch(alert_for_failure("run_failed", "a", None, "m"),
                      _cfg(tmp_path, [WebhookSink(f"http://127.0.0.1:{_free_port()}/x")], attempts=4, base_delay=10,
                           max_delay=10, max_seconds=1.0), sleep=sleeps.append)
    assert report.deliveries[0].attempts == 1 and sleeps == []
    assert report.deliveries[0].error.endswith("(no time left for another attempt)")


def test_failed_sink_retried_later_others_not_resent(http, tmp_path):
    flaky, steady = WebhookSink(http.url("/flaky")), SlackSink(http.url("/steady"))
    http.fail_next = 2  # both attempts of the flaky sink (dispatched alone, so the 500s are its own)
    assert dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [flaky], attempts=2)).failed
    assert dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [steady])).sent
    # later, with both configured: the failed sink gets it, the other is not sent it again
    again = dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, [flaky, steady]))
    assert again.status_of(flaky.sink_id) == "sent" and again.status_of(steady.sink_id) == "duplicate"
    assert len(http.posts("/flaky")) == 1 and len(http.posts("/steady")) == 1
    ledger = (tmp_path / "alert_state" / "sent.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["sink"] for line in ledger) == sorted([flaky.sink_id, steady.sink_id])


def test_redeliver_pending_retries_failed_sinks_only(http, tmp_path):
    cfg = _cfg(tmp_path, [WebhookSink(http.url("/p"))], attempts=1)
    http.fail_next = 1
    assert dispatch(alert_from_evidence(_doc(), EVIDENCE), cfg).failed
    assert redeliver_pending(cfg) == []  # too early: backoff of one minute
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)
    [report] = redeliver_pending(cfg, now=later)
    assert report.sent and len(http.posts("/p")) == 1
    assert redeliver_pending(cfg, now=later + dt.timedelta(hours=1)) == []  # nothing pending any more
    assert redeliver_pending(cfg, now=later + dt.timedelta(days=2)) == []


def test_no_secret_in_logs_report_or_outbox(http, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="qfs_assets.alerting")
    controller, handler = _start_smtp(authenticator=_authenticator, auth_require_tls=False)
    try:
        http.fail_next = 100
        sinks = [
            WebhookSink(f"http://127.0.0.1:{_free_port()}/hook/{WEBHOOK_TOKEN}"),          # down
            SlackSink(http.url(f"/services/{SLACK_TOKEN}")),                             # 500s
            SmtpSink("127.0.0.1", controller.port, "a@example.org", ["b@example.org"],   # wrong password
                     user="alerts", password=SMTP_PASSWORD + "x", starttls=False),
        ]
        report = dispatch(alert_from_evidence(_doc(), EVIDENCE), _cfg(tmp_path, sinks, attempts=2))
    finally:
        controller.stop()
    assert [d.status for d in report.deliveries] == ["failed", "failed", "failed"]
    assert "authentication" in report.deliveries[2].error
    texts = [caplog.text, json.dumps(report.to_dict()), (tmp_path / "alert_state" / "outbox.jsonl").read_text(),
             repr(sinks)]
    for text in texts:
        for secret in SECRETS + [SMTP_PASSWORD + "x"]:
            assert secret not in text
    assert "http://127.0.0.1:" in caplog.text and "/…" in caplog.text
    assert "NOT delivered" in caplog.text


def test_starttls_and_login(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not available to make a test certificate")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=10)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    controller, handler = _start_smtp(tls_context=server_ctx, require_starttls=True, authenticator=_authenticator,
                                      auth_require_tls=True)
    try:
        sink = SmtpSink("127.0.0.1", controller.port, "a@example.org", ["b@example.org"], user="alerts",
                        password=SMTP_PASSWORD, starttls=True, ssl_context=ssl.create_default_context(cafile=str(cert)))
        report = dispatch(alert_for_failure("bad_input", "node_health_assessment", "2026-01-05",
                                            "nodes: column stake_nod has nulls"), _cfg(tmp_path, [sink]))
    finally:
        controller.stop()
    assert report.sent, report.to_dict()
    [m] = handler.messages
    assert m["auth"] and "nodes: column stake_nod has nulls" in m["msg"].get_content()
    assert "BAD INPUT" in m["msg"]["Subject"]


# ---- configuration -----------------------------------------------------------------------------
def _file(tmp_path, doc) -> str:
    path = tmp_path / "alerting.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_config_from_environment_and_file(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="qfs_assets.alerting")
    config_file = _file(tmp_path, {
        "webhooks": [{"name": "ops", "url_env": "OPS_HOOK", "headers_env": {"Authorization": "OPS_AUTH"}}],
        "slack": [{"url_env": "SLACK_HOOK"}],
        "smtp": [{"host": "mail.example.org", "from": "a@example.org", "to": ["b@example.org"],
                  "user_env": "SMTP_USER", "password_env": "SMTP_PASS"}],
        "attempts": 5, "timeout_seconds": 2,
    })
    env = {
        "QFS_ALERT_CONFIG": config_file,
        "OPS_HOOK": f"https://ops.example.org/hook/{WEBHOOK_TOKEN}", "OPS_AUTH": "Bearer abcdefgh12345",
        "SLACK_HOOK": f"https://hooks.slack.com/services/{SLACK_TOKEN}",
        "SMTP_USER": "alerts", "SMTP_PASS": SMTP_PASSWORD,
        "QFS_ALERT_WEBHOOK_URLS": "https://a.example.org/x1, https://b.example.org/x2",
        "QFS_ALERT_SLACK_WEBHOOK_URLS": f"https://hooks.slack.com/services/{SLACK_TOKEN}",  # same as file: one sink
        "QFS_ALERT_SMTP_HOST": "smtp.example.org", "QFS_ALERT_SMTP_FROM": "qfs@example.org",
        "QFS_ALERT_SMTP_TO": "x@example.org,y@example.org", "QFS_ALERT_SMTP_USER": "u",
        "QFS_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
        "QFS_ALERT_ATTEMPTS": "4", "QFS_EVIDENCE_ROOT": str(tmp_path / "ev"),
        "QFS_ALERT_BASE_DELAY_SECONDS": "",  # empty is unset
    }
    cfg = load_config(env)
    kinds = [s.kind for s in cfg.sinks]
    assert kinds == ["webhook", "slack", "smtp", "webhook", "webhook", "smtp"]
    ops = cfg.sinks[0]
    assert ops.headers == {"Authorization": "Bearer abcdefgh12345"} and ops.sink_id.startswith("webhook:ops#")
    file_smtp, env_smtp = cfg.sinks[2], cfg.sinks[5]
    assert file_smtp.starttls and file_smtp.port == 587 and file_smtp.password == SMTP_PASSWORD
    assert env_smtp.recipients == ["x@example.org", "y@example.org"] and env_smtp.starttls
    assert cfg.attempts == 4 and cfg.timeout == 2 and cfg.base_delay == 1.0 and cfg.max_seconds == 30
    assert cfg.state_dir == tmp_path / "ev" / "_alerts"
    for secret in SECRETS:
        assert secret not in caplog.text and secret not in json.dumps(cfg.describe())
    assert load_config({}).sinks == [] and load_config({}).state_dir == Path("evidence_store/_alerts")
    ssl_only = load_config({"QFS_ALERT_SMTP_HOST": "h", "QFS_ALERT_SMTP_FROM": "a@x", "QFS_ALERT_SMTP_TO": "b@x",
                            "QFS_ALERT_SMTP_SSL": "yes", "QFS_ALERT_SMTP_PORT": "2465"}).sinks[0]
    assert ssl_only.use_ssl and not ssl_only.starttls and ssl_only.port == 2465


_SMTP_OK = {"QFS_ALERT_SMTP_HOST": "smtp.example.org", "QFS_ALERT_SMTP_FROM": "a@x", "QFS_ALERT_SMTP_TO": "b@x"}


@pytest.mark.parametrize("env,line", [
    ({"QFS_ALERT_WEBHOOK_URLS": f"https://ok.example.org/a, ftp://files.example.org/{WEBHOOK_TOKEN}"},
     "QFS_ALERT_WEBHOOK_URLS: URL 2 of 2: not an http(s) URL (ftp://…)"),
    ({"QFS_ALERT_SLACK_WEBHOOK_URLS": f"hooks.slack.com/services/{SLACK_TOKEN}"},
     "QFS_ALERT_SLACK_WEBHOOK_URLS: URL 1 of 1: not an http(s) URL (no scheme)"),
    ({"QFS_ALERT_WEBHOOK_URLS": f"http://127.0.0.1:99999/{WEBHOOK_TOKEN}"},
     "QFS_ALERT_WEBHOOK_URLS: URL 1 of 1: not a valid URL (bad host or port)"),
    ({**_SMTP_OK, "QFS_ALERT_SMTP_PORT": "25a"}, "QFS_ALERT_SMTP_PORT: Input should be a valid integer"),
    ({**_SMTP_OK, "QFS_ALERT_SMTP_PORT": "70000"}, "QFS_ALERT_SMTP_PORT: Input should be less than or equal to 65535"),
    ({**_SMTP_OK, "QFS_ALERT_SMTP_STARTTLS": "maybe"}, "QFS_ALERT_SMTP_STARTTLS: Input should be a valid boolean"),
    ({**_SMTP_OK, "QFS_ALERT_SMTP_STARTTLS": "1", "QFS_ALERT_SMTP_SSL": "1"},
     "QFS_ALERT_SMTP_STARTTLS and QFS_ALERT_SMTP_SSL are both true: choose one"),
    ({"QFS_ALERT_SMTP_HOST": "h"}, "QFS_ALERT_SMTP_FROM and QFS_ALERT_SMTP_TO required with QFS_ALERT_SMTP_HOST"),
    ({"QFS_ALERT_SMTP_TO": "oncall@example.org", "QFS_ALERT_SMTP_PASSWORD": SMTP_PASSWORD},
     "QFS_ALERT_SMTP_TO is set but QFS_ALERT_SMTP_HOST is not (email is off)"),
    ({"QFS_ALERT_ATTEMPTS": "0"}, "QFS_ALERT_ATTEMPTS: Input should be greater than or equal to 1"),
    ({"QFS_ALERT_MAX_SECONDS": "soon"}, "QFS_ALERT_MAX_SECONDS: Input should be a valid number"),
    ({"QFS_ALERT_WEBHOOK_URL": "https://h.example.org/x"},
     "QFS_ALERT_WEBHOOK_URL: not an alerting variable (did you mean QFS_ALERT_WEBHOOK_URLS?)"),
    ({"QFS_ALERT_CONFIG": "/nonexistent/alerting.json"},
     "QFS_ALERT_CONFIG: cannot read /nonexistent/alerting.json (No such file or directory)"),
])
def test_a_wrong_setting_is_one_line_naming_the_variable(env, line):
    with pytest.raises(AlertConfigError) as err:
        load_config(env)
    text = str(err.value)
    assert text.startswith("alerting configuration: ") and line in text and "\n" not in text
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("doc,env,line", [
    ({"webhooks": [{"url": f"https://example.org/{WEBHOOK_TOKEN}"}]}, {},
     "QFS_ALERT_CONFIG webhooks[0]: url: secrets may not be written in the config file; use url_env"),
    ({"webhooks": [{"url_env": "OPS"}, {"url_env": "UNSET_HOOK"}]}, {"OPS": "https://ops.example.org/x"},
     "QFS_ALERT_CONFIG webhooks[1]: url_env: environment variable UNSET_HOOK is not set"),
    ({"slack": [{"url_env": "S", "headers_env": {"Authorization": "NOPE"}}]}, {"S": "https://h.example.org/x"},
     "QFS_ALERT_CONFIG slack[0]: headers_env: environment variable NOPE is not set"),
    ({"slack": [{"url_env": "S"}]}, {"S": "smtp://h.example.org"},
     "QFS_ALERT_CONFIG slack[0].url: not an http(s) URL (smtp://…)"),
    ({"smtp": [{"host": "h", "from": "a@x", "to": [], "password": SMTP_PASSWORD}]}, {},
     "QFS_ALERT_CONFIG smtp[0]: password: secrets may not be written in the config file; use password_env"),
    ({"smtp": [{"host": "h", "from": "a@x", "to": "b@x", "port": "twenty-five"}]}, {},
     "QFS_ALERT_CONFIG smtp[0].port: Input should be a valid integer"),
    ({"smtp": [{"host": "h", "to": "b@x"}]}, {}, "QFS_ALERT_CONFIG smtp[0].from: Field required"),
    ({"webhook": []}, {}, "QFS_ALERT_CONFIG webhook: Extra inputs are not permitted"),
    ({"attempts": "three"}, {}, "QFS_ALERT_CONFIG attempts: Input should be a valid integer"),
    ([1, 2], {}, "must hold a JSON object"),
])
def test_a_wrong_config_file_is_one_line_naming_the_key(tmp_path, doc, env, line):
    with pytest.raises(AlertConfigError) as err:
        load_config({"QFS_ALERT_CONFIG": _file(tmp_path, doc), **env})
    assert line in str(err.value) and "\n" not in str(err.value)
    for secret in SECRETS:
        assert secret not in str(err.value)
    (tmp_path / "alerting.json").write_text("{not json")
    with pytest.raises(AlertConfigError, match=r"QFS_ALERT_CONFIG: .*alerting.json is not valid JSON \(line 1\)"):
        load_config({"QFS_ALERT_CONFIG": str(tmp_path / "alerting.json")})


# ---- Dagster glue ------------------------------------------------------------------------------
def _dagster_env(monkeypatch, http, tmp_path):
    monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", http.url(f"/hook/{WEBHOOK_TOKEN}"))
    monkeypatch.setenv("QFS_ALERT_STATE_DIR", str(tmp_path / "alert_state"))
    monkeypatch.setenv("QFS_ALERT_BASE_DELAY_SECONDS", "0.01")
    monkeypatch.setenv("QFS_ALERT_TIMEOUT_SECONDS", "2")


def test_run_failure_sensor_posts_alert(http, tmp_path, monkeypatch, caplog):
    import dagster as dg

    from qfs_assets.defs.alerting.sensors import alert_on_run_failure
    from qfs_assets.definitions import defs

    _dagster_env(monkeypatch, http, tmp_path)

    @dg.op
    def explodes():
        raise ValueError("replay engine crashed at seq 42")

    @dg.job(tags={"dagster/partition": "2026-01-01"})
    def storage_replay_drill_job():
        explodes()

    @dg.op
    def reads_bad_input():
        raise dg.Failure(description="eqm: file eqm/date=2026-01-01/part-0.parquet column seq: duplicate 7",
                         metadata={"bad_input": True, "table": "eqm"}, allow_retries=False)

    @dg.job(tags={"dagster/partition": "2026-01-01"})
    def bad_input_job():
        reads_bad_input()

    instance = dg.DagsterInstance.ephemeral()
    for job in (storage_replay_drill_job, bad_input_job, storage_replay_drill_job):
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run).for_run_failure()
        alert_on_run_failure(context)

    posts = [p["json"] for p in http.posts("/hook/")]
    assert len(posts) == 2  # the second failure of the replay job is the same failure: not sent again
    run_failed, bad_input = posts
    assert run_failed["kind"] == "run_failed" and run_failed["activity"] == "storage_replay_drill"
    assert run_failed["partition"] == "2026-01-01" and "replay engine crashed at seq 42" in run_failed["message"]
    assert run_failed["runbook"] == "docs/runbooks/alert-triage.md" and run_failed["details"]["run_id"]
    assert bad_input["kind"] == "bad_input" and bad_input["details"]["tables"] == ["eqm"]
    assert "column seq: duplicate 7" in bad_input["message"]
    assert WEBHOOK_TOKEN not in caplog.text
    sensors = {s.name: s for s in defs.sensors if s.name.startswith("alert_")}
    assert set(sensors) == {"alert_on_run_failure", "alert_on_failed_checks"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())


def test_asset_hook_and_failed_checks_sensor_alert_once(http, tmp_path, monkeypatch):
    import dagster as dg

    from qfs_assets.defs.alerting.sensors import alert_on_evidence, alert_on_failed_checks

    _dagster_env(monkeypatch, http, tmp_path)
    root = tmp_path / "evidence"
    doc = _doc()
    reports = []

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-01-05"]), name="node_health_assessment",
              check_specs=[dg.AssetCheckSpec(c["name"], asset="node_health_assessment") for c in doc["criteria"]])
    def activity(context):
        path = root / "node_health_assessment" / "node_health_assessment_20260105.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        reports.append(alert_on_evidence(context, doc, path))
        return dg.MaterializeResult(
            metadata={"evidence_path": dg.MetadataValue.path(str(path))},
            check_results=[dg.AssetCheckResult(check_name=c["name"], passed=c["passed"],
                                               metadata={"observed": dg.MetadataValue.json(c["observed"])
                                                         if isinstance(c["observed"], dict) else c["observed"]})
                           for c in doc["criteria"]])

    instance = dg.DagsterInstance.ephemeral()
    first = dg.build_sensor_context(instance=instance)
    assert isinstance(alert_on_failed_checks(first), dg.SkipReason)  # first tick: sets the cursor only
    assert first.cursor is not None

    assert dg.materialize([activity], instance=instance, partition_key="2026-01-05").success
    assert [d.status for d in reports[0].deliveries] == ["sent"]
    assert alert_on_evidence(None, None, "/nonexistent/x.json") is None  # never raises
    assert alert_on_evidence(None, {**doc, "passed": True}, "x.json") is None

    ctx = dg.build_sensor_context(instance=instance, cursor=first.cursor)
    alert_on_failed_checks(ctx)
    posts = http.posts("/hook/")
    assert len(posts) == 1  # the sensor found the same evidence: same dedupe key, not re-sent
    assert posts[0]["json"]["evidence_path"].endswith("node_health_assessment_20260105.json")
    outbox = [json.loads(line) for line in (tmp_path / "alert_state" / "outbox.jsonl").read_text().splitlines()]
    assert outbox[-1]["report"]["deliveries"][0]["status"] == "duplicate"
    assert int(ctx.cursor) > int(first.cursor)

    # a failed check evaluation whose evidence file vanished: the sensor alerts from the checks' metadata
    (root / "node_health_assessment" / "node_health_assessment_20260105.json").unlink()
    doc["criteria"][1]["passed"] = False  # proof_success now fails too; the asset's own alert goes out first
    assert dg.materialize([activity], instance=instance, partition_key="2026-01-05").success
    (root / "node_health_assessment" / "node_health_assessment_20260105.json").unlink()
    before = len(http.posts("/hook/"))
    ctx2 = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
    alert_on_failed_checks(ctx2)
    fallback = http.posts("/hook/")[before:]
    assert len(fallback) == 1 and fallback[0]["json"]["evidence_path"] is None
    assert fallback[0]["json"]["partition"] == "2026-01-05" and fallback[0]["json"]["kind"] == "criteria_failed"
    assert fallback[0]["json"]["runbook"] == "docs/runbooks/node-failure.md"
    observed = {c["name"]: c["observed"] for c in fallback[0]["json"]["failed_criteria"]}
    assert observed["nodes_verified"] == 0.9 and observed["shard_balance"]["utilization_cv"] == 0.4
    assert {c["name"] for c in fallback[0]["json"]["failed_criteria"]} == {"nodes_verified", "proof_success",
                                                                          "shard_balance"}
    alert_on_failed_checks(dg.build_sensor_context(instance=instance, cursor=ctx2.cursor))
    assert len(http.posts("/hook/")) == before + 1


# ---- locks (filelock) ----------------------------------------------------------------------------
class SlowAck(HttpRecorder):
    """Answers each POST after ``delay`` seconds (a busy webhook)."""

    def __init__(self, delay: float):
        super().__init__()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST

        def do_post(self_):
            time.sleep(delay)
            original(self_)

        handler.do_POST = do_post


def test_concurrent_dispatches_of_one_alert_send_it_once(tmp_path):
    """Four threads dispatch the same alert while the webhook takes 0.3 s: one POST, three duplicates."""
    server = SlowAck(0.3)
    try:
        cfg = _cfg(tmp_path, [WebhookSink(server.url("/once"))])
        alert = alert_from_evidence(_doc(), EVIDENCE)
        reports: list = []
        threads = [threading.Thread(target=lambda: reports.append(dispatch(alert, cfg))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(server.posts("/once")) == 1
        assert sorted(r.deliveries[0].status for r in reports) == ["duplicate", "duplicate", "duplicate", "sent"]
    finally:
        server.close()


def test_a_held_claim_leaves_the_alert_to_its_holder(http, tmp_path):
    from filelock import FileLock

    cfg = _cfg(tmp_path, [WebhookSink(http.url("/held"))], max_seconds=0.3)
    alert = alert_from_evidence(_doc(), EVIDENCE)
    (cfg.state_dir / "locks").mkdir(parents=True)
    with FileLock(cfg.state_dir / "locks" / f"{alert.dedupe_key[:2]}.lock"):  # another process is sending it
        report = dispatch(alert, cfg)
    assert [d.status for d in report.deliveries] == ["in_progress"] and not report.ok
    assert http.posts("/held") == []
    assert dispatch(alert, cfg).sent  # released: the next dispatch sends it


# ---- slow servers: the whole exchange is bounded, and never keeps the process alive ----------------
class Trickle:
    """A real TCP server on 127.0.0.1 that answers one byte every ``interval`` seconds, forever.

    ``head``: what it trickles from the start (``b"HTTP/1.1 200 OK..."`` or an SMTP greeting);
    ``fast``: sent at once before trickling (e.g. complete HTTP headers, so only the body is slow).
    A per-read socket timeout longer than ``interval`` never trips on it."""

    def __init__(self, head: bytes, fast: bytes = b"", interval: float = 0.3, read_request: bool = True):
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0

        def serve(conn):
            with conn:
                try:
                    if read_request:
                        conn.settimeout(5)
                        conn.recv(65536)
                    conn.sendall(fast)
                    data = head * 1000
                    for i in range(len(data)):
                        if self.stop.wait(interval):
                            return
                        conn.sendall(data[i:i + 1])
                except OSError:
                    return

        def accept():
            self.sock.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                self.connections += 1
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.stop.set()
        self.sock.close()


def _alert_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("qfs-alert")]


def _no_alert_thread_left(wait: float = 5.0) -> bool:
    end = time.monotonic() + wait
    while _alert_threads() and time.monotonic() < end:
        time.sleep(0.05)
    return not _alert_threads()


def test_a_webhook_trickling_its_status_line_fails_each_attempt_at_the_timeout(tmp_path):
    server = Trickle(b"HTTP/1.1 200 OK\r\n")
    try:
        cfg = _cfg(tmp_path, [WebhookSink(server.url())], timeout=1.0, max_seconds=4.0, attempts=2)
        report = dispatch(alert_for_failure("run_failed", "a", None, "slow status"), cfg)
        [d] = report.deliveries
        assert d.status == "failed" and d.attempts == 2 and server.connections == 2
        assert "no complete response within 1 s" in d.error
        assert _no_alert_thread_left()  # the attempts ended: nothing blocked on the socket
    finally:
        server.close()


def test_a_webhook_trickling_its_body_after_a_200_has_the_alert(tmp_path):
    server = Trickle(b"x", fast=b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    try:
        cfg = _cfg(tmp_path, [WebhookSink(server.url())], timeout=1.0, max_seconds=4.0)
        report = dispatch(alert_for_failure("run_failed", "a", None, "slow body"), cfg)
        [d] = report.deliveries
        assert d.status == "sent" and d.attempts == 1 and "response body cut after 1 s" in d.detail
        assert _no_alert_thread_left()
    finally:
        server.close()


def test_an_smtp_relay_trickling_its_greeting_is_cut_off(tmp_path):
    server = Trickle(b"220 slow.example.org ESMTP\r\n", read_request=False)
    try:
        sink = SmtpSink("127.0.0.1", server.port, "a@example.org", ["b@example.org"])
        report = dispatch(alert_for_failure("run_failed", "a", None, "slow smtp"),
                          _cfg(tmp_path, [sink], timeout=1.0, max_seconds=3.0, attempts=1))
        [d] = report.deliveries
        assert d.status == "failed" and "no complete SMTP exchange within 1 s" in d.error
        assert _no_alert_thread_left()
    finally:
        server.close()


_SLOW_DISPATCH = """
import sys
from qfs_assets.alerting import AlertConfig, WebhookSink, alert_for_failure, dispatch
report = dispatch(alert_for_failure("run_failed", "a", None, "m"),
                  AlertConfig(sinks=[WebhookSink(sys.argv[1])], state_dir=sys.argv[2], attempts=3,
                              base_delay=0.1, max_delay=0.2, timeout=float(sys.argv[3]), max_seconds=2.0))
print(report.deliveries[0].status, report.deliveries[0].error)
"""


@pytest.mark.parametrize("per_attempt", [1.0, 30.0])
def test_a_slow_webhook_never_keeps_the_process_alive(tmp_path, per_attempt):
    """The reported bug: one byte every 0.3 s kept the process from exiting after "deadline exceeded".

    With a 30 s attempt timeout the dispatch deadline (2 s) cuts the attempt; the process exits
    at once (daemon delivery thread, sockets shut down at the deadline)."""
    import sys

    server = Trickle(b"HTTP/1.1 200 OK\r\n")
    try:
        proc = subprocess.run([sys.executable, "-c", _SLOW_DISPATCH, server.url(), str(tmp_path / "state"),
                               str(per_attempt)], capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("failed no complete response within"), proc.stdout
    [line] = (tmp_path / "state" / "outbox.jsonl").read_text().splitlines()
    assert json.loads(line)["report"]["deliveries"][0]["status"] == "failed"


def test_the_cli_exits_promptly_although_its_webhook_answers_one_byte_every_3_s(tmp_path):
    """Issue 19 finding 4, end to end: ``qfs-assure run`` printed its verdict but never exited while
    its webhook trickled one byte every 3 s. The process must end within the dispatch deadline
    (the subprocess timeout below is a liveness bound, not a performance figure)."""
    import sys

    from qfs_assets_tests.test_cli_and_defs import DAY, build_healthy

    export = build_healthy(tmp_path / "export")
    (export / "proofs" / f"date={DAY}" / "part-0.parquet").write_bytes(b"broken")  # bad input: an alert is sent
    (tmp_path / "home").mkdir()
    server = Trickle(b"HTTP/1.1 200 OK\r\n", interval=3.0)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qfs_assets.cli", "run", "node_health_assessment", "--partition", DAY,
             "--export-root", str(export), "--evidence-root", str(tmp_path / "ev")],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
            env=_clean_env(tmp_path, QFS_ALERT_WEBHOOK_URLS=server.url(), QFS_ALERT_TIMEOUT_SECONDS="60",
                           QFS_ALERT_MAX_SECONDS="5", PYTHONPATH=str(REPO)))
    finally:
        server.close()
    assert proc.returncode == 2, proc.stderr
    assert "qfs-assure: bad input: table 'proofs'" in proc.stderr
    assert server.connections >= 1  # the webhook was called, and trickled
    [line] = (tmp_path / "ev" / "_alerts" / "outbox.jsonl").read_text().splitlines()
    [delivery] = json.loads(line)["report"]["deliveries"]
    assert delivery["status"] == "failed", delivery


# ---- wrong settings stop the CLI and the code location at start -------------------------------------
REPO = Path(__file__).resolve().parents[1]
_BAD_PORT = {"QFS_ALERT_SMTP_HOST": "smtp.example.org", "QFS_ALERT_SMTP_FROM": "a@example.org",
             "QFS_ALERT_SMTP_TO": "b@example.org", "QFS_ALERT_SMTP_PORT": "25a",
             "QFS_ALERT_WEBHOOK_URLS": f"https://hooks.example.org/{WEBHOOK_TOKEN}"}
_BAD_PORT_LINE = ("alerting configuration: QFS_ALERT_SMTP_PORT: Input should be a valid integer, "
                  "unable to parse string as an integer")


def _clean_env(tmp_path, **extra) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("QFS_")}
    return {**env, "DAGSTER_HOME": str(tmp_path / "home"), **extra}


def test_the_cli_exits_2_with_one_line_before_running_anything(tmp_path):
    import sys

    (tmp_path / "home").mkdir()
    proc = subprocess.run([sys.executable, "-m", "qfs_assets.cli", "run", "node_health_assessment", "--partition",
                           "2026-03-02", "--export-root", str(tmp_path / "export"), "--evidence-root",
                           str(tmp_path / "ev")], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=_clean_env(tmp_path, **_BAD_PORT))
    assert proc.returncode == 2
    assert proc.stderr == f"qfs-assure: {_BAD_PORT_LINE}\n" and proc.stdout == ""
    assert not (tmp_path / "ev").exists() and list((tmp_path / "home").iterdir()) == []  # no run, no evidence


def test_the_code_location_fails_to_load_with_that_line(tmp_path):
    (tmp_path / "home").mkdir()
    exe = Path(__import__("sys").executable).parent / "dagster"
    proc = subprocess.run([str(exe), "definitions", "validate"], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=_clean_env(tmp_path, **_BAD_PORT))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"AlertConfigError: {_BAD_PORT_LINE}" in out and WEBHOOK_TOKEN not in out


# ---- the safety-net sensor on the embedded SQLite instance and on PostgreSQL ------------------------
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def dagster_instance(request, tmp_path):
    import uuid

    import dagster as dg
    import sqlalchemy as sa

    if request.param == "sqlite":
        (tmp_path / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
            assert instance.event_log_storage.is_run_sharded  # the embedded default: one SQLite file per run
            yield instance
        return
    name = f"qfs_alert_sensor_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            yield instance
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _activity_asset(root: Path, doc: dict, blocking: bool = False):
    """A partitioned activity-like asset that writes ``doc`` as its evidence WITHOUT alerting itself
    (as if its process died before sending): only the safety-net sensor can alert."""
    import dagster as dg

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-01-05", "2026-01-06"]), name="node_health_assessment",
              check_specs=[dg.AssetCheckSpec(c["name"], asset="node_health_assessment", blocking=blocking)
                           for c in doc["criteria"]])
    def activity(context):
        path = root / "node_health_assessment" / f"node_health_assessment_{context.partition_key.replace('-', '')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**doc, "partition": context.partition_key}))
        return dg.MaterializeResult(
            metadata={"evidence_path": dg.MetadataValue.path(str(path))},
            check_results=[dg.AssetCheckResult(check_name=c["name"], passed=c["passed"],
                                               severity=dg.AssetCheckSeverity.ERROR)
                           for c in doc["criteria"]])

    return activity


def test_failed_checks_sensor_alerts_once_per_verdict_on_sqlite_and_postgresql(http, tmp_path, monkeypatch,
                                                                             dagster_instance):
    import dagster as dg

    from qfs_assets.defs.alerting.sensors import alert_on_failed_checks

    _dagster_env(monkeypatch, http, tmp_path)
    instance, root = dagster_instance, tmp_path / "evidence"

    def tick(cursor):
        import warnings

        ctx = dg.build_sensor_context(instance=instance, cursor=cursor)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = alert_on_failed_checks(ctx)
        assert isinstance(result, dg.SkipReason)
        assert not [w for w in caught if "deprecat" in str(w.message).lower()]  # supported APIs only
        return ctx.cursor

    passing = {**_doc(observed_ratio=0.99, proof_rate=0.999), "passed": True}
    passing["criteria"] = [{**c, "passed": True} for c in passing["criteria"]]
    assert dg.materialize([_activity_asset(root, _doc())], instance=instance, partition_key="2026-01-05").success
    cursor = tick(None)  # first tick: the cursor only, no alert for what ended before
    assert http.posts("/hook/") == []

    assert dg.materialize([_activity_asset(root, passing)], instance=instance, partition_key="2026-01-06").success
    assert dg.materialize([_activity_asset(root, _doc())], instance=instance, partition_key="2026-01-05").success
    cursor = tick(cursor)
    [post] = [p["json"] for p in http.posts("/hook/")]
    assert post["kind"] == "criteria_failed" and post["partition"] == "2026-01-05"
    assert post["evidence_path"].endswith("node_health_assessment_20260105.json")
    assert [c["name"] for c in post["failed_criteria"]] == ["nodes_verified", "shard_balance"]
    assert tick(cursor) == cursor and len(http.posts("/hook/")) == 1  # nothing new; nothing sent twice

    # the same verdict again (a re-run): same dedupe key, not re-sent
    assert dg.materialize([_activity_asset(root, _doc())], instance=instance, partition_key="2026-01-05").success
    cursor = tick(cursor)
    assert len(http.posts("/hook/")) == 1

    # a blocking check failing with ERROR fails the run: the sensor still sees its evaluations
    other = _doc(observed_ratio=0.5)
    failed = dg.materialize([_activity_asset(root, other, blocking=True)], instance=instance,
                            partition_key="2026-01-06", raise_on_error=False)
    assert not failed.success
    cursor = tick(cursor)
    posts = [p["json"] for p in http.posts("/hook/")]
    assert len(posts) == 2 and posts[1]["partition"] == "2026-01-06"
    assert posts[1]["failed_criteria"][0] == {"name": "nodes_verified", "observed": 0.5, "threshold": 0.95}
