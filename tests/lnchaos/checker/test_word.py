"""The wallet's word against the node's truth (lnchaos/checker/word.py): each rule alone, the
fold that judges its records, and `lnchaos check` judging them offline as the live run did."""

from __future__ import annotations

import pytest
from test_checker_package import end_record, write_history

from lnchaos.checker import EXIT_INCONSISTENT, EXIT_PASS, history
from lnchaos.checker.kinds import (
    BOOKS_MISMATCH,
    FEE_MISMATCH,
    KIND_TEXT,
    KINDS,
    REPORTED_FEE,
    REPORTED_STATUS,
    STATUS_MISMATCH,
    VIEW_MISMATCH,
    WALLET_VIEW,
)
from lnchaos.checker.offline import judge_dir
from lnchaos.checker.reconciliation import combine_inconsistencies, reconciliation_problems
from lnchaos.checker.word import books_kind, fee_kind, status_kind, view_kind

PAID = {"status": "succeeded", "fee_msat": 1_500}
FAILED = {"status": "failed", "fee_msat": 0}
NEVER_SEEN = {"status": "unknown", "fee_msat": None}
IN_FLIGHT = {"status": "in_flight", "fee_msat": 0}


def test_every_new_kind_has_its_text():
    for kind in (STATUS_MISMATCH, FEE_MISMATCH, VIEW_MISMATCH, BOOKS_MISMATCH):
        assert kind in KINDS and KIND_TEXT[kind]


# ---- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, node, kind",
    [
        ("succeeded", PAID, None),
        ("failed", FAILED, None),
        ("failed", NEVER_SEEN, None),
        ("succeeded", FAILED, STATUS_MISMATCH),  # answered SUCCESS, refunded (Blink #4022)
        ("succeeded", NEVER_SEEN, STATUS_MISMATCH),
        ("failed", PAID, STATUS_MISMATCH),  # cancelled after it succeeded (BTCPay #6365)
        ("pending", PAID, None),  # not final at the wallet: `unresolved` speaks, not this rule
        ("succeeded", IN_FLIGHT, None),  # not final at the node
        (None, PAID, None),
    ],
)
def test_the_reported_status_is_succeeded_exactly_when_the_node_paid(status, node, kind):
    assert status_kind(status=status, node=node) == kind


# ---- fee ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, fee_msat, node, kind",
    [
        ("succeeded", 1_500, PAID, None),
        ("succeeded", 2_000, PAID, FEE_MISMATCH),  # e.g. the fee limit reported
        ("succeeded", 1_000, PAID, FEE_MISMATCH),  # the msat dropped (fee in sat)
        ("succeeded", None, PAID, FEE_MISMATCH),  # paid, and no fee said
        ("succeeded", "1500", PAID, FEE_MISMATCH),  # not an integer
        ("failed", 0, FAILED, None),
        ("failed", None, FAILED, None),  # absent with a failure
        ("failed", 1_500, FAILED, FEE_MISMATCH),  # a fee for a payment never made
        ("failed", 1_500, PAID, None),  # the status is the finding, not its fee
        ("succeeded", 2_000, FAILED, None),
        ("pending", 7, PAID, None),
    ],
)
def test_the_reported_fee_is_the_nodes_fee_when_paid_else_none(status, fee_msat, node, kind):
    assert fee_kind(status=status, fee_msat=fee_msat, node=node) == kind


# ---- the view while pending -----------------------------------------------------------------

BASE_MSAT = 10_000_000
AMOUNT_MSAT = 1_000_000
RESERVE_MSAT = 12_000  # 2000 + 1 %


def open_payout(node: dict, *, held: bool = True, reserve: int | None = RESERVE_MSAT) -> dict:
    return {"amount_msat": AMOUNT_MSAT, "fee_reserve_msat": reserve, "node": node, "held": held}


def view(balance_msat, reserved_msat, *payouts: dict) -> str | None:
    return view_kind(
        base_msat=BASE_MSAT,
        balance_msat=balance_msat,
        reserved_msat=reserved_msat,
        open_payouts=list(payouts),
    )


HELD_MSAT = AMOUNT_MSAT + RESERVE_MSAT


@pytest.mark.parametrize("node", [PAID, FAILED])
def test_a_held_payout_shown_apart_or_off_the_balance_passes(node):
    # lnchaos: held apart in reserved_msat; LNbits: off the balance, nothing apart
    assert view(BASE_MSAT - HELD_MSAT, HELD_MSAT, open_payout(node)) is None
    assert view(BASE_MSAT - HELD_MSAT, 0, open_payout(node)) is None


