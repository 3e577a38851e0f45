"""Reconciliation: the ledger against the node's truth, one payment hash at a time.

For each payment hash the ledger's net charge (what left the wallets for `outbound` and `fees`
on that hash's payouts) must equal what the node really paid: amount + fee when it succeeded,
nothing when it failed or never happened. While a payout of the hash is pending, or the node
still has the payment in flight, the hash is not judged yet.

- charged_not_paid: wallets charged more than the node paid (the incident; also a double charge);
- paid_not_charged: the node paid more than wallets were charged (a blind rollback of a timeout
  that later settled);
- stuck_pending: payouts pending long after they should have resolved;
- conservation: deposits = balances + reserved + paid out + fees (see Ledger.conservation).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .ledger import Ledger
from .metrics import Metrics
from .node.client import NodeClient, PaymentTruth
from .node.network import PaymentStatus

log = logging.getLogger("lnchaos.reconcile")

EXAMPLES_MAX = 10

PER_HASH = """
WITH charged AS (
    SELECT payout_id,
           SUM(CASE WHEN credit_account IN ('outbound', 'fees') THEN amount_msat
                    WHEN debit_account IN ('outbound', 'fees') THEN -amount_msat
                    ELSE 0 END) AS charged_msat
    FROM transfers WHERE payout_id IS NOT NULL GROUP BY payout_id
)
SELECT p.payment_hash,
       COALESCE(SUM(c.charged_msat), 0),
       SUM(p.status = 'pending'),
       MIN(CASE WHEN p.status = 'pending' THEN p.created_ms END),
       GROUP_CONCAT(p.payout_id)
FROM payouts p LEFT JOIN charged c ON c.payout_id = p.payout_id
GROUP BY p.payment_hash
"""


@dataclass
class Tally:
    count: int = 0
    amount_msat: int = 0
    payout_ids: list[str] = field(default_factory=list)

    def add(self, amount_msat: int, payout_ids: list[str]) -> None:
        self.count += 1
        self.amount_msat += amount_msat
        room = EXAMPLES_MAX - len(self.payout_ids)
        if room > 0:
            self.payout_ids.extend(payout_ids[:room])

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "amount_msat": self.amount_msat, "payout_ids": self.payout_ids}


async def reconcile(
    ledger: Ledger, node: NodeClient, *, stuck_after_s: float, metrics: Metrics | None = None
) -> dict[str, Any]:
    await ledger.journal.flush()
    # Each read in one hop to the database thread (execute_fetchall): the journal writes on this
    # same connection, and a cursor left open across its transaction reads a mix of before and
    # after (GROUP BY scans an index lazily).
    rows = list(await ledger.journal.db.execute_fetchall(PER_HASH))
    truths = await lookup_many(node, [row[0] for row in rows])
    charged_not_paid, paid_not_charged, stuck = Tally(), Tally(), Tally()
    awaiting_node = 0
    stuck_before_ms = int((time.time() - stuck_after_s) * 1000)
    for payment_hash, charged_msat, pending, oldest_pending_ms, ids in rows:
        payout_ids = ids.split(",")
        truth = truths[payment_hash]
        if pending:
            if oldest_pending_ms is not None and oldest_pending_ms < stuck_before_ms:
                stuck.add(0, payout_ids)
            continue
        if truth.status is PaymentStatus.IN_FLIGHT:
            awaiting_node += 1
            continue
        paid_msat = (
            truth.amount_msat + truth.fee_msat if truth.status is PaymentStatus.SUCCEEDED else 0
        )
        if charged_msat > paid_msat:
            charged_not_paid.add(charged_msat - paid_msat, payout_ids)
        elif charged_msat < paid_msat:
            paid_not_charged.add(paid_msat - charged_msat, payout_ids)
    conservation = await ledger.conservation()
    counts = {"succeeded": 0, "failed": 0, "pending": 0}
    for status, count in await ledger.journal.db.execute_fetchall(
        "SELECT status, COUNT(*) FROM payouts GROUP BY status"
    ):
        counts[status] = count
    result = {
        "charged_not_paid": charged_not_paid.as_dict(),
        "paid_not_charged": paid_not_charged.as_dict(),
        "stuck_pending": stuck.as_dict(),
        "pending": counts["pending"],
        "awaiting_node": awaiting_node,
        "conserved": conservation["conserved"],
        "conservation": conservation,
        "payouts": counts,
        "hashes_checked": len(rows),
    }
    if metrics is not None:
        metrics.reconciliations.inc()
        for kind, tally in (
            ("charged_not_paid", charged_not_paid),
            ("paid_not_charged", paid_not_charged),
            ("stuck_pending", stuck),
        ):
            metrics.inconsistencies.labels(kind).set(tally.count)
            metrics.inconsistent_msat.labels(kind).set(tally.amount_msat)
        metrics.conserved.set(1 if conservation["conserved"] else 0)
    return result


async def lookup_many(node: NodeClient, hashes: list[str]) -> dict[str, PaymentTruth]:
    many = getattr(node, "lookup_many", None)
    if many is not None:
        return await many(hashes)
    return {h: await node.lookup(h) for h in hashes}


def alerts_of(result: dict[str, Any]) -> list[str]:
    alerts = []
    for kind in ("charged_not_paid", "paid_not_charged", "stuck_pending"):
        tally = result[kind]
        if tally["count"]:
            alerts.append(
                f"{kind}: {tally['count']} ({tally.get('amount_msat', 0)} msat),"
                f" e.g. {', '.join(tally['payout_ids'][:3])}"
            )
    if not result["conserved"]:
        alerts.append(f"conservation broken: {result['conservation']}")
    return alerts


async def run_reconciler(
    ledger: Ledger,
    node: NodeClient,
    metrics: Metrics,
    *,
    interval_s: float,
    stuck_after_s: float,
    stop: asyncio.Event,
) -> None:
    """Reconcile every `interval_s` and log every mismatch as an alert, until `stop` is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
            return
        except TimeoutError:
            pass
        try:
            result = await reconcile(ledger, node, stuck_after_s=stuck_after_s, metrics=metrics)
        except Exception:
            log.exception("reconciliation failed")
            continue
        for alert in alerts_of(result):
            log.warning("ALERT reconciliation: %s", alert)
