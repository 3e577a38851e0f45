"""The checker without HTTP: classification, merging, verdict and exit codes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from locustfiles import checker
from locustfiles.checker import Tally, classify_balance, decide, merge_tallies
from locustfiles.controller import locust_exit_code


@pytest.mark.parametrize(
    ("diff_msat", "paid", "retried", "expected"),
    [
        (0, True, False, None),
        (0, False, True, None),
        (-1_000, False, False, checker.CHARGED_NOT_PAID),  # charged, node says failed
        (-1_000, True, False, checker.CHARGED_NOT_PAID),  # paid, but charged more than that
        (1_000, True, False, checker.PAID_NOT_CHARGED),  # paid, balance restored
        (-11_000, True, True, checker.DOUBLE_CHARGE),  # a retry paid again
        (1_000, False, False, checker.BALANCE_MISMATCH),
    ],
)
def test_classify_balance(diff_msat, paid, retried, expected):
    assert classify_balance(diff_msat=diff_msat, paid=paid, retried=retried, cost_msat=11_000) == (
        expected
    )


def example(payout_id: str, diff_msat: int, t_unix: float) -> dict:
    return {"payout_id": payout_id, "diff_msat": diff_msat, "t_unix": t_unix}


def test_merge_sums_workers_and_keeps_worst_and_last():
    a, b = Tally("r"), Tally("r")
    a.record_payout("spike", "timeout", 510.0)
    a.record_payout("spike", "succeeded", 12.0)
    b.record_payout("normal", "succeeded", 8.0)
    a.record_check(checker.RESOLVED_VS_NODE_TRUTH, passed=False)
    a.record_inconsistency(checker.CHARGED_NOT_PAID, -500, example("p1", -500, 1.0))
    b.record_check(checker.BALANCE_AFTER_SUCCESS, passed=True)
    b.record_inconsistency(checker.CHARGED_NOT_PAID, -900, example("p2", -900, 2.0))
    # what crosses processes is JSON
    merged = merge_tallies(json.loads(json.dumps([a.to_dict(), b.to_dict()])))
    kind = merged["kinds"][checker.CHARGED_NOT_PAID]
    assert kind["count"] == 2 and kind["amount_msat"] == 1_400
    assert kind["worst"]["payout_id"] == "p2" and kind["last"]["payout_id"] == "p2"
    assert merged["drift_msat"] == -1_400
    assert checker.timeline_point(merged) == {
        "payouts": 3,
        "timeouts": 1,
        "inconsistencies": 2,
        "drift_msat": -1_400,
    }
    rates = checker.timeout_rate_by_phase(merged, {"spike": 0.05})
    assert rates["spike"] == {"payouts": 2, "timeouts": 1, "rate": 0.5, "configured_rate": 0.05}
    assert checker.payouts_verified(merged) == 2


def test_latency_percentiles():
    tally = Tally()
    for latency_ms in [5.0] * 90 + [40.0] * 9 + [520.0]:
        tally.record_payout("normal", "succeeded", latency_ms)
    merged = merge_tallies([tally.to_dict()])
    assert checker.latency_percentiles(merged["latency_ms"]) == {
        "p50": 5.0,
        "p95": 40.0,
        "p99": 40.0,
    }


def test_reconciliation_counts_each_payout_once():
    kinds = {
        checker.CHARGED_NOT_PAID: {"count": 3, "amount_msat": 30, "examples": [], "worst": None,
                                   "last": None},
        checker.DOUBLE_CHARGE: {"count": 1, "amount_msat": 5, "examples": [], "worst": None,
                                "last": None},
    }  # fmt: skip
    reconciliation = {
        "charged_not_paid": {"count": 6, "amount_msat": 70, "payout_ids": ["x", "y"]},
        "paid_not_charged": {"count": 0, "amount_msat": 0, "payout_ids": []},
        "stuck_pending": {"count": 2, "payout_ids": ["s"]},
        "conserved": False,
        "conservation": {"deposits_msat": 1},
    }
    combined = checker.combine_inconsistencies(kinds, reconciliation)
    # 6 found by the reconciliation, one of them the double charge the checks named
    assert combined[checker.CHARGED_NOT_PAID]["count"] == 5
    assert combined[checker.CHARGED_NOT_PAID]["detected_by"] == {"checks": 3, "reconciliation": 6}
    assert combined[checker.DOUBLE_CHARGE]["count"] == 1
    assert combined[checker.STUCK_PENDING]["count"] == 2
    assert combined[checker.NOT_CONSERVED]["count"] == 1
    assert "paid_not_charged" not in combined
    assert checker.reconciliation_problems(reconciliation) == [
        "charged_not_paid=6",
        "stuck_pending=2",
        "not conserved",
    ]


@pytest.mark.parametrize(
    ("total", "verified", "threshold", "locust_code", "target_error", "verdict", "code"),
    [
        (0, 10, 0, 0, None, "pass", 0),
        (1, 10, 0, 0, None, "fail", checker.EXIT_INCONSISTENT),
        (2, 10, 2, 0, None, "pass", 0),  # within the threshold
        (0, 0, 0, 0, None, "fail", checker.EXIT_NOTHING_VERIFIED),  # verified nothing
        (5, 0, 0, 0, None, "fail", checker.EXIT_INCONSISTENT),
        (0, 0, 0, 0, "gone", "fail", checker.EXIT_TARGET_FAILED),
        (0, 10, 0, 1, None, "fail", 1),  # Locust's own failure is never hidden
        (9, 10, 0, 2, None, "fail", 2),
    ],
)
def test_decide(total, verified, threshold, locust_code, target_error, verdict, code):
    got_verdict, got_code, reason = decide(
        inconsistencies_total=total,
        verified=verified,
        threshold=threshold,
        locust_exit_code=locust_code,
        target_error=target_error,
    )
    assert (got_verdict, got_code) == (verdict, code)
    assert reason


def test_report_has_the_documented_keys(tmp_path):
    tally = Tally("r")
    tally.record_payout("normal", "succeeded", 3.0)
    tally.record_check(checker.BALANCE_AFTER_SUCCESS, passed=True)
    report = checker.build_report(
        run={"fix": "on", "profile": "steady", "seed": 1, "threshold": 0},
        merged=merge_tallies([tally.to_dict()]),
        reconciliation=None,
        phases=[{"name": "normal", "start_s": 0.0, "end_s": 2.0}],
        timeline=[],
        duration_s=2.0,
        configured_rate_by_phase={"normal": 0.01},
        locust_exit_code=0,
        target_error=None,
    )
    for key in (
        "fix profile seed threshold verdict exit_code reason duration_s payouts_per_s "
        "payouts_by_outcome timeout_rate_by_phase checks inconsistencies drift_msat "
        "payout_latency_ms phases timeline reconciliation"
    ).split():
        assert key in report, key
    assert (report["verdict"], report["exit_code"], report["payouts_per_s"]) == ("pass", 0, 0.5)
    path = tmp_path / "r" / "consistency.json"
    checker.write_report(path, report)
    assert json.loads(path.read_text())["verdict"] == "pass"


def fake_environment(errors: dict, process_exit_code=None, exceptions=None):
    stats = SimpleNamespace(errors=errors)
    runner = SimpleNamespace(stats=stats, exceptions=exceptions or {})
    options = SimpleNamespace(exit_code_on_error=1)
    return SimpleNamespace(
        process_exit_code=process_exit_code, runner=runner, parsed_options=options
    )


def test_locust_exit_code_leaves_check_failures_to_the_verdict():
    check_failure = SimpleNamespace(method="CHECK", occurrences=4)
    http_failure = SimpleNamespace(method="POST", occurrences=1)
    assert locust_exit_code(fake_environment({"a": check_failure})) == 0
    assert locust_exit_code(fake_environment({"a": check_failure, "b": http_failure})) == 1
    assert locust_exit_code(fake_environment({}, exceptions={"x": {}})) == 1
    assert locust_exit_code(fake_environment({}, process_exit_code=7)) == 7