def test_held_money_shown_as_spendable_is_a_view_mismatch():
    # reserved 0 and the balance not lowered: what the payment will take looks spendable
    assert view(BASE_MSAT, 0, open_payout(PAID)) == VIEW_MISMATCH
    # held, but less than the node will take (amount + its fee)
    assert view(BASE_MSAT - AMOUNT_MSAT - 1_000, AMOUNT_MSAT + 1_000, open_payout(PAID))
    # shown twice: held apart and still in the balance
    assert view(BASE_MSAT, HELD_MSAT, open_payout(PAID)) == VIEW_MISMATCH


def test_more_held_than_the_fee_reserve_allows_is_a_view_mismatch_when_the_reserve_is_known():
    over = HELD_MSAT + 5_000
    assert view(BASE_MSAT - over, over, open_payout(PAID)) == VIEW_MISMATCH
    # an adapter that states no reserve (contract v1): only the lower bound is judged
    assert view(BASE_MSAT - over, over, open_payout(PAID, reserve=None)) is None


def test_a_payout_settled_before_the_read_may_be_shown_settled_unless_known_pending():
    cost = AMOUNT_MSAT + PAID["fee_msat"]
    # not known pending after the read: settled before it is a right view
    assert view(BASE_MSAT - cost, 0, open_payout(PAID, held=False)) is None
    assert view(BASE_MSAT, 0, open_payout(FAILED, held=False)) is None
    # pending on both sides of the read: it must show held (off the balance at least by what
    # the node takes: the same view, by the user's spendable balance, as a settled one)
    assert view(BASE_MSAT, 0, open_payout(FAILED)) == VIEW_MISMATCH
    assert view(BASE_MSAT - cost, 0, open_payout(PAID)) is None


def test_two_open_payouts_any_of_them_settled():
    cost = AMOUNT_MSAT + PAID["fee_msat"]
    one, other = open_payout(PAID, held=False), open_payout(PAID, held=True)
    assert view(BASE_MSAT - cost - HELD_MSAT, HELD_MSAT, one, other) is None
    assert view(BASE_MSAT - 2 * HELD_MSAT, 2 * HELD_MSAT, one, other) is None
    # one of the two missing from the view (neither held nor settled)
    assert view(BASE_MSAT - HELD_MSAT, HELD_MSAT, one, other) == VIEW_MISMATCH
    assert view(BASE_MSAT - cost, 0, one, other) == VIEW_MISMATCH  # the held one shown spent


def test_a_view_without_a_readable_balance_or_below_zero_is_a_mismatch():
    assert view(None, 0, open_payout(PAID)) == VIEW_MISMATCH
    assert view(-1, HELD_MSAT, open_payout(PAID)) == VIEW_MISMATCH


# ---- the books ------------------------------------------------------------------------------


def books(paid_out_msat: int, fees_msat: int, *, not_final: int = 0) -> dict:
    return {
        "ledger": {"paid_out_msat": paid_out_msat, "fees_msat": fees_msat, "payouts": 3},
        "node": {"sent_msat": 3_000_000, "fees_msat": 4_500, "payments": 3, "in_flight": 0},
        "not_final": not_final,
    }


def test_books_in_the_right_accounts_pass_and_a_misplaced_entry_fails():
    assert books_kind(books(3_000_000, 4_500)) is None
    # the fee booked as paid out: the total is right, the split is not
    assert books_kind(books(3_004_500, 0)) == BOOKS_MISMATCH
    assert books_kind(books(2_999_000, 5_500)) == BOOKS_MISMATCH
    # not comparable while payouts of the run are not final; no books given: not judged
    assert books_kind(books(3_004_500, 0, not_final=1)) is None
    assert books_kind(None) is None


def test_the_verdict_counts_a_books_mismatch_with_both_sides():
    nothing = {"count": 0, "amount_msat": 0}
    reconciliation = {
        "now_ms": 1_700_000_000_000,
        "charged_not_paid": nothing,
        "paid_not_charged": nothing,
        "unresolved": nothing,
        "pending": 0,
        "conserved": True,
        "books": books(3_004_500, 0),
    }
    found = combine_inconsistencies({}, reconciliation)
    example = found[BOOKS_MISMATCH]["examples"][0]
    assert found[BOOKS_MISMATCH]["count"] == 1
    assert example["ledger"]["paid_out_msat"] == 3_004_500 and example["node"]["sent_msat"]
    assert (example["paid_out_diff_msat"], example["fees_diff_msat"]) == (4_500, -4_500)
    assert reconciliation_problems(reconciliation) == ["books mismatch"]


