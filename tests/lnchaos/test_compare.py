"""`lnchaos compare`: a short real comparison, and the verdict in both directions."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from lnchaos import cli, compare
from lnchaos.report import markdown_table, mode_summary, msat, write_report

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


@pytest.mark.runs  # over half a minute: -m runs (.ci/run)
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
    assert "| charged_not_paid (count / amount) | 4 / 48,400 msat (48 sat) |" in table
    assert "| verdict expected | fail (exit 3, charged_not_paid > 0) |" in table
    assert "| verdict happened | fail (exit 3): as expected |" in table
    assert "| timeout rate (spike) | 5.0% |" in table
    assert "| payout latency p50 / p95 / p99 (ms) | 3 / 9 / 510 |" in table


def test_report_names_every_mode_and_says_what_was_expected(tmp_path: Path) -> None:
    on_broken = {
        "verdict": "fail",
        "inconsistencies_total": 2,
        "inconsistencies": {"charged_not_paid": {"count": 2, "amount_msat": 1_234_567}},
        "reconciliation": {"timeouts": {"payouts": 9}},
        "timeline": [{"t_s": 1.0, "drift_msat": -1_234_567, "inconsistencies": 2}],
    }
    rows = [
        mode_summary("off", write_run(tmp_path / "off", **on_broken), 3),
        mode_summary("on", write_run(tmp_path / "on", **on_broken), 3),
    ]
    assert rows[0]["as_expected"] and not rows[1]["as_expected"]
    assert rows[1]["target_timeouts"] == 9
    verdict = compare.judge(rows)
    path = write_report(tmp_path, rows, verdict, {"seed": 1})
    page = path.read_text()
    assert "<h1>lnchaos compare: fix off vs fix on</h1>" in page
    assert "fail (exit 3): NOT as expected" in page
    assert "2 / 1,234,567 msat (1,235 sat)" in page
    assert "reconciliation count can exceed" in page
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# lnchaos compare: fix off vs fix on")
    assert "| timed out at the target | 9 | 9 |" in md
    assert msat(999) == "999 msat"


def test_progress_line_reads_the_suites_own_telemetry(tmp_path: Path) -> None:
    progress = compare.Progress("on", tmp_path, 20)
    assert "starting    0.5 s since launch" in progress.line(0.5)
    sample = {"t_s": 5.0, "phase": "spike", "payouts": 1234, "timeouts": 7, "written_unix": 0.0}
    (tmp_path / compare.PROGRESS_FILE).write_text(json.dumps(sample))
    assert "verdict     5.0/20 s" in progress.line(9.0)  # no new sample: the load stopped
    sample["written_unix"] = time.time()
    (tmp_path / compare.PROGRESS_FILE).write_text(json.dumps(sample))
    line = progress.line(5.2)
    assert "spike       5.0/20 s" in line and "payouts 1,234" in line and "timeouts 7" in line
    (tmp_path / compare.PROGRESS_FILE).write_text("{half a fi")  # being replaced: keep the last
    assert "payouts 1,234" in progress.line(5.7)
    assert compare.Progress.POLL_S <= 1.0 and compare.Progress.PLAIN_EVERY_S <= 1.0
    command = compare.suite_command("on", tmp_path, compare_args(tmp_path, "on"), [])
    assert command[command.index("--progress-file") + 1] == str(tmp_path / compare.PROGRESS_FILE)


@pytest.mark.parametrize("name", ["target", "node", "compare", "bench"])
def test_help_of_every_command_shows_defaults_choices_and_exit_codes(name, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "\n  0 " in text and "\n  2 " in text
    assert "(default: " in text
    if name in ("target", "compare"):
        assert "{" in text  # the choices, e.g. {off,rollback,on} or {steady,spike}


@pytest.mark.parametrize(
    "args", [["--timeout-rate", "2"], ["--late-settle-rate", "-1"], ["--duration", "3"]]
)
def test_compare_refuses_an_option_out_of_range(args, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *args])
    assert exit_info.value.code == 2
    assert f"argument {args[0]}: must be" in capsys.readouterr().err
