"""Serving the evidence metrics: an HTTP endpoint for Prometheus, or a file for node exporter.

``qfs-assure metrics --port 9464`` serves ``/metrics`` on 127.0.0.1 (``--host`` to change it),
reading the evidence store at every scrape; Prometheus's ``Accept`` header picks the OpenMetrics
or the classic text format (prometheus_client negotiates it). ``--textfile PATH`` writes the same
families once for node exporter's textfile collector (``--collector.textfile.directory``), through
prometheus_client's atomic write (a temporary file renamed into place), so node exporter never
reads half a file. No Dagster here.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile

from qfs_assets.observability.metrics import EvidenceCollector

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


def registry_for(evidence_root: str) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EvidenceCollector(evidence_root))
    return reg


def write_textfile(evidence_root: str, path: str | os.PathLike) -> Path:
    """Write the metrics in the text format to ``path`` atomically (node exporter's .prom file)."""
    path = Path(path)
    if path.suffix != ".prom":
        raise ValueError(f"{path}: node exporter's textfile collector reads only *.prom files")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_for(evidence_root))
    return path


def serve(evidence_root: str, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, ready=None,
          stop: threading.Event | None = None) -> None:
    """Serve /metrics until SIGINT/SIGTERM (or ``stop`` is set)."""
    server, thread = start_http_server(port, addr=host, registry=registry_for(evidence_root))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready(server.server_address[1])
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main_metrics(evidence_root: str, *, port: int | None, host: str, textfile: str | None, out=None) -> int:
    """The ``qfs-assure metrics`` command: 0 on success, 2 on a usage error (one line on stderr)."""
    import sys

    from qfs_assets import storage_uri

    err = sys.stderr
    out = out or sys.stdout
    try:
        fs, path = storage_uri.filesystem(evidence_root)
        if not fs.isdir(path):
            print(f"qfs-assure: evidence root {evidence_root} does not exist (run an activity first)", file=err)
            return 2
    except storage_uri.StorageURIError as exc:
        print(f"qfs-assure: {exc}", file=err)
        return 2
    if textfile is None and port is None:
        port = DEFAULT_PORT
    if textfile is not None:
        try:
            written = write_textfile(evidence_root, textfile)
        except (ValueError, OSError) as exc:
            print(f"qfs-assure: cannot write the textfile: {exc}", file=err)
            return 2
        print(f"metrics written to {written}", file=out)
    if port is not None:
        def ready(bound: int) -> None:
            print(f"serving metrics on http://{host}:{bound}/metrics (evidence root {evidence_root})", file=out, flush=True)

        try:
            serve(evidence_root, port=port, host=host, ready=ready)
        except OSError as exc:
            print(f"qfs-assure: cannot listen on {host}:{port}: {exc.strerror or exc}", file=err)
            return 2
    return 0