# ---- the fold, live and offline -------------------------------------------------------------


def payout_check(status: str, fee_msat, node: dict, actual_msat: int) -> dict:
    return {
        "type": history.CHECK,
        "t": 2.0,
        "name": "balance_after_success" if status == "succeeded" else "balance_after_failure",
        "wallet": "w1",
        "hash": "h1",
        "payout_id": "p1",
        "phase": "normal",
        "in": {
            "before_msat": BASE_MSAT,
            "amount_msat": AMOUNT_MSAT,
            "node": node,
            "actual_msat": actual_msat,
            "retried": False,
        },
        "payout_status": status,
        "word": {"status": status, "fee_msat": fee_msat, "source": "answer"},
    }


def view_check(balance_msat: int, reserved_msat: int) -> dict:
    return {
        "type": history.CHECK,
        "t": 3.0,
        "name": WALLET_VIEW,
        "wallet": "w2",
        "hash": "h2",
        "payout_id": "p2",
        "phase": "normal",
        "view": {
            "base_msat": BASE_MSAT,
            "balance_msat": balance_msat,
            "reserved_msat": reserved_msat,
            "open_payouts": [{"payout_id": "p2", **open_payout(PAID)}],
        },
    }


def test_the_fold_judges_the_word_beside_the_balance():
    tally = history.Tally("r")
    # the money is right (refunded), the word is not: one finding, the balance check passes
    assert history.apply(tally, payout_check("succeeded", 0, FAILED, BASE_MSAT)) is None
    assert tally.kinds[STATUS_MISMATCH]["count"] == 1
    example = tally.kinds[STATUS_MISMATCH]["examples"][0]
    assert (example["reported_status"], example["node_status"]) == ("succeeded", "failed")
    assert tally.checks[REPORTED_STATUS] == [0, 1] and tally.checks[REPORTED_FEE] == [1, 0]
    assert tally.checks["balance_after_success"] == [1, 0]
    assert tally.drift_msat == 0  # what was said moved no money
    # a history written before the word was recorded: judged as it was
    old = payout_check("succeeded", 0, FAILED, BASE_MSAT)
    del old["word"]
    tally = history.Tally("r")
    history.apply(tally, old)
    assert not tally.kinds and REPORTED_STATUS not in tally.checks


def run_with(tmp_path, users: list[dict], reconciliation: dict):
    # the reconciliation's whole promised shape (a partial one is itself a finding: answers.py)
    nothing = {"count": 0, "amount_msat": 0}
    promised = {"now_ms": 8_000, "pending": 0, "conserved": True}
    promised.update(charged_not_paid=nothing, paid_not_charged=nothing, unresolved=nothing)
    master = [
        {"type": history.RECONCILIATION, "t": 8.0, "answer": {**promised, **reconciliation}},
        {"type": history.AUDIT_CLOSE, "t": 8.5},
        end_record(),
    ]
    payout = {"type": history.PAYOUT, "t": 1.1, "phase": "normal", "outcome": "succeeded"}
    return write_history(tmp_path / "history", [payout, *users], master).parent


def test_lnchaos_check_judges_the_word_the_view_and_the_books_as_the_live_run(tmp_path):
    users = [
        payout_check("succeeded", 2_000, PAID, BASE_MSAT - AMOUNT_MSAT - 1_500),  # fee wrong
        view_check(BASE_MSAT, 0),  # held money shown spendable
    ]
    live = history.Recorder(history.Tally("r"))
    for record in users:
        live.emit(dict(record))
    report = judge_dir(run_with(tmp_path, users, {"conserved": True, "books": books(3_004_500, 0)}))
    assert (report["verdict"], report["exit_code"]) == ("fail", EXIT_INCONSISTENT)
    found = report["inconsistencies"]
    for kind in (FEE_MISMATCH, VIEW_MISMATCH):
        assert found[kind]["count"] == live.tally.kinds[kind]["count"] == 1, kind
        offline_example = {k: v for k, v in found[kind]["examples"][0].items() if k != "witness"}
        assert offline_example == live.tally.kinds[kind]["examples"][0]
    assert found[BOOKS_MISMATCH]["count"] == 1
    assert STATUS_MISMATCH not in found
    assert report["checks"]["by_name"][WALLET_VIEW] == {"passed": 0, "failed": 1}


def test_a_truthful_wallet_passes_offline(tmp_path):
    users = [
        payout_check("succeeded", 1_500, PAID, BASE_MSAT - AMOUNT_MSAT - 1_500),
        view_check(BASE_MSAT - HELD_MSAT, HELD_MSAT),
    ]
    folder = run_with(tmp_path, users, {"conserved": True, "books": books(3_000_000, 4_500)})
    report = judge_dir(folder)
    assert (report["verdict"], report["exit_code"]) == ("pass", EXIT_PASS), report["reason"]
    assert report["checks"]["by_name"][REPORTED_FEE] == {"passed": 1, "failed": 0}


