"""The history of real runs, judged again offline: `lnchaos check` on the report folder gives the
live run's verdict, exit code, reason and counts per kind (docs/history.md).

One short run (fix off, the incident: exit 3) is in the default run; fix rollback, fix on, a
run with the crash fault and a distributed one (two workers send their lines to the master) are
behind the marker `history` (python -m pytest -q -m history, about 2 min)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lnchaos.checker import EXIT_INCONSISTENT, EXIT_PASS

# the final wait is the default: it covers the edge workload's long holds (a bound, not a sleep)
RUN = ["--headless", "-t", "10s", "-u", "8", "-r", "8", "--only-summary", "--seed", "5"]
RUN_TIMEOUT_S = 120.0
CHECK_TIMEOUT_S = 60.0


def check_offline(report_dir: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """`lnchaos check REPORT_DIR --out OUT` in a process of its own: its code and document."""
    done = subprocess.run(
        [sys.executable, "-m", "lnchaos.cli", "check", str(report_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    assert out.exists(), done.stderr[-2000:]
    return done.returncode, json.loads(out.read_text())


def counts(report: dict[str, Any]) -> dict[str, tuple[int, dict[str, int]]]:
    return {
        kind: (entry["count"], entry.get("detected_by") or {})
        for kind, entry in report["inconsistencies"].items()
    }


def assert_judged_alike(run: Any, code: int) -> dict[str, Any]:
    """The live consistency.json and the offline one agree on all the verdict stands on; the
    offline document is the same bytes when judged twice. The live report back."""
    live = run.report()
    assert code == live["exit_code"], run.log_tail()
    offline_code, offline = check_offline(run.report_dir, run.report_dir / "check.json")
    assert offline_code == live["exit_code"], offline["reason"]
    for key in ("verdict", "exit_code", "reason", "inconsistencies_total", "payouts_verified",
                "payouts_by_outcome", "checks", "audit", "timeouts", "successes",
                "coverage"):  # fmt: skip
        assert offline[key] == live[key], (key, offline[key], live[key])
    assert counts(offline) == counts(live)
    _, again = check_offline(run.report_dir, run.report_dir / "check-again.json")
    assert (run.report_dir / "check.json").read_bytes() == (
        run.report_dir / "check-again.json"
    ).read_bytes()
    live_witness = {
        (e.get("check"), e.get("payout_id"), e.get("wallet_id")): e.get("witness")
        for entry in live["inconsistencies"].values()
        for e in entry["examples"]
    }
    for entry in offline["inconsistencies"].values():
        for example in entry["examples"]:
            if example.get("source") != "reconciliation":
                assert example["witness"], example  # each finding shows its records
                key = (example.get("check"), example.get("payout_id"), example.get("wallet_id"))
                if key in live_witness:  # the live verdict shows the same
                    assert live_witness[key] == example["witness"]
    return live


@pytest.mark.timeout(300)
def test_fix_off_judged_again_offline_alike(locust_run):
    run = locust_run([*RUN, "--fix", "off"], name="off")
    live = assert_judged_alike(run, run.finish(RUN_TIMEOUT_S))
    assert live["exit_code"] == EXIT_INCONSISTENT  # the incident, so the comparison has teeth
    assert live["inconsistencies"]["charged_not_paid"]["count"] > 0


@pytest.mark.history
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("rollback", ["--fix", "rollback"], None),
        ("on", ["--fix", "on"], EXIT_PASS),
        ("crash", ["--fix", "on", "--crash-every", "4"], None),
        ("distributed", ["--fix", "off", "--processes", "2"], EXIT_INCONSISTENT),
    ],
)
def test_runs_judged_again_offline_alike(locust_run, name, args, expected):
    run = locust_run([*RUN, *args], name=name)
    live = assert_judged_alike(run, run.finish(RUN_TIMEOUT_S))
    if expected is not None:
        assert live["exit_code"] == expected, live["reason"]
    history = run.report_dir / "history"
    files = sorted(p.name for p in history.glob("*.jsonl"))
    assert "master.jsonl" in files and any(f.startswith("users-") for f in files), files
    if name == "distributed":
        assert len([f for f in files if f.startswith("users-")]) == 2, files
    master = [json.loads(line) for line in (history / "master.jsonl").read_text().splitlines()]
    types = {record["type"] for record in master}
    assert {"header", "phase", "fault", "reconciliation", "audit_close", "end"} <= types, types
    if name == "crash":
        assert live["crashes"]["count"] >= 1, live["crashes"]
        kills = [r for r in master if r["type"] == "crash" and r["what"] == "killed"]
        assert len(kills) == live["crashes"]["count"], kills
