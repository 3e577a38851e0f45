"""The checker without HTTP: classification, merging, verdict and exit codes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lnchaos.checker import verdict
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


# the reconciliation's whole promised shape with nothing wrong (lnchaos/checker/answers.py): a
# fixture missing a promised field would be a malformed_answer finding of its own
NOTHING = {"count": 0, "amount_msat": 0}
RECONCILED = {"now_ms": 1, "pending": 0, "conserved": True, "charged_not_paid": NOTHING,
              "paid_not_charged": NOTHING, "unresolved": NOTHING}  # fmt: skip


def test_reconciliation_counts_each_payout_once():
    kinds = {
        checker.CHARGED_NOT_PAID: {"count": 3, "amount_msat": 30, "examples": [], "worst": None,
                                   "last": None},
        checker.DOUBLE_CHARGE: {"count": 1, "amount_msat": 5, "examples": [], "worst": None,
                                "last": None},
    }  # fmt: skip
    reconciliation = {
        **RECONCILED,
        "charged_not_paid": {"count": 6, "amount_msat": 70, "payout_ids": ["x", "y"]},
        "paid_not_charged": {"count": 0, "amount_msat": 0, "payout_ids": []},
        "stuck_pending": {"count": 2, "payout_ids": ["s"]},  # a subset of unresolved
        "unresolved": {
            "count": 2,
            "amount_msat": 0,
            "payout_ids": ["s", "t"],
            "examples": [
                {
                    "payout_id": "s",
                    "wallet_id": "w",
                    "payout_status": "pending",
                    "node_status": "succeeded",
                },
                {
                    "payout_id": "t",
                    "wallet_id": "v",
                    "payout_status": "succeeded",
                    "node_status": "in_flight",
                },
            ],
        },
        "conserved": False,
        "conservation": {"deposits_msat": 1},
    }
    combined = checker.combine_inconsistencies(kinds, reconciliation)
    # 6 found by the reconciliation, one of them the double charge the checks named
    assert combined[checker.CHARGED_NOT_PAID]["count"] == 5
    assert combined[checker.CHARGED_NOT_PAID]["detected_by"] == {
        "checks": 3,
        "reconciliation": 6,
        "audit": 0,
    }
    assert combined[checker.DOUBLE_CHARGE]["count"] == 1
    assert combined[checker.UNRESOLVED]["count"] == 2
    assert "stuck_pending" not in combined  # counted once, as unresolved
    example = combined[checker.UNRESOLVED]["examples"][0]
    assert example["payout_id"] == "s" and example["wallet_id"] == "w"
    assert (example["payout_status"], example["node_status"]) == ("pending", "succeeded")
    assert example["source"] == "reconciliation" and example["kind"] == "unresolved"
    described = checker.describe_inconsistencies(combined)
    assert "unresolved=2 [payout s (wallet w: wallet pending, node succeeded)" in described
    assert combined[checker.NOT_CONSERVED]["count"] == 1
    assert "paid_not_charged" not in combined
    assert checker.reconciliation_problems(reconciliation) == [
        "charged_not_paid=6",
        "unresolved=2",
        "not conserved",
    ]


@pytest.mark.parametrize(
    ("total", "verified", "target_error", "resolved", "locust_code", "code"),
    [
        (0, 10, None, 1, 0, checker.EXIT_PASS),
        (1, 10, None, 1, 0, checker.EXIT_INCONSISTENT),
        # the money verdict comes first: over Locust's own codes, the target and "nothing"
        (1, 10, None, 1, 1, checker.EXIT_INCONSISTENT),
        (9, 10, None, 1, 2, checker.EXIT_INCONSISTENT),
        (5, 0, "gone", 0, 1, checker.EXIT_INCONSISTENT),
        # then the target
        (0, 0, "gone", 0, 1, checker.EXIT_TARGET_FAILED),
        (0, 10, "gone", 1, 0, checker.EXIT_TARGET_FAILED),
        # then nothing proven: nothing verified, or no timeout resolved
        (0, 0, None, 1, 0, checker.EXIT_NOTHING_VERIFIED),
        (0, 10, None, 0, 0, checker.EXIT_NOTHING_VERIFIED),
        (0, 10, None, 0, 2, checker.EXIT_NOTHING_VERIFIED),
        # then Locust's own
        (0, 10, None, 1, 2, 2),
        (0, 10, None, 1, 1, 1),
        (0, 10, None, 1, 7, 7),  # another listener's code is kept
    ],
)
def test_decide_precedence(total, verified, target_error, resolved, locust_code, code):
    verdict, got_code, reason = decide(
        inconsistencies_total=total,
        verified=verified,
        threshold=0,
        locust_exit_code=locust_code,
        target_error=target_error,
        timeouts_configured=True,
        timeouts_seen=3,
        timeouts_resolved=resolved,
    )
    assert got_code == code
    assert verdict == ("pass" if code == 0 else "fail")
    # the reason names everything that went wrong, not only what chose the code
    assert (f"{total} inconsistencies > threshold 0" in reason) == (total > 0)
    assert ("target failed: gone" in reason) == (target_error is not None)
    assert ("no payout was verified" in reason) == (verified == 0)
    no_timeout = "no payout answered while the node held its payment was judged final (3 answered"
    assert (no_timeout in reason) == (resolved == 0)
    assert (f"Locust's own exit code {locust_code}" in reason) == (locust_code != 0)


def test_decide_threshold_and_unconfigured_timeouts():
    within = decide(
        inconsistencies_total=2, verified=10, threshold=2, locust_exit_code=0, target_error=None
    )
    assert within[:2] == ("pass", 0)
    # no timeout rate configured: nothing to resolve, so no exit 4 for it
    no_faults = decide(
        inconsistencies_total=0,
        verified=10,
        threshold=0,
        locust_exit_code=0,
        target_error=None,
        timeouts_configured=False,
        timeouts_resolved=0,
    )
    assert no_faults[:2] == ("pass", 0)


def test_decide_reports_earlier_runs_apart():
    verdict, code, reason = decide(
        inconsistencies_total=0,
        verified=10,
        threshold=0,
        locust_exit_code=0,
        target_error=None,
        before_run_total=4,
    )
    assert (verdict, code) == ("pass", 0)
    assert "4 inconsistencies before this run on this target (not counted)" in reason


def documented_keys() -> set[str]:
    """The top-level keys of consistency.json as checker.py's docstring lists them."""
    doc = verdict.__doc__ or ""  # consistency.json's schema: lnchaos/checker/verdict.py
    section = doc[doc.index("## consistency.json") : doc.index("An example is")]
    keys: set[str] = set()
    for line in section.splitlines()[1:]:
        if not line.startswith("    ") or line.startswith("     "):
            continue  # only the 4-space lines name top-level keys
        for part in line.split(";"):
            names = part.split(":")[0]
            keys.update(name.strip() for name in names.split(",") if name.strip())
    return keys


