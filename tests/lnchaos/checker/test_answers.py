"""Strict reading (lnchaos/checker/answers.py): a promised field missing or malformed is a
finding (`malformed_answer`), never a default; judged again from the recorded answer."""

from __future__ import annotations

import pytest

from lnchaos.checker import answers, history, rules
from lnchaos.checker.kinds import ANSWER_SHAPE, MALFORMED_ANSWER, UNRESOLVED
from lnchaos.checker.reconciliation import combine_inconsistencies, reconciliation_problems

SUCCEEDED = {
    "payout_id": "p1",
    "status": "succeeded",
    "amount_msat": 1_000_000,
    "fee_msat": 1_500,
    "payment_hash": "h1",
    "balance_msat": 8_998_500,
}
VIEW = {"wallet_id": "w1", "balance_msat": 9_000_000, "reserved_msat": 0}
KIND = {"count": 0, "amount_msat": 0}
RECONCILIATION = {
    "now_ms": 1_700_000_000_000,
    "charged_not_paid": KIND,
    "paid_not_charged": KIND,
    "unresolved": KIND,
    "pending": 0,
    "conserved": True,
}


def test_answers_that_keep_their_promises_have_no_problem():
    assert answers.problems("payout_answer_succeeded", SUCCEEDED) == []
    assert answers.problems("wallet_view", VIEW) == []
    assert answers.problems("reconciliation", RECONCILIATION) == []
    # an outside service's judge says "not mine to say" with null: a promise kept
    assert answers.problems("reconciliation", {**RECONCILIATION, "conserved": None}) == []
    # a pending answer does not promise a fee yet
    pending = {"payout_id": "p1", "status": "pending", "balance_msat": 8_000_000}
    assert answers.problems(answers.payout_answer_shape(pending), pending) == []


@pytest.mark.parametrize(
    ("shape", "answer", "field"),
    [
        ("payout_answer_succeeded", {**SUCCEEDED, "fee_msat": "1500"}, "fee_msat"),
        ("payout_answer_succeeded", {**SUCCEEDED, "fee_msat": 1.5}, "fee_msat"),
        ("payout_answer_succeeded", {**SUCCEEDED, "fee_msat": True}, "fee_msat"),
        ("payout_answer_succeeded", {**SUCCEEDED, "fee_msat": -1}, "fee_msat"),
        ("payout_answer_succeeded", {**SUCCEEDED, "fee_msat": None}, "fee_msat"),
        ("payout_answer_succeeded", {**SUCCEEDED, "balance_msat": "8998500"}, "balance_msat"),
        ("payout_answer", {"status": "pending", "balance_msat": 1}, "payout_id"),
        ("payout_answer", {"payout_id": "p1", "status": "pending"}, "balance_msat"),
        ("wallet_view", {"balance_msat": 1}, "reserved_msat"),
        ("wallet_view", {"reserved_msat": 0}, "balance_msat"),
        ("payout_view_succeeded", {"status": "succeeded"}, "fee_msat"),
        ("reconciliation", {**RECONCILIATION, "conserved": "yes"}, "conserved"),
        (
            "reconciliation",
            {**RECONCILIATION, "charged_not_paid": {"count": 1}},
            "charged_not_paid",
        ),
        ("reconciliation", {**RECONCILIATION, "pending": -1}, "pending"),
    ],
)
def test_a_promise_broken_is_named_by_its_field(shape, answer, field):
    found = answers.problems(shape, answer)
    assert len(found) == 1 and found[0].startswith(f"{field}:"), found


def test_an_absent_field_is_never_read_as_fine():
    without = {k: v for k, v in SUCCEEDED.items() if k != "fee_msat"}
    assert answers.problems(answers.payout_answer_shape(without), without) == ["fee_msat: missing"]
    for name in ("conserved", "charged_not_paid", "unresolved", "now_ms"):
        partial = {k: v for k, v in RECONCILIATION.items() if k != name}
        assert answers.problems("reconciliation", partial) == [f"{name}: missing"]
    assert answers.problems("wallet_view", ["not", "an", "object"])[0].startswith("not a JSON")
    assert answers.msat_or_none({"fee_msat": "12"}, "fee_msat") is None
    assert answers.msat_or_none({"fee_msat": 0}, "fee_msat") == 0


