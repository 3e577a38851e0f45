"""The verdict cannot be fooled: every payout final, no vacuous pass, the run is the unit.

Each test attaches the suite with --host to a target started here (python -m target, port 0),
so the target can have settings the embedded one never gets: a dead resolver, a wallet that
waits longer than the node holds a payment.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from locustfiles import checker
from locustfiles.admin_client import TargetAdmin, TargetError
from locustfiles.options import DEFAULT_FINAL_WAIT_S, profile_hint, settings_from

RUN_TIMEOUT_S = 60.0  # the run, start, the bounded final wait, shutdown


def host_args(url: str, token: str, *args: str) -> list[str]:
    return ["--headless", "--only-summary", "--host", url, "--admin-token", token, *args]


@pytest.mark.runs  # about half a minute (the default suite keeps its 10 minutes): -m runs
def test_dead_resolver_fails_with_the_unresolved_payouts_named(locust_run, running_target):
    """The issue's run: fix on, the resolver never runs; pending payouts never become final."""
    url, token = running_target(["--fix", "on", "--resolver-interval-ms", "600000"])
    run = locust_run(host_args(url, token, "-t", "12s", "-u", "5", "--fix", "on"))
    code = run.finish(RUN_TIMEOUT_S)
    report = run.report()
    assert code == checker.EXIT_INCONSISTENT, run.log_tail()
    unresolved = report["inconsistencies"]["unresolved"]
    assert unresolved["count"] > 0
    assert unresolved["detected_by"]["reconciliation"] == unresolved["count"]
    example = unresolved["examples"][0]
    assert example["payout_status"] == "pending" and example["wallet_id"]
    assert example["node_status"] in ("succeeded", "failed")  # the node is long done
    assert f"unresolved={unresolved['count']}" in report["reason"]
    assert f"payout {example['payout_id']}" in report["reason"]
    # nothing of that money was resolved, so the run also proves nothing about timeouts
    assert "no payout answered while the node held its payment" in report["reason"]
    assert report["timeouts"]["resolved_by_checks"] == 0


def test_fix_on_with_faults_but_no_timeout_resolved_fails_with_4(locust_run, running_target):
    """Faults on, but the wallet waits longer (3 s) than the node holds a payment (1.5 s): no
    payout ever times out, so the run verifies payouts and proves nothing about timeouts."""
    url, token = running_target(["--node-timeout-ms", "3000", "--inflight-hold-ms", "1500"])
    # no long holds (the edge workload's 10 s would outlast the wallet's 3 s wait)
    args = ["-t", "6s", "-u", "5", "--fix", "on", "--timeout-rate", "0.3", "--long-hold-rate", "0"]
    # the old spelling of the shape: still a run label, with a one-line hint
    run = locust_run(host_args(url, token, *args, "--profile", "spike"))
    code = run.finish(RUN_TIMEOUT_S)
    report = run.report()
    assert code == checker.EXIT_NOTHING_VERIFIED, run.log_tail()
    assert report["inconsistencies_total"] == 0
    assert report["payouts_verified"] > 0
    assert report["timeouts"]["configured"] and report["timeouts"]["payouts"] == 0
    assert "no payout answered while the node held its payment" in report["reason"]
    assert report["profile"] == "spike" and report["shape"] == "steady"
    assert run.log_tail(100_000).count("the load shape is --shape spike") == 1


def test_a_run_in_which_nothing_was_paid_fails_with_4(locust_run, running_target):
    """No timeouts, no failure rate, and a wallet whose fee limit (0 msat) is under every route's
    fee: the node fails every payment, every balance stays as it was and every check passes.
    Nothing moved wrongly, and nothing was paid: the run cannot vouch for paying, so exit 4."""
    url, token = running_target(["--fee-reserve-base-msat", "0", "--fee-reserve-ppm", "0"])
    args = ["-t", "5s", "-u", "4", "--fix", "on", "--timeout-rate", "0", "--late-settle-rate", "0"]
    run = locust_run(host_args(url, token, *args))
    code = run.finish(RUN_TIMEOUT_S)
    report = run.report()
    assert code == checker.EXIT_NOTHING_VERIFIED, run.log_tail()
    assert report["inconsistencies_total"] == 0 and report["payouts_verified"] > 0
    successes = report["successes"]
    assert successes["succeeded"] == 0 and successes["required"] is True
    assert successes["expected"] == successes["payer_payouts"] > 0  # no fault stops a payment
    assert report["payouts_by_outcome"]["failed"] >= successes["payer_payouts"]
    assert "no payout succeeded" in report["reason"]
    assert "no payout answered while the node held" not in report["reason"]  # none configured


