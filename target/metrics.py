"""Prometheus metrics of one target (its own registry, so two apps in a process never clash)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.payouts = Counter(
            "lnchaos_payouts", "Payouts finished, by outcome", ["outcome"], registry=r
        )
        self.answers = Counter(
            "lnchaos_payout_answers", "Payout requests answered, by HTTP status", ["status"],
            registry=r,
        )  # fmt: skip
        self.node_timeouts = Counter(
            "lnchaos_node_timeouts", "Lightning payments that outlived the wallet's deadline",
            registry=r,
        )  # fmt: skip
        self.idempotent_replays = Counter(
            "lnchaos_idempotent_replays", "Retries answered from the stored answer", registry=r
        )
        self.pending = Gauge("lnchaos_payouts_pending", "Payouts pending now", registry=r)
        # How a long run wears the process (lnchaos soak samples both): the event loop's lag
        # behind a timer, and the writes waiting for the wallet's journal.
        self.loop_lag = Gauge(
            "lnchaos_event_loop_lag_seconds",
            "How late the event loop ran the last lag probe's timer", registry=r,
        )  # fmt: skip
        self.journal_queue = Gauge(
            "lnchaos_journal_queued_writes", "Writes waiting for the wallet's journal",
            registry=r,
        )  # fmt: skip
        # The resolver's lag: a pending payout waits for it (and for the node's final answer);
        # one that waits long means the resolver is behind, stopped, or the node never answers.
        self.oldest_pending_age = Gauge(
            "lnchaos_oldest_pending_payout_age_seconds",
            "Age of the oldest pending payout (0: none pending)", registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "lnchaos_node_payments_in_flight", "Node payments in flight now", registry=r
        )
        self.inconsistencies = Gauge(
            "lnchaos_inconsistencies", "Ledger vs node mismatches at the last reconciliation",
            ["kind"], registry=r,
        )  # fmt: skip
        self.inconsistent_msat = Gauge(
            "lnchaos_inconsistent_msat", "Msat in mismatches at the last reconciliation",
            ["kind"], registry=r,
        )  # fmt: skip
        self.conserved = Gauge(
            "lnchaos_conserved", "1 when deposits = balances + reserved + paid out + fees",
            registry=r,
        )  # fmt: skip
        self.reconciliations = Counter(
            "lnchaos_reconciliations", "Reconciliation passes run", registry=r
        )

        # Each label's child, looked up once: labels() costs 3.4 us a call, the child's inc()
        # 0.9 us, and every payout counts twice. Bounded: a few outcomes and HTTP statuses.
        self._finished: dict[str, Any] = {}
        self._answered: dict[int, Any] = {}

    def payout_finished(self, outcome: str) -> None:
        child = self._finished.get(outcome)
        if child is None:
            child = self._finished[outcome] = self.payouts.labels(outcome)
        child.inc()

    def payout_answered(self, status: int) -> None:
        child = self._answered.get(status)
        if child is None:
            child = self._answered[status] = self.answers.labels(str(status))
        child.inc()

    def observe_pending(self, created_ms: Iterable[int], now_ms: int) -> None:
        """The pending gauges, from the created_ms of every pending payout (read at a scrape)."""
        count, oldest_ms = 0, now_ms
        for ms in created_ms:
            count += 1
            oldest_ms = min(oldest_ms, ms)
        self.pending.set(count)
        self.oldest_pending_age.set(max(0, now_ms - oldest_ms) / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
