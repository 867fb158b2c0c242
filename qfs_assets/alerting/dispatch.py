"""Deliver an alert to every configured sink, once: dedupe ledger, retries, bounded time.

:func:`dispatch` never raises. For each sink it

1. skips the sink when the ledger already records ``(dedupe_key, sink_id)`` as sent
   (status ``duplicate``): the same failure is not sent twice across retries and re-runs,
   while a sink that failed before is tried again and the others are not re-sent;
2. otherwise tries it up to ``attempts`` times (tenacity) with exponential backoff
   (``base_delay * 2**n``, capped at ``max_delay``), no attempt or backoff starting past the
   deadline, each attempt bounded *as a whole* by ``timeout`` (connect, request, response and
   body: a server trickling its answer is cut off), HTTP 4xx and SMTP 5xx being permanent (not
   retried);
3. records a success in the ledger at once (atomic append).

Sinks are tried concurrently on daemon threads and the whole dispatch is bounded by
``max_seconds`` (a sink still busy at the deadline is reported ``failed``, and never keeps the
process from exiting). Concurrent dispatches of the same alert (an asset and a sensor, two
processes) are serialised by a file lock (``filelock``) on the alert's key, so they do not both
send.

State, under ``config.state_dir`` (default ``<evidence root>/_alerts``; when it cannot be written,
e.g. a read-only or full evidence root, the alert is sent anyway, without dedupe and outbox):

``sent.jsonl``
    the ledger: one line per delivered ``(dedupe_key, sink)``.
``outbox.jsonl``
    the audit trail: one line per dispatch of every alert, sent or not, with its
    secret-free delivery report.

Logs go to the ``qfs_assets.alerting`` logger: sink ids and ``scheme://host:port/…`` only,
error texts scrubbed of the sink's secrets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import tenacity
from filelock import FileLock, Timeout

from qfs_assets.alerting.config import AlertConfig, AlertConfigError, load_config
from qfs_assets.alerting.model import Alert
from qfs_assets.alerting.sinks import DeliveryError, Sink

log = logging.getLogger("qfs_assets.alerting")

LEDGER_FILE = "sent.jsonl"
OUTBOX_FILE = "outbox.jsonl"
LOCKS_DIR = "locks"
_GRACE_SECONDS = 1.0


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class SinkDelivery:
    sink: str
    target: str
    status: str  # sent | failed | duplicate | in_progress
    attempts: int = 0
    error: str | None = None
    detail: str | None = None
    seconds: float = 0.0


@dataclass
class DeliveryReport:
    dedupe_key: str
    kind: str
    activity: str
    partition: str | None
    deliveries: list[SinkDelivery] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def sent(self) -> list[SinkDelivery]:
        return [d for d in self.deliveries if d.status == "sent"]

    @property
    def failed(self) -> list[SinkDelivery]:
        return [d for d in self.deliveries if d.status == "failed"]

    @property
    def ok(self) -> bool:
        """No sink failed (every sink has the alert now or had it before)."""
        return self.error is None and not self.failed and all(d.status != "in_progress" for d in self.deliveries)

    def status_of(self, sink_id: str) -> str | None:
        return next((d.status for d in self.deliveries if d.sink == sink_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {"dedupe_key": self.dedupe_key, "kind": self.kind, "activity": self.activity,
                "partition": self.partition, "ok": self.ok, "error": self.error,
                "seconds": round(self.seconds, 3), "deliveries": [asdict(d) for d in self.deliveries]}


# ---- state ------------------------------------------------------------------------------------
def _append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line atomically: one O_APPEND write under the file's lock, fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    (path.parent / LOCKS_DIR).mkdir(exist_ok=True)
    with FileLock(path.parent / LOCKS_DIR / f"{path.name}.lock"):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:  # a torn line (crash mid-write): ignore it
                continue
            if isinstance(record, dict):
                yield record


class Ledger:
    """The sent ledger and the audit outbox of one state directory."""

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = Path(state_dir)
        self.sent_path = self.state_dir / LEDGER_FILE
        self.outbox_path = self.state_dir / OUTBOX_FILE

    def writable(self) -> bool:
        """Whether the state directory takes the lock files, the ledger and the outbox."""
        try:
            (self.state_dir / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
            probe = self.state_dir / LOCKS_DIR / f".probe-{os.getpid()}-{threading.get_ident()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                os.write(fd, b"x")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
            return True
        except OSError:
            return False

    def sent_sinks(self, dedupe_key: str) -> set[str]:
        return {r.get("sink") for r in _read_lines(self.sent_path) if r.get("dedupe_key") == dedupe_key}

    def record_sent(self, alert: Alert, delivery: SinkDelivery) -> None:
        _append_line(self.sent_path, {"dedupe_key": alert.dedupe_key, "sink": delivery.sink, "at": _now_iso(),
                                      "kind": alert.kind, "activity": alert.activity,
                                      "partition": alert.partition, "attempts": delivery.attempts})

    def record_outbox(self, alert: Alert, report: DeliveryReport) -> None:
        _append_line(self.outbox_path, {"at": _now_iso(), "alert": alert.to_dict(), "report": report.to_dict()})

    def outbox(self) -> Iterator[dict[str, Any]]:
        return _read_lines(self.outbox_path)

    @contextlib.contextmanager
    def claim(self, dedupe_key: str, deadline: float) -> Iterator[bool]:
        """Hold the lock of ``dedupe_key`` (shared by 1/256 of keys) until ``deadline``; yield success.

        A file lock, so it serialises threads and processes alike (two ``FileLock`` objects on one
        path exclude each other within a process too)."""
        bucket = dedupe_key[:2] if len(dedupe_key) >= 2 else "00"
        (self.state_dir / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.state_dir / LOCKS_DIR / f"{bucket}.lock")
        try:
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


# ---- delivery ---------------------------------------------------------------------------------
def _deliver(sink: Sink, alert: Alert, config: AlertConfig, deadline: float,
             sleep: Callable[[float], None], ledger: Ledger | None) -> SinkDelivery:
    """Up to ``config.attempts`` attempts (tenacity), backoff ``base * 2**n`` capped at ``max_delay``,
    none starting (nor sleeping) past ``deadline``; a permanent error is not retried."""
    started = time.monotonic()
    key = alert.dedupe_key[:12]
    attempts = 0

    def attempt() -> str:
        nonlocal attempts
        attempts += 1
        try:
            return sink.send(alert, timeout=max(0.05, min(config.timeout, deadline - time.monotonic())))
        except DeliveryError as exc:
            failure = DeliveryError(sink.scrub(str(exc)), permanent=exc.permanent)
        except Exception as exc:  # noqa: BLE001 - a sink bug must not reach the caller
            failure = DeliveryError(sink.scrub(f"{type(exc).__name__}: {exc}"))
        log.warning("alert %s to %s (%s): attempt %d/%d failed: %s%s", key, sink.sink_id, sink.target, attempts,
                    config.attempts, failure, " (permanent, not retried)" if failure.permanent else "")
        raise failure

    error = "deadline reached before the first attempt"
    if deadline > started:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(config.attempts) | tenacity.stop_before_delay(deadline - started),
            wait=tenacity.wait_exponential(multiplier=config.base_delay, max=config.max_delay),
            retry=tenacity.retry_if_exception(lambda exc: not getattr(exc, "permanent", False)),
            sleep=sleep, reraise=True)
        try:
            detail = retrying(attempt)
        except DeliveryError as exc:
            error = str(exc)
            if not exc.permanent and attempts < config.attempts:
                error += " (no time left for another attempt)"
        else:
            delivery = SinkDelivery(sink.sink_id, sink.target, "sent", attempts, None, sink.scrub(detail),
                                    time.monotonic() - started)
            log.info("alert %s (%s %s %s) delivered to %s (%s) on attempt %d", key, alert.kind, alert.activity,
                     alert.partition, sink.sink_id, sink.target, attempts)
            if ledger is not None:
                try:
                    ledger.record_sent(alert, delivery)
                except OSError as exc:
                    log.error("alert %s: cannot record the delivery to %s in the ledger: %s",
                              key, sink.sink_id, type(exc).__name__)
            return delivery
    log.error("alert %s (%s %s %s) NOT delivered to %s (%s) after %d attempt(s): %s", key, alert.kind,
              alert.activity, alert.partition, sink.sink_id, sink.target, attempts, error)
    return SinkDelivery(sink.sink_id, sink.target, "failed", attempts, error, None, time.monotonic() - started)


def _deliver_all(sinks: list[Sink], alert: Alert, config: AlertConfig, deadline: float,
                 sleep: Callable[[float], None], ledger: Ledger | None) -> dict[str, SinkDelivery]:
    """Deliver to ``sinks`` concurrently on daemon threads; wait until ``deadline`` (plus a grace).

    Daemon threads, so a sink that is still busy at the deadline never keeps the process alive
    (each attempt is also bounded as a whole by the sink, see ``sinks.AttemptClock``)."""
    results: dict[str, SinkDelivery] = {}

    def run(sink: Sink) -> None:
        results[sink.sink_id] = _deliver(sink, alert, config, deadline, sleep, ledger)

    threads = {sink.sink_id: threading.Thread(target=run, args=(sink,), name=f"qfs-alert-{sink.kind}", daemon=True)
               for sink in sinks}
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(timeout=max(0.0, deadline + _GRACE_SECONDS - time.monotonic()))
    out: dict[str, SinkDelivery] = {}
    for sink in sinks:
        delivery = results.get(sink.sink_id)
        if delivery is None:
            why = "deadline exceeded" if threads[sink.sink_id].is_alive() else "internal error"
            log.error("alert %s NOT delivered to %s (%s): %s", alert.dedupe_key[:12], sink.sink_id, sink.target, why)
            delivery = SinkDelivery(sink.sink_id, sink.target, "failed", error=why)
        out[sink.sink_id] = delivery
    return out


def _deliver_new(alert: Alert, config: AlertConfig, deadline: float, sleep: Callable[[float], None], ledger: Ledger,
                 report: DeliveryReport) -> list[SinkDelivery]:
    """Deliver to the sinks the ledger does not record as having the alert (under its claim)."""
    try:
        already = ledger.sent_sinks(alert.dedupe_key)
    except OSError as exc:
        already = set()
        report.error = f"ledger unreadable ({type(exc).__name__}); sent without dedupe"
        log.error("alert %s: %s", alert.dedupe_key[:12], report.error)
    todo = [s for s in config.sinks if s.sink_id not in already]
    results: dict[str, SinkDelivery] = {
        s.sink_id: SinkDelivery(s.sink_id, s.target, "duplicate") for s in config.sinks if s.sink_id in already}
    if already and len(todo) < len(config.sinks):
        log.info("alert %s already sent to %d sink(s); not sent again", alert.dedupe_key[:12],
                 len(config.sinks) - len(todo))
    if todo:
        results.update(_deliver_all(todo, alert, config, deadline, sleep, ledger))
    return [results[s.sink_id] for s in config.sinks]


def dispatch(alert: Alert, config: AlertConfig | None = None, *,
             sleep: Callable[[float], None] = time.sleep) -> DeliveryReport:
    """Send ``alert`` to every configured sink not already holding it; return the report. Never raises."""
    started = time.monotonic()
    report = DeliveryReport(alert.dedupe_key, alert.kind, alert.activity, alert.partition)
    ledger: Ledger | None = None
    try:
        if config is None:
            config = load_config()
        deadline = started + config.max_seconds
        ledger = Ledger(config.state_dir)
        if not ledger.writable():
            # e.g. the evidence root is read-only or full (the very thing an evidence_unwritable alert
            # reports): send anyway, without the dedupe ledger and the outbox
            ledger = None
            report.error = f"alert state {config.state_dir} cannot be written: sent without dedupe"
            log.info("alert %s: %s", alert.dedupe_key[:12], report.error)
            results = _deliver_all(config.sinks, alert, config, deadline, sleep, None)
            report.deliveries = [results[s.sink_id] for s in config.sinks]
        else:
            with ledger.claim(alert.dedupe_key, deadline) as claimed:
                if not claimed:
                    log.warning("alert %s: another dispatch of the same alert is in progress; leaving it to it",
                                alert.dedupe_key[:12])
                    report.deliveries = [SinkDelivery(s.sink_id, s.target, "in_progress") for s in config.sinks]
                else:
                    report.deliveries = _deliver_new(alert, config, deadline, sleep, ledger, report)
    except Exception as exc:  # noqa: BLE001 - alerting never breaks the caller
        why = str(exc) if isinstance(exc, AlertConfigError) else type(exc).__name__  # its line holds no secret
        report.error = f"dispatch error: {why}"
        log.error("alert %s: dispatch error (%s)", alert.dedupe_key[:12], why)
    report.seconds = time.monotonic() - started
    if ledger is not None:
        try:
            ledger.record_outbox(alert, report)
        except Exception as exc:  # noqa: BLE001
            log.error("alert %s: cannot write the outbox: %s", alert.dedupe_key[:12], type(exc).__name__)
    return report


def redeliver_pending(config: AlertConfig | None = None, *, max_age_seconds: float = 24 * 3600,
                      limit: int = 20, sleep: Callable[[float], None] = time.sleep,
                      now: dt.datetime | None = None) -> list[DeliveryReport]:
    """Dispatch again the alerts of the outbox whose last dispatch left a sink failed.

    Only alerts first recorded within ``max_age_seconds``; the n-th redelivery of an alert waits
    ``min(1 h, 1 min * 2**(n-1))`` after the previous dispatch, so a sink that stays down is
    not hammered. Sinks that already have the alert are skipped by the ledger. Never raises.
    """
    reports: list[DeliveryReport] = []
    try:
        if config is None:
            config = load_config()
        ledger = Ledger(config.state_dir)
        now = now or dt.datetime.now(dt.timezone.utc)
        latest: dict[str, dict[str, Any]] = {}
        first: dict[str, dt.datetime] = {}
        count: dict[str, int] = {}
        for record in ledger.outbox():
            key = (record.get("alert") or {}).get("dedupe_key")
            try:
                at = dt.datetime.fromisoformat(str(record.get("at")).replace("Z", "+00:00"))
            except ValueError:
                continue
            if not key:
                continue
            latest[key] = {**record, "_at": at}
            first.setdefault(key, at)
            count[key] = count.get(key, 0) + 1
        configured = {s.sink_id for s in config.sinks}
        for key, record in latest.items():
            if len(reports) >= limit:
                break
            if (now - first[key]).total_seconds() > max_age_seconds:
                continue
            deliveries = (record.get("report") or {}).get("deliveries") or []
            pending = [d for d in deliveries if d.get("status") in ("failed", "in_progress") and d.get("sink") in configured]
            if not pending:
                continue
            wait_s = min(3600.0, 60.0 * 2 ** (count[key] - 1))
            if (now - record["_at"]).total_seconds() < wait_s:
                continue
            reports.append(dispatch(Alert.from_dict(record["alert"]), config, sleep=sleep))
    except Exception as exc:  # noqa: BLE001
        log.error("redelivery of pending alerts failed: %s",
                  str(exc) if isinstance(exc, AlertConfigError) else type(exc).__name__)
    return reports
