"""The payers: each owns a wallet, pays invoices of the node mock and checks its balance.

A payer tracks the balance it expects instead of reading it before each payout, so a payout
costs four requests (invoice, payout, the node's truth of it, wallet) plus the polls of a
timed-out one. After every
payout it checks the balance:
- succeeded -> lower by amount + the node's fee for that payment (`balance_after_success`): the fee
  and whether it was paid at all come from the node's truth (GET /node/payments/{hash}, the
  hash of the invoice the payer created), never from the wallet's answer;
- failed -> unchanged (`balance_after_failure`), when the node's truth says so: the wallet's
  502 is not taken on trust (a payment the node still has in flight is polled as a timeout is,
  and one the node paid must have been charged);
- timeout / pending -> poll the payout and the node (bounded) until both are final, then judge
  by the node's truth (`resolved_vs_node_truth`): paid -> lower by amount + the node's fee,
  not paid -> unchanged.
A share of payouts is sent twice with the same Idempotency-Key (`idempotent_retry`: same answer,
no second charge). After a failed check the expected balance is set to the actual one, so one
bug is counted once, not again at every later payout of the wallet.

A payout its payer cannot judge (not final within the users' bound, a payout request that failed
with its outcome unknown, a wallet that could not be read, a run that stopped the payer
mid-payout) is never left to the wallet's own reconciliation: the payer records an audit entry
(checker.audit_entry: the exact balance expected before it, the payout, the invoice) and takes
a fresh wallet; the master audits every entry at the end from the node's truth (checker.py).

With the crash fault on (--crash-every, locustfiles/crash.py), a payout request that got no
answer (the target was killed) has an unknown outcome: the payer sends it again with the same
Idempotency-Key until the restarted target answers (bounded: AFTER_CRASH_MAX_S; "request in
progress" is asked again too), and judges that answer as the first one (the payout counts as
retried, so a second charge is a double charge). Still no answer: the final audit's.

`--resolve-timeout-s` (hidden, default RESOLVE_TIMEOUT_S): the users' bound for a timed-out
payout to become final. Tests set it tiny to force every timed-out payout into the final audit.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any

import gevent
from configargparse import SUPPRESS
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

from locustfiles import checker
from locustfiles.checker import CheckFailed
from locustfiles.telemetry import LOCAL
from locustfiles.wallet_client import (
    FINAL_NODE_STATUSES,
    FINAL_PAYOUT_STATUSES,
    Invoice,
    PayoutResult,
    Wallet,
)
from locustfiles.wallets import wallet_api_for

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
RESOLVE_TIMEOUT_S_MAX = 600.0
RESOLVE_POLL_INTERVAL_S = 0.2
RESOLVE_MAX_POLLS = 60
# A payout that got no answer under the crash fault: asked again until the target is back.
AFTER_CRASH_MAX_S = 60.0
AFTER_CRASH_POLL_S = 0.25
AFTER_CRASH_MAX_POLLS = 400


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    # hidden: for tests that must force timed-out payouts into the final audit
    parser.add_argument(
        "--resolve-timeout-s",
        type=float,
        default=RESOLVE_TIMEOUT_S,
        include_in_web_ui=False,
        help=SUPPRESS,
    )


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
        # the wallet adapter of --wallet-api (locustfiles/wallets/): lnchaos or lnbits
        self.wallets = wallet_api_for(self)
        self.wallets.chaos_connection_errors = float(getattr(options, "crash_every", 0) or 0) > 0
        self.wallet: Wallet | None = None
        self.expected_msat = 0
        bound_s = float(getattr(options, "resolve_timeout_s", None) or RESOLVE_TIMEOUT_S)
        self.resolve_timeout_s = min(max(bound_s, 0.0), RESOLVE_TIMEOUT_S_MAX)
        # the payout in progress until a check judged it: what the final audit needs of it
        self.unjudged: dict[str, Any] | None = None

    def on_stop(self) -> None:
        # the run stopped this payer mid-payout: the payout is the final audit's to judge
        if self.unjudged is not None:
            self._abandon(checker.ABANDONED_STOPPED)

    @task
    def pay_one_invoice(self) -> None:
        if self.unjudged is not None:
            # the last task ended in an exception before judging its payout
            self._abandon(checker.ABANDONED_ERROR)
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
        if self.checks_on:
            self.unjudged = checker.audit_entry(
                wallet_id=self.wallet.wallet_id,
                api_key=self.wallet.api_key,
                expected_msat=self.expected_msat,
                payment_hash=invoice.payment_hash,
                amount_msat=invoice.amount_msat,
                phase=phase,
            )
        first = self.wallets.pay(self.wallet, invoice, key, phase)
        if first.http_status == 0 and self.wallets.chaos_connection_errors:
            first = self._answer_after_crash(invoice, key, phase, first)
        LOCAL.tally.record_payout(phase, first.outcome, first.latency_ms)
        if self.unjudged is not None:
            self.unjudged.update(payout_id=first.payout_id, outcome=first.outcome)
        if first.kind == "error":
            # outcome unknown: the final audit judges it; continue with a fresh wallet
            self._abandon(checker.ABANDONED_ERROR)
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
            if self.unjudged is not None:
                self.unjudged["retried"] = True
            retry = self.wallets.pay(self.wallet, invoice, key, phase, retry=True)
            if retry.http_status == 0 and self.wallets.chaos_connection_errors:
                retry = self._answer_after_crash(invoice, key, phase, retry)
                retry = retry if retry.http_status != 0 else None  # never answered: unjudged
        self._verify(first, retry, invoice, phase, time.perf_counter())

    def _answer_after_crash(
        self, invoice: Invoice, key: str, phase: str, first: PayoutResult
    ) -> PayoutResult:
        """No answer (the target was killed): the same request, same key, until it answers."""
        assert self.wallet is not None
        if self.unjudged is not None:
            self.unjudged["retried"] = True  # sent again: a second charge is a double charge
        deadline = time.monotonic() + AFTER_CRASH_MAX_S
        answer = first
        for _ in range(AFTER_CRASH_MAX_POLLS):
            if time.monotonic() >= deadline:
                break
            gevent.sleep(AFTER_CRASH_POLL_S)
            answer = self.wallets.pay(
                self.wallet, invoice, key, phase, retry=True, refusals=("request_in_progress",)
            )
            if answer.http_status != 0 and answer.kind != "refused":
                return answer
        return answer if answer.kind != "refused" else first

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
        # every outcome, the wallet's "failed" too, is judged by the node's truth of the
        # invoice's payment hash, never by the wallet's answer
        resolved = self._resolve(first, invoice.payment_hash)
        if resolved is None:
            self._unresolved(first, phase, started)
            return
        payout_status, node = resolved
        name = {
            "ok": checker.BALANCE_AFTER_SUCCESS,
            "fail": checker.BALANCE_AFTER_FAILURE,
        }.get(first.kind, checker.RESOLVED_VS_NODE_TRUTH)
        paid = node.get("status") == "succeeded"
        fee_msat = int(node.get("fee_msat") or 0) if paid else 0
        # the invoice's amount, not the wallet's echo of it: a wrong amount must show as drift
        amount_msat = invoice.amount_msat
        cost_msat = amount_msat + fee_msat
        expected_msat = self.expected_msat - (cost_msat if paid else 0)
        wallet = self.wallets.get_wallet(self.wallet)
        if wallet is None:
            # cannot check: the final audit judges it; start again with a fresh wallet
            self._abandon(checker.ABANDONED_NO_WALLET_VIEW)
            return
        actual_msat = int(wallet["balance_msat"])
        # resynchronise now, before anything below may raise: one bug is counted once, not at
        # every later payout of this wallet, and the next payout's audit entry starts exact
        self.expected_msat = actual_msat
        self.unjudged = None  # judged here, from now on
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
            "node_status": node.get("status"),
            "t_unix": round(time.time(), 3),
        }
        self._fire_check(name, kind, example, started)
        if retry is not None:
            self._check_retry(first, retry, kind, example, started)

    def _resolve(self, first: PayoutResult, payment_hash: str) -> tuple[str, dict[str, Any]] | None:
        """(final payout status, node's final payment) or None when not final within bounds.
        A succeeded or failed payout is final already: one look at the node, as a rule."""
        assert self.wallet is not None
        payout_status = first.payout_status or ""
        node: dict[str, Any] = {}
        deadline = time.monotonic() + self.resolve_timeout_s
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
            f"{self.resolve_timeout_s:g} s (phase {phase}); left to the final audit"
        )
        self._fire(checker.RESOLVED_WITHIN_BOUND, CheckFailed(message), started)
        LOCAL.tally.record_check(checker.RESOLVED_WITHIN_BOUND, passed=False)
        # the expected balance of this wallet is unknown now: continue with a fresh one
        self._abandon(checker.ABANDONED_NOT_FINAL)

    def _abandon(self, why: str) -> None:
        """Leave the wallet; its unjudged payout (if any) goes to the final audit. The wallet
        sees no other payout after it, so the balance expected before it stays exact."""
        if self.unjudged is not None:
            self.unjudged["reason"] = why
            LOCAL.tally.record_audit(self.unjudged)
        self.unjudged = None
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
        # a wallet without an Idempotency-Key (LNbits) refuses the resent invoice: only "never
        # charged twice" is checked then (the balance check below)
        same_answer = same_answer or not self.wallets.idempotent
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
        kind = checker.IDEMPOTENCY_MISMATCH if not same_answer else checker.DOUBLE_CHARGE
        self._fire(checker.IDEMPOTENT_RETRY, CheckFailed(_describe(example, detail), kind), started)

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
        checker.fire_check(self.environment.events.request, name, exception, started)


def needed_msat(amount_msat: int) -> int:
    """What a payout of `amount_msat` may hold at most: amount + fee reserve, with a margin."""
    return amount_msat + amount_msat * RESERVE_MARGIN_PPM // 1_000_000 + RESERVE_MARGIN_MSAT


def _describe(example: dict[str, Any], what: str) -> str:
    return (
        f"{what}: wallet {example['wallet_id']} payout {example['payout_id']} "
        f"expected {example['expected_msat']} msat, actual {example['actual_msat']} msat "
        f"(payout {example['payout_status']}, node {example['node_status']})"
    )
