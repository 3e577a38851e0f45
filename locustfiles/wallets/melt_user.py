"""The payers of a Cashu mint (accounting "proofs"): each task takes an invoice of the node, asks
the mint for a melt quote, mints fresh ecash worth the quote's amount + fee reserve (the node's
network pays the mint's invoice), and melts it. Then it waits (bounded) for the node's truth of
the invoice and judges the melt (melts.judge_melt) from the proofs' and the quote's states at the
mint: a check `resolved_vs_node_truth` per melt. A melt not final within the bound is left to the
end-of-run judge (melts.MeltJudge), which judges every melt again.

It replaces the balance payers when --wallet-api's adapter declares this accounting
(link_user.apply_accounting).
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
from locustfiles.telemetry import LOCAL
from locustfiles.wallets import wallet_api_for
from locustfiles.wallets.cashu import ys_of
from locustfiles.wallets.melts import (
    FINAL,
    MELTS,
    MeltRecord,
    describe,
    judge_melt,
)

AMOUNT_SAT_MIN = 10
AMOUNT_SAT_MAX = 2_000
RESOLVE_TIMEOUT_S = 8.0
RESOLVE_POLL_S = 0.25
RESOLVE_MAX_POLLS = int(RESOLVE_TIMEOUT_S / RESOLVE_POLL_S) + 1

_user_numbers = itertools.count()


class MeltUser(FastHttpUser):
    wait_time = between(0.01, 0.1)
    network_timeout = 30.0
    connection_timeout = 5.0
    weight = 0  # spawned only when the adapter's accounting asks for it

    def on_start(self) -> None:
        seed = int(getattr(self.environment.parsed_options, "seed", 1) or 1)
        self.rng = random.Random(f"melts/{seed}/{next(_user_numbers)}")
        self.api = wallet_api_for(self)

    @task
    def melt_one_invoice(self) -> None:
        phase = LOCAL.phase
        amount_sat = self.rng.randrange(AMOUNT_SAT_MIN, AMOUNT_SAT_MAX)
        invoice = self.api.create_invoice(amount_sat * 1000)
        quote = self.api.melt_quote(invoice) if invoice is not None else None
        if invoice is None or quote is None:
            return
        proofs = self.api.mint_proofs(int(quote["amount"]) + int(quote["fee_reserve"]))
        if not proofs:
            return
        record = MeltRecord(
            quote_id=str(quote["quote"]),
            payment_hash=invoice.payment_hash,
            amount_sat=int(quote["amount"]),
            fee_reserve_sat=int(quote["fee_reserve"]),
            inputs_sat=sum(int(p["amount"]) for p in proofs),
            ys=ys_of(proofs),
            sent_ms=int(time.time() * 1000),
        )
        MELTS.melting(record)
        started = time.perf_counter()
        result, change_sat = self.api.melt(quote, proofs, phase)
        MELTS.answered(record.quote_id, result.outcome, change_sat)
        LOCAL.tally.record_payout(phase, result.outcome, result.latency_ms, payer=True)
        self._judge(record, started, result.latency_ms)

    def _judge(self, record: MeltRecord, started: float, latency_ms: float) -> None:
        truth = self._final_truth(record.payment_hash)
        if truth is None:
            return  # not final within the bound: the end-of-run judge's
        checker.count_in_flight(truth, latency_ms, started)
        found = judge_melt(
            record,
            self.api.proof_states(record.ys),
            self.api.get_melt_quote(record.quote_id),
            truth,
        )
        name = checker.RESOLVED_VS_NODE_TRUTH
        if found is None:
            LOCAL.tally.record_check(name, passed=True)
            checker.fire_check(None, name, None, started)
            return
        if found["kind"] == checker.UNRESOLVED:
            return  # the mint has it pending: the end-of-run judge's
        LOCAL.tally.record_check(name, passed=False)
        LOCAL.tally.record_inconsistency(found["kind"], int(found["diff_msat"]), found)
        checker.fire_check(None, name, CheckFailed(describe(found), found["kind"]), started)

    def _final_truth(self, payment_hash: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        for _ in range(RESOLVE_MAX_POLLS):
            truth = self.api.get_node_payment(payment_hash) or {}
            if truth.get("status") in FINAL:
                return truth
            if time.monotonic() >= deadline:
                break
            gevent.sleep(RESOLVE_POLL_S)
        return None
