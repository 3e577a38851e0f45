"""The traffic classes' rounds (locustfiles/traffic.py), each judged from the facts it recorded.

A round's `check` record carries `facts`: what its rule takes, and no more (the amounts, the
node's final truth of each invoice, the balances read, each answer's HTTP status, status and
error code; never an API key). The live run judges a round by calling `judge` on the record it
is about to write, and `lnchaos check` calls `judge` again on the record it reads back
(history.apply), so a rule changed here re-judges yesterday's rounds. A record without facts
(a history written before they were recorded) keeps the kind it recorded.

- shared (`judge_shared`): two wallets paid ONE invoice; together charged what the node took,
  each nothing or that whole cost (rules.shared_kind), and no refusal reached the node;
- drain (`judge_drain`): payouts over one wallet's balance at once; never below zero
  (`overdrawn`), charged exactly what the node paid, no refusal reached the node;
- retry (`judge_retry`): one Idempotency-Key at the wrong moments; charged what the node paid
  for the key's invoice (a second charge is a double one), else each wrong answer is
  `idempotency_mismatch`;
- edge (`judge_edge`): bad inputs, each due its clear refusal (EDGE_CASES); nothing moved and
  the node saw none of them (rules.bad_input_kind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lnchaos.checker import refusals, rules
from lnchaos.checker.kinds import (
    DRAIN,
    EDGE_ROUND,
    IDEMPOTENCY_MISMATCH,
    MAX_EXAMPLES,
    OVERDRAWN,
    RETRY_ROUND,
    SHARED_INVOICE,
)

FACTS = "facts"  # the check record's field holding a round's facts (docs/history.md)
# the refusals a round expects besides success, failure and timeout: they move nothing
REFUSALS = ("payment_in_progress", "invoice_already_paid", "insufficient_funds")
IN_PROGRESS = ("request_in_progress",)
KEY_REFUSALS = ("idempotency_key_reused", *IN_PROGRESS)  # a key's other request, told no
# the edge class's cases, each with the answer due (HTTP status, error code). Amounts at the
# limits: one over the wallet's balance (amount = funding, so amount + fee reserve is over it),
# the largest an invoice of the network may ask (21M BTC) and one over it; invoices expired, of
# another network, amountless.
EDGE_CASES: dict[str, tuple[int, str]] = {
    "over_balance": (409, "insufficient_funds"),
    "max_amount": (409, "insufficient_funds"),
    "over_limit": (400, "invalid_amount"),
    "expired": (400, "expired_invoice"),
    "mainnet": (400, "foreign_invoice"),
    "testnet": (400, "foreign_invoice"),
    "amountless": (400, "amountless_invoice"),
}
# of the node's truth of a payment, what the rounds' rules read (its times and holds are the
# coverage's and the timeouts', recorded apart)
NODE_FACTS = ("status", "fee_msat", "attempts")
ANSWER_FACTS = ("status", "error", "payout_id")

Facts = dict[str, Any]
Shown = dict[str, Any]  # an example's fields besides the record's ids


# ---- the facts, as a round records them -------------------------------------------------------


def answer(http: int, body: dict[str, Any], *, message: bool = False) -> Facts:
    """An answer as a round's facts keep it: its HTTP status (0: none) and the body's status,
    error code and payout id when present; `message`: also whether the body carried a message
    (the edge class's refusals must)."""
    kept: Facts = {"http": int(http)}
    kept.update({key: body[key] for key in ANSWER_FACTS if body.get(key) is not None})
    if message:
        kept["message"] = bool(body.get("message"))
    return kept


def node(truth: dict[str, Any]) -> Facts:
    """The node's truth of one payment as a round's facts keep it."""
    return {key: truth[key] for key in NODE_FACTS if key in truth}


def describe(said: Facts) -> str:
    """An answer in a few words, as the examples show it: `HTTP 409 insufficient_funds`."""
    return f"HTTP {said['http']} {said.get('error') or said.get('status') or ''}".strip()


def outcome(said: Facts) -> str:
    """A payout answer's outcome (kinds.OUTCOMES) by its HTTP status alone: a 4xx is a
    rejection, no answer or another 5xx an error (its outcome unknown)."""
    http = int(said["http"])
    if http == 200 and said.get("status") == "succeeded":
        return "succeeded"
    by_status = {202: "pending", 504: "timeout", 502: "failed"}
    if http in by_status:
        return by_status[http]
    return "error" if http == 0 or http >= 500 else "rejected"


def refused(said: Facts) -> bool:
    """A refusal the round expects (409 with one of REFUSALS): it stored no payout and may not
    have sent anything to the node."""
    return said["http"] == 409 and said.get("error") in REFUSALS


def took_key(said: Facts) -> bool:
    """Whether the wallet took this request as its Idempotency-Key's own: any answer but a
    refusal of the key (422 idempotency_key_reused, 409 request_in_progress)."""
    return not (400 <= int(said["http"]) < 500 and said.get("error") in KEY_REFUSALS)


# ---- shared: one invoice, two wallets ------------------------------------------------------------


def judge_shared(facts: Facts) -> tuple[str | None, Shown]:
    """facts: amount_msat, node (the invoice's final truth), before_msat and balances_msat (each
    wallet's, in order), answers (every payout answer of the round). Charged together what the
    node took, each wallet nothing or that cost (rules.shared_kind); a refused payout never sent
    (the node's attempts at most the payouts the wallet took: refusals.py)."""
    amount_msat, truth = int(facts["amount_msat"]), facts["node"]
    paid, cost_msat = rules.payment_cost(truth, amount_msat)
    before_msat = [int(b) for b in facts["before_msat"]]
    balances_msat = [int(b) for b in facts["balances_msat"]]
    charged_msat = [b - a for b, a in zip(before_msat, balances_msat, strict=True)]
    kind = rules.shared_kind(charged_msat, paid, cost_msat)
    answers = facts["answers"]
    taken = len({a["payout_id"] for a in answers if a.get("payout_id") and not refused(a)})
    sent_refused = refusals.sent_despite_refusal(truth, taken)
    kind = refusals.refusal_kind(kind, sent_refused)
    expected_msat = sum(before_msat) - (cost_msat if paid else 0)
    shown = {
        "payout_id": ",".join(str(a.get("payout_id")) for a in answers),
        **money(amount_msat, cost_msat - amount_msat, expected_msat, sum(balances_msat)),
        "payout_status": ",".join(describe(a) for a in answers),
        "node_status": truth.get("status"),
        "detail": f"charged per wallet {charged_msat} msat; node attempts beyond the payouts"
        f" taken: {sent_refused}",
    }
    return kind, shown


# ---- drain: payouts over one wallet's balance at once --------------------------------------------


def judge_drain(facts: Facts) -> tuple[str | None, Shown]:
    """facts: funding_msat, balances_msat (read while the payouts ran, if that read answered,
    then at the end: the last is the final balance), reserved_msat (the final read's), payouts
    ([{amount_msat, node, answer}], each invoice once). Never below zero (`overdrawn`, even if
    repaid later); the final balance is the funding less what the node paid for each invoice;
    a refused payout never reached the node."""
    payouts = facts["payouts"]
    funding_msat = int(facts["funding_msat"])
    balances_msat = [int(b) for b in facts["balances_msat"]]
    paid_msat = sum(rules.node_cost_msat(p["node"], int(p["amount_msat"])) for p in payouts)
    amounts_paid_msat = sum(
        int(p["amount_msat"]) for p in payouts if p["node"].get("status") == "succeeded"
    )
    expected_msat, actual_msat = funding_msat - paid_msat, balances_msat[-1]
    if min(balances_msat) < 0:
        kind: str | None = OVERDRAWN
    else:
        kind = rules.classify_balance(
            diff_msat=actual_msat - expected_msat,
            paid=paid_msat > 0,
            retried=False,
            cost_msat=paid_msat,
        )
    # each invoice is paid once in a drain: a refused one must never have reached the node
    sent_refused = sum(
        refusals.sent_despite_refusal(p["node"], int(not refused(p["answer"]))) for p in payouts
    )
    kind = refusals.refusal_kind(kind, sent_refused)
    refused_count = sum(refused(p["answer"]) for p in payouts)
    shown = {
        "payout_id": ",".join(str(p["answer"].get("payout_id")) for p in payouts),
        **money(
            sum(int(p["amount_msat"]) for p in payouts),
            paid_msat - amounts_paid_msat,
            expected_msat,
            actual_msat,
        ),
        "reserved_msat": facts.get("reserved_msat"),
        "payout_status": ",".join(describe(p["answer"]) for p in payouts),
        "node_status": ",".join(str(p["node"].get("status")) for p in payouts),
        "detail": f"funding {funding_msat} msat, {refused_count} refused ({sent_refused} of them"
        f" sent to the node), balances seen {balances_msat}",
    }
    return kind, shown


# ---- retry: the same Idempotency-Key at the wrong moments ----------------------------------------


def one_answer(pair: list[Facts]) -> bool:
    """Whether two answers to one request are the same answer: HTTP status and payout."""
    first, second = pair
    return (second["http"], second.get("payout_id")) == (first["http"], first.get("payout_id"))


def same_key_problem(pair: list[Facts], said: list[str] | None = None) -> str | None:
    """Step 1: the same key twice at once must end with one answer (`one_answer`). said: how
    to name the two answers (their payouts' invoices, as the wallet reported them)."""
    if one_answer(pair):
        return None
    first_said, second_said = said or (describe(pair[0]), describe(pair[1]))
    return f"same key, two answers: {first_said} / {second_said}"


def reused_problem(reused: Facts) -> str | None:
    """Step 2: the key with another invoice must get a clear 4xx refusing the key."""
    if took_key(reused) or not reused.get("error"):
        return f"same key, another invoice: {describe(reused)}, not a clear 4xx"
    return None


def again_problem(paid_first: bool, again: Facts) -> str | None:
    """Step 3: the invoice with a new key once the first is final: refused (409
    invoice_already_paid) after a success, a new attempt after a failure."""
    already_paid = again["http"] == 409 and again.get("error") == "invoice_already_paid"
    if paid_first and not already_paid:
        return f"a new key after a success: {describe(again)}, not refused"
    if not paid_first and again["http"] in (409, 422):
        return f"a new key after a failure: {describe(again)}, refused"
    return None


def other_invoice_problem(other_node: Facts) -> str | None:
    """The other invoice, sent only with a key it could not claim, never reaches the node."""
    if other_node.get("status") != "unknown":
        return f"the other invoice reached the node: {other_node}"
    return None


def started_payouts(first: Facts, reused: Facts, again: Facts) -> list[Any]:
    """The payout ids a retry round started: the key's, and the reuse's and the new key's when
    the wallet took them as payouts (the round waits for each to be final)."""
    ids = [first["payout_id"]]
    for said in (reused, again):
        if said.get("payout_id") and took_key(said) and outcome(said) != "rejected":
            ids.append(said["payout_id"])
    return list(dict.fromkeys(ids))


def retry_problems(facts: Facts) -> list[str]:
    """A retry round's wrong answers, in the order the round met them."""
    found = [
        same_key_problem(facts["pair"], facts.get("said")),
        reused_problem(facts["reused"]),
        again_problem(bool(facts["paid_first"]), facts["again"]),
        other_invoice_problem(facts["other_node"]),
    ]
    return [problem for problem in found if problem is not None]


def judge_retry(facts: Facts) -> tuple[str | None, Shown]:
    """facts: funding_msat, balance_msat and reserved_msat (the final read), amount_msat and node
    (the invoice that claimed the key), other_amount_msat and other_node (the other invoice),
    paid_first (the node paid the key's invoice when its first payout was final), first (the
    key's own answer), pair (the two same-key answers of step 1), reused (step 2), again (step
    3), said (optional: the pair as named to the user when they differ). Charged what the node
    paid for both invoices, a second charge a double one; else a wrong answer is
    `idempotency_mismatch`."""
    problems = retry_problems(facts)
    amount_msat, truth = int(facts["amount_msat"]), facts["node"]
    paid, cost_msat = rules.payment_cost(truth, amount_msat)
    spent_msat = rules.node_cost_msat(truth, amount_msat) + rules.node_cost_msat(
        facts["other_node"], int(facts["other_amount_msat"])
    )
    expected_msat = int(facts["funding_msat"]) - spent_msat
    actual_msat = int(facts["balance_msat"])
    kind = rules.classify_balance(
        diff_msat=actual_msat - expected_msat, paid=paid, retried=True, cost_msat=cost_msat
    )
    if kind is None and problems:
        kind = IDEMPOTENCY_MISMATCH
    answers = [*facts["pair"], facts["reused"], facts["again"]]
    payout_ids = started_payouts(facts["first"], facts["reused"], facts["again"])
    fee_msat = cost_msat - amount_msat if paid else 0
    shown = {
        "payout_id": ",".join(map(str, payout_ids)),
        **money(amount_msat, fee_msat, expected_msat, actual_msat),
        "reserved_msat": facts.get("reserved_msat"),
        "payout_status": ",".join(describe(a) for a in answers),
        "node_status": truth.get("status"),
        "detail": "; ".join(problems) or ("paid" if paid else "not paid"),
    }
    return kind, shown


# ---- edge: bad inputs, each due a clear refusal --------------------------------------------------


def edge_problem(case: str, said: Facts) -> str | None:
    """A bad input answered other than with its case's refusal (status, error code, message)."""
    status, code = EDGE_CASES[case]
    if (said["http"], said.get("error")) != (status, code) or not said.get("message"):
        return f"{case}: {describe(said)}, expected HTTP {status} {code}"
    return None


def judge_edge(facts: Facts) -> tuple[str | None, Shown]:
    """facts: funding_msat, balance_msat and reserved_msat (the final read: a reserve not read
    counts as none here, its absence is answer_shape's finding), cases ([{case, answer,
    node_status}], each invoice sent). Each refused as its case says, the node saw none, the
    wallet holds its funding with nothing reserved (rules.bad_input_kind)."""
    cases = facts["cases"]
    problems = [p for c in cases if (p := edge_problem(c["case"], c["answer"])) is not None]
    seen = sum(c["node_status"] != "unknown" for c in cases)
    if seen:
        problems.append(f"the node saw {seen} of these payments")
    funding_msat, actual_msat = int(facts["funding_msat"]), int(facts["balance_msat"])
    reserved_msat = int(facts.get("reserved_msat") or 0)
    kind = rules.bad_input_kind(
        seen=seen,
        reserved_msat=reserved_msat,
        diff_msat=actual_msat - funding_msat,
        wrong_answers=bool(problems),
    )
    shown = {
        "payout_id": None,
        **money(0, 0, funding_msat, actual_msat),
        "reserved_msat": reserved_msat,
        "payout_status": "; ".join(f"{c['case']}: {describe(c['answer'])}" for c in cases),
        "node_status": ",".join(str(c["node_status"]) for c in cases),
        "detail": "; ".join(problems) or "every one refused, nothing moved",
    }
    return kind, shown


# ---- a round's record: judged, shown, compared with what it recorded -----------------------------

RULES: dict[str, Callable[[Facts], tuple[str | None, Shown]]] = {
    SHARED_INVOICE: judge_shared,
    DRAIN: judge_drain,
    RETRY_ROUND: judge_retry,
    EDGE_ROUND: judge_edge,
}


def money(amount_msat: int, fee_msat: int, expected_msat: int, actual_msat: int) -> Shown:
    """The money fields of a round's example, in consistency.json's order."""
    return {
        "amount_msat": amount_msat,
        "fee_msat": fee_msat,
        "expected_msat": expected_msat,
        "actual_msat": actual_msat,
        "diff_msat": actual_msat - expected_msat,
    }


def judgeable(record: dict[str, Any]) -> bool:
    """A round recorded with its facts, of a class whose rule this checker knows."""
    return FACTS in record and record.get("name") in RULES


def judge(record: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(kind, example) of a round's check record, from its facts: the one function the live run
    and `lnchaos check` both call (example None when it passed)."""
    kind, shown = RULES[record["name"]](record[FACTS])
    if kind is None:
        return None, None
    example = {
        "check": record["name"],
        "kind": kind,
        "wallet_id": record.get("wallet"),
        "payment_hash": record.get("hash"),
        "phase": record.get("phase"),
        **shown,
        "t_unix": record.get("t"),
    }
    return kind, example


def rejudged(record: dict[str, Any], kind: str | None) -> dict[str, Any] | None:
    """A round whose recorded kind differs from the kind its facts get now (a rule changed since
    it was recorded): what `lnchaos check` reports of it; None when they agree."""
    if not judgeable(record) or record.get("kind") == kind:
        return None
    return {
        "check": record.get("name"),
        "wallet_id": record.get("wallet"),
        "payment_hash": record.get("hash"),
        "recorded_kind": record.get("kind"),
        "kind": kind,
        "t_unix": record.get("t"),
    }


def rejudged_section(found: list[dict[str, Any]]) -> dict[str, Any]:
    """consistency.json's `rejudged` (lnchaos check's): how many rounds today's rules judged
    otherwise than the run did, by check, with the first few."""
    by_check: dict[str, int] = {}
    for entry in found:
        by_check[str(entry["check"])] = by_check.get(str(entry["check"]), 0) + 1
    return {"rounds": len(found), "by_check": by_check, "examples": found[:MAX_EXAMPLES]}
