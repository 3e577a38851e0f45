"""The rules of one payout's money, each written once: what a payment cost by the node's truth,
the kind of a wrong balance, the final audit's judgement of a payout no payer could judge.

The audit's entries come in three shapes (docs/history.md, `audit_entry`): one wallet's payout
(a payer's, or a traffic round's fresh wallet with the round's other invoices in `also`); a
group of fresh wallets that paid ONE invoice (`wallets`: the shared-invoice class, judged
together, as no one can say which of them paid); and a round of bad inputs (`bad_input`: the
edge class, every invoice due a refusal, so none may reach the node or move money)."""

from __future__ import annotations

import time
from typing import Any

from lnchaos.checker import answers
from lnchaos.checker.kinds import (
    ACCEPTED_BAD_INPUT,
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


def audit_group_entry(
    *, wallets: list[tuple[str, str, int]], payment_hash: str, amount_msat: int, phase: str
) -> dict[str, Any]:
    """Several fresh wallets that paid ONE invoice, their round of unknown outcome (the
    shared-invoice class): the audit cannot say which wallet paid, so it judges them together
    (`shared_kind`). wallets: (wallet id, api key, its balance before the round); the entry's
    `expected_msat` is their sum, its `wallet_id` their ids joined by "+" (as the live check
    names the pair)."""
    members = [
        {"wallet_id": wallet_id, "api_key": api_key, "expected_msat": int(before_msat)}
        for wallet_id, api_key, before_msat in wallets
    ]
    entry = audit_entry(
        wallet_id="+".join(member["wallet_id"] for member in members),
        api_key="",
        expected_msat=sum(member["expected_msat"] for member in members),
        payment_hash=payment_hash,
        amount_msat=amount_msat,
        phase=phase,
    )
    del entry["api_key"]  # each member's own: the audit reads each wallet with its key
    entry["wallets"] = members
    entry["retried"] = True  # two wallets charged for one payment is a double charge
    return entry


def audit_bad_input_entry(
    *,
    wallet_id: str,
    api_key: str,
    expected_msat: int,
    invoices: list[tuple[str, int]],
    phase: str,
) -> dict[str, Any]:
    """A fresh wallet's round of bad inputs of unknown outcome (the edge class): every invoice
    (payment hash, amount) was due a refusal, so the wallet must end holding `expected_msat`
    and the node must never have seen any of them (`bad_input_audit_kind`)."""
    (first_hash, first_msat), *others = invoices
    entry = audit_entry(
        wallet_id=wallet_id,
        api_key=api_key,
        expected_msat=expected_msat,
        payment_hash=first_hash,
        amount_msat=first_msat,
        phase=phase,
        also=others,
    )
    entry["bad_input"] = True
    return entry


def audit_of(entry: dict[str, Any], reads: dict[str, Any]) -> str | None:
    """The audit's kind of one entry from its reads, keyed as the history's `audit` record keys
    them (node, wallet_view, payout_view, error, also_nodes, wallet_views): the live audit and
    `lnchaos check` call this on the same dict, so they judge alike."""
    return audit_result(
        entry,
        reads.get("node"),
        reads.get("wallet_view"),
        reads.get("payout_view"),
        reads.get("error"),
        reads.get("also_nodes"),
        reads.get("wallet_views"),
    )


def audit_example_of(
    entry: dict[str, Any], reads: dict[str, Any], kind: str | None, t_unix: float | None
) -> dict[str, Any]:
    """`audit_example` from the same reads as `audit_of`."""
    return audit_example(
        entry,
        reads.get("node"),
        reads.get("wallet_view"),
        reads.get("payout_view"),
        kind,
        reads.get("error"),
        t_unix,
        reads.get("also_nodes"),
        reads.get("wallet_views"),
    )


def audit_result(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None,
    error: str | None = None,
    also_nodes: dict[str, Any] | None = None,
    wallet_views: dict[str, Any] | None = None,
) -> str | None:
    """The audit's kind of one entry from what it read: `unresolved` when a read failed.
    wallet_views: a group entry's wallet views by wallet id (its `wallet` is None)."""
    if error is not None:
        return UNRESOLVED
    if entry.get("wallets"):
        return group_audit_kind(entry, node, wallet_views)
    if entry.get("bad_input"):
        return bad_input_audit_kind(entry, node, wallet, also_nodes)
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


def group_audit_kind(
    entry: dict[str, Any], node: dict[str, Any] | None, wallet_views: dict[str, Any] | None
) -> str | None:
    """The final audit of a group entry (`audit_group_entry`): every wallet read, final (the
    node's payment final, nothing reserved), then judged together by `shared_kind`. A wallet
    not read, or the invoice not final, is `unresolved`; a view breaking its shape is
    `malformed_answer`."""
    views = [(wallet_views or {}).get(str(m["wallet_id"])) for m in entry["wallets"]]
    if node is None or any(view is None for view in views):
        return UNRESOLVED
    if any(malformed_views(view, None) for view in views if view is not None):
        return MALFORMED_ANSWER
    if node.get("status") not in FINAL_NODE:
        return UNRESOLVED
    if any(view["reserved_msat"] != 0 for view in views if view is not None):
        return UNRESOLVED
    paid, cost_msat = payment_cost(node, int(entry["amount_msat"]))
    charged_msat = [
        int(member["expected_msat"]) - int(view["balance_msat"])
        for member, view in zip(entry["wallets"], views, strict=True)
        if view is not None
    ]
    return shared_kind(charged_msat, paid, cost_msat)


def shared_kind(charged_msat: list[int], paid: bool, cost_msat: int) -> str | None:
    """Several wallets that paid ONE invoice (the shared-invoice class, live and in the audit):
    together they were charged what the node took (its cost when it paid, else nothing), and each
    either nothing or that whole cost. Both charged for one payment is `double_charge`; a sum
    that is right while no single wallet was charged the cost is `balance_mismatch`.
    charged_msat: each wallet's balance before less its balance now; cost_msat: payment_cost's
    (the would-be cost when not paid)."""
    diff_msat = (cost_msat if paid else 0) - sum(charged_msat)
    kind = classify_balance(diff_msat=diff_msat, paid=paid, retried=True, cost_msat=cost_msat)
    if kind is None and not all(charged in (0, cost_msat) for charged in charged_msat):
        return BALANCE_MISMATCH  # the sum is right, but not one charge of one wallet
    return kind


def bad_input_audit_kind(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    also_nodes: dict[str, Any] | None,
) -> str | None:
    """The final audit of a bad-input round (`audit_bad_input_entry`): each of its payouts was
    due a refusal, and a refusal moves nothing. The node having seen any of its invoices (paid,
    failed or in flight: a refusal went out), or money still held at the end, is
    `accepted_bad_input`, as the edge class's own check names it; else the balance must be the
    one before, a difference classified as for a payment not made. A read missing is
    `unresolved`."""
    others = [(also_nodes or {}).get(str(o["payment_hash"])) for o in entry.get("also") or ()]
    nodes = [node, *others]
    if wallet is None or any(n is None for n in nodes):
        return UNRESOLVED
    if malformed_views(wallet, None):
        return MALFORMED_ANSWER
    return bad_input_kind(
        seen=sum(n is not None and n.get("status") != "unknown" for n in nodes),
        reserved_msat=int(wallet["reserved_msat"]),
        diff_msat=int(wallet["balance_msat"]) - int(entry["expected_msat"]),
    )


def bad_input_kind(
    *, seen: int, reserved_msat: int, diff_msat: int, wrong_answers: bool = False
) -> str | None:
    """A round of bad inputs (the edge class, live and in the audit), each due a clear refusal,
    and a refusal moves nothing: an answer other than the refusal due (`wrong_answers`, known
    live only), an invoice the node saw (`seen`: any status but unknown), or money still held is
    `accepted_bad_input`; else a balance off by diff_msat is classified as for a payment not
    made (charged_not_paid or balance_mismatch)."""
    if wrong_answers or seen or reserved_msat:
        return ACCEPTED_BAD_INPUT
    return classify_balance(diff_msat=diff_msat, paid=False, retried=False, cost_msat=0)


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


def audit_expected_msat(
    entry: dict[str, Any], node: dict[str, Any] | None, also_nodes: dict[str, Any] | None
) -> int:
    """What the audit expects the entry's wallet (a group: its wallets together) to hold: the
    balance before, less the node's cost of the other invoices (`also`) and of the entry's own
    payment; a bad-input round exactly the balance before (none of it may move money)."""
    if entry.get("bad_input"):
        return int(entry["expected_msat"])
    before_msat = audit_before_msat(entry, also_nodes)
    before_msat = int(entry["expected_msat"]) if before_msat is None else before_msat
    return expected_balance_msat(
        before_msat=before_msat, amount_msat=int(entry["amount_msat"]), node=node or {}
    )


def audit_view(
    entry: dict[str, Any], wallet: dict[str, Any] | None, wallet_views: dict[str, Any] | None
) -> dict[str, Any]:
    """The view an audit example shows: the wallet's, or a group's wallets summed (balance and
    reserved, each only when every wallet's is a whole msat) with each one's charge."""
    if not entry.get("wallets"):
        return wallet or {}
    views = [(wallet_views or {}).get(str(m["wallet_id"])) or {} for m in entry["wallets"]]
    summed: dict[str, Any] = {}
    for key in ("balance_msat", "reserved_msat"):
        values = [answers.msat_or_none(view, key) for view in views]
        summed[key] = None if None in values else sum(v for v in values if v is not None)
    summed["charged_msat"] = [
        None if balance is None else int(member["expected_msat"]) - balance
        for member, balance in zip(
            entry["wallets"],
            [answers.msat_or_none(view, "balance_msat") for view in views],
            strict=True,
        )
    ]
    return summed


def audit_example(
    entry: dict[str, Any],
    node: dict[str, Any] | None,
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None,
    kind: str | None,
    error: str | None = None,
    t_unix: float | None = None,
    also_nodes: dict[str, Any] | None = None,
    wallet_views: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An example of the audit's finding, shaped as the checks' (never the wallet's api key).
    t_unix: when the audit read it (None: now). A group entry's example shows its wallets
    summed and each one's charge (`charged_msat`); a bad-input round's, each invoice's status
    at the node."""
    paid, cost_msat = payment_cost(node or {}, int(entry["amount_msat"]))
    expected_msat = audit_expected_msat(entry, node, also_nodes)
    view = audit_view(entry, wallet, wallet_views)
    actual_msat = answers.msat_or_none(view, "balance_msat")
    node_status = audit_node_status(entry, node, also_nodes)
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
        "reserved_msat": view.get("reserved_msat"),
        **({"charged_msat": view["charged_msat"]} if "charged_msat" in view else {}),
        "node_timed_out": (node or {}).get("timed_out") is True,  # the node's record of it
        # the payer's first answer came while the node still held the payment (the node's
        # held_ms against the answer's latency): a timeout the run reached, whatever was said
        "answered_in_flight": answered_in_flight(node or {}, entry.get("answered_ms")),
        "payout_status": (payout or {}).get("status"),
        "node_status": node_status if error is None else f"not audited: {error}",
        **(
            {"problems": audit_problems(entry, wallet, payout, wallet_views)}
            if kind == MALFORMED_ANSWER
            else {}
        ),
        "t_unix": round(time.time(), 3) if t_unix is None else t_unix,
    }


def audit_node_status(
    entry: dict[str, Any], node: dict[str, Any] | None, also_nodes: dict[str, Any] | None
) -> Any:
    """The node's status of the entry's payment; a bad-input round's of each of its invoices
    (comma-separated, as the edge check shows them)."""
    status = (node or {}).get("status")
    if not entry.get("bad_input"):
        return status
    others = [(also_nodes or {}).get(str(o["payment_hash"])) or {} for o in entry.get("also") or ()]
    return ",".join(str(n.get("status")) for n in [node or {}, *others])


def audit_problems(
    entry: dict[str, Any],
    wallet: dict[str, Any] | None,
    payout: dict[str, Any] | None,
    wallet_views: dict[str, Any] | None,
) -> list[str]:
    """What is wrong with the views the audit read (a group's: each wallet's, named)."""
    if not entry.get("wallets"):
        return malformed_views(wallet or {}, payout)
    return [
        f"{member['wallet_id']}: {problem}"
        for member in entry["wallets"]
        for problem in malformed_views(
            (wallet_views or {}).get(str(member["wallet_id"])) or {}, None
        )
    ]
