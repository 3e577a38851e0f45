"""The wallet's word against the node's truth: what a wallet told its user, and its books, judged
by what the node did. Pure functions of recorded inputs (the history's fold and `lnchaos check`
call the same ones), each rule written once:

- `status_kind`: a final payout's reported status is `succeeded` exactly when the node paid the
  payout's own attempt (its invoice's hash), `failed` exactly when it did not;
- `fee_kind`: a final payout's reported fee is the node's fee for that attempt when the node
  paid it, and 0 (or absent) when it did not;
- `view_kind`: a wallet's view (balance, reserved) read while payouts of it are pending: the
  money of a pending payout is never shown as spendable, and no more is held than its fee
  reserve allows (below);
- `books_kind`: the ledger's paid-out and fee totals for the run's payouts against what the node
  sent and charged for them: a balanced but misplaced entry (a fee booked as paid out) fails.

The view. Let `base` be the wallet's balance before its open payouts (exact: the payer knows
it), each open payout costing `cost` = amount + the node's fee when the node paid it, else 0. A
payout the wallet may already have settled at the read is counted either way (each choice
tried; at most OPEN_MAX open payouts). For a choice, `in_hand` = base - the settled ones' costs,
and the ones still pending are held. Then:
    balance <= in_hand - sum(amount + the node's fee when paid) over the held ones
        (held money is never spendable: what the node will take is off the balance),
    balance >= in_hand - sum(amount + fee reserve) over the held ones (when the reserve is known:
        a wallet holds at most what its fee limit allows),
    balance + reserved <= in_hand (reserving moves money, it never makes any),
    and neither is below zero.
A wallet that keeps held money apart (lnchaos: `reserved_msat`) and one that takes it off the
balance with nothing apart (LNbits: `reserved_msat` 0) both pass; showing it twice, or not at
all, does not.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from lnchaos.checker.kinds import (
    BOOKS,
    BOOKS_MISMATCH,
    FEE_MISMATCH,
    RECONCILIATION,
    REPORTED_FEE,
    REPORTED_STATUS,
    STATUS_MISMATCH,
    VIEW_MISMATCH,
    WALLET_VIEW,
)

FINAL_REPORTED = ("succeeded", "failed")
FINAL_NODE = ("succeeded", "failed", "unknown")
# open payouts of one wallet a view is judged with: 2**OPEN_MAX choices at most
OPEN_MAX = 10


def _paid(node: dict[str, Any]) -> bool:
    return node.get("status") == "succeeded"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def status_kind(*, status: Any, node: dict[str, Any]) -> str | None:
    """`status_mismatch` when a final reported status disagrees with the node's final truth;
    None when they agree or either side is not final (not this rule's question)."""
    if status not in FINAL_REPORTED or node.get("status") not in FINAL_NODE:
        return None
    return None if (status == "succeeded") == _paid(node) else STATUS_MISMATCH


def fee_kind(*, status: Any, fee_msat: Any, node: dict[str, Any]) -> str | None:
    """`fee_mismatch` when the reported fee is not the node's: paid -> exactly the node's fee
    (absent or not an integer is a mismatch); not paid -> 0 or absent. None: agrees, not final
    on either side, or the status itself is wrong (`status_kind` speaks for that payout)."""
    if status not in FINAL_REPORTED or node.get("status") not in FINAL_NODE:
        return None
    if status_kind(status=status, node=node) is not None:
        return None  # the wrong status is the finding: its fee is no second one
    reported = _int_or_none(fee_msat)
    if _paid(node):
        return None if reported == int(node.get("fee_msat") or 0) else FEE_MISMATCH
    return None if fee_msat is None or reported == 0 else FEE_MISMATCH


def shared_status_kind(*, statuses: list[Any], node: dict[str, Any]) -> str | None:
    """Several payouts of one invoice (one hash, each its own attempt; the wallet names no
    attempt): the node paid the hash once at most, so at most one of them may say `succeeded`,
    exactly one when every one of them is final and the node paid, none when it did not.
    `statuses`: each payout's reported status (None or `pending`: not final)."""
    if node.get("status") not in FINAL_NODE:
        return None
    said_paid = sum(status == "succeeded" for status in statuses)
    if not _paid(node):
        return None if said_paid == 0 else STATUS_MISMATCH
    all_final = all(status in FINAL_REPORTED for status in statuses)
    return None if said_paid == 1 or (said_paid == 0 and not all_final) else STATUS_MISMATCH


def payout_word_kinds(word: dict[str, Any], node: dict[str, Any]) -> dict[str, str | None]:
    """Both rules of one final payout's word ({"status", "fee_msat"}), by check name; of
    several payouts of one invoice ({"payouts": [{"status", "fee_msat"}, ...]}), the shared
    rule of their statuses and the fee of the one that says it paid."""
    if "payouts" in word:
        statuses = [p.get("status") for p in word["payouts"]]
        status_found = shared_status_kind(statuses=statuses, node=node)
        paid_fees = [p.get("fee_msat") for p in word["payouts"] if p.get("status") == "succeeded"]
        fee_found = None
        if status_found is None and paid_fees:
            fee_found = fee_kind(status="succeeded", fee_msat=paid_fees[0], node=node)
        return {REPORTED_STATUS: status_found, REPORTED_FEE: fee_found}
    status, fee_msat = word.get("status"), word.get("fee_msat")
    return {
        REPORTED_STATUS: status_kind(status=status, node=node),
        REPORTED_FEE: fee_kind(status=status, fee_msat=fee_msat, node=node),
    }


def _cost_msat(payout: dict[str, Any]) -> int:
    node = payout.get("node") or {}
    return int(payout["amount_msat"]) + int(node.get("fee_msat") or 0) if _paid(node) else 0


def _hold_bounds(held: list[dict[str, Any]]) -> tuple[int, int | None]:
    """(least, most) the held payouts may keep off the balance; most None: a reserve unknown."""
    least = sum(
        int(p["amount_msat"]) + (_fee(p) if _paid(p.get("node") or {}) else 0) for p in held
    )
    reserves = [_int_or_none(p.get("fee_reserve_msat")) for p in held]
    if any(r is None for r in reserves):
        return least, None
    return least, sum(
        int(p["amount_msat"]) + int(r or 0) for p, r in zip(held, reserves, strict=True)
    )


def _fee(payout: dict[str, Any]) -> int:
    return int((payout.get("node") or {}).get("fee_msat") or 0)


def view_bounds(
    *, base_msat: int, open_payouts: list[dict[str, Any]], settled: tuple[int, ...]
) -> dict[str, Any]:
    """For one choice of the open payouts settled at the read (their indexes): what is in hand
    and the bounds of the balance (module docstring)."""
    in_hand = int(base_msat) - sum(_cost_msat(open_payouts[i]) for i in settled)
    held = [p for i, p in enumerate(open_payouts) if i not in settled]
    least, most = _hold_bounds(held)
    return {
        "in_hand_msat": in_hand,
        "balance_max_msat": in_hand - least,
        "balance_min_msat": None if most is None else in_hand - most,
    }


def _fits(bounds: dict[str, Any], balance_msat: int, reserved_msat: int) -> bool:
    low = bounds["balance_min_msat"]
    return (
        0 <= balance_msat <= bounds["balance_max_msat"]
        and (low is None or balance_msat >= low)
        and reserved_msat >= 0
        and balance_msat + reserved_msat <= bounds["in_hand_msat"]
    )


def _choices(open_payouts: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """Every set of open payouts that may have been settled at the read: a payout known
    pending on both sides of the read (`held`) never is, one answered final before the read
    (`settled`) always is, any other may be either."""
    always = tuple(i for i, p in enumerate(open_payouts) if p.get("settled"))
    maybe = [i for i, p in enumerate(open_payouts) if not p.get("held") and not p.get("settled")][
        :OPEN_MAX
    ]
    return [always + c for n in range(len(maybe) + 1) for c in combinations(maybe, n)]


def view_kind(
    *,
    base_msat: int,
    balance_msat: Any,
    reserved_msat: Any,
    open_payouts: list[dict[str, Any]],
) -> str | None:
    """`view_mismatch` when no choice of settled open payouts explains the view (module
    docstring); a balance that is not an integer is a mismatch too. None: it fits."""
    balance, reserved = _int_or_none(balance_msat), _int_or_none(reserved_msat)
    if balance is None:
        return VIEW_MISMATCH
    reserved = reserved or 0  # an absent reserved: nothing apart (LNbits' model)
    for settled in _choices(open_payouts):
        bounds = view_bounds(base_msat=base_msat, open_payouts=open_payouts, settled=settled)
        if _fits(bounds, balance, reserved):
            return None
    return VIEW_MISMATCH


def books_kind(books: dict[str, Any] | None) -> str | None:
    """`books_mismatch` when the ledger's totals for the run's payouts differ from the node's:
    paid out against sent, fees against fees. None: they agree, or not comparable (no books
    given, or payouts of the run not final yet: `unresolved` speaks for those)."""
    if not books or int(books.get("not_final") or 0) > 0:
        return None
    ledger, node = books.get("ledger") or {}, books.get("node") or {}
    same_paid_out = ledger.get("paid_out_msat") == node.get("sent_msat")
    same_fees = ledger.get("fees_msat") == node.get("fees_msat")
    return None if same_paid_out and same_fees else BOOKS_MISMATCH


def books_example(books: dict[str, Any]) -> dict[str, Any]:
    """Both sides of the books, as consistency.json shows a finding."""
    ledger, node = books.get("ledger") or {}, books.get("node") or {}
    paid_out_diff = int(ledger.get("paid_out_msat") or 0) - int(node.get("sent_msat") or 0)
    fees_diff = int(ledger.get("fees_msat") or 0) - int(node.get("fees_msat") or 0)
    return {
        "check": BOOKS,
        "kind": BOOKS_MISMATCH,
        "source": RECONCILIATION,  # the target's books against the node's: no payout's records
        "ledger": ledger,
        "node": node,
        "paid_out_diff_msat": paid_out_diff,
        "fees_diff_msat": fees_diff,
        "diff_msat": 0,  # money in the wrong account, not money off (conservation speaks)
    }


def word_node(record: dict[str, Any]) -> dict[str, Any]:
    """The node's truth a word is judged by: the balance check's (`in.node`), or the record's own
    (`node`: a word recorded alone, a traffic class's payout)."""
    return (record.get("in") or record).get("node") or {}


def word_example(record: dict[str, Any], check: str, kind: str | None) -> dict[str, Any]:
    """A payout's word finding (status or fee) with both sides, from its check record."""
    node = word_node(record)
    word = record.get("word") or {}
    return {
        "check": check,
        "kind": kind,
        "wallet_id": record.get("wallet"),
        "payout_id": record.get("payout_id"),
        "payment_hash": record.get("hash"),
        "phase": record.get("phase"),
        "reported_status": word.get("status"),
        "reported_fee_msat": word.get("fee_msat"),
        "reported_payouts": word.get("payouts"),  # several payouts of one invoice
        "reported_by": word.get("source"),
        "node_status": node.get("status"),
        "node_fee_msat": node.get("fee_msat"),
        "diff_msat": 0,  # what the wallet said, not where its money went (the balance checks)
        "t_unix": record.get("t"),
    }


def view_example(record: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """A view finding: what the wallet showed and what it could have shown (all held)."""
    view = record["view"]
    open_payouts = view.get("open_payouts") or []
    bounds = view_bounds(base_msat=view["base_msat"], open_payouts=open_payouts, settled=())
    return {
        "check": WALLET_VIEW,
        "kind": kind,
        "wallet_id": record.get("wallet"),
        "payout_id": record.get("payout_id"),
        "payment_hash": record.get("hash"),
        "phase": record.get("phase"),
        "base_msat": view["base_msat"],
        "balance_msat": view.get("balance_msat"),
        "reserved_msat": view.get("reserved_msat"),
        "open_payouts": open_payouts,
        **bounds,
        "diff_msat": 0,
        "t_unix": record.get("t"),
    }


def view_record_kind(record: dict[str, Any]) -> str | None:
    """The view rule of a `wallet_view` check record (its inputs under `view`)."""
    view = record["view"]
    return view_kind(
        base_msat=int(view["base_msat"]),
        balance_msat=view.get("balance_msat"),
        reserved_msat=view.get("reserved_msat"),
        open_payouts=list(view.get("open_payouts") or []),
    )
