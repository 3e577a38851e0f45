"""The rules of one payout's money, each written once: what a payment cost by the node's truth,
the kind of a wrong balance, the final audit's judgement of a payout no payer could judge."""

from __future__ import annotations

import time
from typing import Any

from lnchaos.checker import answers
from lnchaos.checker.kinds import (
    AUDIT,
    BALANCE_MISMATCH,
    CHARGED_NOT_PAID,
    DOUBLE_CHARGE,
    FINAL_AUDIT,
    FINAL_NODE,
    FINAL_PAYOUT,
    MALFORMED_ANSWER,
    PAID_NOT_CHARGED,
    UNRESOLVED,
)


def classify_balance(
    *,
    diff_msat: int,
    paid: bool,
    retried: bool,
    cost_msat: int,
) -> str | None:
    """The inconsistency kind of a balance that is diff_msat off (actual - expected), or None.

    paid: whether the payment went out (the node's truth, or the wallet's definite answer);
    cost_msat: what this payout costs when paid (amount + fee), to recognise a double charge.
    """
    if diff_msat == 0:
        return None
    if retried and paid and diff_msat == -cost_msat:
        return DOUBLE_CHARGE
    if diff_msat < 0:
        return CHARGED_NOT_PAID  # charged more than the node paid, whether it paid or not
    return PAID_NOT_CHARGED if paid else BALANCE_MISMATCH


