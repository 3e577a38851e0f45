"""The web UI: options shown, runs started and stopped through Locust's own HTTP endpoints."""

from __future__ import annotations

import csv
import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

HTTP_TIMEOUT_S = 5.0


def http(method: str, url: str, form: dict[str, str] | None = None) -> bytes:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return response.read()


def poll(predicate, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError) as err:
            last_error = err
        time.sleep(interval_s)
    raise AssertionError(f"{what} not within {timeout_s} s (last error: {last_error})")


def entries(base: str) -> tuple[dict[tuple[str, str], dict], str]:
    stats = json.loads(http("GET", f"{base}/stats/requests"))
    return {(e["method"], e["name"]): e for e in stats["stats"]}, stats["state"]


def checks_table(path) -> dict[tuple[str, str], dict[str, str]]:
    """The suite's table of checks and faults (written once a second with --csv)."""
    with open(path) as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


def test_web_ui_run_against_the_embedded_target(locust_run, free_port, tmp_path):
    base = f"http://127.0.0.1:{free_port}"
    prefix = tmp_path / "ui"
    table_path = tmp_path / "ui_consistency_checks.csv"
    args = ["--web-host", "127.0.0.1", "--web-port", str(free_port), "--csv", str(prefix)]
    run = locust_run(args)
    page = poll(lambda: http("GET", f"{base}/").decode(), 30.0, "the web UI")
    for option in (
        "shape",
        "spike_timeout_rate",
        "late_settle_rate",
        "max_inconsistencies",
        "final_wait_s",
        "seed",
    ):
        assert f'"{option}"' in page, option
    assert '"choices": ["off", "rollback", "on"]' in page

    report_path = run.report_dir / "consistency.json"

    def one_run(form: dict[str, str], since_ms_before: int | None) -> dict:
        """Start a run in the web UI, stop it once it checked payouts and timeouts happened,
        and return its verdict (a report of this run: its own marker)."""
        answer = json.loads(http("POST", f"{base}/swarm", form))
        assert answer["success"], answer
        assert answer["host"].startswith("http://127.0.0.1:")  # the embedded target
        poll(checked_with_timeouts, 30.0, "checks and timeouts in the suite's table")
        assert json.loads(http("POST", f"{base}/stop", {}))["success"]
        return poll(
            lambda: (
                report_path.exists()
                and (report := json.loads(report_path.read_text()))["since_ms"] != since_ms_before
                and report
            ),
            30.0,
            "the verdict of the web UI run",
        )

    def checked_with_timeouts():
        by_name = checks_table(table_path)
        if ("CHECK", "reconciliation") in by_name:
            return False  # the previous run's table (a new run starts from zero)
        check = by_name.get(("CHECK", "balance_after_success"), {})
        fault = by_name.get(("FAULT", "timeout [normal]"), {})
        return int(check.get("Count", 0)) > 0 and int(fault.get("Count", 0)) > 0

    # A web UI session is several runs against one target: each is judged alone.
    form = {"user_count": "4", "spawn_rate": "4", "shape": "steady", "seed": "7"}
    first = one_run({**form, "fix": "off", "timeout_rate": "0.2"}, None)
    assert first["fix"] == "off" and first["exit_code"] == 3, first["reason"]
    damage = first["reconciliation"]["charged_not_paid"]["count"]
    assert damage > 0
    poll(lambda: entries(base)[1] == "stopped", 10.0, "stopped")

    report = one_run({**form, "fix": "on", "timeout_rate": "0.05"}, first["since_ms"])
    assert report["fix"] == "on" and report["seed"] == 7
    assert report["verdict"] == "pass", report["reason"]
    assert report["timeout_rate_by_phase"]["normal"]["timeouts"] > 0
    # the first run's damage: reported as before this run, not counted in this one
    assert report["inconsistencies_total"] == 0
    assert report["inconsistencies_before_run"]["charged_not_paid"]["count"] == damage
    assert "before this run" in report["reason"]
    # /stats/requests is cached for a moment: poll until it shows the stop
    by_name = poll(lambda: entries(base)[1] == "stopped" and entries(base)[0], 10.0, "stopped")
    assert not [key for key in by_name if key[0] in ("CHECK", "FAULT")]  # HTTP only
    assert report["counters"]
    row = checks_table(table_path)[("CHECK", "reconciliation")]
    assert (row["Count"], row["Failures"]) == ("1", "0")

    run.signal(signal.SIGTERM)  # stops Locust, which stops the target
    assert run.finish(30.0) == 0, run.log_tail()