def test_report_keys_are_the_documented_ones(tmp_path):
    tally = Tally("r")
    tally.record_payout("normal", "succeeded", 3.0)
    tally.record_payout("normal", "pending", 503.0)
    tally.record_check(checker.BALANCE_AFTER_SUCCESS, passed=True)
    tally.record_check(checker.RESOLVED_VS_NODE_TRUTH, passed=True)
    # the pending payout's payment the node timed out, judged final by its check
    tally.record_check(checker.NODE_TIMEOUT_JUDGED, passed=True)
    reconciliation = {
        **RECONCILED,
        "timeouts": {"payouts": 1, "resolved": 1},
        "before_run": {"charged_not_paid": {"count": 2, "amount_msat": 9, "payout_ids": ["o"]}},
    }
    report = checker.build_report(
        run={"fix": "on", "shape": "steady", "profile": None, "seed": 1, "threshold": 0,
             "final_wait_s": 6.0},
        merged=merge_tallies([tally.to_dict()]),
        reconciliation=reconciliation,
        phases=[{"name": "normal", "start_s": 0.0, "end_s": 2.0}],
        timeline=[],
        duration_s=2.0,
        configured_rate_by_phase={"normal": 0.01},
        locust_exit_code=0,
        target_error=None,
        since_ms=123,
    )  # fmt: skip
    assert set(report) == documented_keys()
    assert (report["verdict"], report["exit_code"], report["payouts_per_s"]) == ("pass", 0, 1.0)
    assert report["timeouts"] == {
        "configured": True,
        "payouts": 1,
        "resolved_by_checks": 1,
        "resolved_by_reconciliation": 1,
        "resolved_by_audit": 0,
        "left_to_reconciliation": 0,
        "resolved_by_node_truth": 1,
    }
    assert report["audit"] == {
        "entries": 0,
        "judged": 0,
        "unresolved": 0,
        "inconsistent": 0,
        "overflow": 0,
    }
    # the earlier run's problem is reported, not counted
    assert report["inconsistencies_total"] == 0
    assert report["inconsistencies_before_run"]["charged_not_paid"]["count"] == 2
    assert report["inconsistencies_before_run_total"] == 2
    path = tmp_path / "r" / "consistency.json"
    checker.write_report(path, report)
    assert json.loads(path.read_text())["verdict"] == "pass"


