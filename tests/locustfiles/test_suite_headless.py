"""The acceptance claims as short headless runs against the embedded target (12 s of load each)."""

from __future__ import annotations

import csv
import json
import signal

import pytest

SHORT = ["--headless", "-t", "12s", "-u", "5", "--only-summary"]
EXIT_TIMEOUT_S = 60.0  # 12 s of load + start, the final wait for pending payouts, shutdown


def spike_timeouts(report: dict) -> int:
    return report["timeout_rate_by_phase"]["spike"]["timeouts"]


def test_fix_off_spike_catches_the_incident(locust_run, tmp_path):
    out = tmp_path / "locust" / "off"
    run = locust_run([*SHORT, "--fix", "off", "--shape", "spike", "--csv", str(out)])
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 3, run.log_tail()
    # failed checks group in Locust's failures: one row per invariant and kind, no ids
    with open(f"{out}_failures.csv") as f:
        failures = list(csv.DictReader(f))
    checks = [row for row in failures if row["Method"] == "CHECK"]
    keys = [(row["Name"], row["Error"]) for row in checks]
    assert len(keys) == len(set(keys)) and len(keys) <= 12, keys
    example = report["inconsistencies"]["charged_not_paid"]["examples"][0]
    assert not [error for _, error in keys if example["wallet_id"] in error]
    by_check: dict[str, int] = {}
    for row in checks:
        by_check[row["Name"]] = by_check.get(row["Name"], 0) + int(row["Occurrences"])
    failed = report["checks"]["by_name"]["resolved_vs_node_truth"]["failed"]
    assert by_check["resolved_vs_node_truth"] == failed > 0
    assert ("resolved_vs_node_truth", charged_text()) in keys
    table = read_table(f"{out}_consistency_checks.csv")
    assert int(table[("CHECK", "resolved_vs_node_truth")]["Failures"]) == failed
    assert "charged_not_paid=" in table[("CHECK", "resolved_vs_node_truth")]["Failures by kind"]
    assert report["verdict"] == "fail"
    assert report["inconsistencies"]["charged_not_paid"]["count"] > 0
    assert report["inconsistencies"]["charged_not_paid"]["examples"]
    assert report["checks"]["by_name"]["resolved_vs_node_truth"]["failed"] > 0
    assert [p["name"] for p in report["phases"]] == ["ramp", "normal", "spike", "recovery"]
    assert report["drift_msat"] < 0
    last = report["timeline"][-1]
    assert set(last) == {"t_s", "phase", "payouts", "timeouts", "inconsistencies", "drift_msat"}
    assert last["inconsistencies"] > 0 and last["drift_msat"] < 0


def test_fix_on_spike_stays_green_while_timeouts_happen(locust_run, tmp_path):
    out = tmp_path / "locust"
    run = locust_run(
        [
            *SHORT,
            "--fix",
            "on",
            "--shape",
            "spike",
            "--csv",
            str(out / "stats"),
            "--html",
            str(out / "report.html"),
            "--json-file",
            str(out / "stats"),
            "--progress-file",
            str(out / "progress.json"),
        ]
    )
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 0, run.log_tail()
    assert report["verdict"] == "pass"
    assert report["inconsistencies_total"] == 0
    assert report["payouts_by_outcome"]["pending"] > 0
    assert spike_timeouts(report) > 0
    assert report["payouts_verified"] > 0
    assert report["timeouts"]["resolved_by_checks"] > 0
    assert report["reconciliation"]["unresolved"]["count"] == 0
    assert len(report["timeline"]) >= 10
    # the last timeline sample, as lnchaos compare's progress line reads it once a second
    progress = json.loads((out / "progress.json").read_text())
    assert progress["run_id"] and progress["payouts"] > 0 and progress["phase"] in PHASES
    # the money in the HTML report and beside Locust's CSV files (consistency_view.py)
    html = (out / "report.html").read_text()
    assert 'id="lnchaos-consistency"' in html and "verdict: pass (exit code 0)" in html
    assert html.index('id="lnchaos-consistency"') < html.rindex("</body>") and "<svg" in html
    with open(out / "stats_consistency.csv") as f:
        money = {(row["record"], row["name"]): row for row in csv.DictReader(f)}
    assert money[("verdict", "pass")]["count"] == "0"
    assert money[("total", "inconsistencies_total")]["count"] == "0"
    assert int(money[("payouts", "payouts_verified")]["count"]) == report["payouts_verified"]
    # Locust's totals are HTTP only: the Aggregated row is the sum of the HTTP rows
    with open(out / "stats_stats.csv") as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    aggregated = rows.pop(("", "Aggregated"))
    assert ("POST", "POST /payouts [spike]") in rows
    assert all(kind in HTTP_METHODS for kind, _ in rows), sorted(rows)
    total = sum(int(row["Request Count"]) for row in rows.values())
    assert int(aggregated["Request Count"]) == total > 0
    rps = sum(float(row["Requests/s"]) for row in rows.values())
    assert abs(float(aggregated["Requests/s"]) - rps) <= 0.01 * len(rows), (aggregated, rps)
    # the checks and the per-phase faults are in the suite's own table, CSV and JSON
    table = read_table(out / "stats_consistency_checks.csv")
    assert int(table[("CHECK", "balance_after_success")]["Count"]) > 0
    assert int(table[("CHECK", "reconciliation")]["Count"]) == 1
    assert int(table[("CHECK", "reconciliation")]["Failures"]) == 0
    assert int(table[("FAULT", "timeout [spike]")]["Count"]) == spike_timeouts(report)
    counted = {(row["type"], row["name"]): row for row in report["counters"]}
    assert counted[("CHECK", "balance_after_success")]["count"] == int(
        table[("CHECK", "balance_after_success")]["Count"]
    )
    names = {entry["name"] for entry in json.loads((out / "stats.json").read_text())}
    assert "POST /payouts [spike]" in names
    assert not names & {"balance_after_success", "reconciliation", "timeout [spike]"}
    assert "POST /payouts [spike]" in (out / "report.html").read_text()


HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
PHASES = ("ramp", "normal", "spike", "recovery")


def charged_text() -> str:
    from locustfiles.counters import failure_text

    return failure_text("charged_not_paid")


def read_table(path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


def test_fix_rollback_with_late_settles_is_paid_not_charged(locust_run):
    run = locust_run([*SHORT, "--fix", "rollback", "--late-settle-rate", "1.0"])
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 3, run.log_tail()
    assert report["inconsistencies"]["paid_not_charged"]["count"] > 0
    assert "charged_not_paid" not in report["inconsistencies"]


def processes_2(port: int) -> list[str]:
    """Two forked workers on a master port of this run's own: another --processes run on the
    machine (Locust's default port 5557) would otherwise lend it its workers."""
    return ["--processes", "2", "--master-bind-port", str(port), "--master-port", str(port)]


# the default suite's distributed fix off is test_master_target_and_two_workers_fix_off_exits_3
@pytest.mark.runs  # about half a minute (the default suite keeps its 10 minutes): -m runs
def test_processes_2_fix_off_catches_the_incident(locust_run, free_port):
    run = locust_run([*SHORT, "--fix", "off", "--shape", "spike", *processes_2(free_port)])
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 3, run.log_tail()
    assert report["inconsistencies"]["charged_not_paid"]["detected_by"]["checks"] > 0
    assert report["inconsistencies"]["charged_not_paid"]["count"] > 0


def test_processes_2_fix_on_stays_green(locust_run, free_port):
    run = locust_run([*SHORT, "--fix", "on", "--shape", "spike", *processes_2(free_port)])
    code = run.finish(EXIT_TIMEOUT_S)
    report = run.report()
    assert code == 0, run.log_tail()
    assert report["inconsistencies_total"] == 0
    assert spike_timeouts(report) > 0
    assert report["payouts_verified"] > 0


def test_ctrl_c_judges_the_run_and_stops_the_target(locust_run, tmp_path):
    live = tmp_path / "live"
    args = ["--headless", "-t", "60s", "-u", "3", "--only-summary", "--fix", "on"]
    run = locust_run([*args, "--timeout-rate", "0.2", "--csv", str(live)])
    # Locust's CSV writer flushes every few seconds: wait until it shows a resolved timeout
    # (a run with faults on passes only when it resolved one)
    verified = run.wait(30.0, until=lambda: _check_count(live, "resolved_vs_node_truth") > 0)
    assert verified is None, f"the run ended early or verified nothing:\n{run.log_tail()}"
    run.signal(signal.SIGINT)
    code = run.finish(EXIT_TIMEOUT_S)
    assert code == 0, run.log_tail()
    assert run.report()["payouts_verified"] > 0


def _check_count(csv_prefix, name: str = "balance_after_success") -> int:
    """Checks made so far, from the suite's table (written once a second like Locust's CSV)."""
    path = csv_prefix.parent / f"{csv_prefix.name}_consistency_checks.csv"
    try:
        return int(read_table(path)[("CHECK", name)]["Count"])
    except (OSError, KeyError, ValueError):
        return 0


def test_host_without_admin_token_is_a_target_failure(locust_run):
    run = locust_run(["--headless", "-t", "5s", "--host", "http://127.0.0.1:9"])
    code = run.finish(EXIT_TIMEOUT_S)
    assert code == 5, run.log_tail()
    assert run.report()["verdict"] == "fail"
