"""The Dagster UI serves the code location: every activity asset, its partitions and its checks.

Starts a real `dagster-webserver` on the embedded (SQLite) instance, asks its GraphQL API, and
stops it by process group (a background `dagster dev` ignores SIGTERM for a long time).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = "{ assetNodes { assetKey { path } isPartitioned assetChecksOrError { ... on AssetChecks { checks { name } } } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webserver_shows_assets_partitions_and_checks(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    port = _free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen([str(exe), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path,
                            env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        data = None
        while time.time() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": QUERY}).encode(),
                                             headers={"Content-Type": "application/json"})
                data = json.loads(urllib.request.urlopen(req, timeout=5).read())["data"]
                if data and data["assetNodes"]:
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert data and data["assetNodes"], "dagster-webserver did not answer"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        checks = {k: {c["name"] for c in n["assetChecksOrError"].get("checks", [])} for k, n in nodes.items()}
        for activity in ("node_health_assessment", "economics_sanity_check", "dual_write_verification",
                         "storage_replay_drill", "node_failure_response"):
            assert nodes[activity]["isPartitioned"], activity
            assert len(checks[activity]) >= 3, activity
        assert checks["node_health_assessment"] == {"nodes_verified", "proof_success", "shard_balance",
                                                    "no_unrecoverable_objects"}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
