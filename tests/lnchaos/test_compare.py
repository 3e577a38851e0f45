"""`lnchaos compare`: a short real comparison, and the verdict in both directions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lnchaos import compare
from lnchaos.report import markdown_table, mode_summary

DURATION_S = 10


def compare_args(report_dir: Path, modes: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_options(parser)
    return parser.parse_args(
        [
            "--modes", modes,
            "--duration", str(DURATION_S),
            "--users", "6",
            "--seed", "3",
            "--timeout-rate", "0.05",
            "--spike-timeout-rate", "0.2",
            "--late-settle-rate", "0.5",
            "--report-dir", str(report_dir),
            "--quiet",
        ]
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_compare_three_modes_writes_the_report_and_passes(tmp_path: Path) -> None:
    code = compare.run(compare_args(tmp_path, "off,rollback,on"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    modes = summary["modes"]
    assert set(modes) == {"off", "rollback", "on"}
    assert modes["off"]["charged_not_paid"]["count"] > 0
    assert modes["off"]["charged_not_paid"]["amount_msat"] > 0
    assert modes["rollback"]["paid_not_charged"]["count"] > 0
    assert modes["on"]["inconsistencies_total"] == 0
    assert modes["on"]["charged_not_paid"]["count"] == 0
    assert modes["on"]["paid_not_charged"]["count"] == 0
    assert modes["on"]["payouts_timed_out"] > 0, "the fix must be proven while timeouts happen"
    assert modes["on"]["timeouts_resolved"] > 0
    assert modes["on"]["unresolved"] == 0
    assert modes["off"]["exit_code"] == 3
    for row in modes.values():
        assert row["payouts_succeeded"] > 0
        assert row["payouts_per_s"] > 0
        assert set(row["timeout_rate_by_phase"]) >= {"spike"}
        assert (Path(row["run_dir"]) / "locust_stats.csv").exists()
        assert (Path(row["run_dir"]) / "locust.html").exists()
        assert (Path(row["run_dir"]) / "consistency.json").exists()
    assert summary["verdict"]["status"] == "pass"
    assert code == 0
    page = (tmp_path / "report.html").read_text()
    assert '<table id="summary">' in page
    assert "charged_not_paid" in page
    assert page.count("data:image/png;base64,") == 3
    assert "| fix off | fix rollback | fix on |" in (tmp_path / "summary.md").read_text()


@pytest.mark.timeout(120)
def test_compare_fails_when_fix_on_is_broken(tmp_path: Path) -> None:
    """A deliberately broken mode: the run labelled "on" gets the incident's flow."""

    def broken(mode: str) -> list[str]:
        return ["--fix", "off"]

    code = compare.run(compare_args(tmp_path, "on"), args_for=broken)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["modes"]["on"]["inconsistencies_total"] > 0
    assert summary["verdict"]["status"] == "fail"
    assert code == compare.EXIT_NOT_PROVEN
    assert "fix on is not consistent" in summary["verdict"]["reason"]


def write_run(run_dir: Path, **consistency: object) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "consistency.json").write_text(json.dumps(consistency))
    return run_dir


def test_judge_needs_the_incident_reproduced(tmp_path: Path) -> None:
    """Fix off that lost nothing proves nothing: the comparison must fail."""
    clean = {"verdict": "pass", "inconsistencies_total": 0, "inconsistencies": {}}
    proven = {**clean, "timeouts": {"resolved_by_checks": 2, "resolved_by_reconciliation": 3}}
    rows = [
        mode_summary("off", write_run(tmp_path / "off", **clean), 0),
        mode_summary("on", write_run(tmp_path / "on", **proven), 0),
    ]
    verdict = compare.judge(rows)
    assert verdict["exit_code"] == compare.EXIT_NOT_PROVEN
    assert "did not reproduce" in verdict["reason"]


def test_judge_needs_a_timeout_resolved_under_fix_on(tmp_path: Path) -> None:
    """Fix on with zero inconsistencies but no timeout resolved proves nothing about the fix."""
    off = {
        "verdict": "fail",
        "inconsistencies_total": 3,
        "inconsistencies": {"charged_not_paid": {"count": 3, "amount_msat": 30}},
    }
    unproven = {"verdict": "pass", "inconsistencies_total": 0, "inconsistencies": {}}
    proven = {**unproven, "timeouts": {"resolved_by_checks": 1, "resolved_by_reconciliation": 2}}
    off_row = mode_summary("off", write_run(tmp_path / "off", **off), 3)
    rows = [off_row, mode_summary("on", write_run(tmp_path / "on", **unproven), 0)]
    verdict = compare.judge(rows)
    assert verdict["exit_code"] == compare.EXIT_NOT_PROVEN
    assert "fix on resolved no timed-out payout" in verdict["reason"]
    rows = [off_row, mode_summary("on", write_run(tmp_path / "on2", **proven), 0)]
    verdict = compare.judge(rows)
    assert verdict["exit_code"] == compare.EXIT_OK, verdict
    assert "fix on: 0 inconsistencies, 2 timed-out payouts resolved" in verdict["reason"]


def test_judge_fails_a_run_without_consistency_json(tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    verdict = compare.judge([mode_summary("on", tmp_path / "on", 5)])
    assert verdict["exit_code"] == compare.EXIT_RUN_FAILED


def test_markdown_table_has_every_mode_and_the_money_columns(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "off",
        verdict="fail",
        inconsistencies={"charged_not_paid": {"count": 4, "amount_msat": 48_400}},
        inconsistencies_total=4,
        timeout_rate_by_phase={"normal": {"rate": 0.01}, "spike": {"rate": 0.05}},
        payout_latency_ms={"p50": 3.0, "p95": 9.0, "p99": 510.0},
    )
    table = markdown_table([mode_summary("off", run, 3)])
    assert "| charged_not_paid (count / msat) | 4 / 48400 |" in table
    assert "| timeout rate (spike) | 5.0% |" in table
    assert "| payout latency p50 / p95 / p99 (ms) | 3 / 9 / 510 |" in table
