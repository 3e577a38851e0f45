"""The payers' node-truth batcher (locustfiles/truth_batcher.py), without a run: one lookup
serves many waiting payers, batches stay within the route's bound, every wait is bounded, and a
lookup that fails leaves each waiter's check unjudged (handed on), never passed."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import gevent
import pytest

from locustfiles import payout_check, truth_batcher
from locustfiles.payout_check import SentPayout
from locustfiles.truth_batcher import TruthBatcher
from locustfiles.wallet_client import Invoice, PayoutResult, Wallet, WalletClient
from target.node.network_http import LOOKUP_MAX_HASHES

JOIN_TIMEOUT_S = 10.0


@pytest.fixture(autouse=True)
def fresh_loop_time() -> None:
    # the hub's clock is cached and only moves while its loop runs: after minutes of other
    # tests without gevent, a timer set now would count from a stale time and fire at once
    gevent.get_hub().loop.update_now()


def h(i: int) -> str:
    return hashlib.sha256(f"payout {i}".encode()).hexdigest()


def record(payment_hash: str, status: str = "succeeded", fee_msat: int = 7) -> dict[str, Any]:
    return {"payment_hash": payment_hash, "status": status, "fee_msat": fee_msat}


class FakeNode:
    """A node client: answers lookups (or fails them as told), counts what it was asked."""

    def __init__(self, answer: str = "ok", delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.lookups: list[list[str]] = []
        self.gets: list[str] = []

    def lookup_node_payments(self, payment_hashes: list[str]) -> list[dict[str, Any]] | None:
        self.lookups.append(list(payment_hashes))
        if self.delay_s:
            gevent.sleep(self.delay_s)
        if self.answer == "none":
            return None
        if self.answer == "raise":
            raise ConnectionError("node gone")
        if self.answer == "short":
            return [record(x) for x in payment_hashes[:-1]]
        if self.answer == "shuffled":
            return [record(x) for x in reversed(payment_hashes)]
        return [record(x, fee_msat=int(x[:4], 16)) for x in payment_hashes]

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        self.gets.append(payment_hash)
        return record(payment_hash)


def ask_all(batcher: TruthBatcher, node: FakeNode, hashes: list[str], timeout_s: float = 5.0):
    waiters = [gevent.spawn(batcher.lookup, node, x, timeout_s) for x in hashes]
    done = gevent.joinall(waiters, timeout=JOIN_TIMEOUT_S)
    assert len(done) == len(waiters)
    return [w.value for w in waiters]


def test_the_bound_is_the_routes() -> None:
    assert truth_batcher.LOOKUP_MAX_HASHES == LOOKUP_MAX_HASHES


def test_one_lookup_serves_many_waiters_each_its_own_record() -> None:
    batcher, node = TruthBatcher(), FakeNode()
    hashes = [h(i) for i in range(40)]
    records = ask_all(batcher, node, hashes)
    assert len(node.lookups) == 1 and sorted(node.lookups[0]) == sorted(hashes)
    assert node.gets == []
    assert [r["payment_hash"] for r in records] == hashes
    assert [r["fee_msat"] for r in records] == [int(x[:4], 16) for x in hashes]
    assert (batcher.batches, batcher.hashes, batcher.failed_batches) == (1, 40, 0)


def test_batches_gather_while_a_lookup_is_out_and_stay_bounded() -> None:
    batcher, node = TruthBatcher(max_batch=16, max_in_flight=1), FakeNode(delay_s=0.05)
    first = gevent.spawn(batcher.lookup, node, h(0))
    gevent.sleep(0.01)  # let the first lookup go out alone
    assert node.lookups == [[h(0)]]
    hashes = [h(i) for i in range(1, 41)]
    records = ask_all(batcher, node, hashes)
    first.join(timeout=JOIN_TIMEOUT_S)
    assert first.value is not None and first.value["payment_hash"] == h(0)
    assert [r["payment_hash"] for r in records] == hashes
    sizes = [len(batch) for batch in node.lookups[1:]]
    assert sizes == [16, 16, 8]
    assert batcher.senders == 0 and batcher.waiting == []


def test_a_failing_lookup_answers_every_waiter_none() -> None:
    for answer in ("none", "raise", "short", "shuffled"):
        batcher, node = TruthBatcher(), FakeNode(answer=answer)
        records = ask_all(batcher, node, [h(i) for i in range(10)])
        assert records == [None] * 10, answer
        assert batcher.failed_batches == (1 if answer != "shuffled" else 0)
        assert node.gets == []  # no silent second source


def test_a_waiter_waits_a_bounded_time() -> None:
    batcher, node = TruthBatcher(), FakeNode(delay_s=2.0)
    started = time.monotonic()
    records = ask_all(batcher, node, [h(1), h(2)], timeout_s=0.1)
    assert records == [None, None]
    assert time.monotonic() - started < 1.5


class FakeClient(WalletClient):
    """lnchaos's client with the node faked: the payer's one look goes through the batcher."""

    def __init__(self, node: FakeNode) -> None:
        super().__init__(session=None, request_event=None)  # type: ignore[arg-type]
        self.node = node

    def lookup_node_payments(self, payment_hashes: list[str]) -> list[dict[str, Any]] | None:
        return self.node.lookup_node_payments(payment_hashes)

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        return self.node.get_node_payment(payment_hash)


def sent_payout(i: int) -> SentPayout:
    first = PayoutResult(
        kind="ok",
        outcome="succeeded",
        http_status=200,
        latency_ms=1.0,
        payout_id=f"p{i}",
        payout_status="succeeded",
    )
    return SentPayout(
        wallet=Wallet(f"w{i}", "k", 1_000_000),
        expected_msat=1_000_000,
        invoice=Invoice("lnbcrt1", h(i), 10_000),
        first=first,
        retry=None,
        phase="normal",
        started=0.0,
        entry=None,
    )


def test_the_payers_look_resolves_through_the_batch_or_not_at_all(monkeypatch: Any) -> None:
    node = FakeNode()
    monkeypatch.setattr(truth_batcher, "TRUTH", TruthBatcher())
    looks = [
        gevent.spawn(payout_check.resolve, FakeClient(node), sent_payout(i), 0.0, batched=True)
        for i in range(12)
    ]
    gevent.joinall(looks, timeout=JOIN_TIMEOUT_S)
    assert len(node.lookups) == 1 and node.gets == []
    for i, look in enumerate(looks):
        assert look.value == ("succeeded", record(h(i), fee_msat=int(h(i)[:4], 16)))
    # a failing lookup: no payer gets a truth to judge by (not final: handed on), none passes
    failing = FakeNode(answer="raise")
    monkeypatch.setattr(truth_batcher, "TRUTH", TruthBatcher())
    looks = [
        gevent.spawn(payout_check.resolve, FakeClient(failing), sent_payout(i), 0.0, batched=True)
        for i in range(12)
    ]
    gevent.joinall(looks, timeout=JOIN_TIMEOUT_S)
    assert [look.value for look in looks] == [None] * 12
    assert failing.gets == []
