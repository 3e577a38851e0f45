"""The wallet's word, recorded for the judge: what a wallet told its user of one payout, and what
it showed of its balance while the payout was pending. The rules are the judge's
(lnchaos/checker/word.py), applied by the history's fold; this module only gathers their inputs
and lists a finding in Locust's Failures.

- The word of a final payout: the status and fee of the wallet's payout read that found it final
  (GET /api/payouts/{id}, the adapter's get_payout), else of the payout's own answer. Recorded in
  the payout's balance check (`word`), beside the node's truth of its invoice's hash.
- The view while pending: once a payout read says `pending`, the wallet is read
  (`PendingView.take`), and the next payout read says whether it was still pending after the
  wallet's read (`held`: pending on both sides of the read, so the view must show it held).
  Judged once the node's truth is final (a `wallet_view` check of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lnchaos.checker import history
from lnchaos.checker.kinds import REPORTED_STATUS, WALLET_VIEW
from lnchaos.checker.word import payout_word_kinds, view_example, word_example, word_node
from locustfiles import checker
from locustfiles.checker import CheckFailed
from locustfiles.telemetry import LOCAL

FINAL = ("succeeded", "failed")
PENDING = "pending"


def fee_reserve_of(wallets: Any, amount_msat: int) -> int | None:
    """The fee reserve the wallet holds for a payout of `amount_msat`, by its adapter's
    `fee_reserve_msat` (optional in the contract: None when an adapter has none)."""
    rule = getattr(wallets, "fee_reserve_msat", None)
    if rule is None:
        return None
    value = rule(amount_msat)
    return int(value) if isinstance(value, int) else None


class PendingView:
    """The wallet's view taken while one payout of it was pending, and whether that payout was
    still pending at the next read (`held`; None: no read came after)."""

    def __init__(self) -> None:
        self.view: dict[str, Any] | None = None
        self.held: bool | None = None

    def after_payout_read(self, status: str) -> bool:
        """A payout read came back with `status`. True when the wallet should be read now (the
        payout pending and no view taken yet); the first read after a view settles `held`."""
        if self.view is not None:
            if self.held is None:
                self.held = status == PENDING
            return False
        return status == PENDING

    def take(self, view: dict[str, Any] | None) -> None:
        if view is not None:
            self.view = {"balance_msat": view.get("balance_msat")}
            self.view["reserved_msat"] = view.get("reserved_msat")


def word_of(first: Any, final_read: dict[str, Any] | None) -> dict[str, Any]:
    """What the wallet said of a final payout: its final read's status and fee, else its
    answer's (the adapter's PayoutResult)."""
    if final_read is not None and final_read.get("status") in FINAL:
        return {
            "status": final_read.get("status"),
            "fee_msat": final_read.get("fee_msat"),
            "source": "payout_read",
        }
    return {"status": first.payout_status, "fee_msat": first.fee_msat, "source": "answer"}


def fire_word_findings(request_event: Any, record: dict[str, Any], started: float) -> None:
    """The word's checks in the suite's table, as the fold counted them (a finding also listed in
    Locust's Failures, with both sides)."""
    for check, kind in payout_word_kinds(record["word"], word_node(record)).items():
        failure = None
        if kind is not None:
            example = word_example(record, check, kind)
            message = (
                f"{kind}: wallet {example['wallet_id']} payout {example['payout_id']} reported "
                f"{example['reported_status'] or example['reported_payouts']} fee "
                f"{example['reported_fee_msat']} msat, node {example['node_status']} fee "
                f"{example['node_fee_msat']} msat"
            )
            failure = CheckFailed(message, kind)
        checker.fire_check(request_event, check, failure, started)


def record_view(
    request_event: Any,
    sent: Any,
    pending: PendingView,
    node: dict[str, Any],
    started: float,
) -> str | None:
    """The view taken while `sent` was pending, judged now that the node's truth is final."""
    if pending.view is None:
        return None
    payout = {
        "payout_id": sent.first.payout_id,
        "amount_msat": sent.invoice.amount_msat,
        "fee_reserve_msat": sent.fee_reserve_msat,
        "node": {"status": node.get("status"), "fee_msat": node.get("fee_msat")},
        "held": bool(pending.held),
    }
    ids = {"wallet": sent.wallet.wallet_id, "hash": sent.invoice.payment_hash}
    ids.update(payout_id=sent.first.payout_id, phase=sent.phase)
    return emit_view(request_event, ids, sent.expected_msat, pending.view, [payout], started)


def emit_view(
    request_event: Any,
    ids: dict[str, Any],
    base_msat: int,
    view: dict[str, Any],
    open_payouts: list[dict[str, Any]],
    started: float,
) -> str | None:
    """A `wallet_view` check (docs/history.md): folded, and a finding listed in Failures."""
    record = {"type": history.CHECK, "name": WALLET_VIEW, **ids}
    record["view"] = {"base_msat": base_msat, **view, "open_payouts": open_payouts}
    kind = LOCAL.history.emit(record)
    failure = None
    if kind is not None:
        example = view_example(record, kind)
        message = (
            f"{kind}: wallet {example['wallet_id']} showed balance {example['balance_msat']} "
            f"reserved {example['reserved_msat']} msat while payouts {example['payout_id']} were "
            f"pending; at most {example['balance_max_msat']} msat may be spendable"
        )
        failure = CheckFailed(message, kind)
    checker.fire_check(request_event, WALLET_VIEW, failure, started)
    return kind


# ---- a round of payouts of one wallet at once (the drain class) ------------------------------


def round_view(wallets: Any, wallet: Any, answers: list[Any]) -> dict[str, Any] | None:
    """Once every payout of a round answered, some of them pending: the wallet read, then each
    pending one read again (`held`: still pending after the wallet's read). None: none pending,
    or the wallet could not be read."""
    pending = [a for a in answers if a.payout_id and a.payout_status == PENDING]
    if not pending:
        return None
    view = wallets.get_wallet(wallet)
    if view is None:
        return None
    held = {}
    for answer in pending:
        payout = wallets.get_payout(wallet, answer.payout_id) or {}
        held[answer.payout_id] = payout.get("status") == PENDING
    taken = {"balance_msat": view.get("balance_msat"), "reserved_msat": view.get("reserved_msat")}
    return {"view": taken, "held": held}


def record_round(
    request_event: Any,
    fee_reserve: Callable[[int], int | None],
    wallet: Any,
    base_msat: int,
    pairs: list[tuple[Any, Any]],
    nodes: dict[str, dict[str, Any]],
    taken: dict[str, Any] | None,
    phase: str,
    started: float,
) -> None:
    """A round's word (each payout answered final: its status and fee against the node's truth of
    its own invoice's hash) and its view while some were pending (`round_view`). `pairs`:
    (invoice, answer) of each payout the wallet took (refusals moved nothing: not open);
    `fee_reserve`: the wallet's fee reserve for an amount (the adapter's rule)."""
    open_payouts = []
    for invoice, answer in pairs:
        node = nodes.get(invoice.payment_hash) or {}
        truth = {"status": node.get("status"), "fee_msat": node.get("fee_msat")}
        final = answer.payout_status in FINAL
        if final:
            word = {"status": answer.payout_status, "fee_msat": answer.fee_msat}
            record = {"type": history.CHECK, "name": REPORTED_STATUS, "wallet": wallet.wallet_id}
            record.update(hash=invoice.payment_hash, payout_id=answer.payout_id, phase=phase)
            record.update(node=truth, word={**word, "source": "answer"})
            LOCAL.history.emit(record)
            fire_word_findings(request_event, record, started)
        held = (taken or {}).get("held", {}).get(answer.payout_id, False)
        open_payouts.append(
            {
                "payout_id": answer.payout_id,
                "amount_msat": invoice.amount_msat,
                "fee_reserve_msat": fee_reserve(invoice.amount_msat),
                "node": truth,
                "held": held,
                "settled": final,
            }
        )
    if taken is not None:
        ids = {"wallet": wallet.wallet_id, "hash": None, "phase": phase}
        ids["payout_id"] = ",".join(str(a.payout_id) for _, a in pairs)
        emit_view(request_event, ids, base_msat, taken["view"], open_payouts, started)


def record_shared(
    request_event: Any,
    invoice: Any,
    answers: list[tuple[Any, Any]],
    node: dict[str, Any],
    phase: str,
    started: float,
) -> None:
    """The word of several payouts of one invoice (the shared class): what each answered
    (refusals left out: they moved nothing and say nothing of a payment), judged together
    against the node's truth of the hash (word.shared_status_kind)."""
    said = [
        {"payout_id": a.payout_id, "status": a.payout_status, "fee_msat": a.fee_msat}
        for _, a in answers
        if a.kind != "refused" and a.payout_id
    ]
    if not said:
        return
    record = {"type": history.CHECK, "name": REPORTED_STATUS, "hash": invoice.payment_hash}
    record.update(wallet="+".join(w.wallet_id for w, _ in answers[:2]), phase=phase)
    record.update(payout_id=",".join(str(p["payout_id"]) for p in said))
    truth = {"status": node.get("status"), "fee_msat": node.get("fee_msat")}
    record.update(node=truth, word={"payouts": said, "source": "answers"})
    LOCAL.history.emit(record)
    fire_word_findings(request_event, record, started)
