"""The payers of single-use authorisations (accounting "authorisations"): each task opens a link,
presents an invoice of the node to it, and, as a wallet does, presents a new one while an error
leaves the link open (bounded). Then it waits (bounded) for the node's truth of every invoice it
presented and judges the link (links.judge_link): a check `resolved_vs_node_truth` per link, a
failure of the finding's kind (double_payout, paid_not_charged, charged_not_paid). A link whose
invoices are not final within the bound is left to the end-of-run judge (links.LinkJudge), which
judges every link again.

It replaces the balance payers (users.PayerUser) when --wallet-api's adapter declares this
accounting (lnchaos_suite.py).
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
from locustfiles.wallets.base import Link
from locustfiles.wallets.links import FINAL, LINKS, describe, judge_link

AMOUNT_MSAT_MIN = 10_000
AMOUNT_MSAT_MAX = 2_000_000
PRESENTATIONS_MAX = 3  # invoices a payer presents to one link, the first and two more
RESOLVE_TIMEOUT_S = 8.0
RESOLVE_POLL_S = 0.25
RESOLVE_MAX_POLLS = int(RESOLVE_TIMEOUT_S / RESOLVE_POLL_S) + 1

_user_numbers = itertools.count()


class LinkUser(FastHttpUser):
    wait_time = between(0.01, 0.1)
    network_timeout = 10.0
    connection_timeout = 5.0
    weight = 0  # spawned only when the adapter's accounting asks for it (lnchaos_suite.py)

    def on_start(self) -> None:
        seed = int(getattr(self.environment.parsed_options, "seed", 1) or 1)
        self.rng = random.Random(f"links/{seed}/{next(_user_numbers)}")
        self.api = wallet_api_for(self)

    @task
    def withdraw_one_link(self) -> None:
        phase = LOCAL.phase
        amount_msat = self.rng.randrange(AMOUNT_MSAT_MIN, AMOUNT_MSAT_MAX)
        link = self.api.open_link(amount_msat)
        if link is None:
            return
        LINKS.open(link)
        started = time.perf_counter()
        answered_ms: dict[str, float] = {}  # each presented invoice's answer latency
        for presentation in range(PRESENTATIONS_MAX):
            invoice = self.api.create_invoice(amount_msat)
            if invoice is None:
                break
            LINKS.presented(link, invoice.payment_hash, amount_msat)
            result = self.api.withdraw(link, invoice, phase)
            answered_ms[invoice.payment_hash] = result.latency_ms
            LINKS.answered(link, invoice.payment_hash, result.outcome)
            LOCAL.tally.record_payout(
                phase, result.outcome, result.latency_ms, payer=presentation == 0
            )
            if result.kind not in ("fail", "info"):
                break
            # an error: a wallet presents a new invoice while the link says it may still pay
            if self.api.get_link(link) != "open":
                break
        self._judge(link, started, answered_ms)

    def _judge(self, link: Link, started: float, answered_ms: dict[str, float]) -> None:
        record = next((r for r in LINKS.since(None) if r.link.link_id == link.link_id), None)
        if record is None or not record.invoices:
            return
        truths = self._final_truths(list(record.invoices))
        if truths is None:
            return  # not final within the bound: the end-of-run judge's
        for payment_hash, latency_ms in answered_ms.items():
            checker.count_in_flight(truths.get(payment_hash) or {}, latency_ms, started)
        finding = judge_link(record, self.api.get_link(link), truths)
        name = checker.RESOLVED_VS_NODE_TRUTH
        if finding is None:
            LOCAL.tally.record_check(name, passed=True)
            checker.fire_check(None, name, None, started)
            return
        if finding["kind"] == checker.UNRESOLVED:
            return  # the link's state could not be read: the end-of-run judge's
        LOCAL.tally.record_check(name, passed=False)
        LOCAL.tally.record_inconsistency(finding["kind"], int(finding["diff_msat"]), finding)
        checker.fire_check(None, name, CheckFailed(describe(finding), finding["kind"]), started)

    def _final_truths(self, hashes: list[str]) -> dict[str, dict[str, Any]] | None:
        """The node's truth of each hash once all are final; None past the bound."""
        truths: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        for _ in range(RESOLVE_MAX_POLLS):
            for payment_hash in hashes:
                if (truths.get(payment_hash) or {}).get("status") not in FINAL:
                    truths[payment_hash] = self.api.get_node_payment(payment_hash) or {}
            if all(truths[h].get("status") in FINAL for h in hashes):
                return truths
            if time.monotonic() >= deadline:
                break
            gevent.sleep(RESOLVE_POLL_S)
        return None


def apply_accounting(environment: Any) -> None:
    """At init: the payers of --wallet-api's accounting model. Authorisations: LinkUser alone,
    proofs: MeltUser alone (the balance payers and the traffic classes speak of wallets); else as
    they are. An adapter
    that does not load is left to the controller to report (exit 5)."""
    from locustfiles.wallets import registry

    name = str(getattr(environment.parsed_options, "wallet_api", None) or registry.DEFAULT)
    try:
        accounting = registry.load(name).accounting
    except registry.AdapterError:
        return
    if accounting == "authorisations":
        LinkUser.weight = 1
        environment.user_classes[:] = [LinkUser]  # in place: the runner reads this very list
    elif accounting == "proofs":
        from locustfiles.wallets.melt_user import MeltUser

        MeltUser.weight = 1
        environment.user_classes[:] = [MeltUser]
