"""The per-deployment configuration file (qfs_assets/settings.py): defaults, validation, sources.

The defaults are the evidence-v1 numbers, written here by hand: changing a default in a
parameters model fails this test, on purpose (a default threshold is part of the contract).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qfs_assets import settings

ROOT = Path(__file__).resolve().parent.parent

#: evidence-v1 (1.1) defaults, per section of the file (the execution knobs are the code's)
EVIDENCE_V1_DEFAULTS = {
    "node_health": {
        "min_verified_ratio": 0.95,  # nodes_verified: verified_ratio > 0.95
        "min_proof_success_rate": 0.99,  # proof_success: proof_success_rate > 0.99
        "max_utilization_cv": 0.25,  # shard_balance
        "max_utilization_max_over_mean": 1.5,  # shard_balance
        "heartbeat_max_age_seconds": 3600,  # AEGIS: last heartbeat within 1 h of the day's end
        "min_stake_nod": 1000 * 10**8,  # AEGIS: stake_nod >= 1000 * 10^8
        "min_node_pass_bps": 9500,  # AEGIS: >= 95 % of the node's challenges passed
    },
    "economics": {"atr_per_nod": "1/1", "buffer_bps": 500, "buffer_min_atr": 0},
    "dual_write": {"sample_bps": 100, "resolution_hours": 24, "method": "pg_hash", "batch_rows": 131072},
    "replay_drill": {"batch_rows": 262144, "start_from": "genesis"},
    "node_failure": {"batch_rows": 65536},
}


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "qfs-assure.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sections_are_the_activity_packages_with_their_models():
    assert list(settings.sections()) == ["node_health", "economics", "dual_write", "replay_drill", "node_failure"]
    assert settings.section_of("dual_write_diff") == settings.section_of("dual_write_verification") == "dual_write"
    assert settings.section_of("node_failure_response") == "node_failure"


def test_defaults_are_the_evidence_v1_numbers():
    none = settings.DeploymentSettings(None, {})
    for section, expected in EVIDENCE_V1_DEFAULTS.items():
        values = none.config_values(section)
        own = {k: v for k, v in values.items() if k != "aegis"}
        assert own == expected, section
    # the node failure response re-verifies receivers with node health's AEGIS thresholds
    assert none.config_values("node_failure")["aegis"] == EVIDENCE_V1_DEFAULTS["node_health"]


def test_no_file_means_defaults_and_an_explicit_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    none = settings.load(env={})
    assert none.path is None and none.values == {}
    write(tmp_path, "[economics]\nbuffer_bps = 0\n")  # the default location: ./qfs-assure.toml
    assert settings.load(env={}).path == (tmp_path / "qfs-assure.toml").resolve()
    with pytest.raises(settings.SettingsError, match=r"QFS_CONFIG=.*nope.toml: no such file"):
        settings.load(env={"QFS_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize("text, message", [
    ("[node_helth]\nmin_proof_success_rate = 0.9\n",
     r"unknown section \[node_helth\] \(known: node_health, economics, dual_write, replay_drill, node_failure\)"),
    ("[node_health]\nmin_proof_succes_rate = 0.9\n", r"\[node_health\] min_proof_succes_rate: unknown key \(known: "),
    ("[node_health]\nmin_proof_success_rate = 1.5\n",
     r"\[node_health\] min_proof_success_rate: Input should be less than or equal to 1 \(got 1.5\)"),
    ("[economics]\nbuffer_bps = 20000\n", r"\[economics\] buffer_bps: Input should be less than or equal to 10000"),
    ("[economics]\nbuffer_bps = 5.0\n", r"\[economics\] buffer_bps: must be an integer, not float"),
    ("[economics]\natr_per_nod = 0.5\n", r"\[economics\] atr_per_nod: .*never a float"),
    ("[dual_write]\nmethod = \"sorted\"\n", r"\[dual_write\] method: Input should be 'pg_hash', 'hash', 'merge' or 'duckdb'"),
    ("[node_failure]\n[node_failure.aegis]\nmin_stake_nod = 1\n",
     r"\[node_failure\] aegis: not set here; it is the \[node_health\] section"),
    ("node_health = 1\n", r"node_health must be a table"),
    ("[node_health\n", r"not valid TOML"),
])
def test_an_invalid_file_is_one_line_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(settings.SettingsError) as exc:
        settings.load(path)
    line = str(exc.value)
    assert "\n" not in line and line.startswith(str(path)), line
    assert re.search(message, line), line


def test_file_values_are_used_and_sources_say_where_each_came_from(tmp_path):
    path = write(tmp_path, "[node_health]\nmin_stake_nod = 500_000_000_00\n[economics]\natr_per_nod = \"3/7\"\n")
    s = settings.load(path)
    assert s.params("node_health").min_stake_nod == 50_000_000_000
    assert s.params("node_failure").aegis.min_stake_nod == 50_000_000_000  # node health's, not its own
    assert str(s.params("economics").atr_per_nod) == "3/7"
    used = s.params("node_health").model_copy(update={"min_proof_success_rate": 0.9})
    sources = s.sources("node_health", used)
    assert sources["min_stake_nod"] == f"file:{path.resolve()}"
    assert sources["min_verified_ratio"] == "default"
    assert sources["min_proof_success_rate"] == "run_config"
    nf = s.sources("node_failure", s.params("node_failure"))
    assert nf["aegis"]["min_stake_nod"] == f"file:{path.resolve()}" and nf["batch_rows"] == "default"


def test_current_follows_qfs_config(tmp_path, monkeypatch):
    path = write(tmp_path, "[economics]\nbuffer_bps = 0\n")
    monkeypatch.setenv(settings.ENV_VAR, str(path))
    try:
        assert settings.current().params("economics").buffer_bps == 0
        path.write_text("[economics]\nbuffer_bps = 7\n", encoding="utf-8")
        os.utime(path, ns=(1, 1))  # a new version of the file is read again
        assert settings.current().params("economics").buffer_bps == 7
    finally:
        monkeypatch.undo()
        settings.reset()


def test_the_code_location_does_not_load_with_an_invalid_file(tmp_path):
    path = write(tmp_path, "[node_health]\nmin_verified_ratio = 2\n")
    env = {**os.environ, settings.ENV_VAR: str(path)}
    out = subprocess.run([sys.executable, "-c", "import qfs_assets.definitions"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert (f"SettingsError: {path}: [node_health] min_verified_ratio: Input should be less than or equal to 1 "
            "(got 2)") in out.stderr


def test_the_cli_refuses_an_invalid_file_with_exit_2(tmp_path, capsys, monkeypatch):
    from qfs_assets import cli

    monkeypatch.setenv(settings.ENV_VAR, str(write(tmp_path, "[economics]\nbufer_bps = 1\n")))
    try:
        code = cli.main(["run", "economics_sanity_check", "--partition", "2026-03-02", "--export-root",
                         str(tmp_path), "--evidence-root", str(tmp_path / "ev")])
    finally:
        monkeypatch.undo()
        settings.reset()
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qfs-assure: configuration: ") and "[economics] bufer_bps: unknown key" in err
    assert not (tmp_path / "ev").exists()


def test_docs_show_the_whole_file_with_every_key_and_its_default():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/configuration.md has no ```toml block"
    documented = settings.parse(blocks[0], "docs/configuration.md")
    every = {section: {k: v for k, v in settings.DeploymentSettings(None, {}).config_values(section).items()
                       if k != "aegis"} for section in settings.sections()}
    assert documented == every
    assert blocks[0].strip() == settings.toml_text().strip()
