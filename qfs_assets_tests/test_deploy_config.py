"""The scale-out configuration in deploy/k8s/ (docs/scaling.md): checked as far as this machine can.

The instance file is validated by Dagster's own instance-config schema (a misspelt key fails);
the Helm values are checked for the settings docs/scaling.md relies on: Dagster's own
K8sRunLauncher, the external PostgreSQL, this package's code location, and the same
environment (config map and secret) for every pod that runs code.
"""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def test_k8s_instance_passes_dagsters_schema(monkeypatch, tmp_path):
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config

    monkeypatch.setenv("QFS_DAGSTER_PG_URL", "postgresql+psycopg2://dagster:x@127.0.0.1:5432/dagster")
    cfg, _ = dagster_instance_config(str(K8S))
    assert (cfg["run_launcher"]["module"], cfg["run_launcher"]["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert "postgres" in cfg["storage"]
    pg = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    assert cfg["storage"] == pg["storage"]  # the same instance database as the single-node deployment
    (tmp_path / "dagster.yaml").write_text((K8S / "dagster.yaml").read_text().replace("run_coordinator:", "run_cordinator:"))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


def test_helm_values_use_dagsters_launcher_and_this_code_location():
    v = yaml.safe_load((K8S / "values.yaml").read_text())
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["postgresql"]["enabled"] is False
    (dep,) = v["dagster-user-deployments"]["deployments"]
    assert dep["dagsterApiGrpcArgs"] == ["--module-name", "qfs_assets.definitions"]
    env = {"qfs-assure-env"}
    secrets = {"qfs-assure-secrets"}
    launcher = v["runLauncher"]["config"]["k8sRunLauncher"]
    for where in (dep, v["dagsterDaemon"], launcher):
        assert {c["name"] for c in where["envConfigMaps"]} == env
        assert {s["name"] for s in where["envSecrets"]} == secrets
    # the ledgers' local state volume is mounted where QFS_STATE_DIR points (docs/scaling.md)
    assert launcher["volumeMounts"][0]["mountPath"] == "/var/lib/qfs-assure/state"
    assert v["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
