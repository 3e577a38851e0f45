"""The run's scope is the judge's (lnchaos/checker/scope.py), and "nothing proven about
timeouts" counts the node's timeouts, never the wallet's answers (verdict.timeouts_summary)."""

from __future__ import annotations

from lnchaos.checker import history, scope, verdict
from lnchaos.checker.audit import Audit
from lnchaos.checker.kinds import (
    EXIT_INCONSISTENT,
    EXIT_NOTHING_VERIFIED,
    EXIT_PASS,
    NODE_TIMEOUT_JUDGED,
    PAID_NOT_CHARGED,
    UNRESOLVED,
)
from lnchaos.checker.tally import Tally, merge_tallies

NOTHING = {"count": 0, "amount_msat": 0}
RECONCILED = {"now_ms": 1, "pending": 0, "conserved": True, "charged_not_paid": NOTHING,
              "paid_not_charged": NOTHING, "unresolved": NOTHING}  # fmt: skip


def before_run(**kinds: dict) -> dict:
    return {**RECONCILED, "before_run": {"pending": 0, **kinds}}


def test_what_was_there_at_the_start_stays_before_the_run():
    at_start = scope.start_counts({**RECONCILED, "paid_not_charged": {"count": 2}, "pending": 1})
    assert at_start == {"charged_not_paid": 0, "paid_not_charged": 2, "unresolved": 0, "pending": 1}
    # two were there and one more was pending then (it may have ended that way): excused
    three = before_run(paid_not_charged={"count": 3, "amount_msat": 30, "payout_ids": ["a"]})
    assert scope.pushed_into_run(three, at_start) == {}


def test_what_the_wallets_clock_put_before_the_run_but_was_not_there_is_the_runs():
    at_start = scope.start_counts(RECONCILED)  # a fresh target: nothing before the run
    found = before_run(
        paid_not_charged={"count": 4, "amount_msat": 40, "payout_ids": ["a", "b"]},
        unresolved={"count": 1, "amount_msat": 0, "payout_ids": ["c"]},
    )
    pushed = scope.pushed_into_run(found, at_start)
    assert pushed[PAID_NOT_CHARGED] == {"count": 4, "amount_msat": 40, "payout_ids": ["a", "b"]}
    assert pushed[UNRESOLVED]["count"] == 1
    report = build(found, at_start, Tally("r"))
    assert report["exit_code"] == EXIT_INCONSISTENT
    assert report["inconsistencies"][PAID_NOT_CHARGED]["count"] == 4
    example = report["inconsistencies"][PAID_NOT_CHARGED]["examples"][0]
    assert example["payout_id"] == "a" and example["scope"] == scope.PUSHED
    assert report["inconsistencies_before_run_total"] == 0  # no longer excused as earlier
    assert report["scope"]["pushed_into_run"][PAID_NOT_CHARGED]["count"] == 4
    # without the judge's record of the start (an older history), the target's split stands
    assert build(found, None, Tally("r"))["inconsistencies_before_run_total"] == 5


def judged_balance_check(held_ms: int | None, answered_ms: float = 500.0) -> dict:
    return {
        "type": "check",
        "name": "balance_after_success",
        "in": {
            "before_msat": 10_000,
            "amount_msat": 1_000,
            "node": {"status": "succeeded", "fee_msat": 10, "held_ms": held_ms},
            "actual_msat": 8_990,
            "retried": False,
        },
        "answered_ms": answered_ms,
    }


def test_a_timeout_the_wallet_hid_still_counts_by_the_nodes_word():
    """The wallet answered 200 succeeded (no 202, no 504) after 500 ms, while the node held the
    payment 1,500 ms: it answered in flight, so the run did reach a timeout, and judged it."""
    tally = Tally("r")
    tally.record_payout("normal", "succeeded", 3.0)
    assert history.apply(tally, judged_balance_check(held_ms=1_500)) is None
    assert tally.checks[NODE_TIMEOUT_JUDGED] == [1, 0]
    report = build(RECONCILED, scope.start_counts(RECONCILED), tally, rate=0.1)
    assert report["timeouts"]["payouts"] == 0  # the wallet answered none as timed out
    assert report["timeouts"]["resolved_by_node_truth"] == 1
    assert report["exit_code"] == EXIT_PASS


def test_timeouts_the_wallet_claims_but_the_node_never_made_prove_nothing():
    """A wallet answering 202 pending and its own reconciliation counting them resolved does not
    prove a timeout was met: the node had finished the payment before the wallet answered, and a
    wallet that waits out every hold (3 s answers, 1.5 s holds) never answers in flight."""
    tally = Tally("r")
    tally.record_payout("normal", "pending", 3.0)
    finished = {**judged_balance_check(held_ms=5), "name": "resolved_vs_node_truth"}
    history.apply(tally, finished)
    history.apply(tally, judged_balance_check(held_ms=1_500, answered_ms=3_000.0))
    history.apply(tally, judged_balance_check(held_ms=None))  # an older node: no word
    claimed = {**RECONCILED, "timeouts": {"payouts": 1, "resolved": 1}}
    report = build(claimed, scope.start_counts(RECONCILED), tally, rate=0.1)
    assert report["timeouts"]["resolved_by_checks"] == 1
    assert report["timeouts"]["resolved_by_node_truth"] == 0
    assert report["exit_code"] == EXIT_NOTHING_VERIFIED
    assert "answered while the node held its payment was judged final" in report["reason"]


def build(reconciliation: dict, at_start: dict | None, tally: Tally, rate: float = 0.0) -> dict:
    tally.record_check("balance_after_success", passed=True)
    return verdict.build_report(
        run={"fix": "on", "shape": "steady", "seed": 1, "threshold": 0},
        merged=merge_tallies([tally.to_dict()]),
        reconciliation=reconciliation,
        phases=[],
        timeline=[],
        duration_s=2.0,
        configured_rate_by_phase={"normal": rate},
        locust_exit_code=0,
        target_error=None,
        scope_at_start=at_start,
    )


def test_a_traffic_rounds_timeouts_count_by_the_nodes_word():
    """A run of the traffic classes alone (payers=0) reaches timeouts through its rounds."""
    tally = Tally("r")
    round_ = {"type": "check", "name": "drain", "kind": None, "example": None, "node_timeouts": 2}
    assert history.apply(tally, round_) is None
    assert tally.checks["drain"] == [1, 0] and tally.checks[NODE_TIMEOUT_JUDGED] == [2, 0]


def test_the_audit_counts_a_payout_answered_while_the_node_held_it():
    from lnchaos.checker import rules

    entry = {"wallet_id": "w", "expected_msat": 10_000, "amount_msat": 1_000, "answered_ms": 200.0}
    view = {"balance_msat": 10_000, "reserved_msat": 0}
    held = {"status": "failed", "fee_msat": 0, "held_ms": 1_500}
    example = rules.audit_example(entry, held, view, None, None)
    assert example["answered_in_flight"] is True
    audit = Audit(entries=2)
    audit.add(entry, None, example)
    quick = rules.audit_example(entry, {**held, "held_ms": 5}, view, None, None)
    audit.add(entry, None, quick)
    assert audit.node_timeouts == 1 and audit.judged == 2