def audit_entry(
    *,
    wallet_id: str,
    api_key: str,
    expected_msat: int,
    payment_hash: str,
    amount_msat: int,
    phase: str,
    also: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """What a payer knows of a payout before sending it: enough for the final audit to judge it
    from the node's truth alone. expected_msat: the wallet's balance before this payout (exact:
    the payer resynchronises at every check and abandons the wallet right after this payout).
    also: (payment hash, amount) of the other invoices a traffic round sent from this wallet,
    each paid at most once, whose cost by the node's truth the audit takes off first."""
    extra = {"also": [{"payment_hash": h, "amount_msat": int(a)} for h, a in also]} if also else {}
    return {
        **extra,
        "wallet_id": wallet_id,
        "api_key": api_key,
        "expected_msat": int(expected_msat),
        "payout_id": None,
        "payment_hash": payment_hash,
        "amount_msat": int(amount_msat),
        "phase": phase,
        "retried": False,
        "outcome": None,
        "reason": None,
    }


def audit_result(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None,
    error: str | None = None,
    also_nodes: dict[str, Any] | None = None,
) -> str | None:
    """The audit's kind of one payout from what it read: `unresolved` when a read failed."""
    if error is not None:
        return UNRESOLVED
    return audit_kind(entry, node, wallet, payout, also_nodes)


def audit_before_msat(entry: dict[str, Any], also_nodes: dict[str, Any] | None) -> int | None:
    """The balance the audit expects before its payout: the entry's, less what the node paid
    for the other invoices its round sent from the same wallet (`also`: a traffic round of
    unknown outcome, each invoice paid at most once); None while one of those is not final or
    was not read."""
    before_msat = int(entry["expected_msat"])
    for other in entry.get("also") or ():
        node = (also_nodes or {}).get(str(other["payment_hash"]))
        if node is None or node.get("status") not in FINAL_NODE:
            return None
        before_msat -= node_cost_msat(node, int(other["amount_msat"]))
    return before_msat


def audit_kind(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None = None,
    also_nodes: dict[str, Any] | None = None,
) -> str | None:
    """The final audit of one payout its payer could not judge: an inconsistency kind, or None.

    node: the node's truth of the payment hash (GET /node/payments/{hash}); wallet: the wallet's
    view (balance_msat, reserved_msat); payout: the wallet's payout, when its id is known. Not
    final (node in flight, money still reserved, payout pending) or not seen -> `unresolved`;
    else the balance must be the one before the payout, less amount + the node's fee when the
    node paid, and nothing when it failed or never saw the payment. A wallet view or payout that
    breaks its promised shape (answers.py: e.g. no `reserved_msat`) is `malformed_answer`: an
    absent reserve is not "nothing reserved".
    """
    if node is None or wallet is None:
        return UNRESOLVED
    if malformed_views(wallet, payout):
        return MALFORMED_ANSWER
    if node.get("status") not in FINAL_NODE or wallet["reserved_msat"] != 0:
        return UNRESOLVED
    if payout is not None and payout.get("status") not in FINAL_PAYOUT:
        return UNRESOLVED
    before_msat = audit_before_msat(entry, also_nodes)  # also_nodes: the entry's `also`'s truth
    if before_msat is None:
        return UNRESOLVED
    return balance_kind(
        before_msat=before_msat,
        amount_msat=int(entry["amount_msat"]),
        node=node,
        actual_msat=int(wallet["balance_msat"]),
        retried=bool(entry.get("retried")),
    )


def malformed_views(wallet: dict[str, Any], payout: dict[str, Any] | None) -> list[str]:
    """What is wrong with the audit's views of the wallet and the payout (answers.py's rules)."""
    found = [f"wallet view: {p}" for p in answers.problems("wallet_view", wallet)]
    if payout is not None:
        shape = answers.payout_view_shape(payout)
        found += [f"payout view: {p}" for p in answers.problems(shape, payout)]
    return found


def node_cost_msat(node: dict[str, Any], amount_msat: int) -> int:
    """What one payment cost its payer by the node's truth: the invoice's amount plus the fee the
    node charged when the node paid it, else nothing. The one home of this rule."""
    if node.get("status") != "succeeded":
        return 0
    return int(amount_msat) + int(node.get("fee_msat") or 0)


def payment_cost(node: dict[str, Any], amount_msat: int) -> tuple[bool, int]:
    """(paid, cost_msat): whether the node paid, and what the payment costs when it did (amount +
    the node's fee); a payment not paid costs nothing, but its would-be cost (the amount) still
    recognises a double charge."""
    paid = node.get("status") == "succeeded"
    return paid, node_cost_msat(node, amount_msat) if paid else int(amount_msat)


def expected_balance_msat(
    *, before_msat: int, amount_msat: int, node: dict[str, Any], **_inputs: Any
) -> int:
    """A wallet's balance after one payout: before, less its cost by the node's truth."""
    paid, cost_msat = payment_cost(node, amount_msat)
    return int(before_msat) - (cost_msat if paid else 0)


def balance_kind(
    *,
    before_msat: int,
    amount_msat: int,
    node: dict[str, Any],
    actual_msat: int,
    retried: bool = False,
) -> str | None:
    """The balance check of one final payout (its inputs as the history records them): the
    balance seen after it must be the one before, less amount + the node's fee when the node
    paid, and nothing when it did not. The inconsistency kind, or None."""
    paid, cost_msat = payment_cost(node, amount_msat)
    expected_msat = expected_balance_msat(
        before_msat=before_msat, amount_msat=amount_msat, node=node
    )
    return classify_balance(
        diff_msat=int(actual_msat) - expected_msat, paid=paid, retried=retried, cost_msat=cost_msat
    )


def answered_in_flight(node: dict[str, Any], answered_ms: Any) -> bool:
    """The wallet gave its answer sooner than the node held the payment (held_ms, the node's
    record; answered_ms, the request's latency by the suite's clock): it answered while the
    payment was in flight, the window where timeouts go wrong, whatever it said."""
    held_ms = node.get("held_ms")
    if not isinstance(held_ms, int) or isinstance(held_ms, bool):
        return False
    return isinstance(answered_ms, int | float) and held_ms > answered_ms


def audit_example(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None,
    kind: str | None,
    error: str | None = None,
    t_unix: float | None = None,
    also_nodes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An example of the audit's finding, shaped as the checks' (never the wallet's api key).
    t_unix: when the audit read it (None: now)."""
    paid, cost_msat = payment_cost(node or {}, int(entry["amount_msat"]))
    before_msat = audit_before_msat(entry, also_nodes)
    before_msat = int(entry["expected_msat"]) if before_msat is None else before_msat
    expected_msat = before_msat - (cost_msat if paid else 0)
    actual_msat = answers.msat_or_none(wallet or {}, "balance_msat")
    node_status = (node or {}).get("status")
    return {
        "check": FINAL_AUDIT,
        "kind": kind,
        "source": AUDIT,
        "wallet_id": entry.get("wallet_id"),
        "payout_id": entry.get("payout_id"),
        "payment_hash": entry.get("payment_hash"),
        "phase": entry.get("phase"),
        "why_audited": entry.get("reason"),
        "first_outcome": entry.get("outcome"),
        "retried": bool(entry.get("retried")),
        "amount_msat": int(entry["amount_msat"]),
        "fee_msat": cost_msat - int(entry["amount_msat"]) if paid else 0,
        "expected_msat": expected_msat,
        "actual_msat": actual_msat,
        "diff_msat": actual_msat - expected_msat if actual_msat is not None else 0,
        "reserved_msat": (wallet or {}).get("reserved_msat"),
        "node_timed_out": (node or {}).get("timed_out") is True,  # the node's record of it
        # the payer's first answer came while the node still held the payment (the node's
        # held_ms against the answer's latency): a timeout the run reached, whatever was said
        "answered_in_flight": answered_in_flight(node or {}, entry.get("answered_ms")),
        "payout_status": (payout or {}).get("status"),
        "node_status": node_status if error is None else f"not audited: {error}",
        **({"problems": malformed_views(wallet or {}, payout)} if kind == MALFORMED_ANSWER else {}),
        "t_unix": round(time.time(), 3) if t_unix is None else t_unix,
    }
