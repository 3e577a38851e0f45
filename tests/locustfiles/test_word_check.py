"""The wallet's word gathered on Locust's side (locustfiles/word_check.py, payout_check.resolve),
without a run: a payout read that says pending makes one wallet read, the next read says whether
the payout was still held after it, and the word of a final payout is its final read's, else its
answer's."""

from __future__ import annotations

from typing import Any

import gevent
import pytest

from locustfiles import payout_check, word_check
from locustfiles.payout_check import SentPayout
from locustfiles.wallet_client import Invoice, PayoutResult, Wallet

AMOUNT_MSAT = 1_000_000


@pytest.fixture(autouse=True)
def fresh_loop_time() -> None:
    gevent.get_hub().loop.update_now()


class FakeWallets:
    """An adapter whose payout reads, wallet reads and node reads come from lists, in order."""

    def __init__(self, payouts: list[str], nodes: list[str], view: dict[str, Any]) -> None:
        self.payouts, self.nodes, self.view = list(payouts), list(nodes), view
        self.calls: list[str] = []

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any]:
        self.calls.append("payout")
        status = self.payouts.pop(0) if len(self.payouts) > 1 else self.payouts[0]
        return {"status": status, "fee_msat": 1_500 if status == "succeeded" else 0}

    def get_node_payment(self, payment_hash: str) -> dict[str, Any]:
        self.calls.append("node")
        status = self.nodes.pop(0) if len(self.nodes) > 1 else self.nodes[0]
        return {"status": status, "fee_msat": 1_500 if status == "succeeded" else 0}

    def get_wallet(self, wallet: Wallet) -> dict[str, Any]:
        self.calls.append("wallet")
        return dict(self.view)

    @staticmethod
    def fee_reserve_msat(amount_msat: int) -> int:
        return 2_000 + amount_msat // 100


def sent_pending() -> SentPayout:
    first = PayoutResult("info", "pending", 202, 1.0, payout_id="p1", payout_status="pending")
    return SentPayout(
        wallet=Wallet("w1", "k", 10_000_000),
        expected_msat=10_000_000,
        invoice=Invoice("lnbcrt1", "h1", AMOUNT_MSAT),
        first=first,
        retry=None,
        phase="normal",
        started=0.0,
        entry=None,
        fee_reserve_msat=word_check.fee_reserve_of(FakeWallets, AMOUNT_MSAT),
    )


def test_a_pending_read_takes_one_view_and_the_next_read_says_it_was_held():
    view = {"balance_msat": 8_988_000, "reserved_msat": 1_012_000}
    wallets = FakeWallets(["pending", "pending", "succeeded"], ["in_flight", "succeeded"], view)
    sent = sent_pending()
    resolved = payout_check.resolve(wallets, sent, 5.0)
    assert resolved is not None and resolved[0] == "succeeded"
    assert wallets.calls.count("wallet") == 1
    assert wallets.calls.index("wallet") == wallets.calls.index("payout") + 1
    assert sent.pending.view == view and sent.pending.held is True
    assert sent.fee_reserve_msat == 12_000
    word = word_check.word_of(sent.first, sent.final_read)
    assert word == {"status": "succeeded", "fee_msat": 1_500, "source": "payout_read"}


def test_a_payout_final_at_the_read_after_the_view_is_not_known_held():
    view = {"balance_msat": 8_998_500, "reserved_msat": 0}
    wallets = FakeWallets(["pending", "succeeded"], ["succeeded"], view)
    sent = sent_pending()
    assert payout_check.resolve(wallets, sent, 5.0) is not None
    assert sent.pending.held is False


def test_a_payout_answered_final_takes_no_view_and_its_word_is_the_answer():
    first = PayoutResult("ok", "succeeded", 200, 1.0, payout_id="p1", payout_status="succeeded")
    first.fee_msat = 1_500
    wallets = FakeWallets(["succeeded"], ["succeeded"], {})
    sent = sent_pending()
    sent.first = first
    assert payout_check.resolve(wallets, sent, 0.0) is not None
    assert "wallet" not in wallets.calls and "payout" not in wallets.calls
    assert word_check.word_of(first, sent.final_read)["source"] == "answer"


def test_an_adapter_without_a_fee_reserve_gives_none():
    assert word_check.fee_reserve_of(object(), AMOUNT_MSAT) is None