def test_a_run_with_timeouts_configured_and_none_resolved_fails_with_4():
    tally = Tally("r")
    tally.record_payout("normal", "succeeded", 3.0)
    tally.record_check(checker.BALANCE_AFTER_SUCCESS, passed=True)
    report = checker.build_report(
        run={"fix": "on", "shape": "steady", "seed": 1, "threshold": 0},
        merged=merge_tallies([tally.to_dict()]),
        reconciliation={**RECONCILED, "timeouts": {"payouts": 0, "resolved": 0}},
        phases=[],
        timeline=[],
        duration_s=2.0,
        configured_rate_by_phase={"ramp": 0.0, "spike": 0.05},
        locust_exit_code=0,
        target_error=None,
    )
    assert (report["verdict"], report["exit_code"]) == ("fail", checker.EXIT_NOTHING_VERIFIED)
    assert "no payout answered while the node held its payment was judged final" in report["reason"]


def steady_report(*tallies: Tally, **changes) -> dict:
    """build_report of the merged `tallies`: a steady fix-on run of 2 s, phase `normal` with no
    timeout configured, nothing reconciled; `changes` replace any of build_report's arguments."""
    arguments = {
        "run": {"fix": "on", "shape": "steady", "seed": 1, "threshold": 0},
        "merged": merge_tallies([tally.to_dict() for tally in tallies]),
        "reconciliation": {**RECONCILED, "timeouts": {"payouts": 0, "resolved": 0}},
        "phases": [],
        "timeline": [],
        "duration_s": 2.0,
        "configured_rate_by_phase": {"normal": 0.0},
        "locust_exit_code": 0,
        "target_error": None,
        **changes,
    }
    return checker.build_report(**arguments)


def payers_report(succeeded: int, failed: int, shares: dict[str, float] | None) -> dict:
    """A report of payers' payouts in phase `normal` (`succeeded` + `failed`, each verified),
    with no timeout configured, judged with the success shares `shares`."""
    tally = Tally("r")
    for outcome, n in (("succeeded", succeeded), ("failed", failed)):
        for _ in range(n):
            tally.record_payout("normal", outcome, 3.0, payer=True)
            tally.record_check(checker.BALANCE_AFTER_FAILURE, passed=True)
    # the traffic classes' payouts are refused by design: counted as payouts, not as payers'
    tally.record_payout("normal", "rejected", 3.0)
    return steady_report(tally, Tally("r"), success_share_by_phase=shares)


def test_a_run_that_paid_nothing_when_it_should_have_fails_with_4():
    """A wallet that fails every payment moves no money wrongly, but its run proves nothing
    about successful payouts: with timeouts off, nothing else would fail it."""
    report = payers_report(succeeded=0, failed=40, shares={"normal": 0.9})
    assert report["inconsistencies_total"] == 0 and report["payouts_verified"] == 40
    assert (report["verdict"], report["exit_code"]) == ("fail", checker.EXIT_NOTHING_VERIFIED)
    assert report["successes"] == {
        "payer_payouts": 40,
        "succeeded": 0,
        "expected": 36.0,
        "required": True,
    }
    assert "no payout succeeded, though about 36 of the payers' 40 payouts" in report["reason"]
    # one success is enough: the path was taken (its balance was checked like any other)
    assert payers_report(succeeded=1, failed=39, shares={"normal": 0.9})["exit_code"] == 0


