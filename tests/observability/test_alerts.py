"""The alert rules: valid for promtool, every alert unit-tested both firing and quiet, only catalogued metrics."""

from __future__ import annotations

import re
import shutil
import subprocess

from observability_files import RULE_TESTS, RULES, alert_rules, catalog_metrics, metric_names


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/install-deps.sh --test (Debian package prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent)


def test_promtool_check_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    text = RULE_TESTS.read_text(encoding="utf-8")
    fires = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", text))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", text))
    names = {rule.name for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown firing"
    # A rule without `for` fires at once; its quiet case is the same series later, when the window has passed.
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_alerts_cover_what_the_issue_asks_for():
    names = {rule.name for rule in alert_rules()}
    assert {
        "MWServiceDown", "MWServiceNotReady",  # a service down or not ready
        "MWHighErrorRatio",  # error ratio high
        "MWLLMFailing", "MWLLMSlow",  # LLM failing or slow
        "MWChannelDisconnected", "MWChannelNotFlowing",  # a mailbox or bot not flowing
        "MWMessagesStuckInRetries",  # a message stuck in retries
    } <= names


def test_alerts_read_only_catalogued_metrics():
    documented = catalog_metrics() | {"up"}
    for rule in alert_rules():
        assert metric_names(rule.expr) <= documented, f"{rule.name} reads {metric_names(rule.expr) - documented}"
