"""The target's reconciliation read and combined with the checks' and the final audit's
findings: what it reports as wrong, each kind counted once, the problems of earlier runs kept
apart and those the target pushed before the run counted in it.

`charged_not_paid`, `paid_not_charged` and `unresolved` are also reported by the target's
reconciliation, which sees every payout of the run (also those no user got to check before the
run ended) but lists only a few ids: a kind counts max(found by checks + found by the final
audit, found by reconciliation) (checks and audit judge different payouts), and the
reconciliation's charged_not_paid, which includes double charges, is first reduced by the
double charges the checks and the audit found, so no payout counts twice; `unresolved` counts
the union of the audit's and the reconciliation's payouts. The reconciliation counts payment
hashes (the users pay each invoice once, so hash = payout).

A payout is resolved when a user check judged it (balance_after_success/failure,
resolved_vs_node_truth), or when the end-of-run reconciliation finds it final at the wallet and
at the node and consistent. The end-of-run reconciliation is asked for this run only
(`since_ms`: the target's clock at test_start) with `stuck_after_s=0`, so every payout still not
final is `unresolved` whatever its age. Problems of earlier runs on the same target are reported
apart (`inconsistencies_before_run`) and never counted in this run's total; conservation is
global (money has no run) and reported as it is.
"""

from __future__ import annotations

from typing import Any

from lnchaos.checker import answers, scope
from lnchaos.checker.audit import Audit
from lnchaos.checker.kinds import (
    BEFORE_RUN_KINDS,
    BOOKS_MISMATCH,
    CHARGED_NOT_PAID,
    DOUBLE_CHARGE,
    MALFORMED_ANSWER,
    MAX_EXAMPLES,
    NOT_CONSERVED,
    RECONCILED_KINDS,
    RECONCILIATION,
    UNRESOLVED,
)
from lnchaos.checker.tally import _empty_kind, _later, _worse
from lnchaos.checker.word import books_example, books_kind


def reconciliation_problems(reconciliation: dict[str, Any]) -> list[str]:
    """What the target's reconciliation reports as wrong; empty when all is well."""
    problems = []
    for kind in RECONCILED_KINDS:
        count = _count(reconciliation.get(kind))
        if count:
            problems.append(f"{kind}={count}")
    if reconciliation.get("conserved") is False:
        problems.append("not conserved")
    if books_kind(reconciliation.get("books")) is not None:
        problems.append("books mismatch")
    malformed = answers.problems("reconciliation", reconciliation)
    if malformed:
        problems.append(f"malformed: {'; '.join(malformed)}")
    return problems