@pytest.mark.parametrize(
    ("failed", "shares"),
    [
        (40, {"normal": 0.2}),  # failures configured: 8 expected, under the minimum
        (40, {"normal": 0.0}),  # every payment set to fail: none expected
        (5, {"normal": 1.0}),  # too few payouts to expect ten
        (40, None),  # the target never said its faults: nothing required
    ],
)
def test_no_success_is_required_when_the_faults_allow_none(failed, shares):
    report = payers_report(succeeded=0, failed=failed, shares=shares)
    assert report["successes"]["required"] is False
    assert (report["verdict"], report["exit_code"]) == ("pass", 0), report["reason"]


def test_success_shares_follow_the_worst_faults_in_force():
    from locustfiles.fault_control import NODE_CALLS_PER_PAYOUT, FaultControl

    control = SimpleNamespace(
        worst_seen={},
        configured_rate_by_phase=lambda: {"normal": 0.01, "spike": 0.05},
    )
    assert FaultControl.success_share_by_phase(control) is None
    FaultControl._note_worst(control, {"failure_rate": 0.1, "http_error_rate": 0.02, "x": 1})
    FaultControl._note_worst(control, {"failure_rate": 0.05, "http_reset_rate": 0.01})
    assert control.worst_seen == {
        "failure_rate": 0.1,
        "http_error_rate": 0.02,
        "http_reset_rate": 0.01,
    }
    shares = FaultControl.success_share_by_phase(control)
    through = 0.9 * (1 - 0.03) ** NODE_CALLS_PER_PAYOUT
    assert shares == pytest.approx({"normal": 0.99 * through, "spike": 0.95 * through})
    FaultControl._note_worst(control, {"failure_rate": 1.0})
    assert FaultControl.success_share_by_phase(control) == {"normal": 0.0, "spike": 0.0}


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


def test_unresolved_examples_name_payouts_before_those_known_only_by_hash():
    """Payouts a payer was stopped in (no payout id yet) must not crowd out the target's own
    examples of unresolved payouts (payout id, wallet, both statuses)."""
    audit = checker.Audit(entries=4)
    for n in range(4):
        entry = {"payout_id": None, "payment_hash": f"h{n}", "wallet_id": f"w{n}"}
        example = {"kind": checker.UNRESOLVED, "payout_id": None, "payment_hash": f"h{n}",
                   "wallet_id": f"w{n}", "payout_status": None, "diff_msat": 0}  # fmt: skip
        audit.add(entry, checker.UNRESOLVED, example)
    listed = [{"payout_id": "p1", "payment_hash": "h9", "wallet_id": "w9",
               "payout_status": "pending", "node_status": "succeeded"}]  # fmt: skip
    reconciliation = {**RECONCILED, checker.UNRESOLVED: {"count": 1, "amount_msat": 0,
                                                         "examples": listed}}  # fmt: skip
    combined = checker.combine_inconsistencies({}, reconciliation, audit)
    entry = combined[checker.UNRESOLVED]
    assert entry["count"] == 5  # the four the audit found, and the target's, each once
    assert len(entry["examples"]) == checker.MAX_EXAMPLES
    first = entry["examples"][0]
    assert (first["payout_id"], first["payout_status"]) == ("p1", "pending")
    assert [e["payout_id"] for e in entry["examples"][1:]] == [None] * (checker.MAX_EXAMPLES - 1)


def test_a_run_of_the_traffic_classes_alone_is_verified_by_their_rounds():
    """payers=0: no payer's balance check, but judged rounds of the classes (each a check of
    its payouts against the node's truth): verified, not exit 4; nothing judged at all is."""
    nothing = Tally("r")
    nothing.record_payout("normal", "succeeded", 3.0)
    assert steady_report(nothing)["exit_code"] == checker.EXIT_NOTHING_VERIFIED
    rounds = Tally("r")
    rounds.record_payout("normal", "succeeded", 3.0)
    for name in checker.TRAFFIC_ROUND_CHECKS:
        rounds.record_check(name, passed=True)
    report = steady_report(rounds)
    assert (report["verdict"], report["exit_code"]) == ("pass", 0), report["reason"]
    assert report["payouts_verified"] == 0 and report["traffic_rounds_verified"] == 4
