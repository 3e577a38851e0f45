"""Rule 4 of issue 25: a traffic round of unknown outcome goes to the final audit, whatever its
class. The audit's two entry shapes for rounds no single-wallet entry can say
(lnchaos/checker/rules.py): a group of wallets that paid ONE invoice (the shared-invoice class),
judged together, and a round of bad inputs (the edge class), each due a refusal."""

from __future__ import annotations

import json

import pytest

from lnchaos.checker import history, rules
from lnchaos.checker.kinds import (
    ACCEPTED_BAD_INPUT,
    BALANCE_MISMATCH,
    CHARGED_NOT_PAID,
    DOUBLE_CHARGE,
    MALFORMED_ANSWER,
    PAID_NOT_CHARGED,
    UNRESOLVED,
)

FUNDING_MSAT = 10_000_000
AMOUNT_MSAT = 100_000
FEE_MSAT = 1_500
COST_MSAT = AMOUNT_MSAT + FEE_MSAT
HASH = "ab" * 32


def pair_entry() -> dict:
    return rules.audit_group_entry(
        wallets=[("w1", "key-1", FUNDING_MSAT), ("w2", "key-2", FUNDING_MSAT)],
        payment_hash=HASH,
        amount_msat=AMOUNT_MSAT,
        phase="spike",
    )


def node(status: str) -> dict:
    return {"status": status, "fee_msat": FEE_MSAT if status == "succeeded" else 0}


def view(balance_msat: int, reserved_msat: int = 0) -> dict:
    return {"balance_msat": balance_msat, "reserved_msat": reserved_msat}


def views(charged_1: int, charged_2: int, reserved_msat: int = 0) -> dict:
    return {
        "w1": view(FUNDING_MSAT - charged_1, reserved_msat),
        "w2": view(FUNDING_MSAT - charged_2),
    }


def judge_pair(status: str, wallet_views: dict | None, error: str | None = None) -> str | None:
    reads = {"node": node(status), "wallet_view": None, "payout_view": None, "error": error}
    return rules.audit_of(pair_entry(), {**reads, "wallet_views": wallet_views})


def test_a_group_entry_names_the_pair_and_their_total():
    entry = pair_entry()
    assert entry["wallet_id"] == "w1+w2" and entry["expected_msat"] == 2 * FUNDING_MSAT
    assert [m["wallet_id"] for m in entry["wallets"]] == ["w1", "w2"]
    assert entry["retried"] is True and "api_key" not in entry
    # the history never carries a key, the members' neither (a history can be shared)
    line = history.line({"type": history.AUDIT_ENTRY, "t": 1.0, "entry": entry})
    assert "key-1" not in line and "key-2" not in line
    assert json.loads(line)["entry"]["wallets"][0] == {
        "wallet_id": "w1",
        "expected_msat": FUNDING_MSAT,
    }
    assert entry["wallets"][0]["api_key"] == "key-1"  # the live entry keeps it: the audit reads


