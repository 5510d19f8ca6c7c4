"""The alert rules, their unit tests and every Alertmanager config pass Prometheus's own tools.

promtool and amtool come from the Debian packages prometheus and prometheus-alertmanager
(`make system-deps`); without them these tests fail, they do not skip.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from deploy_support import (
    PROMETHEUS_DIR,
    RULE_TESTS_FILE,
    RULES_FILE,
    alert_rules,
    alertmanager_configs,
    load_yaml,
    recording_rules,
    tool,
)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_alert_rules_pass_promtool_check_rules():
    done = run(tool("promtool", "prometheus"), "check", "rules", str(RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    rules = len(alert_rules()) + len(recording_rules())
    assert f"SUCCESS: {rules} rules found" in done.stdout, done.stdout


def test_alert_rule_unit_tests_pass():
    done = run(tool("promtool", "prometheus"), "test", "rules", str(RULE_TESTS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet():
    cases = [
        case
        for test in load_yaml(RULE_TESTS_FILE)["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no quiet case"


def test_the_rule_unit_tests_catch_a_wrong_expectation(tmp_path):
    """promtool really compares: a test expecting an alert on healthy series fails."""
    tests = load_yaml(RULE_TESTS_FILE)
    quiet = next(
        (test, case)
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == "LeadflowServiceDown" and not case.get("exp_alerts")
    )
    test, case = quiet
    case["exp_alerts"] = [{"exp_labels": {"severity": "critical", "job": "ingest"}}]
    tests["tests"] = [test]
    tests["rule_files"] = [str(RULES_FILE)]
    broken = tmp_path / "alerts.test.yml"
    broken.write_text(yaml.safe_dump(tests), encoding="utf-8")
    done = run(tool("promtool", "prometheus"), "test", "rules", str(broken))
    assert done.returncode != 0
    assert "LeadflowServiceDown" in done.stdout + done.stderr


def test_prometheus_config_passes_promtool_check_config(tmp_path):
    """The compose Prometheus config, with its rule file where this checkout has it."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(RULES_FILE)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run(tool("promtool", "prometheus"), "check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@pytest.mark.parametrize("where", sorted(alertmanager_configs()))
def test_alertmanager_config_passes_amtool(where, tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_configs()[where], encoding="utf-8")
    done = run(tool("amtool", "prometheus-alertmanager"), "check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
