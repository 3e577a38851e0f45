"""A refusal must have moved nothing (lnchaos/checker/refusals.py)."""

from __future__ import annotations

from lnchaos.checker import refusals
from lnchaos.checker.kinds import CHARGED_NOT_PAID, REFUSED_BUT_SENT


def test_a_refused_invoice_the_node_never_saw_moved_nothing():
    unseen = {"status": "unknown", "attempts": 0}
    assert refusals.sent_despite_refusal(unseen, taken=0) == 0
    assert refusals.refusal_kind(None, 0) is None


def test_a_refused_invoice_with_an_attempt_at_the_node_reached_it():
    failed_attempt = {"status": "failed", "attempts": 1}
    assert refusals.sent_despite_refusal(failed_attempt, taken=0) == 1
    assert refusals.refusal_kind(None, 1) == REFUSED_BUT_SENT
    # the one payout the wallet took may have sent it; a second attempt is the refusal's
    assert refusals.sent_despite_refusal({"status": "succeeded", "attempts": 1}, taken=1) == 0
    assert refusals.sent_despite_refusal({"status": "succeeded", "attempts": 2}, taken=1) == 1


def test_a_node_record_without_attempts_counts_a_payment_it_knows():
    assert refusals.sent_despite_refusal({"status": "in_flight"}, taken=0) == 1
    assert refusals.sent_despite_refusal({"status": "unknown"}, taken=0) == 0


def test_the_money_is_the_worse_finding():
    assert refusals.refusal_kind(CHARGED_NOT_PAID, 3) == CHARGED_NOT_PAID