def test_a_round_of_payouts_answered_final_before_the_read_counts_them_settled():
    cost = AMOUNT_MSAT + PAID["fee_msat"]
    done = {**open_payout(PAID, held=False), "settled": True}
    pending = open_payout(PAID)
    assert view(BASE_MSAT - cost - HELD_MSAT, HELD_MSAT, done, pending) is None
    # a payout answered final cannot be shown held (its money back in play, or still reserved)
    assert view(BASE_MSAT - 2 * HELD_MSAT, 2 * HELD_MSAT, done, pending) == VIEW_MISMATCH
    # the pending one's money shown spendable beside the settled one
    assert view(BASE_MSAT - cost, 0, done, pending) == VIEW_MISMATCH


def test_a_word_recorded_alone_is_judged_by_its_own_node():
    tally = history.Tally("r")
    record = {
        "type": history.CHECK,
        "name": REPORTED_STATUS,
        "wallet": "w3",
        "hash": "h3",
        "payout_id": "p3",
        "phase": "normal",
        "node": PAID,
        "word": {"status": "failed", "fee_msat": 0, "source": "answer"},
    }
    assert history.apply(tally, record) is None
    assert tally.kinds[STATUS_MISMATCH]["count"] == 1
    assert tally.checks[REPORTED_STATUS] == [0, 1] and tally.checks[REPORTED_FEE] == [1, 0]


def test_the_final_audit_judges_the_status_its_payout_read_gave():
    from lnchaos.checker.audit import Audit
    from lnchaos.checker.rules import audit_example, audit_result

    entry = {"wallet_id": "w", "expected_msat": BASE_MSAT, "payout_id": "p", "payment_hash": "h",
             "amount_msat": AMOUNT_MSAT, "phase": "normal", "retried": False,
             "outcome": "pending", "reason": "not_final_within_bound"}  # fmt: skip
    wallet = {"balance_msat": BASE_MSAT - AMOUNT_MSAT - 1_500, "reserved_msat": 0}
    for payout_status, found in (("succeeded", 0), ("failed", 1)):
        payout = {"status": payout_status, "fee_msat": 1_500}
        audit = Audit(entries=1)
        kind = audit_result(entry, PAID, wallet, payout)
        audit.add(entry, kind, audit_example(entry, PAID, wallet, payout, kind))
        assert kind is None and audit.judged == 1
        assert audit.kinds.get(STATUS_MISMATCH, {}).get("count", 0) == found
    # a payout its payer judged already: only its wallet is audited again
    audit = Audit(entries=1)
    again = {**entry, "reason": "wallet_end_of_use"}
    audit.add(again, None, audit_example(again, PAID, wallet, payout, None))
    assert not audit.kinds


@pytest.mark.parametrize(
    "statuses, node, kind",
    [
        (["failed", "succeeded"], PAID, None),  # one attempt paid, the other refused or failed
        (["succeeded", "succeeded"], PAID, STATUS_MISMATCH),  # two receipts for one payment
        (["failed", "failed"], PAID, STATUS_MISMATCH),  # paid, and nobody told
        (["failed", "pending"], PAID, None),  # the pending one may be the one paid
        (["failed", "failed"], FAILED, None),
        (["succeeded"], FAILED, STATUS_MISMATCH),
        (["succeeded", "failed"], IN_FLIGHT, None),
    ],
)
def test_payouts_of_one_invoice_say_succeeded_once_at_most_and_only_if_paid(statuses, node, kind):
    from lnchaos.checker.word import payout_word_kinds, shared_status_kind

    assert shared_status_kind(statuses=statuses, node=node) == kind
    said = [
        {"status": s, "fee_msat": PAID["fee_msat"] if s == "succeeded" else 0} for s in statuses
    ]
    assert payout_word_kinds({"payouts": said}, node)[REPORTED_STATUS] == kind


def test_the_one_payout_of_a_shared_invoice_that_says_paid_reports_the_nodes_fee():
    from lnchaos.checker.word import payout_word_kinds

    said = [{"status": "failed", "fee_msat": 0}, {"status": "succeeded", "fee_msat": 9}]
    assert payout_word_kinds({"payouts": said}, PAID) == {
        REPORTED_STATUS: None,
        REPORTED_FEE: FEE_MISMATCH,
    }
