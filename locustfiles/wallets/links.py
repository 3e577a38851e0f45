"""Single-use authorisations (accounting "authorisations"): withdraw links judged by the node.

The money rule of a link: it pays at most once, at most its amount, whatever errors the node
answers. Every link the payers opened and every invoice they presented to it are kept in
`LINKS` (this process: a node-judged run is one process). A link is judged from the node's truth
of its invoices' hashes and the link's own state (`open`: it may still pay; `used`):
- double_payout: the node paid more than one of its invoices, or more than its amount (an error
  re-opened the link while the payment went out, and the next invoice was paid too);
- paid_not_charged: the node paid one, and the link is open again (the service forgot it paid:
  the authorisation is left spendable);
- charged_not_paid: the link is used and the node paid none of its invoices (the authorisation
  was burned for nothing);
- unresolved: an invoice still in flight at the node at the end.
The witness names the link, its amount, each hash and what the node says of it.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.pool

from locustfiles import checker
from locustfiles.admin_client import REQUEST_TIMEOUT_S, TargetAdmin, TargetError
from locustfiles.wallets.base import Link

LINKS_MAX = 20_000
HASHES_PER_LINK_MAX = 8  # a payer presents a bounded number of invoices to one link
JUDGE_CONCURRENCY = 16
FINAL = ("succeeded", "failed", "unknown")


@dataclass
class LinkRecord:
    link: Link
    opened_ms: int
    # payment hash -> (amount_msat, the service's answer to it: succeeded / failed / ...)
    invoices: dict[str, tuple[int, str]] = field(default_factory=dict)


class LinkLedger:
    """Every link opened and every invoice presented to it, bounded; thread- and
    greenlet-safe."""

    def __init__(self) -> None:
        self.links: dict[str, LinkRecord] = {}
        self.overflow = 0
        self._lock = threading.Lock()

    def open(self, link: Link) -> None:
        with self._lock:
            if len(self.links) >= LINKS_MAX:
                self.overflow += 1
                return
            self.links[link.link_id] = LinkRecord(link, int(time.time() * 1000))

    def presented(self, link: Link, payment_hash: str, amount_msat: int) -> None:
        """Before the invoice is sent: a presentation whose answer never comes is judged too."""
        with self._lock:
            record = self.links.get(link.link_id)
            if record is None or len(record.invoices) >= HASHES_PER_LINK_MAX:
                self.overflow += 1
                return
            record.invoices.setdefault(payment_hash, (amount_msat, ""))

    def answered(self, link: Link, payment_hash: str, outcome: str) -> None:
        with self._lock:
            record = self.links.get(link.link_id)
            if record is not None and payment_hash in record.invoices:
                record.invoices[payment_hash] = (record.invoices[payment_hash][0], outcome)

    def since(self, since_ms: int | None) -> list[LinkRecord]:
        with self._lock:
            return [r for r in self.links.values() if since_ms is None or r.opened_ms >= since_ms]


LINKS = LinkLedger()


def judge_link(
    record: LinkRecord, state: str | None, truths: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """One link's finding (its `kind` and witness), None when it kept the rule; pure.
    `state`: the link's state now (open / used; None: not read); `truths`: the node's truth
    of each of its hashes."""
    statuses = {h: str((truths.get(h) or {}).get("status") or "not read") for h in record.invoices}
    paid = [h for h, status in statuses.items() if status == "succeeded"]
    paid_msat = sum(record.invoices[h][0] for h in paid)
    witness = {
        "link_id": record.link.link_id,
        "wallet_id": record.link.link_id,  # the verdict's tables name a wallet
        "payout_id": paid[-1] if paid else None,
        "link_amount_msat": record.link.amount_msat,
        "link_state": state,
        "invoices": [
            {"payment_hash": h, "amount_msat": a, "answer": answer, "node_status": statuses[h]}
            for h, (a, answer) in record.invoices.items()
        ],
        "paid_msat": paid_msat,
    }
    if len(paid) > 1 or paid_msat > record.link.amount_msat:
        allowed_msat = min(record.link.amount_msat, record.invoices[paid[0]][0])
        return {**witness, "kind": checker.DOUBLE_PAYOUT, "diff_msat": paid_msat - allowed_msat}
    if any(status not in FINAL for status in statuses.values()) or state is None:
        return {**witness, "kind": checker.UNRESOLVED, "diff_msat": 0}
    if paid and state == "open":
        return {**witness, "kind": checker.PAID_NOT_CHARGED, "diff_msat": paid_msat}
    if not paid and state == "used":
        return {**witness, "kind": checker.CHARGED_NOT_PAID, "diff_msat": -record.link.amount_msat}
    return None


def describe(finding: dict[str, Any]) -> str:
    """A finding in words: the link and what the node says of each invoice."""
    invoices = ", ".join(
        f"{i['payment_hash'][:12]}.. answered {i['answer'] or 'nothing'}, node {i['node_status']}"
        for i in finding["invoices"]
    )
    return (
        f"{finding['kind']}: link {finding['link_id']} worth {finding['link_amount_msat']} msat "
        f"is {finding['link_state']}; the node paid {finding['paid_msat']} msat ({invoices})"
    )


class LinkJudge(TargetAdmin):
    """The master's calls for a run against a withdraw-link service, in TargetAdmin's shape
    (controller.py): the node's health, faults and truth at `node_url`; `reconciliation` judges
    every link in LINKS from the node's truth and the link's state (read here with urllib, never
    through the payers' adapter)."""

    def __init__(self, node_url: str, node_admin_token: str, service_url: str) -> None:
        super().__init__(node_url, node_admin_token)
        self.service_url = service_url.rstrip("/")

    def get_fix(self) -> str:
        return "n/a"

    def set_fix(self, mode: str) -> str:
        return "n/a"  # the service has its own payout flow

    def clock_ms(self) -> int:
        return int(time.time() * 1000)  # the ledger's links carry this process's clock

    def link_state(self, link: Link) -> str:
        """LUD-03: the link's URL answers a withdrawRequest while it may pay, else an ERROR."""
        parsed = urllib.parse.urlsplit(link.url)
        origin = f"{parsed.scheme}://{parsed.netloc}"
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        try:
            body = TargetAdmin(origin, None)._call("GET", path)
        except TargetError as err:
            if " HTTP 4" in str(err):
                return "used"  # LUD-03 lets a service answer a used link with an HTTP error
            raise
        if isinstance(body, dict) and body.get("tag") == "withdrawRequest":
            return "open"
        if isinstance(body, dict) and str(body.get("status", "")).upper() == "ERROR":
            return "used"
        raise TargetError(f"{link.url}: neither a withdrawRequest nor an ERROR: {body!r}")

    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        """Every link opened in this run, judged (the target's reconciliation's shape, so the
        verdict reads it as it reads the target's). The links' states first, then the node: a
        state the service took from the node is never newer than the truth read after it."""
        records = LINKS.since(since_ms)
        states: dict[str, str | None] = {}
        pool = gevent.pool.Pool(JUDGE_CONCURRENCY)
        for record in records:
            pool.spawn(self._read_state, record, states)
        pool.join(timeout=REQUEST_TIMEOUT_S * (1 + len(records) // JUDGE_CONCURRENCY))
        truths = self._truths([h for r in records for h in r.invoices])
        kinds: dict[str, dict[str, Any]] = {
            kind: {"count": 0, "amount_msat": 0, "examples": []}
            for kind in checker.RECONCILED_KINDS
        }
        in_flight = 0
        for record in records:
            finding = judge_link(record, states.get(record.link.link_id), truths)
            if finding is None:
                continue
            in_flight += finding["kind"] == checker.UNRESOLVED
            entry = kinds[finding["kind"]]
            entry["count"] += 1
            entry["amount_msat"] += abs(int(finding["diff_msat"]))
            if len(entry["examples"]) < checker.MAX_EXAMPLES * 10:
                entry["examples"].append(finding)
        if LINKS.overflow:
            unresolved = kinds[checker.UNRESOLVED]
            unresolved["count"] += LINKS.overflow
            unresolved["examples"].append({"detail": f"{LINKS.overflow} presentations not kept"})
        return {
            "now_ms": self.clock_ms(),
            "wallet_api": "authorisations",
            "links": len(records),
            "payments": sum(len(r.invoices) for r in records),
            **kinds,
            "pending": in_flight,
            "node": {"in_flight": in_flight},
            "timeouts": {"resolved": 0},
            "conserved": None,  # the service's books are not the suite's to read
        }

    def _read_state(self, record: LinkRecord, states: dict[str, str | None]) -> None:
        try:
            states[record.link.link_id] = self.link_state(record.link)
        except TargetError:
            states[record.link.link_id] = None  # not read: the link is unresolved

    def _truths(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        truths: dict[str, dict[str, Any]] = {}

        def one(payment_hash: str) -> None:
            try:
                truths[payment_hash] = self.node_payment(payment_hash)
            except TargetError:
                pass  # not read: its link is unresolved

        pool = gevent.pool.Pool(JUDGE_CONCURRENCY)
        for payment_hash in hashes:
            pool.spawn(one, payment_hash)
        pool.join(timeout=REQUEST_TIMEOUT_S * (1 + len(hashes) // JUDGE_CONCURRENCY))
        return truths
