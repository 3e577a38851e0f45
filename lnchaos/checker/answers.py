"""The reading rules, written once: what each answer the suite reads promises, and what is wrong
with one that does not keep the promise.

A field an API promises that is missing or malformed is a finding (`malformed_answer`), never a
default: `int(body.get("fee_msat") or 0)` reads a missing fee as 0 and a fee "12" as 12, and an
absent `conserved` as "nothing wrong", so a wallet that stops saying what it charged, what it
holds or whether its books balance would pass. Each shape below lists the fields it promises and
their type; `problems(shape, answer)` says what is wrong (empty: as promised).

No I/O here (this is the judge's package): the Locust side records a finding as a history
`check` record (`malformed_record`: the shape, the answer, the request), and history.apply judges
it again with the same `problems`, so `lnchaos check` finds it from the recorded answer alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lnchaos.checker.kinds import ANSWER_SHAPE, MALFORMED_ANSWER

# field types
MSAT = "msat"  # a whole number of msat, >= 0 (a bool, a float or a string is not one)
BALANCE_MSAT = "balance_msat"  # a whole number of msat, any sign (below zero is `overdrawn`)
TEXT = "text"  # a non-empty string
FLAG_OR_NULL = "flag_or_null"  # true, false, or null: "not mine to say" (an outside service)
COUNT = "count"  # a whole number >= 0
KIND_COUNT = "kind_count"  # {"count": COUNT, "amount_msat": MSAT}: a reconciliation's kind


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = True  # False: may be absent, but when present it must be of its type


_PAYOUT = (Field("payout_id", TEXT), Field("status", TEXT))
# the wallet's balance right after the payout's own transaction (docs/target-api.md): every answer
# that names a payout carries it, a replay too (it is stored with the answer)
_BALANCE_AFTER = Field("balance_msat", BALANCE_MSAT)
# The shapes the suite reads (docs/target-api.md; the adapters' own are mapped onto these).
SHAPES: dict[str, tuple[Field, ...]] = {
    # POST /api/wallets/{id}/payouts, an answer that names a payout (200, 202, 502, 504)
    "payout_answer": (*_PAYOUT, Field("amount_msat", MSAT, required=False), _BALANCE_AFTER),
    # ... the 200 succeeded: it says what it charged
    "payout_answer_succeeded": (
        *_PAYOUT,
        Field("amount_msat", MSAT),
        Field("fee_msat", MSAT),
        _BALANCE_AFTER,
    ),
    # GET /api/wallets/{id}: what is spendable and what is held for pending payouts
    "wallet_view": (Field("balance_msat", BALANCE_MSAT), Field("reserved_msat", MSAT)),
    # GET /api/payouts/{id}: read by its id, so what it promises is its state (and a fee, paid)
    "payout_view": (Field("status", TEXT),),
    "payout_view_succeeded": (Field("status", TEXT), Field("fee_msat", MSAT)),
    # GET /admin/reconciliation (the target's, or a judge's of an outside service)
    "reconciliation": (
        Field("now_ms", COUNT),
        Field("charged_not_paid", KIND_COUNT),
        Field("paid_not_charged", KIND_COUNT),
        Field("unresolved", KIND_COUNT),
        Field("pending", COUNT),
        Field("conserved", FLAG_OR_NULL),
    ),
}

# An answer kept in a finding's example is cut to this many characters of JSON (a bound: a
# wallet's answer is the wallet's, of any size).
ANSWER_CHARS_MAX = 2000


def problems(shape: str, answer: Any) -> list[str]:
    """What is wrong with `answer` as a `shape` (SHAPES); empty when it keeps every promise."""
    if not isinstance(answer, dict):
        return [f"not a JSON object: {_short(answer)}"]
    found = []
    for spec in SHAPES[shape]:
        if spec.name not in answer:
            if spec.required:
                found.append(f"{spec.name}: missing")
            continue
        wrong = _type_problem(spec.type, answer[spec.name])
        if wrong:
            found.append(f"{spec.name}: {wrong}")
    return found


def payout_answer_shape(answer: Any) -> str:
    """The shape a payout answer promises: a succeeded one also says what it charged."""
    succeeded = isinstance(answer, dict) and answer.get("status") == "succeeded"
    return "payout_answer_succeeded" if succeeded else "payout_answer"


def payout_view_shape(view: Any) -> str:
    succeeded = isinstance(view, dict) and view.get("status") == "succeeded"
    return "payout_view_succeeded" if succeeded else "payout_view"


def msat_or_none(answer: dict[str, Any], name: str) -> int | None:
    """A field read as whole msat, or None when it is not one (the caller records the finding;
    None is never taken for 0)."""
    value = answer.get(name)
    return value if _is_int(value) else None


def malformed_record(shape: str, answer: Any, request: str, **ids: Any) -> dict[str, Any]:
    """The history's check record of an answer read against its shape (docs/history.md):
    judged again from `answer` by `judge_record`. ids: wallet, hash, payout_id, http."""
    return {
        "type": "check",
        "name": ANSWER_SHAPE,
        "shape": shape,
        "answer": bounded_answer(answer),
        "problems": problems(shape, answer),  # what judges it when the answer was cut
        "request": request,
        **ids,
    }


def judge_record(record: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(kind, example) of an ANSWER_SHAPE check record: `malformed_answer` when its answer breaks
    its shape's promises. An answer cut by the bound is judged by the problems it was recorded
    with (what is left of it is no longer the whole answer)."""
    answer = record.get("answer")
    if isinstance(answer, dict):
        found = problems(str(record.get("shape")), answer)
    else:
        found = list(record.get("problems") or [f"not a JSON object: {_short(answer)}"])
    if not found:
        return None, None
    return MALFORMED_ANSWER, malformed_example(record, found)