@pytest.mark.parametrize(
    ("status", "charged", "expected"),
    [
        # the node paid: one wallet charged its cost, the other nothing, whichever
        ("succeeded", (COST_MSAT, 0), None),
        ("succeeded", (0, COST_MSAT), None),
        # both charged for one payment: a double charge; none charged: paid, never charged
        ("succeeded", (COST_MSAT, COST_MSAT), DOUBLE_CHARGE),
        ("succeeded", (0, 0), PAID_NOT_CHARGED),
        # the sum is right, but not one charge of one wallet
        ("succeeded", (COST_MSAT // 2, COST_MSAT - COST_MSAT // 2), BALANCE_MISMATCH),
        ("succeeded", (COST_MSAT + 7, -7), BALANCE_MISMATCH),
        # not paid (failed, or never sent): nobody charged
        ("failed", (0, 0), None),
        ("unknown", (0, 0), None),
        ("failed", (AMOUNT_MSAT, 0), CHARGED_NOT_PAID),
        ("failed", (AMOUNT_MSAT, -AMOUNT_MSAT), BALANCE_MISMATCH),
        ("failed", (0, -5), BALANCE_MISMATCH),
    ],
)
def test_a_pair_is_judged_together(status, charged, expected):
    assert judge_pair(status, views(*charged)) == expected


def test_a_pair_not_final_or_not_read_is_unresolved_and_a_bad_view_malformed():
    assert judge_pair("in_flight", views(0, 0)) == UNRESOLVED
    assert judge_pair("succeeded", views(0, 0, reserved_msat=COST_MSAT)) == UNRESOLVED
    assert judge_pair("succeeded", {"w1": view(FUNDING_MSAT - COST_MSAT)}) == UNRESOLVED
    assert judge_pair("succeeded", None) == UNRESOLVED
    assert judge_pair("succeeded", views(COST_MSAT, 0), error="HTTP 500") == UNRESOLVED
    assert rules.audit_of(pair_entry(), {"node": None, "wallet_views": views(0, 0)}) == UNRESOLVED
    no_reserve = {"w1": {"balance_msat": FUNDING_MSAT}, "w2": view(FUNDING_MSAT - COST_MSAT)}
    assert judge_pair("succeeded", no_reserve) == MALFORMED_ANSWER


def test_the_live_shared_check_and_the_audit_share_one_rule():
    """traffic.py's shared check calls rules.shared_kind with the charges it read."""
    paid, cost_msat = rules.payment_cost(node("succeeded"), AMOUNT_MSAT)
    assert rules.shared_kind([COST_MSAT, 0], paid, cost_msat) is None
    assert rules.shared_kind([COST_MSAT, COST_MSAT], paid, cost_msat) == DOUBLE_CHARGE
    paid, cost_msat = rules.payment_cost(node("failed"), AMOUNT_MSAT)
    assert rules.shared_kind([0, 0], paid, cost_msat) is None


def test_a_group_example_sums_the_pair_and_shows_each_charge():
    entry, wallet_views = pair_entry(), views(0, 0)
    reads = {"node": node("succeeded"), "error": None, "wallet_views": wallet_views}
    kind = rules.audit_of(entry, reads)
    example = rules.audit_example_of(entry, reads, kind, 5.0)
    assert example["kind"] == PAID_NOT_CHARGED and example["source"] == "audit"
    assert example["wallet_id"] == "w1+w2" and example["payment_hash"] == HASH
    assert example["expected_msat"] == 2 * FUNDING_MSAT - COST_MSAT
    assert example["actual_msat"] == 2 * FUNDING_MSAT and example["diff_msat"] == COST_MSAT
    assert example["charged_msat"] == [0, 0] and example["reserved_msat"] == 0
    assert "key-1" not in json.dumps(example) and "key-2" not in json.dumps(example)
    malformed = {"w1": {"balance_msat": FUNDING_MSAT}, "w2": view(FUNDING_MSAT)}
    reads = {**reads, "wallet_views": malformed}
    example = rules.audit_example_of(entry, reads, rules.audit_of(entry, reads), 5.0)
    assert example["actual_msat"] == 2 * FUNDING_MSAT and example["reserved_msat"] is None
    assert any(p.startswith("w1: wallet view:") for p in example["problems"])


# ---- a round of bad inputs (the edge class) ---------------------------------------------------

OTHER = "cd" * 32


def edge_entry() -> dict:
    return rules.audit_bad_input_entry(
        wallet_id="e1",
        api_key="key-e",
        expected_msat=FUNDING_MSAT,
        invoices=[(HASH, AMOUNT_MSAT), (OTHER, 0)],
        phase="normal",
    )


def judge_edge(first: str, other: str | None, wallet: dict | None) -> str | None:
    reads = {"node": node(first), "wallet_view": wallet, "error": None}
    if other is not None:
        reads["also_nodes"] = {OTHER: node(other)}
    return rules.audit_of(edge_entry(), reads)


@pytest.mark.parametrize(
    ("first", "other", "wallet", "expected"),
    [
        # every one refused: the node never saw any, the wallet holds its funding
        ("unknown", "unknown", view(FUNDING_MSAT), None),
        # a refusal that went out (paid, failed or still in flight) moved something
        ("succeeded", "unknown", view(FUNDING_MSAT - COST_MSAT), ACCEPTED_BAD_INPUT),
        ("succeeded", "unknown", view(FUNDING_MSAT), ACCEPTED_BAD_INPUT),
        ("unknown", "failed", view(FUNDING_MSAT), ACCEPTED_BAD_INPUT),
        ("unknown", "in_flight", view(FUNDING_MSAT), ACCEPTED_BAD_INPUT),
        # money held at the end for what was due a refusal
        ("unknown", "unknown", view(FUNDING_MSAT - COST_MSAT, COST_MSAT), ACCEPTED_BAD_INPUT),
        # nothing reached the node, yet the balance moved
        ("unknown", "unknown", view(FUNDING_MSAT - 1), CHARGED_NOT_PAID),
        ("unknown", "unknown", view(FUNDING_MSAT + 1), BALANCE_MISMATCH),
        # not read: never a guess
        ("unknown", None, view(FUNDING_MSAT), UNRESOLVED),
        ("unknown", "unknown", None, UNRESOLVED),
        ("unknown", "unknown", {"balance_msat": FUNDING_MSAT}, MALFORMED_ANSWER),
    ],
)
def test_a_bad_input_round_must_have_moved_nothing(first, other, wallet, expected):
    assert judge_edge(first, other, wallet) == expected


def test_a_bad_input_example_expects_the_funding_and_shows_every_invoice():
    entry = edge_entry()
    assert entry["bad_input"] is True and entry["also"] == [
        {"payment_hash": OTHER, "amount_msat": 0}
    ]
    reads = {
        "node": node("succeeded"),
        "wallet_view": view(FUNDING_MSAT - COST_MSAT),
        "also_nodes": {OTHER: node("unknown")},
    }
    example = rules.audit_example_of(entry, reads, ACCEPTED_BAD_INPUT, 1.0)
    # not "funding less what the node paid": none of it was due to be paid
    assert example["expected_msat"] == FUNDING_MSAT and example["diff_msat"] == -COST_MSAT
    assert example["node_status"] == "succeeded,unknown"
    assert "key-e" not in json.dumps(example)


def test_the_live_edge_check_and_the_audit_share_one_rule():
    """traffic.py's edge check calls rules.bad_input_kind; only it knows the answers."""
    assert rules.bad_input_kind(seen=0, reserved_msat=0, diff_msat=0) is None
    assert rules.bad_input_kind(seen=0, reserved_msat=0, diff_msat=0, wrong_answers=True) == (
        ACCEPTED_BAD_INPUT
    )
    assert rules.bad_input_kind(seen=1, reserved_msat=0, diff_msat=-5) == ACCEPTED_BAD_INPUT
    assert rules.bad_input_kind(seen=0, reserved_msat=0, diff_msat=-5) == CHARGED_NOT_PAID


def test_a_single_wallet_entry_is_judged_as_before():
    single = rules.audit_entry(
        wallet_id="w", api_key="k", expected_msat=FUNDING_MSAT, payment_hash=HASH,
        amount_msat=AMOUNT_MSAT, phase="normal",
    )  # fmt: skip
    reads = {"node": node("succeeded"), "wallet_view": view(FUNDING_MSAT), "error": None}
    assert rules.audit_of(single, reads) == PAID_NOT_CHARGED
    reads["wallet_view"] = view(FUNDING_MSAT - COST_MSAT)
    assert rules.audit_of(single, reads) is None
