"""Traffic classes beside the ordinary payers (issue 10): the load only, each with its own check.

Jepsen's split: these users make the rough traffic and judge it by the node's truth; the kinds
and the tally are checker.py's. Chosen with `--traffic-mix` (options.py; `apply_mix` sets the
weights at init, before any user starts):

- `SharedInvoiceUser` (`shared`): one invoice of the node, two fresh wallets; both pay it at
  once (two greenlets), then one pays it again after both answered. The target may answer a
  refusal (409 payment_in_progress / invoice_already_paid), a failure or a success, but once
  every payout is final the node paid the hash at most once and the wallets were charged for it,
  together, exactly what the node paid (amount + its fee, or nothing), each wallet either
  untouched or charged once (check `shared_invoice`).
- `DrainUser` (`drain`): one fresh wallet, DRAIN_PARALLEL payouts at once whose sum exceeds its
  balance. The balance (read while they run and at the end) never goes below zero (`overdrawn`),
  a refusal (409 insufficient_funds) moves nothing, and the final balance is exactly funding -
  sum(amount + the node's fee) over the hashes the node paid (check `drain`).

Both judge money only by the node's truth (GET /node/payments/{hash}), after every payout is
final (bounded polling, as users.py). A round whose payouts are not final within the bound, or
that got an answer it cannot interpret (its outcome unknown), is not guessed: it fires a failed
`resolved_within_bound` (not an inconsistency) and is left to the target's end-of-run
reconciliation, which judges every payment hash of the run. A wallet here sees several payouts
at once, so the per-payout audit entries of users.py (the exact balance before one payout) do not
apply.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import gevent
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

from locustfiles import checker
from locustfiles.checker import CheckFailed
from locustfiles.options import PAYER_WEIGHT
from locustfiles.telemetry import LOCAL
from locustfiles.users import RESOLVE_MAX_POLLS, RESOLVE_POLL_INTERVAL_S, RESOLVE_TIMEOUT_S
from locustfiles.wallet_client import (
    FINAL_NODE_STATUSES,
    FINAL_PAYOUT_STATUSES,
    Invoice,
    PayoutResult,
    Wallet,
    WalletClient,
)

SHARED_FUNDING_MSAT = 10_000_000
SHARED_AMOUNT_MSAT_MIN = 10_000
SHARED_AMOUNT_MSAT_MAX = 2_000_000
DRAIN_PARALLEL = 6
DRAIN_FUNDING_MSAT_MIN = 3_000_000
DRAIN_FUNDING_MSAT_MAX = 6_000_000
# each payout between a fifth and a third of the funding: 6 of them ask for more than it holds
# (at least 1.2 x), while the first two or three always fit
DRAIN_SHARE_MIN = (1, 5)
DRAIN_SHARE_MAX = (1, 3)
# the greenlets of one round answer within the client's own network timeout; this bounds a join
ROUND_JOIN_TIMEOUT_S = 30.0
# the answers a round expects besides success, failure and timeout: refusals that move nothing
REFUSALS = ("payment_in_progress", "invoice_already_paid", "insufficient_funds")

_user_numbers = itertools.count()


def apply_mix(environment: Any, mix: dict[str, int], checks_on: bool = True) -> None:
    """Weights and the user classes of the run from --traffic-mix (at init, master or local:
    workers spawn what the master tells them). Off with --checks off: the bench measures the
    payers alone."""
    from locustfiles.users import PayerUser

    classes = {"shared": SharedInvoiceUser, "drain": DrainUser}
    on = {name: weight for name, weight in mix.items() if weight > 0} if checks_on else {}
    PayerUser.weight = PAYER_WEIGHT
    for name, cls in classes.items():
        cls.weight = on.get(name, 0)
    kept = [cls for cls in environment.user_classes if cls not in classes.values()]
    kept += [classes[name] for name in sorted(on)]
    environment.user_classes[:] = kept  # in place: the runner reads this very list


class TrafficUser(FastHttpUser):
    abstract = True
    wait_time = between(0.05, 0.2)
    network_timeout = 10.0
    connection_timeout = 5.0
    concurrency = DRAIN_PARALLEL + 4  # the round's payouts and a balance read at once

    def on_start(self) -> None:
        options = self.environment.parsed_options
        seed = int(getattr(options, "seed", 1) or 1)
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        name = type(self).__name__
        self.rng = random.Random(f"{seed}/{worker_index}/{name}/{next(_user_numbers)}")
        self.wallets = WalletClient(self.client, self.environment.events.request)
        bound_s = float(getattr(options, "resolve_timeout_s", None) or RESOLVE_TIMEOUT_S)
        self.resolve_timeout_s = max(bound_s, 0.0)

    # ---- the client: payouts whose refusals are expected answers --------------------------------

    def pay(self, wallet: Wallet, invoice: Invoice, phase: str) -> PayoutResult:
        key = f"{LOCAL.run_id}-{self.rng.getrandbits(96):024x}"
        result = self.wallets.pay(
            wallet, invoice, key, phase, label=self.traffic_name, refusals=REFUSALS
        )
        if result.kind != "refused":
            # a refusal stores no payout: the tally's payouts stay what the target's
            # reconciliation can count (Locust's statistics still show every request)
            LOCAL.tally.record_payout(phase, result.outcome, result.latency_ms)
        return result

    def resolve(
        self, wallet_of: dict[str, Wallet], answers: list[PayoutResult], hashes: list[str]
    ) -> dict[str, dict[str, Any]] | None:
        """{hash: the node's final payment} once every payout of `answers` is final at the wallet
        and every hash at the node; None when not within the users' bound."""
        pending = {a.payout_id: a for a in answers if a.payout_id and a.kind != "refused"}
        pending = {
            pid: a for pid, a in pending.items() if a.payout_status not in FINAL_PAYOUT_STATUSES
        }
        nodes: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.resolve_timeout_s
        for _ in range(RESOLVE_MAX_POLLS):
            for payout_id in list(pending):
                payout = self.wallets.get_payout(wallet_of[payout_id], payout_id)
                if str((payout or {}).get("status")) in FINAL_PAYOUT_STATUSES:
                    del pending[payout_id]
            for payment_hash in hashes:
                if nodes.get(payment_hash, {}).get("status") not in FINAL_NODE_STATUSES:
                    node = self.wallets.get_node_payment(payment_hash)
                    nodes[payment_hash] = node or nodes.get(payment_hash, {})
            final = all(n.get("status") in FINAL_NODE_STATUSES for n in nodes.values())
            if not pending and final:
                return nodes
            if time.monotonic() >= deadline:
                break
            gevent.sleep(RESOLVE_POLL_INTERVAL_S)
        return None

    # ---- the checks' events --------------------------------------------------------------------

    def not_judged(self, why: str, started: float) -> None:
        """Not final within the bound, or an answer of unknown outcome: the reconciliation's."""
        LOCAL.tally.left_to_reconciliation += 1
        LOCAL.tally.record_check(checker.RESOLVED_WITHIN_BOUND, passed=False)
        message = f"{self.traffic_name}: {why}; left to the end-of-run reconciliation"
        self.fire(checker.RESOLVED_WITHIN_BOUND, CheckFailed(message), started)

    def judged(self, name: str, kind: str | None, example: dict[str, Any], started: float) -> None:
        if kind is None:
            LOCAL.tally.record_check(name, passed=True)
            self.fire(name, None, started)
            return
        LOCAL.tally.record_check(name, passed=False)
        LOCAL.tally.record_inconsistency(kind, example["diff_msat"], example)
        detail = (
            f"{kind}: {name} wallet {example['wallet_id']} expected {example['expected_msat']} "
            f"msat, actual {example['actual_msat']} msat ({example.get('detail', '')})"
        )
        self.fire(name, CheckFailed(detail), started)

    def fire(self, name: str, exception: Exception | None, started: float) -> None:
        checker.fire_check(self.environment.events.request, name, exception, started)

    traffic_name = "traffic"


class SharedInvoiceUser(TrafficUser):
    """One invoice, two wallets, paid at once and again after (module docstring)."""

    traffic_name = "shared"
    weight = 1

    @task
    def shared_invoice(self) -> None:
        phase = LOCAL.phase
        amount_msat = self.rng.randrange(SHARED_AMOUNT_MSAT_MIN, SHARED_AMOUNT_MSAT_MAX)
        first = self.wallets.create_wallet(SHARED_FUNDING_MSAT)
        second = self.wallets.create_wallet(SHARED_FUNDING_MSAT)
        invoice = self.wallets.create_invoice(amount_msat)
        if first is None or second is None or invoice is None:
            return
        started = time.perf_counter()
        both = [gevent.spawn(self.pay, wallet, invoice, phase) for wallet in (first, second)]
        gevent.joinall(both, timeout=ROUND_JOIN_TIMEOUT_S)
        if not all(g.successful() for g in both):
            gevent.killall(both, block=False)
            self.not_judged(f"a payout of invoice {invoice.payment_hash} did not answer", started)
            return
        answers = [(first, both[0].value), (second, both[1].value)]
        # again, after both answered: refused unless every payout of it failed
        answers.append((second, self.pay(second, invoice, phase)))
        if any(answer.kind == "error" for _, answer in answers):
            detail = ", ".join(answer.describe() for _, answer in answers)
            self.not_judged(f"invoice {invoice.payment_hash}: outcome unknown ({detail})", started)
            return
        wallet_of = {a.payout_id: w for w, a in answers if a.payout_id}
        nodes = self.resolve(wallet_of, [a for _, a in answers], [invoice.payment_hash])
        if nodes is None:
            self.not_judged(f"invoice {invoice.payment_hash}: not final within bound", started)
            return
        node = nodes[invoice.payment_hash]
        views = [self.wallets.get_wallet(first), self.wallets.get_wallet(second)]
        if views[0] is None or views[1] is None:
            self.not_judged(f"invoice {invoice.payment_hash}: a wallet could not be read", started)
            return
        paid = node.get("status") == "succeeded"
        fee_msat = int(node.get("fee_msat") or 0) if paid else 0
        cost_msat = invoice.amount_msat + fee_msat
        balances = [int(view["balance_msat"]) for view in views]
        charged = [SHARED_FUNDING_MSAT - balance for balance in balances]
        expected_msat = 2 * SHARED_FUNDING_MSAT - (cost_msat if paid else 0)
        actual_msat = sum(balances)
        diff_msat = actual_msat - expected_msat
        # both wallets charged for one payment is a double charge (retried=True says so)
        kind = checker.classify_balance(
            diff_msat=diff_msat, paid=paid, retried=True, cost_msat=cost_msat
        )
        if kind is None and not all(c in (0, cost_msat) for c in charged):
            kind = checker.BALANCE_MISMATCH  # the sum is right, but not one charge of one wallet
        example = {
            "check": checker.SHARED_INVOICE,
            "kind": kind,
            "wallet_id": f"{first.wallet_id}+{second.wallet_id}",
            "payout_id": ",".join(str(a.payout_id) for _, a in answers),
            "payment_hash": invoice.payment_hash,
            "phase": phase,
            "amount_msat": invoice.amount_msat,
            "fee_msat": fee_msat,
            "expected_msat": expected_msat,
            "actual_msat": actual_msat,
            "diff_msat": diff_msat,
            "payout_status": ",".join(a.describe() for _, a in answers),
            "node_status": node.get("status"),
            "detail": f"charged per wallet {charged} msat",
            "t_unix": round(time.time(), 3),
        }
        self.judged(checker.SHARED_INVOICE, kind, example, started)


class DrainUser(TrafficUser):
    """Parallel payouts over one wallet's balance (module docstring)."""

    traffic_name = "drain"
    weight = 1

    @task
    def drain(self) -> None:
        phase = LOCAL.phase
        funding_msat = self.rng.randrange(DRAIN_FUNDING_MSAT_MIN, DRAIN_FUNDING_MSAT_MAX)
        low = funding_msat * DRAIN_SHARE_MIN[0] // DRAIN_SHARE_MIN[1]
        high = funding_msat * DRAIN_SHARE_MAX[0] // DRAIN_SHARE_MAX[1]
        wallet = self.wallets.create_wallet(funding_msat)
        if wallet is None:
            return
        invoices = [
            self.wallets.create_invoice(self.rng.randrange(low, high))
            for _ in range(DRAIN_PARALLEL)
        ]
        if any(invoice is None for invoice in invoices):
            return
        ready = [invoice for invoice in invoices if invoice is not None]
        started = time.perf_counter()
        payouts = [gevent.spawn(self.pay, wallet, invoice, phase) for invoice in ready]
        # one look while they run: a balance below zero is an overdraft, even if repaid later
        watch = gevent.spawn(self.wallets.get_wallet, wallet)
        gevent.joinall([*payouts, watch], timeout=ROUND_JOIN_TIMEOUT_S)
        if not all(g.successful() for g in payouts):
            gevent.killall([*payouts, watch], block=False)
            self.not_judged(f"a payout of wallet {wallet.wallet_id} did not answer", started)
            return
        answers: list[PayoutResult] = [g.value for g in payouts]
        seen_msat = [int(watch.value["balance_msat"])] if watch.successful() and watch.value else []
        if any(answer.kind == "error" for answer in answers):
            detail = ", ".join(answer.describe() for answer in answers)
            self.not_judged(f"wallet {wallet.wallet_id}: outcome unknown ({detail})", started)
            return
        hashes = [invoice.payment_hash for invoice in ready]
        wallet_of = {a.payout_id: wallet for a in answers if a.payout_id}
        nodes = self.resolve(wallet_of, answers, hashes)
        if nodes is None:
            self.not_judged(f"wallet {wallet.wallet_id}: not final within bound", started)
            return
        view = self.wallets.get_wallet(wallet)
        if view is None:
            self.not_judged(f"wallet {wallet.wallet_id} could not be read", started)
            return
        actual_msat = int(view["balance_msat"])
        seen_msat.append(actual_msat)
        paid_msat = 0
        fee_msat = 0
        for invoice in ready:
            node = nodes[invoice.payment_hash]
            if node.get("status") == "succeeded":
                fee_msat += int(node.get("fee_msat") or 0)
                paid_msat += invoice.amount_msat + int(node.get("fee_msat") or 0)
        expected_msat = funding_msat - paid_msat
        diff_msat = actual_msat - expected_msat
        refused = sum(answer.kind == "refused" for answer in answers)
        if min(seen_msat) < 0:
            kind: str | None = checker.OVERDRAWN
        else:
            kind = checker.classify_balance(
                diff_msat=diff_msat, paid=paid_msat > 0, retried=False, cost_msat=paid_msat
            )
        example = {
            "check": checker.DRAIN,
            "kind": kind,
            "wallet_id": wallet.wallet_id,
            "payout_id": ",".join(str(a.payout_id) for a in answers),
            "phase": phase,
            "amount_msat": sum(invoice.amount_msat for invoice in ready),
            "fee_msat": fee_msat,
            "expected_msat": expected_msat,
            "actual_msat": actual_msat,
            "diff_msat": diff_msat,
            "reserved_msat": view.get("reserved_msat"),
            "payout_status": ",".join(answer.describe() for answer in answers),
            "node_status": ",".join(str(nodes[h].get("status")) for h in hashes),
            "detail": f"funding {funding_msat} msat, {refused} refused, balances seen {seen_msat}",
            "t_unix": round(time.time(), 3),
        }
        self.judged(checker.DRAIN, kind, example, started)