@pytest.mark.runs  # over half a minute: -m runs (.ci/run)
def test_a_reused_target_judges_each_run_alone(locust_run, running_target):
    """Two runs against one target: the second is judged on its own payouts, and the first
    run's damage is reported as before this run, neither counted nor hidden."""
    url, token = running_target([])
    common = ["-t", "6s", "-u", "5", "--timeout-rate", "0.2"]
    first = locust_run(host_args(url, token, *common, "--fix", "off"), name="first")
    assert first.finish(RUN_TIMEOUT_S) == checker.EXIT_INCONSISTENT, first.log_tail()
    first_report = first.report()
    damage = first_report["reconciliation"]["charged_not_paid"]["count"]
    assert damage > 0

    second = locust_run(host_args(url, token, *common, "--fix", "on"), name="second")
    code = second.finish(RUN_TIMEOUT_S)
    report = second.report()
    assert code == checker.EXIT_PASS, second.log_tail()
    assert report["inconsistencies_total"] == 0
    assert report["since_ms"] > first_report["since_ms"]
    assert report["inconsistencies_before_run"]["charged_not_paid"]["count"] == damage
    assert report["inconsistencies_before_run_total"] >= damage
    assert (
        f"{report['inconsistencies_before_run_total']} inconsistencies before this run"
        in (report["reason"])
    )
    # the run's own view: only its payouts, all final, timeouts among them resolved
    reconciliation = report["reconciliation"]
    first_payouts = sum(first_report["reconciliation"]["payouts"].values())
    assert sum(reconciliation["before_run"]["payouts"].values()) == first_payouts
    assert sum(reconciliation["payouts"].values()) > 0
    assert report["timeouts"]["resolved_by_reconciliation"] > 0
    assert reconciliation["unresolved"]["count"] == 0


def test_profile_is_a_label_and_the_old_shape_values_get_a_hint():
    hint = profile_hint(SimpleNamespace(profile="spike", shape="steady"))
    assert hint is not None and "--shape spike" in hint
    assert profile_hint(SimpleNamespace(profile="nightly", shape="steady")) is None
    assert profile_hint(SimpleNamespace(profile=None, shape="spike")) is None
    settings = settings_from(SimpleNamespace(profile="spike", shape="steady"))
    assert (settings.shape, settings.profile) == ("steady", "spike")


def test_final_wait_default_follows_the_embedded_targets_timing():
    # the longest hold (the edge workload's 10 s; the node's normal one is 1.5 s) + node timeout
    # 0.5 s + two resolver passes + 3 s margin, rounded up
    assert DEFAULT_FINAL_WAIT_S == 14.0  # 6 s before the edge workload's 10 s long holds
    assert settings_from(SimpleNamespace()).final_wait_s == DEFAULT_FINAL_WAIT_S


def test_reconciliation_run_scoping_api(running_target):
    """The target's side of run scoping: the marker, the run's view, bad input refused."""
    url, token = running_target([])
    admin = TargetAdmin(url, token)
    whole = admin.reconciliation()
    assert isinstance(whole["now_ms"], int) and whole["since_ms"] is None
    assert "before_run" not in whole
    assert whole["unresolved"] == {"count": 0, "amount_msat": 0, "payout_ids": [], "examples": []}
    assert whole["timeouts"] == {"payouts": 0, "resolved": 0}
    marker = admin.clock_ms()
    assert marker >= whole["now_ms"]
    scoped = admin.reconciliation(since_ms=marker, stuck_after_s=0.0)
    assert (scoped["since_ms"], scoped["stuck_after_s"]) == (marker, 0.0)
    assert scoped["before_run"]["hashes_checked"] == 0 and scoped["hashes_checked"] == 0
    for query in ("since_ms=soon", "since_ms=-1", "stuck_after_s=nan", "stuck_after_s=-2"):
        with pytest.raises(TargetError, match="HTTP 400.*invalid_query"):
            admin._call("GET", f"/admin/reconciliation?{query}")
