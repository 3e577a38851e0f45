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
How each kind counts when the checks, the final audit and the target's reconciliation all
report it: lnchaos/checker/reconciliation.py. The final audit of the payouts no payer could
judge: lnchaos/checker/audit.py.

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

from lnchaos.checker import coverage, scope
from lnchaos.checker.audit import Audit
from lnchaos.checker.kinds import (
    EXIT_INCONSISTENT,
    EXIT_LOCUST_ERROR,
    EXIT_NOTHING_VERIFIED,
    EXIT_PASS,
    EXIT_TARGET_FAILED,
    FINAL_AUDIT,
    MAX_EXAMPLES,
    NODE_TIMEOUT_JUDGED,
    RECONCILIATION,
    RESOLVED_VS_NODE_TRUTH,
    TIMEOUT_OUTCOMES,
    UNRESOLVED,
)
from lnchaos.checker.reconciliation import (
    before_run,
    combine_inconsistencies,
    count_pushed,
    reconciliation_problems,
)
from lnchaos.checker.tally import (
    checks_summary,
    latency_percentiles,
    payouts_by_outcome,
    payouts_verified,
    successes_summary,
    timeout_rate_by_phase,
    traffic_rounds_verified,
)
from lnchaos.checker.workers import describe_lost_worker, workers_lost, workers_section


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
    return {
        **_settings_and_verdict(run, judged),
        **_payouts_and_proof(merged, judged, audit, duration_s, configured_rate_by_phase),
        **_money_found(merged, judged),
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


def _settings_and_verdict(run: dict[str, Any], judged: dict[str, Any]) -> dict[str, Any]:
    """consistency.json's head: the run's settings, then its verdict."""
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
    }


def _payouts_and_proof(
    merged: dict[str, Any],
    judged: dict[str, Any],
    audit: Audit,
    duration_s: float,
    configured_rate_by_phase: dict[str, float],
) -> dict[str, Any]:
    """consistency.json's payouts and what they proved: verified, timeouts resolved, successes,
    coverage, checks and the final audit."""
    by_outcome = payouts_by_outcome(merged)
    payouts = sum(by_outcome.values())
    return {
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
    }


def _money_found(merged: dict[str, Any], judged: dict[str, Any]) -> dict[str, Any]:
    """consistency.json's inconsistencies (this run's and earlier ones apart), drift, latency."""
    return {
        "inconsistencies": judged["inconsistencies"],
        "inconsistencies_total": judged["total"],
        "inconsistencies_before_run": judged["earlier"],
        "inconsistencies_before_run_total": judged["earlier_total"],
        "drift_msat": merged["drift_msat"],
        "payout_latency_ms": latency_percentiles(merged["latency_ms"]),
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
    judged = {
        **_findings(merged, reconciliation, audit, scope_at_start),
        **_proven(run, merged, reconciliation, audit, configured_rate_by_phase),
        "successes": successes,
        "lost": lost,
    }
    verdict, exit_code, reason = decide(
        inconsistencies_total=judged["total"],
        verified=judged["verified"] + judged["rounds"],
        threshold=int(run["threshold"]),
        locust_exit_code=locust_exit_code,
        target_error=target_error,
        timeouts_configured=judged["timeouts"]["configured"],
        timeouts_seen=judged["timeouts"]["payouts"],
        timeouts_resolved=judged["timeouts"]["resolved_by_node_truth"],
        kinds=describe_inconsistencies(judged["inconsistencies"]),
        before_run_total=judged["earlier_total"],
        audit_overflow=audit.overflow,
        workers_lost=[describe_lost_worker(entry) for entry in lost],
        successes=successes,
        windows_not_reached=coverage.not_reached(judged["coverage"]),
    )
    return {**judged, "verdict": verdict, "exit_code": exit_code, "reason": reason}


def _findings(
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    audit: Audit,
    scope_at_start: dict[str, int] | None,
) -> dict[str, Any]:
    """The run's inconsistencies (checks, audit and reconciliation combined, with what the target
    pushed before the run) and the earlier runs' apart, with their totals."""
    inconsistencies = combine_inconsistencies(merged["kinds"], reconciliation, audit)
    earlier = before_run(reconciliation)
    pushed = scope.pushed_into_run(reconciliation, scope_at_start)
    count_pushed(inconsistencies, earlier, pushed)
    return {
        "inconsistencies": inconsistencies,
        "total": sum(entry["count"] for entry in inconsistencies.values()),
        "earlier": earlier,
        "earlier_total": sum(entry["count"] for entry in earlier.values()),
        "pushed": pushed,
    }


def _proven(
    run: dict[str, Any],
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    audit: Audit,
    configured_rate_by_phase: dict[str, float],
) -> dict[str, Any]:
    """What the run proved: payouts and rounds verified, timeouts resolved, windows covered."""
    reached = coverage.copy(merged.get("coverage") or coverage.empty())
    coverage.merge(reached, audit.coverage)
    return {
        "coverage": coverage.summary(run.get("coverage"), reached, configured_rate_by_phase),
        "verified": payouts_verified(merged) + audit.judged,  # the audit checks balances too
        "rounds": traffic_rounds_verified(merged),
        "timeouts": timeouts_summary(merged, reconciliation, configured_rate_by_phase, audit),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
