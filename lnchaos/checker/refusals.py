"""A refusal must have moved nothing, written once: a payout the wallet refused (409) never
reached the node through that request, and (judged with the balance by the round's own money
rule) left the wallet as it was.

The node says how many attempts it had for a payment hash (GET /node/payments/{hash}
`attempts`). Of a round's payouts of one hash, only those the wallet took (not refused) may have
sent it: more attempts than that means a refused request reached the node anyway (a wallet that
sends first and checks its funds after, or answers 409 to a payout it sent). The money of such
a send is judged by the balance rules; this rule judges the refusal itself, so a refusal that
reached the node is found also when it happened to move no money, or when the round's sum hides
it behind another payout.
"""

from __future__ import annotations

from typing import Any

from lnchaos.checker.kinds import REFUSED_BUT_SENT


def sent_despite_refusal(node: dict[str, Any], taken: int) -> int:
    """How many attempts of one hash the node had beyond the `taken` payouts the wallet accepted
    (0: every refusal of it moved nothing at the node). A node record without `attempts` counts
    an attempt when the node knows the payment at all."""
    attempts = node.get("attempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool):
        attempts = 0 if node.get("status") in (None, "unknown") else 1
    return max(0, attempts - taken)


def refusal_kind(money_kind: str | None, extra_attempts: int) -> str | None:
    """The round's kind: its money first (a wrong balance is the worse finding), then a
    refusal that reached the node."""
    if money_kind is not None:
        return money_kind
    return REFUSED_BUT_SENT if extra_attempts > 0 else None