def test_a_malformed_answer_is_judged_again_from_its_recorded_answer():
    tally = history.Tally("r")
    bad = {**SUCCEEDED, "fee_msat": "1500"}
    record = answers.malformed_record(
        "payout_answer_succeeded", bad, "POST /api/wallets/w1/payouts", wallet="w1", http=200
    )
    record["t"] = 1.0
    assert history.apply(tally, record) == MALFORMED_ANSWER
    example = tally.kinds[MALFORMED_ANSWER]["examples"][0]
    assert example["fields"] == ["fee_msat"] and example["answer"] == bad
    assert example["request"] == "POST /api/wallets/w1/payouts" and example["wallet_id"] == "w1"
    assert tally.checks[ANSWER_SHAPE] == [0, 1]
    # a record whose answer keeps its promises passes, whatever kind it might carry
    good = {**answers.malformed_record("wallet_view", VIEW, "GET"), "kind": MALFORMED_ANSWER}
    assert history.apply(tally, good) is None
    assert tally.kinds[MALFORMED_ANSWER]["count"] == 1


def test_an_answer_too_long_to_keep_is_judged_by_the_problems_it_was_recorded_with():
    huge = {**SUCCEEDED, "fee_msat": "x", "padding": "p" * (answers.ANSWER_CHARS_MAX * 2)}
    record = answers.malformed_record("payout_answer_succeeded", huge, "POST")
    assert isinstance(record["answer"], str) and len(record["answer"]) < len(str(huge))
    kind, example = answers.judge_record(record)
    assert kind == MALFORMED_ANSWER and example["fields"] == ["fee_msat"]


def test_the_audit_reads_an_absent_reserve_as_malformed_not_as_zero():
    entry = rules.audit_entry(
        wallet_id="w1",
        api_key="k",
        expected_msat=9_000_000,
        payment_hash="h1",
        amount_msat=1_000_000,
        phase="normal",
    )
    failed = {"status": "failed", "fee_msat": 0}
    assert rules.audit_kind(entry, failed, VIEW) is None
    without_reserve = {"wallet_id": "w1", "balance_msat": 9_000_000}
    assert rules.audit_kind(entry, failed, without_reserve) == MALFORMED_ANSWER
    text_reserve = {**VIEW, "reserved_msat": "0"}
    assert rules.audit_kind(entry, failed, text_reserve) == MALFORMED_ANSWER
    example = rules.audit_example(entry, failed, without_reserve, None, MALFORMED_ANSWER)
    assert example["problems"] == ["wallet view: reserved_msat: missing"]
    # money still held is not final: unresolved, as before
    assert rules.audit_kind(entry, failed, {**VIEW, "reserved_msat": 5}) == UNRESOLVED


def test_a_reconciliation_without_conserved_fails_the_run_as_malformed():
    partial = {k: v for k, v in RECONCILIATION.items() if k != "conserved"}
    combined = combine_inconsistencies({}, partial)
    assert combined[MALFORMED_ANSWER]["count"] == 1
    example = combined[MALFORMED_ANSWER]["examples"][0]
    assert example["fields"] == ["conserved"] and example["source"] == "reconciliation"
    assert reconciliation_problems(partial) == ["malformed: conserved: missing"]
    assert MALFORMED_ANSWER not in combine_inconsistencies({}, RECONCILIATION)
    # a kind's count that is not a number is named, not a crash of the verdict
    garbled = {**RECONCILIATION, "charged_not_paid": {"count": "3", "amount_msat": 0}}
    assert combine_inconsistencies({}, garbled)[MALFORMED_ANSWER]["count"] == 1