def _count(found: Any) -> int:
    """A reconciliation kind's count as far as it can be read (a malformed one is its own
    finding, reconciliation_malformed): never a crash of the verdict."""
    count = found.get("count") if isinstance(found, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def reconciliation_malformed(reconciliation: dict[str, Any]) -> dict[str, Any] | None:
    """The reconciliation as a `malformed_answer` finding when it breaks its promised shape (an
    absent `conserved` or kind is not "nothing wrong"), else None."""
    found = answers.problems("reconciliation", reconciliation)
    if not found:
        return None
    # the promised fields as they came (the whole answer is in consistency.json already)
    promised = {f.name for f in answers.SHAPES["reconciliation"]}
    said = {name: value for name, value in reconciliation.items() if name in promised}
    record = {"shape": "reconciliation", "answer": said, "request": "GET /admin/reconciliation"}
    example = answers.malformed_example(record, found)
    example["source"] = RECONCILIATION
    entry = _new_combined(1, 0, [example])
    entry["detected_by"]["reconciliation"] = 1
    return entry


def combine_inconsistencies(
    kinds: dict[str, dict[str, Any]],
    reconciliation: dict[str, Any] | None,
    audit: Audit | None = None,
) -> dict[str, dict[str, Any]]:
    """Inconsistencies by kind from the checks, the final audit and the reconciliation (see the
    docstring): the checks and the audit judge different payouts, so their counts add up; the
    reconciliation sees them all, so a kind counts max(checks + audit, reconciliation), and an
    unresolved payout counts once (the union by payout id or payment hash)."""
    audit_kinds = audit.kinds if audit is not None else {}
    result: dict[str, dict[str, Any]] = {}
    for kind in [*kinds, *(k for k in audit_kinds if k not in kinds)]:
        own, found = kinds.get(kind) or _empty_kind(), audit_kinds.get(kind) or _empty_kind()
        result[kind] = _checks_and_audit(own, found)
    if not reconciliation:
        return result
    double_charges = sum(
        source.get(DOUBLE_CHARGE, {}).get("count", 0) for source in (kinds, audit_kinds)
    )
    malformed = reconciliation_malformed(reconciliation)
    if malformed is not None:
        result[MALFORMED_ANSWER] = _merge_malformed(result.get(MALFORMED_ANSWER), malformed)
    for kind in RECONCILED_KINDS:
        found = reconciliation.get(kind) or {}
        if _count(found):
            entry = result.setdefault(kind, _new_combined(0, 0, []))
            _add_reconciled(entry, kind, found, double_charges, audit)
    result.update(_reconciliation_alone(reconciliation))
    return result


def _checks_and_audit(own: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """One kind as the checks (own) and the audit (found) report it: different payouts, so
    their counts and amounts add up; the worst and the last example of both."""
    entry = _new_combined(own["count"] + found["count"], own["amount_msat"], own["examples"])
    entry["amount_msat"] += found["amount_msat"]
    entry["examples"].extend(found["examples"][: MAX_EXAMPLES - len(entry["examples"])])
    for key, better in (("worst", _worse), ("last", _later)):
        candidates = [e for e in (own[key], found[key]) if e is not None]
        for candidate in candidates:
            if entry[key] is None or better(candidate, entry[key]):
                entry[key] = candidate
    entry["detected_by"].update(checks=own["count"], audit=found["count"])
    return entry


def _add_reconciled(
    entry: dict[str, Any],
    kind: str,
    found: dict[str, Any],
    double_charges: int,
    audit: Audit | None,
) -> None:
    """The reconciliation's count of a kind (`found`) into the checks' and the audit's (`entry`):
    the larger one, or the union of the unresolved payouts; its examples after theirs."""
    found_count = _count(found)
    own_count = entry["count"]  # checks + audit
    listed = found.get("examples") or [{"payout_id": i} for i in found.get("payout_ids") or []]
    if kind == UNRESOLVED:
        entry["count"] = _unresolved_union(found_count, listed, audit)
    else:
        # the reconciliation counts a double charge as charged_not_paid; the checks name it
        comparable = found_count - double_charges if kind == CHARGED_NOT_PAID else found_count
        entry["count"] = max(own_count, comparable, 0)
    entry["amount_msat"] = max(entry["amount_msat"], int(found.get("amount_msat", 0)))
    entry["detected_by"]["reconciliation"] = found_count
    _add_listed_examples(entry, kind, listed)


def _add_listed_examples(entry: dict[str, Any], kind: str, listed: list[dict[str, Any]]) -> None:
    """The target's examples when it gives them (payout, wallet, both statuses), else its ids,
    after the ones the checks and the audit found, up to MAX_EXAMPLES."""
    unnamed: list[dict[str, Any]] = []
    if kind == UNRESOLVED:
        # a payout the audit knows only by its hash (its payer stopped before the answer)
        # says less than the target's own example (payout id, wallet, both statuses): the
        # named ones first, the unnamed after them if room is left
        unnamed = [e for e in entry["examples"] if not e.get("payout_id")]
        entry["examples"] = [e for e in entry["examples"] if e.get("payout_id")]
    known = {example.get("payout_id") for example in entry["examples"]}
    for listed_example in listed:
        if len(entry["examples"]) >= MAX_EXAMPLES:
            break
        if listed_example.get("payout_id") not in known:
            entry["examples"].append({"kind": kind, "source": RECONCILIATION, **listed_example})
    entry["examples"].extend(unnamed[: max(0, MAX_EXAMPLES - len(entry["examples"]))])


def _reconciliation_alone(reconciliation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The kinds only the reconciliation can see: money not conserved, and books that disagree
    with the node's."""
    result: dict[str, dict[str, Any]] = {}
    if reconciliation.get("conserved") is False:
        result[NOT_CONSERVED] = _new_combined(1, 0, [reconciliation.get("conservation")])
        result[NOT_CONSERVED]["detected_by"]["reconciliation"] = 1
    books = reconciliation.get("books")
    if books_kind(books) is not None:
        # the ledger's split against the node's (lnchaos/checker/word.py): both sides shown
        result[BOOKS_MISMATCH] = _new_combined(1, 0, [books_example(books)])
        result[BOOKS_MISMATCH]["detected_by"]["reconciliation"] = 1
    return result


def _merge_malformed(own: dict[str, Any] | None, found: dict[str, Any]) -> dict[str, Any]:
    """The reconciliation's malformed answer added to the checks' (different answers: they add)."""
    if own is None:
        return found
    own["count"] += found["count"]
    own["examples"] = (own["examples"] + found["examples"])[:MAX_EXAMPLES]
    own["detected_by"]["reconciliation"] = found["count"]
    return own


def _new_combined(count: int, amount_msat: int, examples: list[Any]) -> dict[str, Any]:
    return {
        "count": count,
        "amount_msat": amount_msat,
        "examples": list(examples),
        "worst": None,
        "last": None,
        "detected_by": {"checks": 0, "reconciliation": 0, "audit": 0},
    }


def _unresolved_union(found_count: int, listed: list[dict[str, Any]], audit: Audit | None) -> int:
    """How many payouts are unresolved by the reconciliation or by the audit, each once. Exact
    when the reconciliation listed all of its payouts; else a lower bound (its list is short)."""
    keys = (audit.unresolved_keys if audit is not None else []) or []
    ids = {e.get("payout_id") for e in listed if e.get("payout_id")}
    hashes = {e.get("payment_hash") for e in listed if e.get("payment_hash")}
    new = sum(1 for payout_id, h in keys if payout_id not in ids and h not in hashes)
    complete = max(len(hashes), len(ids) if not hashes else 0) >= found_count
    return found_count + new if complete else max(found_count, len(keys))


def before_run(reconciliation: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The same target's problems from before this run (never counted in this run)."""
    earlier = (reconciliation or {}).get("before_run") or {}
    result = {}
    for kind in BEFORE_RUN_KINDS:
        found = earlier.get(kind) or {}
        if int(found.get("count", 0)):
            result[kind] = {
                "count": int(found["count"]),
                "amount_msat": int(found.get("amount_msat", 0)),
                "payout_ids": list(found.get("payout_ids") or [])[:MAX_EXAMPLES],
            }
    return result


def count_pushed(
    inconsistencies: dict[str, dict[str, Any]],
    earlier: dict[str, dict[str, Any]],
    pushed: dict[str, dict[str, Any]],
) -> None:
    """The findings the target put before the run that were not there at its start
    (scope.pushed_into_run): counted in the run, no longer in before_run."""
    for kind, found in pushed.items():
        entry = inconsistencies.setdefault(kind, _new_combined(0, 0, []))
        entry["count"] += found["count"]
        entry["amount_msat"] += found["amount_msat"]
        entry["detected_by"]["reconciliation"] += found["count"]
        room = MAX_EXAMPLES - len(entry["examples"])
        entry["examples"].extend(scope.pushed_examples(kind, found)[: max(room, 0)])
        if kind in earlier:
            earlier[kind]["count"] -= found["count"]
            if earlier[kind]["count"] <= 0:
                del earlier[kind]
