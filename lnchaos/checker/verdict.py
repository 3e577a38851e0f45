"""The verdict: the checks' findings, the final audit and the target's reconciliation combined,
the exit code decided, consistency.json built. No Locust, gevent or HTTP library here.

Every process keeps a `Tally` (payouts per phase and outcome, checks, inconsistencies with
examples, drift, audit entries); workers send theirs to the master, which merges them, audits
the payouts no payer could judge, adds the target's reconciliation, and decides.

## Check events
Every check is counted in the suite's own table (locustfiles/counters.py: type CHECK, one name
per invariant), never as a Locust request event, so Locust's Aggregated row counts HTTP requests
only: `balance_after_success`, `balance_after_failure`, `resolved_vs_node_truth`,
`idempotent_retry`, `resolved_within_bound` (a timed-out payout did not become final within the
users' bound: reported, but not an inconsistency; the final audit judges it), `final_audit` (one
per audited payout, fired by the master), `reconciliation` (failed also when its `books`
disagree with the node's); the wallet's word (lnchaos/checker/word.py): `reported_status` and
`reported_fee` (a final payout's, counted with its balance check; a failure listed in Locust's
Failures) and `wallet_view` (a wallet read while payouts of it were pending); the traffic classes'
(locustfiles/traffic.py): `shared_invoice` (one invoice paid from two wallets at once and again
after: the node paid it at most once and the wallets were charged for it at most once, by what
the node paid) and `drain` (parallel payouts over a wallet's balance: it never went below zero,
the refused ones moved nothing, final balance = funding - sum(amount + the node's fee) over the
hashes the node paid). A failed check is also listed in Locust's Failures (tab and failures
CSV) under one stable text per kind and invariant (counters.failure_text), without ids; its
ids and amounts are in consistency.json's examples. Injected faults are counted there too, as
type FAULT (`timeout [phase]`, `payment_failed [phase]`): the chaos, not a defect.

## Inconsistency kinds
- `charged_not_paid`: the wallet was charged more than the node paid: charged for a payment
  the node says failed (the incident), or, for one it settled, charged more than amount + the
  node's fee (fix off keeps the whole fee reserve of a timed-out payment that settles late);
  the same definition as the target's reconciliation;
- `paid_not_charged`: the node paid more than the wallet was charged: the balance was restored
  for a payment the node says succeeded;
- `double_charge`: a retry with the same Idempotency-Key was charged again, or a shared invoice
  (paid once at the node) was charged to both wallets;
- `overdrawn` (drain): a wallet's balance was seen below zero: parallel payouts spent more than
  it held;
- `balance_mismatch`: a balance higher than it should be for a payment that was not made;
- `idempotency_mismatch`: a retry with the same key got another answer than the first request;
- `unresolved` (reconciliation, final audit): after the bounded final wait (--final-wait-s), a
  payout of the run still pending at the wallet, or final at the wallet while the node still has
  the payment in flight (or, in the audit, money still reserved or not readable): every payout
  of a run must end final, or the run fails. Examples carry the payout,
  its wallet, its status at the wallet and at the node;
- `not_conserved` (reconciliation): deposits != balances + reserved + paid out + fees.
- `status_mismatch`, `fee_mismatch` (the payout checks), `view_mismatch` (a wallet read while a
  payout of it was pending), `books_mismatch` (the reconciliation's `books`): the wallet's word
  and its books against the node's truth, lnchaos/checker/word.py.
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

## The final audit: the judge never leans on the wallet's own reconciliation
A payer that cannot judge a payout abandons its wallet: the payout was not final within the
users' bound (--resolve-timeout-s), the payout request failed (connection error: outcome
unknown), the wallet could not be read, or the run stopped the payer mid-payout. It records an
audit entry (Tally.record_audit: wallet, api key, the exact balance expected before the payout,
payout id, payment hash, the invoice's amount, phase, retried, first outcome, why), at most
AUDIT_MAX per process; past it the entry is counted as overflow. The entries cross to the master
in the tally. After the final wait the master audits each one (at most AUDIT_MAX_TOTAL, within a
time bound; controller.py) from the node's truth of its payment hash (GET /node/payments/{hash})
and the wallet's view (GET /api/wallets/{id}; GET /api/payouts/{id} when its id is known), by
`audit_kind`: the node paid -> expected - (amount + the node's fee); failed or never seen ->
unchanged; not final at the node, money still reserved or the payout pending -> `unresolved`; a
wrong balance is classified as the checks do (`classify_balance`). Each audited payout is a
`final_audit` check event; its findings count like the checks' (detected_by.audit), an
unresolved payout once with the reconciliation's (union by payout id or hash), and an entry
that could not be kept or audited (overflow) fails the run (exit 3).

## consistency.json
    fix, shape, seed: str, str, int            the run's settings
    profile: str | null                        Locust's --profile (a run label) as given
    threshold: int                             --max-inconsistencies
    final_wait_s: float                        --final-wait-s
    verdict: "pass" | "fail"; exit_code: int; reason: str   (reason names every problem)
    duration_s: float; payouts_per_s: float
    payouts_by_outcome: {succeeded, failed, timeout, pending, rejected, error: int}
        timeout = 504 (the wallet gave up, fix off/rollback); pending = 202 (fix on)
    payouts_by_phase: {phase: {outcome: int}}
    timeout_rate_by_phase: {phase: {payouts, timeouts, rate, configured_rate}}
    payouts_verified: int                      payouts whose balance was checked (by a
                                               check or by the final audit)
    traffic_rounds_verified: int               rounds of the traffic classes judged (a run of
                                               the classes alone, `payers=0`, is verified by them)
    timeouts: {configured: bool,               a timeout rate above zero in some phase
               payouts: int,                   timed-out payouts the users saw (504 or 202)
               resolved_by_checks: int,        judged by resolved_vs_node_truth
               resolved_by_reconciliation: int, final + consistent at the end (the target's
                                               count of payouts first answered 202/504)
               resolved_by_audit: int,         final at the node and the wallet in the audit
               left_to_reconciliation: int,    not final within the users' bound (audited)
               resolved_by_node_truth: int}    judged final (a check or a round) and answered
                                               while the node held the payment (its held_ms >
                                               the answer's latency): what exit 4 counts, never
                                               the wallet's own answers
    successes: {payer_payouts: int,            the payers' payouts (the traffic classes refuse
                succeeded: int,                by design, so they are left out) and how many
                expected: float,               first answered paid; expected: how many the
                required: bool}                faults in force let through (success_share_by_
                                               phase); required: expected >= SUCCESSES_EXPECTED_
                                               MIN, so none paid proves nothing (exit 4)
    coverage: {window: {what, enabled, count,  the dangerous windows (lnchaos/checker/
               expected, required, witness}}   coverage.py): measured from the node's truth
                                               and the history; a required window (expected
                                               >= COVERAGE_EXPECTED_MIN) never reached: exit 4
    retries: int                               idempotent retries sent
    checks: {passed, failed, by_name: {name: {passed, failed}}}
    audit: {entries: int,                      payouts no payer could judge (kept + overflow)
            judged: int,                       final at node and wallet, balance judged
            unresolved: int,                   not final, or not readable, at the audit
            inconsistent: int,                 judged with a wrong balance
            overflow: int}                     not kept or not audited within the bounds
    inconsistencies: {kind: {count, amount_msat, examples: [...], worst, last,
                             detected_by: {checks, reconciliation, audit}}}
    inconsistencies_total: int                 this run's: what the verdict counts
    inconsistencies_before_run: {kind: {count, amount_msat, payout_ids}}  the same target's
                                               problems from before this run; not counted
    inconsistencies_before_run_total: int
    drift_msat: int                            sum over failed balance checks of actual - expected
    payout_latency_ms: {p50, p95, p99}         of POST payout, all phases
    arrivals: {model: "open"|"closed", by_phase: {phase: {offered, started,
               dropped_iterations, offered_per_s, achieved_per_s, duration_s}},
               dropped_iterations, start_delay_ms, latency_from_scheduled_ms: {p50, p95, p99},
               ...}                            the open model (--arrival-rate): schema in
                                               locustfiles/arrival_stats.py `summary`
    phases: [{name, start_s, end_s}]
    timeline: [{t_s, phase, payouts, timeouts, inconsistencies, drift_msat}]  about 1 per second,
              all cumulative since the start of the run
    since_ms: int | null                       the run's marker on the target's clock
    scope: {at_start, pushed_into_run}         the judge's own scope (lnchaos/checker/scope.py):
                                               what the target's reconciliation held at the
                                               run's start, and what its before_run holds beyond
                                               that (counted in the run: the target's clock does
                                               not decide what is this run's)
    reconciliation: the target's GET /admin/reconciliation?since_ms=..&stuck_after_s=0 answer
                    (null if it failed)
    target_error: str | null
    workers: {worker id: {index, state,        per worker of the run, by Locust's client id (empty
              lost, reports,                   for a local run): Locust's state of it at the end,
              last_report_unix, last_report_s, lost (no final tally came), tallies received, the
              payouts, payouts_by_outcome,     last one's time (unix, and s since the run's start),
              payouts_verified, retries,       and what its tally says (up to that report)
              checks: {passed, failed},
              inconsistencies, audit_entries}}
    workers_lost: [{worker, index, state, last_report_unix, last_report_s, payouts_reported}]
              workers whose final tally never came: counted up to their last report
    counters: [{type, name, count, failures, failures_by_kind, avg_ms, max_ms, last_failure}]
              the suite's own table of checks and faults (counters.table; also
              <csv prefix>_consistency_checks.csv with --csv)
    written_unix: float
An example is {check, kind, wallet_id, payout_id, phase, amount_msat, fee_msat, expected_msat,
actual_msat, diff_msat, payout_status, node_status, t_unix}; a reconciliation's example is
{kind, source: "reconciliation", payout_id, wallet_id, payment_hash, payout_status,
node_status} (fewer keys when the target lists only ids); an audit's example is the checks' with
source "audit", payment_hash, why_audited, first_outcome, retried and reserved_msat. Each
example of the checks and the audit also carries `witness`: the history's records of its payment
and wallet, in order (lnchaos/checker/offline.py; the live verdict adds them while the history is
at most 64 MiB, else `witnesses_left_to_check` says so and `lnchaos check` adds them).

## Exit codes, by precedence (the first that applies; the reason names all that apply)
    3  inconsistencies over the threshold (the money verdict comes first), or payouts left
       out of the final audit (overflow)
    5  the target failed: did not start, unreachable, or its reconciliation failed
    4  nothing proven: no payout's balance was checked, or a timeout rate above zero was
       configured and no payout answered while the node held its payment (the node's record
       and the suite's clock, not the wallet's answer) was judged final, or a coverage window
       the settings require was never reached (named)
    2  Locust's own: an unhandled exception in a greenlet or event handler
    1  Locust's own failure (failed requests outside the checks, exceptions in users); any
       other non-zero code Locust or another listener decided is kept as it is
    1  a worker lost mid-run (its final tally never came; Locust's own code would be 0): the
       target's reconciliation and the final audit still judged the run's payouts, but the
       worker's last checks are missing, so the run cannot pass
    0  pass
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lnchaos.checker import answers, coverage, scope
from lnchaos.checker.kinds import (
    BEFORE_RUN_KINDS,
    BOOKS_MISMATCH,
    CHARGED_NOT_PAID,
    DOUBLE_CHARGE,
    EXIT_INCONSISTENT,
    EXIT_LOCUST_ERROR,
    EXIT_NOTHING_VERIFIED,
    EXIT_PASS,
    EXIT_TARGET_FAILED,
    FINAL_AUDIT,
    MALFORMED_ANSWER,
    MAX_EXAMPLES,
    NODE_TIMEOUT_JUDGED,
    NOT_CONSERVED,
    RECONCILED_KINDS,
    RECONCILIATION,
    REPORTED_STATUS,
    RESOLVED_VS_NODE_TRUTH,
    TIMEOUT_OUTCOMES,
    UNRESOLVED,
)
from lnchaos.checker.tally import (
    _add_to_kind,
    _empty_kind,
    _later,
    _worse,
    checks_summary,
    latency_percentiles,
    merge_tallies,
    payouts_by_outcome,
    payouts_verified,
    successes_summary,
    timeout_rate_by_phase,
    traffic_rounds_verified,
)
from lnchaos.checker.word import books_example, books_kind, status_kind

# an audit entry of a payout its payer judged already (payout_check.END_OF_USE): its wallet is
# what the audit reads again, its word was judged by the check
AUDITED_AGAIN = "wallet_end_of_use"


class Audit:
    """The master's final audit of the payouts the payers could not judge (see the docstring):
    the findings by kind (the Tally's shape), the unresolved payouts, the counts."""

    def __init__(self, entries: int = 0, overflow: int = 0) -> None:
        self.entries = entries
        self.overflow = overflow  # not kept by a process, or not audited within the bounds
        self.judged = 0
        self.unresolved = 0
        self.inconsistent = 0
        self.resolved_timeouts = 0
        self.node_timeouts = 0  # judged, answered while the node held it (rules.answered_in_flight)
        self.kinds: dict[str, dict[str, Any]] = {}
        # (payout_id, payment_hash) of each unresolved payout: merged with the reconciliation's
        self.unresolved_keys: list[tuple[str | None, str | None]] = []
        # the windows of the payouts only the audit judged (lnchaos/checker/coverage.py)
        self.coverage: dict[str, Any] = coverage.empty()

    def add(
        self,
        entry: dict[str, Any],
        kind: str | None,
        example: dict[str, Any],
        node: dict[str, Any] | None = None,
    ) -> None:
        coverage.observe_audit(self.coverage, entry, node)
        self._word(entry, example)
        if kind == UNRESOLVED:
            self.unresolved += 1
            self.unresolved_keys.append((entry.get("payout_id"), entry.get("payment_hash")))
        else:
            self.judged += 1
            if entry.get("outcome") in TIMEOUT_OUTCOMES:
                self.resolved_timeouts += 1
            self.node_timeouts += example.get("answered_in_flight") is True
        if kind is None:
            return
        if kind != UNRESOLVED:
            self.inconsistent += 1
        # an unresolved payout's money is not known yet: no amount, as in the reconciliation
        amount_msat = 0 if kind == UNRESOLVED else abs(int(example["diff_msat"]))
        _add_to_kind(self.kinds.setdefault(kind, _empty_kind()), amount_msat, example)

    def _word(self, entry: dict[str, Any], example: dict[str, Any]) -> None:
        """The status the wallet's payout read gave an audited payout, against the node's truth
        (lnchaos/checker/word.py), unless its payer's check judged it already (its wallet's end
        of use is what is audited then)."""
        if entry.get("reason") == AUDITED_AGAIN:
            return
        node = {"status": example.get("node_status")}
        kind = status_kind(status=example.get("payout_status"), node=node)
        if kind is not None:
            found = {**example, "check": REPORTED_STATUS, "kind": kind, "diff_msat": 0}
            _add_to_kind(self.kinds.setdefault(kind, _empty_kind()), 0, found)

    def not_audited(self, n: int = 1) -> None:
        self.overflow += n

    def summary(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "judged": self.judged,
            "unresolved": self.unresolved,
            "inconsistent": self.inconsistent,
            "overflow": self.overflow,
        }


def close_checks(
    merged: dict[str, Any], audit: Audit, reconciliation: dict[str, Any] | None
) -> None:
    """The master's two checks into the merged tally: the reconciliation (passed when it reports
    nothing wrong) and the final audit (passed: final and consistent; failed: a wrong balance, or
    not final at the audit)."""
    failed = reconciliation is None or bool(reconciliation_problems(reconciliation))
    merged["checks"][RECONCILIATION] = [0, 1] if failed else [1, 0]
    consistent = audit.judged - audit.inconsistent
    merged["checks"][FINAL_AUDIT] = [consistent, audit.inconsistent + audit.unresolved]


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
        entry = _new_combined(own["count"] + found["count"], own["amount_msat"], own["examples"])
        entry["amount_msat"] += found["amount_msat"]
        entry["examples"].extend(found["examples"][: MAX_EXAMPLES - len(entry["examples"])])
        for key, better in (("worst", _worse), ("last", _later)):
            candidates = [e for e in (own[key], found[key]) if e is not None]
            for candidate in candidates:
                if entry[key] is None or better(candidate, entry[key]):
                    entry[key] = candidate
        entry["detected_by"].update(checks=own["count"], audit=found["count"])
        result[kind] = entry
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
        found_count = _count(found)
        if not found_count:
            continue
        entry = result.setdefault(kind, _new_combined(0, 0, []))
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
        unnamed: list[dict[str, Any]] = []
        if kind == UNRESOLVED:
            # a payout the audit knows only by its hash (its payer stopped before the answer)
            # says less than the target's own example (payout id, wallet, both statuses): the
            # named ones first, the unnamed after them if room is left
            unnamed = [e for e in entry["examples"] if not e.get("payout_id")]
            entry["examples"] = [e for e in entry["examples"] if e.get("payout_id")]
        known = {example.get("payout_id") for example in entry["examples"]}
        # the target's examples when it gives them (payout, wallet, both statuses), else its ids
        for listed_example in listed:
            if len(entry["examples"]) >= MAX_EXAMPLES:
                break
            if listed_example.get("payout_id") not in known:
                entry["examples"].append({"kind": kind, "source": RECONCILIATION, **listed_example})
        entry["examples"].extend(unnamed[: max(0, MAX_EXAMPLES - len(entry["examples"]))])
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


def timeouts_summary(
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    configured_rate_by_phase: dict[str, float],
    audit: Audit | None = None,
) -> dict[str, Any]:
    """Timed-out payouts and how many were resolved (by a check, the audit, or the
    reconciliation)."""
    by_outcome = payouts_by_outcome(merged)
    by_checks = sum(merged["checks"].get(RESOLVED_VS_NODE_TRUTH, [0, 0]))
    by_reconciliation = int(((reconciliation or {}).get("timeouts") or {}).get("resolved", 0))
    return {
        "configured": any(rate > 0 for rate in configured_rate_by_phase.values()),
        "payouts": sum(by_outcome[o] for o in TIMEOUT_OUTCOMES),
        "resolved_by_checks": by_checks,
        "resolved_by_reconciliation": by_reconciliation,
        "resolved_by_audit": audit.resolved_timeouts if audit is not None else 0,
        "left_to_reconciliation": merged.get("left_to_reconciliation", 0),
        # what "nothing proven about timeouts" (exit 4) counts: payouts judged final that the
        # wallet answered while the node still held their payment (the node's held_ms against
        # the answer's latency), whatever it answered: never the wallet's word (a wallet that
        # answers 200 or 502 where it gave up on an in-flight payment hides its timeouts)
        "resolved_by_node_truth": merged["checks"].get(NODE_TIMEOUT_JUDGED, [0, 0])[0]
        + (audit.node_timeouts if audit is not None else 0),
    }


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


def describe_inconsistencies(inconsistencies: dict[str, dict[str, Any]]) -> str:
    """`kind=count` for each kind; the unresolved payouts named (up to MAX_EXAMPLES)."""
    parts = []
    for kind, entry in sorted(inconsistencies.items(), key=lambda item: -item[1]["count"]):
        if not entry["count"]:
            continue
        text = f"{kind}={entry['count']}"
        by_audit = int((entry.get("detected_by") or {}).get("audit", 0))
        if by_audit:
            text += f" ({by_audit} found by the final audit)"
        if kind == UNRESOLVED and entry["examples"]:
            named = [
                f"payout {e.get('payout_id')} (wallet {e.get('wallet_id')}: wallet "
                f"{e.get('payout_status')}, node {e.get('node_status')})"
                for e in entry["examples"][:MAX_EXAMPLES]
            ]
            text += f" [{'; '.join(named)}]"
        parts.append(text)
    return ", ".join(parts)


def decide(
    *,
    inconsistencies_total: int,
    verified: int,
    threshold: int,
    locust_exit_code: int,
    target_error: str | None,
    timeouts_configured: bool = False,
    timeouts_seen: int = 0,
    timeouts_resolved: int = 0,
    kinds: str = "",
    before_run_total: int = 0,
    audit_overflow: int = 0,
    workers_lost: Iterable[str] = (),
    successes: dict[str, Any] | None = None,
    windows_not_reached: Iterable[str] = (),
) -> tuple[str, int, str]:
    """(verdict, exit_code, reason): the first code by precedence 3, 5, 4, Locust's own (2, 1),
    1 for lost workers, 0; the reason names every problem that applies, not only the one that
    chose the code. workers_lost: one description per lost worker."""
    problems = [
        *_money_problems(inconsistencies_total, threshold, kinds, audit_overflow),
        *([(EXIT_TARGET_FAILED, f"target failed: {target_error}")] if target_error else []),
        *_proof_problems(
            verified, timeouts_configured, timeouts_seen, timeouts_resolved, successes
        ),
        *coverage_problems(list(windows_not_reached)),
        *_locust_problems(locust_exit_code, list(workers_lost)),
    ]
    before = (
        [f"{before_run_total} inconsistencies before this run on this target (not counted)"]
        if before_run_total
        else []
    )
    if problems:
        return "fail", problems[0][0], "; ".join([text for _, text in problems] + before)
    passed = (
        f"{inconsistencies_total} inconsistencies <= threshold {threshold}; "
        f"{verified} payouts verified"
    )
    if timeouts_configured:
        passed += f"; {timeouts_resolved} timed-out payouts resolved"
    return "pass", EXIT_PASS, "; ".join([passed, *before])


def _money_problems(
    total: int, threshold: int, kinds: str, audit_overflow: int
) -> list[tuple[int, str]]:
    """Exit 3: the money is wrong, or not proven (payouts left out of the final audit)."""
    problems = []
    if total > threshold:
        detail = f": {kinds}" if kinds else ""
        problems.append(
            (EXIT_INCONSISTENT, f"{total} inconsistencies > threshold {threshold}{detail}")
        )
    if audit_overflow:
        problems.append(
            (
                EXIT_INCONSISTENT,
                f"{audit_overflow} payouts no payer could judge were left out of the final "
                f"audit (over its bounds): their money is not proven",
            )
        )
    return problems


def _proof_problems(
    verified: int,
    timeouts_configured: bool,
    timeouts_seen: int,
    timeouts_resolved: int,
    successes: dict[str, Any] | None,
) -> list[tuple[int, str]]:
    """Exit 4: the run proves nothing (nothing verified, no timeout resolved, nothing paid)."""
    problems = []
    if verified == 0:
        problems.append((EXIT_NOTHING_VERIFIED, "no payout was verified"))
    if timeouts_configured and timeouts_resolved == 0:
        problems.append(
            (
                EXIT_NOTHING_VERIFIED,
                f"a timeout rate above zero was configured but no payout answered while the node"
                f" held its payment was judged final ({timeouts_seen} answered as timed out by"
                f" the wallet): the run proves nothing about timeouts",
            )
        )
    if successes and successes["required"] and successes["succeeded"] == 0:
        problems.append(
            (
                EXIT_NOTHING_VERIFIED,
                f"no payout succeeded, though about {successes['expected']:.0f} of the payers'"
                f" {successes['payer_payouts']} payouts should have by the faults in force: the"
                f" run proves nothing about successful payouts",
            )
        )
    return problems


def coverage_problems(not_reached: list[str]) -> list[tuple[int, str]]:
    """Exit 4: windows the run's settings should have exercised and the run never reached
    (lnchaos/checker/coverage.py): its pass would vouch for situations it never met."""
    if not not_reached:
        return []
    named = ", ".join(f"{w} ({coverage.WINDOW_TEXT[w]})" for w in not_reached)
    return [
        (
            EXIT_NOTHING_VERIFIED,
            f"coverage: {len(not_reached)} window(s) the settings should have exercised were "
            f"never reached: {named}",
        )
    ]


def _locust_problems(locust_exit_code: int, lost: list[str]) -> list[tuple[int, str]]:
    """Locust's own code (2, 1, or another listener's), then 1 for workers lost mid-run."""
    problems = []
    if locust_exit_code != 0:
        problems.append((locust_exit_code, f"Locust's own exit code {locust_exit_code}"))
    if lost:
        problems.append(
            (
                EXIT_LOCUST_ERROR,
                f"{len(lost)} worker(s) lost mid-run, their tally missing since their last "
                f"report: {'; '.join(lost)} (the reconciliation and the final audit judged the "
                f"run's payouts; the lost workers' last checks never arrived)",
            )
        )
    return problems


def build_report(
    *,
    run: dict[str, Any],
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    phases: list[dict[str, Any]],
    timeline: list[dict[str, Any]],
    duration_s: float,
    configured_rate_by_phase: dict[str, float],
    locust_exit_code: int,
    target_error: str | None,
    since_ms: int | None = None,
    audit: Audit | None = None,
    workers: dict[str, dict[str, Any]] | None = None,
    counter_rows: list[dict[str, Any]] | None = None,
    success_share_by_phase: dict[str, float] | None = None,
    arrivals: dict[str, Any] | None = None,
    scope_at_start: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The consistency.json document (schema in this module's docstring).

    run: {"fix", "shape", "profile", "seed", "threshold", "final_wait_s"}. audit: the final
    audit's result (None before it ran: its entries then count as not audited). workers: the
    collector's per-worker record (telemetry.Collector.workers_report), None for a local run.
    counter_rows: the suite's table of checks and faults (counters.table).
    success_share_by_phase: per phase, the share of the payers' payouts the faults in force let
    succeed at their first answer (fault_control.FaultControl.success_share_by_phase); None:
    not known, and no success is required.
    """
    per_worker = workers_section(workers or {})
    audit = audit if audit is not None else _not_audited(merged)
    judged = judge_run(
        run=run,
        merged=merged,
        reconciliation=reconciliation,
        audit=audit,
        configured_rate_by_phase=configured_rate_by_phase,
        locust_exit_code=locust_exit_code,
        target_error=target_error,
        lost=workers_lost(per_worker),
        successes=successes_summary(merged, success_share_by_phase),
        scope_at_start=scope_at_start,
    )
    by_outcome = payouts_by_outcome(merged)
    payouts = sum(by_outcome.values())
    return {
        "fix": run["fix"],
        "shape": run.get("shape"),
        "profile": run.get("profile"),
        "seed": run["seed"],
        "threshold": run["threshold"],
        "final_wait_s": run.get("final_wait_s"),
        "verdict": judged["verdict"],
        "exit_code": judged["exit_code"],
        "reason": judged["reason"],
        "duration_s": round(duration_s, 3),
        "payouts_per_s": round(payouts / duration_s, 2) if duration_s > 0 else 0.0,
        "payouts_by_outcome": by_outcome,
        "payouts_by_phase": merged["payouts"],
        "timeout_rate_by_phase": timeout_rate_by_phase(merged, configured_rate_by_phase),
        "payouts_verified": judged["verified"],
        "traffic_rounds_verified": judged["rounds"],
        "timeouts": judged["timeouts"],
        "successes": judged["successes"],
        "coverage": judged["coverage"],
        "retries": merged["retries"],
        "checks": checks_summary(merged),
        "audit": audit.summary(),
        "inconsistencies": judged["inconsistencies"],
        "inconsistencies_total": judged["total"],
        "inconsistencies_before_run": judged["earlier"],
        "inconsistencies_before_run_total": judged["earlier_total"],
        "drift_msat": merged["drift_msat"],
        "payout_latency_ms": latency_percentiles(merged["latency_ms"]),
        # the open model's offered, achieved and dropped per phase (locustfiles/arrival_stats.py
        # `summary`, made by the caller: the open model is Locust's side)
        "arrivals": arrivals,
        "phases": phases,
        "timeline": timeline,
        "since_ms": since_ms,
        "scope": {"at_start": scope_at_start, "pushed_into_run": judged["pushed"]},
        "reconciliation": reconciliation,
        "target_error": target_error,
        "workers": per_worker,
        "workers_lost": judged["lost"],
        "counters": list(counter_rows or []),
        "written_unix": round(time.time(), 3),
    }


def _not_audited(merged: dict[str, Any]) -> Audit:
    """Before the final audit ran: its entries count as not audited (overflow)."""
    entries = len(merged.get("audit") or []) + int(merged.get("audit_overflow", 0))
    return Audit(entries=entries, overflow=entries)


def judge_run(
    *,
    run: dict[str, Any],
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    audit: Audit,
    configured_rate_by_phase: dict[str, float],
    locust_exit_code: int,
    target_error: str | None,
    lost: list[dict[str, Any]],
    successes: dict[str, Any],
    scope_at_start: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The run's judgement: the findings combined, what was proven, and the verdict (decide)."""
    inconsistencies = combine_inconsistencies(merged["kinds"], reconciliation, audit)
    reached = coverage.copy(merged.get("coverage") or coverage.empty())
    coverage.merge(reached, audit.coverage)
    covered = coverage.summary(run.get("coverage"), reached, configured_rate_by_phase)
    earlier = before_run(reconciliation)
    pushed = scope.pushed_into_run(reconciliation, scope_at_start)
    count_pushed(inconsistencies, earlier, pushed)
    total = sum(entry["count"] for entry in inconsistencies.values())
    earlier_total = sum(entry["count"] for entry in earlier.values())
    verified = payouts_verified(merged) + audit.judged  # the audit checks balances too
    timeouts = timeouts_summary(merged, reconciliation, configured_rate_by_phase, audit)
    rounds = traffic_rounds_verified(merged)
    verdict, exit_code, reason = decide(
        inconsistencies_total=total,
        verified=verified + rounds,
        threshold=int(run["threshold"]),
        locust_exit_code=locust_exit_code,
        target_error=target_error,
        timeouts_configured=timeouts["configured"],
        timeouts_seen=timeouts["payouts"],
        timeouts_resolved=timeouts["resolved_by_node_truth"],
        kinds=describe_inconsistencies(inconsistencies),
        before_run_total=earlier_total,
        audit_overflow=audit.overflow,
        workers_lost=[describe_lost_worker(entry) for entry in lost],
        successes=successes,
        windows_not_reached=coverage.not_reached(covered),
    )
    return {
        "coverage": covered,
        "verdict": verdict,
        "exit_code": exit_code,
        "reason": reason,
        "inconsistencies": inconsistencies,
        "total": total,
        "earlier": earlier,
        "earlier_total": earlier_total,
        "verified": verified,
        "rounds": rounds,
        "timeouts": timeouts,
        "successes": successes,
        "lost": lost,
        "pushed": pushed,
    }


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


def workers_section(workers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """consistency.json's `workers`: per worker, its state and what its tally says."""
    section: dict[str, dict[str, Any]] = {}
    for worker_id, worker in sorted(workers.items(), key=lambda item: str(item[0])):
        tally = merge_tallies([worker["tally"]] if worker.get("tally") else [])
        by_outcome = payouts_by_outcome(tally)
        checks = checks_summary(tally)
        section[str(worker_id)] = {
            "index": worker.get("index"),
            "state": worker.get("state"),
            "lost": bool(worker.get("lost")),
            "reports": int(worker.get("reports", 0)),
            "last_report_unix": worker.get("last_report_unix"),
            "last_report_s": worker.get("last_report_s"),
            "payouts": sum(by_outcome.values()),
            "payouts_by_outcome": by_outcome,
            "payouts_verified": payouts_verified(tally),
            "retries": tally["retries"],
            "checks": {"passed": checks["passed"], "failed": checks["failed"]},
            "inconsistencies": sum(entry["count"] for entry in tally["kinds"].values()),
            "audit_entries": len(tally["audit"]) + int(tally["audit_overflow"]),
        }
    return section


def workers_lost(section: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """consistency.json's `workers_lost`: the workers whose final tally never came."""
    return [
        {
            "worker": worker_id,
            "index": entry["index"],
            "state": entry["state"],
            "last_report_unix": entry["last_report_unix"],
            "last_report_s": entry["last_report_s"],
            "payouts_reported": entry["payouts"],
        }
        for worker_id, entry in section.items()
        if entry["lost"]
    ]


def describe_lost_worker(entry: dict[str, Any]) -> str:
    last = entry.get("last_report_s")
    since = f"its last report at {last:.1f} s" if last is not None else "no report at all"
    return (
        f"worker {entry['worker']} (index {entry.get('index')}, Locust state "
        f"{entry.get('state')}): {since}, {entry.get('payouts_reported', 0)} payouts reported"
    )


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
