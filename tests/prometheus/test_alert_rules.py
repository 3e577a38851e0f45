"""The alerting rules (deploy/prometheus/lnchaos-alerts.yml): valid for promtool, their unit
tests pass (lnchaos-alerts.test.yml), and every lnchaos metric they read is one the target
exposes, so a renamed metric cannot silently turn an alert off."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from target.metrics import Metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "lnchaos-alerts.yml"
RULE_TESTS = RULES_DIR / "lnchaos-alerts.test.yml"
KINDS = ("charged_not_paid", "paid_not_charged", "stuck_pending")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not installed (Debian: apt-get install -y --no-install-recommends"
            " prometheus; .ci/run installs it)"
        )
    return path


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_rule_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES_DIR,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_read_only_metrics_the_target_exposes() -> None:
    metrics = Metrics()
    for kind in KINDS:  # labelled series exist once a reconciliation set them
        metrics.inconsistencies.labels(kind).set(0)
        metrics.inconsistent_msat.labels(kind).set(0)
    exposed = set(re.findall(r"^(lnchaos_\w+?)(?:\{| )", metrics.render().decode(), re.M))
    used = set(re.findall(r"\blnchaos_[a-z_]+\b", RULES.read_text()))
    assert used, "the rules read no lnchaos metric"
    assert used <= exposed, f"rules read metrics the target does not expose: {used - exposed}"
    kinds = set(re.findall(r'kind="(\w+)"', RULES.read_text()))
    assert kinds == set(KINDS)