def malformed_example(record: dict[str, Any], found: list[str]) -> dict[str, Any]:
    """consistency.json's example of a malformed answer: which fields, the answer, the request."""
    return {
        "check": ANSWER_SHAPE,
        "kind": MALFORMED_ANSWER,
        "shape": record.get("shape"),
        "fields": [text.split(":", 1)[0] for text in found],
        "problems": found,
        "request": record.get("request"),
        "http": record.get("http"),
        "answer": record.get("answer"),
        "wallet_id": record.get("wallet"),
        "payout_id": record.get("payout_id"),
        "payment_hash": record.get("hash"),
        "diff_msat": 0,  # no amount is known to be wrong: what is wrong is the word itself
        "t_unix": record.get("t"),
    }


def bounded_answer(answer: Any) -> Any:
    """The answer as it came, or its JSON cut to ANSWER_CHARS_MAX when longer."""
    text = json.dumps(answer, default=str)
    return answer if len(text) <= ANSWER_CHARS_MAX else text[:ANSWER_CHARS_MAX] + "..."


def _type_problem(kind: str, value: Any) -> str | None:
    if kind == MSAT:
        return None if _is_int(value) and value >= 0 else f"{_short(value)} is not whole msat >= 0"
    if kind == BALANCE_MSAT:
        return None if _is_int(value) else f"{_short(value)} is not whole msat"
    if kind == COUNT:
        return None if _is_int(value) and value >= 0 else f"{_short(value)} is not a count"
    if kind == TEXT:
        return None if isinstance(value, str) and value else f"{_short(value)} is not a string"
    if kind == FLAG_OR_NULL:
        return None if value is None or isinstance(value, bool) else f"{_short(value)} not a flag"
    if kind == KIND_COUNT:
        return _kind_count_problem(value)
    raise ValueError(f"unknown field type {kind!r}")


def _kind_count_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{_short(value)} is not {{count, amount_msat}}"
    wrong = [
        f"{name} {_short(value.get(name, '<missing>'))}"
        for name in ("count", "amount_msat")
        if not (_is_int(value.get(name)) and value[name] >= 0)
    ]
    return f"not whole >= 0: {', '.join(wrong)}" if wrong else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
