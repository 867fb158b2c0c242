"""Prometheus alerting rules (deploy/prometheus/) and the Grafana dashboard (deploy/grafana/).

The rules are generated from the criteria's CriterionSpecs built with the parameters' defaults;
these tests check the committed file is the generator's output, that its thresholds are the code
defaults (read independently), that ``promtool check rules`` accepts it and that ``promtool test
rules`` passes the hand-written boundary cases. A real Prometheus evaluating the rules over the
exporter is in test_metrics.py.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from qfs_assets.evidence.model import CriterionSpec, Rule
from qfs_assets.observability import grafana, rules
from qfs_assets.observability.metrics import metric_names
from qfs_assets_tests.observability_kit import PROMTOOL, require

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "qfs-assure-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "qfs-assure-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "qfs-assure.json"

PROMQL_WORDS = {"time", "absent", "or", "and", "unless", "by", "without", "sum", "max", "min", "avg", "count",
                "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def _alerts() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for r in group["rules"]:
            out.setdefault(r["alert"], []).append(r)
    return out


def test_rules_file_is_the_generators_output():
    assert RULES.read_text() == rules.render(), "regenerate: python -m qfs_assets.observability.rules > " + str(RULES)


def test_rule_thresholds_equal_the_code_defaults():
    """Read independently of the generator: each default appears in its criterion's rule."""
    from qfs_assets.activities.dual_write.params import DualWriteParams
    from qfs_assets.activities.node_health.params import NodeHealthParams

    p = NodeHealthParams()
    alerts = _alerts()

    def expr(name):
        (rule,) = alerts[name]
        return rule["expr"]

    assert expr("QfsAssureNodeHealthAssessmentNodesVerified") == f"qfs_assure_node_health_verified_ratio <= {p.min_verified_ratio}"
    assert expr("QfsAssureNodeHealthAssessmentProofSuccess") == \
        f"qfs_assure_node_health_proof_success_ratio <= {p.min_proof_success_rate}"
    assert expr("QfsAssureNodeHealthAssessmentShardBalance") == (
        f"(qfs_assure_node_health_utilization_cv > {p.max_utilization_cv}) or "
        f"(qfs_assure_node_health_utilization_max_over_mean > {p.max_utilization_max_over_mean})")
    assert expr("QfsAssureNodeHealthAssessmentNoUnrecoverableObjects") == "qfs_assure_node_health_objects_unrecoverable > 0"
    assert expr("QfsAssureEconomicsSanityCheckConservation") == "qfs_assure_economics_margin_atr < 0"
    assert expr("QfsAssureDualWriteDiffUnresolved") == \
        f"qfs_assure_dual_write_oldest_open_diff_age_seconds > {float(DualWriteParams().resolution_hours * 3600)}"
    # and the contract's numbers (evidence-v1), so a changed default is a deliberate change
    assert (p.min_verified_ratio, p.min_proof_success_rate, p.max_utilization_cv, p.max_utilization_max_over_mean) == \
        (0.95, 0.99, 0.25, 1.5)


def test_every_criterion_has_an_alert_on_exposed_metrics():
    alerts = _alerts()
    exposed = set(metric_names())
    for activity, specs in rules.default_criteria().items():
        for spec in specs:
            name = f"QfsAssure{rules._camel(activity)}{rules._camel(spec.name)}"
            (rule,) = alerts[name]
            assert rule["labels"] == {"severity": rule["labels"]["severity"], "activity": activity, "criterion": spec.name}
    for rs in alerts.values():
        for r in rs:
            used = set(re.findall(r"qfs_assure_[a-z0-9_]+", r["expr"]))
            assert used <= exposed, (r["alert"], used - exposed)


def test_rule_generation_refuses_a_criterion_without_a_gauge():
    with pytest.raises(KeyError, match="no exported gauge"):
        rules.criterion_alert("node_health_assessment", CriterionSpec("x", (Rule("not_exported", max_value=0),), ("x",), 0))


def test_violation_is_the_negation_of_the_rule():
    v = rules.violation("node_health_assessment", Rule("verified_ratio", min_value=0.95, strict_min=True))
    assert v == ["qfs_assure_node_health_verified_ratio <= 0.95"]
    v = rules.violation("node_health_assessment", Rule("utilization_cv", min_value=0.1, max_value=0.25))
    assert v == ["qfs_assure_node_health_utilization_cv < 0.1", "qfs_assure_node_health_utilization_cv > 0.25"]
    assert rules.violation("storage_replay_drill", Rule("chain_intact", equals=1)) == ["qfs_assure_replay_chain_intact != 1"]


def test_promtool_checks_the_rules():
    promtool = require(PROMTOOL, "QFS_REQUIRE_PROMETHEUS", "prometheus")
    p = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_promtool_unit_tests_at_the_boundaries(tmp_path):
    promtool = require(PROMTOOL, "QFS_REQUIRE_PROMETHEUS", "prometheus")
    p = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=60,
                       cwd=RULE_TESTS.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    # a deliberately broken threshold fails the unit tests
    broken = tmp_path / "qfs-assure-rules.yml"
    broken.write_text(RULES.read_text().replace("verified_ratio <= 0.95", "verified_ratio <= 0.9"))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    p = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode != 0 and "QfsAssureNodeHealthAssessmentNodesVerified" in p.stdout + p.stderr


def dashboard_exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(panel["title"], t["expr"]) for panel in doc["panels"] for t in panel["targets"]]


def test_dashboard_file_is_the_generators_output_with_the_five_panels():
    assert DASHBOARD.read_text() == grafana.render()
    doc = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in doc["panels"]]
    for t in grafana.PLAN_PANELS:
        assert t in titles
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    assert all(p["targets"] for p in doc["panels"])


def test_dashboard_queries_reference_only_exposed_metrics():
    exposed = set(metric_names())
    for title, expr in dashboard_exprs():
        body = re.sub(r"\{[^}]*\}|\"[^\"]*\"", "", expr)  # drop label matchers and strings
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", body)) - PROMQL_WORDS
        assert names and names <= exposed, (title, expr, names - exposed)
