"""The payers: each owns a wallet, pays invoices of the node mock and checks its balance.

A payer tracks the balance it expects instead of reading it before each payout, so a payout
costs four requests (invoice, payout, the node's truth of it, wallet) plus the polls of a
timed-out one. After every
payout it checks the balance:
- succeeded -> lower by amount + the node's fee for that payment (`balance_after_success`): the fee
  and whether it was paid at all come from the node's truth (GET /node/payments/{hash}, the
  hash of the invoice the payer created), never from the wallet's answer;
- failed -> unchanged (`balance_after_failure`);
- timeout / pending -> poll the payout and the node (bounded) until both are final, then judge
  by the node's truth (`resolved_vs_node_truth`): paid -> lower by amount + the node's fee,
  not paid -> unchanged.
A share of payouts is sent twice with the same Idempotency-Key (`idempotent_retry`: same answer,
no second charge). After a failed check the expected balance is set to the actual one, so one
bug is counted once, not again at every later payout of the wallet.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any

import gevent
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

from locustfiles import checker
from locustfiles.checker import CHECK, CheckFailed
from locustfiles.telemetry import LOCAL
from locustfiles.wallet_client import (
    FINAL_NODE_STATUSES,
    FINAL_PAYOUT_STATUSES,
    Invoice,
    PayoutResult,
    Wallet,
    WalletClient,
)

log = logging.getLogger(__name__)

FUNDING_MSAT = 1_000_000_000  # 1M sat: about a thousand payouts before a new wallet
AMOUNT_MSAT_MIN = 10_000
AMOUNT_MSAT_MAX = 2_000_000
# Room for the wallet's fee reserve (2000 msat + 1 %) with a margin, so a payout is never
# refused for funds the payer thought it had.
RESERVE_MARGIN_PPM = 50_000
RESERVE_MARGIN_MSAT = 10_000
# Resolving a timed-out payout: the node holds it in flight for inflight_hold_ms (1.5 s by
# default) before its late outcome; bounded in time and in polls.
RESOLVE_TIMEOUT_S = 8.0
RESOLVE_POLL_INTERVAL_S = 0.2
RESOLVE_MAX_POLLS = 60

_user_numbers = itertools.count()


class PayerUser(FastHttpUser):
    wait_time = between(0.01, 0.1)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        seed = int(getattr(options, "seed", 1) or 1)
        self.retry_share = float(getattr(options, "retry_share", 0.1) or 0.0)
        self.checks_on = str(getattr(options, "checks", "on") or "on") != "off"
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        # every payer has its own stream, reproducible from --seed
        self.rng = random.Random(f"{seed}/{worker_index}/{next(_user_numbers)}")
        self.wallets = WalletClient(self.client, self.environment.events.request)
        self.wallet: Wallet | None = None
        self.expected_msat = 0

    @task
    def pay_one_invoice(self) -> None:
        phase = LOCAL.phase
        amount_msat = self.rng.randrange(AMOUNT_MSAT_MIN, AMOUNT_MSAT_MAX)
        retried = self.rng.random() < self.retry_share and self.checks_on
        key = f"{LOCAL.run_id}-{self.rng.getrandbits(96):024x}"
        if not self._ensure_funds(amount_msat):
            return
        invoice = self.wallets.create_invoice(amount_msat)
        if invoice is None:
            return
        assert self.wallet is not None
        first = self.wallets.pay(self.wallet, invoice, key, phase)
        LOCAL.tally.record_payout(phase, first.outcome, first.latency_ms)
        if first.kind == "error":
            self.wallet = None  # unknown state: continue with a fresh wallet
            return
        if not self.checks_on:
            # load only: what the payout cost is taken on trust (no balance read, no polls)
            paid_msat = invoice.amount_msat + first.fee_msat if first.kind == "ok" else 0
            self.expected_msat -= (
                paid_msat if first.kind in ("ok", "fail") else needed_msat(invoice.amount_msat)
            )
            return
        retry = None
        if retried:
            LOCAL.tally.retries += 1
            retry = self.wallets.pay(self.wallet, invoice, key, phase, retry=True)
        self._verify(first, retry, invoice, phase, time.perf_counter())

    def _ensure_funds(self, amount_msat: int) -> bool:
        if self.wallet is not None and self.expected_msat >= needed_msat(amount_msat):
            return True
        self.wallet = self.wallets.create_wallet(FUNDING_MSAT)
        if self.wallet is None:
            return False
        self.expected_msat = self.wallet.balance_msat
        return True

    def _verify(
        self,
        first: PayoutResult,
        retry: PayoutResult | None,
        invoice: Invoice,
        phase: str,
        started: float,
    ) -> None:
        assert self.wallet is not None
        node: dict[str, Any] | None = None
        if first.kind == "fail":
            name, paid, fee_msat = checker.BALANCE_AFTER_FAILURE, False, 0
            payout_status = "failed"
        else:
            # succeeded or timed out: judged by the node's truth of the invoice's payment hash
            resolved = self._resolve(first, invoice.payment_hash)
            if resolved is None:
                self._unresolved(first, phase, started)
                return
            payout_status, node = resolved
            name = (
                checker.BALANCE_AFTER_SUCCESS
                if first.kind == "ok"
                else checker.RESOLVED_VS_NODE_TRUTH
            )
            paid = node.get("status") == "succeeded"
            fee_msat = int(node.get("fee_msat") or 0) if paid else 0
        # the invoice's amount, not the wallet's echo of it: a wrong amount must show as drift
        amount_msat = invoice.amount_msat
        cost_msat = amount_msat + fee_msat
        expected_msat = self.expected_msat - (cost_msat if paid else 0)
        wallet = self.wallets.get_wallet(self.wallet)
        if wallet is None:
            self.wallet = None  # cannot check: start again with a fresh wallet
            return
        actual_msat = int(wallet["balance_msat"])
        diff_msat = actual_msat - expected_msat
        kind = checker.classify_balance(
            diff_msat=diff_msat,
            paid=paid,
            retried=retry is not None,
            cost_msat=cost_msat,
        )
        example = {
            "check": name,
            "kind": kind,
            "wallet_id": self.wallet.wallet_id,
            "payout_id": first.payout_id,
            "phase": phase,
            "amount_msat": amount_msat,
            "fee_msat": fee_msat,
            "expected_msat": expected_msat,
            "actual_msat": actual_msat,
            "diff_msat": diff_msat,
            "reserved_msat": wallet.get("reserved_msat"),
            "payout_status": payout_status,
            "node_status": node.get("status") if node else None,
            "t_unix": round(time.time(), 3),
        }
        self._fire_check(name, kind, example, started)
        if retry is not None:
            self._check_retry(first, retry, kind, example, started)
        # resynchronise: one bug is counted once, not at every later payout of this wallet
        self.expected_msat = actual_msat

    def _resolve(self, first: PayoutResult, payment_hash: str) -> tuple[str, dict[str, Any]] | None:
        """(final payout status, node's final payment) or None when not final within bounds.
        A succeeded payout is final already: one look at the node, as a rule."""
        assert self.wallet is not None
        payout_status = first.payout_status or ""
        node: dict[str, Any] = {}
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        for _ in range(RESOLVE_MAX_POLLS):
            if payout_status not in FINAL_PAYOUT_STATUSES and first.payout_id:
                payout = self.wallets.get_payout(self.wallet, first.payout_id)
                payout_status = str((payout or {}).get("status", payout_status))
            if node.get("status") not in FINAL_NODE_STATUSES:
                node = self.wallets.get_node_payment(payment_hash) or node
            if payout_status in FINAL_PAYOUT_STATUSES and node.get("status") in FINAL_NODE_STATUSES:
                return payout_status, node
            if time.monotonic() >= deadline:
                break
            gevent.sleep(RESOLVE_POLL_INTERVAL_S)
        return None

    def _unresolved(self, first: PayoutResult, phase: str, started: float) -> None:
        assert self.wallet is not None
        LOCAL.tally.left_to_reconciliation += 1
        message = (
            f"wallet {self.wallet.wallet_id} payout {first.payout_id}: not final within "
            f"{RESOLVE_TIMEOUT_S:.0f} s (phase {phase}); left to the final reconciliation"
        )
        self._fire(checker.RESOLVED_WITHIN_BOUND, CheckFailed(message), started)
        LOCAL.tally.record_check(checker.RESOLVED_WITHIN_BOUND, passed=False)
        # the expected balance of this wallet is unknown now: continue with a fresh one
        self.wallet = None

    def _check_retry(
        self,
        first: PayoutResult,
        retry: PayoutResult,
        balance_kind: str | None,
        example: dict[str, Any],
        started: float,
    ) -> None:
        same_answer = retry.http_status == first.http_status and retry.payout_id == first.payout_id
        if same_answer and balance_kind != checker.DOUBLE_CHARGE:
            self._fire(checker.IDEMPOTENT_RETRY, None, started)
            LOCAL.tally.record_check(checker.IDEMPOTENT_RETRY, passed=True)
            return
        LOCAL.tally.record_check(checker.IDEMPOTENT_RETRY, passed=False)
        if not same_answer:
            detail = (
                f"retry answered HTTP {retry.http_status} payout {retry.payout_id}, first "
                f"HTTP {first.http_status} payout {first.payout_id}"
            )
            mismatch = {**example, "check": checker.IDEMPOTENT_RETRY, "detail": detail}
            mismatch.update(kind=checker.IDEMPOTENCY_MISMATCH, diff_msat=0)
            LOCAL.tally.record_inconsistency(checker.IDEMPOTENCY_MISMATCH, 0, mismatch)
        else:
            # the double charge itself is counted once, by the balance check
            detail = "charged twice"
        self._fire(checker.IDEMPOTENT_RETRY, CheckFailed(_describe(example, detail)), started)

    def _fire_check(
        self, name: str, kind: str | None, example: dict[str, Any], started: float
    ) -> None:
        if kind is None:
            LOCAL.tally.record_check(name, passed=True)
            self._fire(name, None, started)
            return
        LOCAL.tally.record_check(name, passed=False)
        LOCAL.tally.record_inconsistency(kind, example["diff_msat"], example)
        self._fire(name, CheckFailed(_describe(example, kind)), started)

    def _fire(self, name: str, exception: Exception | None, started: float) -> None:
        self.environment.events.request.fire(
            request_type=CHECK,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )


def needed_msat(amount_msat: int) -> int:
    """What a payout of `amount_msat` may hold at most: amount + fee reserve, with a margin."""
    return amount_msat + amount_msat * RESERVE_MARGIN_PPM // 1_000_000 + RESERVE_MARGIN_MSAT


def _describe(example: dict[str, Any], what: str) -> str:
    return (
        f"{what}: wallet {example['wallet_id']} payout {example['payout_id']} "
        f"expected {example['expected_msat']} msat, actual {example['actual_msat']} msat "
        f"(payout {example['payout_status']}, node {example['node_status']})"
    )
