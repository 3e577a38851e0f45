"""Checks and verdict: the history of payouts, judged. No HTTP here; tests call it directly.

Every process keeps a `Tally` (payouts per phase and outcome, checks, inconsistencies with
examples, drift); workers send theirs to the master, which merges them, adds the target's
reconciliation, and decides.

## Check events
Every check is a Locust request event with request_type "CHECK" and one name per invariant:
`balance_after_success`, `balance_after_failure`, `resolved_vs_node_truth`, `idempotent_retry`,
`resolved_within_bound` (a timed-out payout did not become final within the users' bound:
reported, but not an inconsistency; the final reconciliation judges it), `reconciliation`.
Injected faults are request events of type "FAULT" (`timeout [phase]`, `payment_failed [phase]`),
recorded as successes: they are the chaos, not a defect.

## Inconsistency kinds
- `charged_not_paid`: the wallet was charged more than the node paid: charged for a payment
  the node says failed (the incident), or, for one it settled, charged more than amount + the
  node's fee (fix off keeps the whole fee reserve of a timed-out payment that settles late);
  the same definition as the target's reconciliation;
- `paid_not_charged`: the node paid more than the wallet was charged: the balance was restored
  for a payment the node says succeeded;
- `double_charge`: a retry with the same Idempotency-Key was charged again;
- `balance_mismatch`: a balance higher than it should be for a payment that was not made;
- `idempotency_mismatch`: a retry with the same key got another answer than the first request;
- `unresolved` (reconciliation): after the bounded final wait (--final-wait-s), a payout of the
  run still pending at the wallet, or final at the wallet while the node still has the payment
  in flight: every payout of a run must end final, or the run fails. Examples carry the payout,
  its wallet, its status at the wallet and at the node;
- `not_conserved` (reconciliation): deposits != balances + reserved + paid out + fees.
`charged_not_paid`, `paid_not_charged` and `unresolved` are also reported by the target's
reconciliation, which sees every payout of the run (also those no user got to check before the
run ended) but lists only a few ids: a kind counts max(found by checks, found by
reconciliation), and the reconciliation's charged_not_paid, which includes double charges, is
first reduced by the double charges the checks found, so no payout counts twice. The
reconciliation counts payment hashes (the users pay each invoice once, so hash = payout).

A payout is resolved when a user check judged it (balance_after_success/failure,
resolved_vs_node_truth), or when the end-of-run reconciliation finds it final at the wallet and
at the node and consistent. The end-of-run reconciliation is asked for this run only
(`since_ms`: the target's clock at test_start) with `stuck_after_s=0`, so every payout still not
final is `unresolved` whatever its age. Problems of earlier runs on the same target are reported
apart (`inconsistencies_before_run`) and never counted in this run's total; conservation is
global (money has no run) and reported as it is.

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
    payouts_verified: int                      payouts whose balance was checked
    timeouts: {configured: bool,               a timeout rate above zero in some phase
               payouts: int,                   timed-out payouts the users saw (504 or 202)
               resolved_by_checks: int,        judged by resolved_vs_node_truth
               resolved_by_reconciliation: int, final + consistent at the end (the target's
                                               count of payouts first answered 202/504)
               left_to_reconciliation: int}    not final within the users' bound
    retries: int                               idempotent retries sent
    checks: {passed, failed, by_name: {name: {passed, failed}}}
    inconsistencies: {kind: {count, amount_msat, examples: [...], worst, last,
                             detected_by: {checks, reconciliation}}}
    inconsistencies_total: int                 this run's: what the verdict counts
    inconsistencies_before_run: {kind: {count, amount_msat, payout_ids}}  the same target's
                                               problems from before this run; not counted
    inconsistencies_before_run_total: int
    drift_msat: int                            sum over failed balance checks of actual - expected
    payout_latency_ms: {p50, p95, p99}         of POST payout, all phases
    phases: [{name, start_s, end_s}]
    timeline: [{t_s, phase, payouts, timeouts, inconsistencies, drift_msat}]  about 1 per second,
              all cumulative since the start of the run
    since_ms: int | null                       the run's marker on the target's clock
    reconciliation: the target's GET /admin/reconciliation?since_ms=..&stuck_after_s=0 answer
                    (null if it failed)
    target_error: str | null
    written_unix: float
An example is {check, kind, wallet_id, payout_id, phase, amount_msat, fee_msat, expected_msat,
actual_msat, diff_msat, payout_status, node_status, t_unix}; a reconciliation's example is
{kind, source: "reconciliation", payout_id, wallet_id, payment_hash, payout_status,
node_status} (fewer keys when the target lists only ids).

## Exit codes, by precedence (the first that applies; the reason names all that apply)
    3  inconsistencies over the threshold (the money verdict comes first)
    5  the target failed: did not start, unreachable, or its reconciliation failed
    4  nothing proven: no payout's balance was checked, or a timeout rate above zero was
       configured and no timed-out payout was resolved
    2  Locust's own: an unhandled exception in a greenlet or event handler
    1  Locust's own failure (failed requests outside the checks, exceptions in users); any
       other non-zero code Locust or another listener decided is kept as it is
    0  pass
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHECK = "CHECK"
FAULT = "FAULT"

BALANCE_AFTER_SUCCESS = "balance_after_success"
BALANCE_AFTER_FAILURE = "balance_after_failure"
RESOLVED_VS_NODE_TRUTH = "resolved_vs_node_truth"
IDEMPOTENT_RETRY = "idempotent_retry"
RESOLVED_WITHIN_BOUND = "resolved_within_bound"
RECONCILIATION = "reconciliation"
BALANCE_CHECKS = (BALANCE_AFTER_SUCCESS, BALANCE_AFTER_FAILURE, RESOLVED_VS_NODE_TRUTH)

CHARGED_NOT_PAID = "charged_not_paid"
PAID_NOT_CHARGED = "paid_not_charged"
DOUBLE_CHARGE = "double_charge"
BALANCE_MISMATCH = "balance_mismatch"
IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
UNRESOLVED = "unresolved"
NOT_CONSERVED = "not_conserved"
RECONCILED_KINDS = (CHARGED_NOT_PAID, PAID_NOT_CHARGED, UNRESOLVED)
BEFORE_RUN_KINDS = (CHARGED_NOT_PAID, PAID_NOT_CHARGED, UNRESOLVED)

OUTCOMES = ("succeeded", "failed", "timeout", "pending", "rejected", "error")
TIMEOUT_OUTCOMES = ("timeout", "pending")

EXIT_PASS = 0
EXIT_LOCUST_ERROR = 1
EXIT_LOCUST_GREENLET = 2
EXIT_INCONSISTENT = 3
EXIT_NOTHING_VERIFIED = 4
EXIT_TARGET_FAILED = 5

MAX_EXAMPLES = 3


class CheckFailed(Exception):
    """The exception a failed check event carries: wallet, payout, expected and actual msat."""


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


class Tally:
    """One process's record of the run; `to_dict()` is what crosses to the master."""

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.seq = 0
        self.payouts: dict[str, dict[str, int]] = {}
        self.checks: dict[str, list[int]] = {}
        self.kinds: dict[str, dict[str, Any]] = {}
        self.drift_msat = 0
        self.latency_ms: dict[int, int] = {}
        self.left_to_reconciliation = 0
        self.retries = 0

    def record_payout(self, phase: str, outcome: str, latency_ms: float) -> None:
        assert outcome in OUTCOMES, outcome
        by_outcome = self.payouts.setdefault(phase, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        bucket = _latency_bucket(latency_ms)
        self.latency_ms[bucket] = self.latency_ms.get(bucket, 0) + 1

    def record_check(self, name: str, passed: bool) -> None:
        counts = self.checks.setdefault(name, [0, 0])
        counts[0 if passed else 1] += 1

    def record_inconsistency(self, kind: str, diff_msat: int, example: dict[str, Any]) -> None:
        entry = self.kinds.setdefault(kind, _empty_kind())
        _add_to_kind(entry, abs(diff_msat), example)
        self.drift_msat += diff_msat

    def to_dict(self) -> dict[str, Any]:
        self.seq += 1
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "payouts": {phase: dict(v) for phase, v in self.payouts.items()},
            "checks": {name: list(v) for name, v in self.checks.items()},
            "kinds": json.loads(json.dumps(self.kinds)),
            "drift_msat": self.drift_msat,
            "latency_ms": {str(k): v for k, v in self.latency_ms.items()},
            "left_to_reconciliation": self.left_to_reconciliation,
            "retries": self.retries,
        }


def _latency_bucket(latency_ms: float) -> int:
    # Locust's own rounding: exact below 100 ms, two significant digits above; bounded size
    value = int(round(latency_ms))
    if value < 100:
        return value
    digits = int(math.log10(value)) - 1
    return int(round(value, -digits))


def _empty_kind() -> dict[str, Any]:
    return {
        "count": 0,
        "amount_msat": 0,
        "examples": [],
        "worst": None,
        "last": None,
    }


def _add_to_kind(entry: dict[str, Any], amount_msat: int, example: dict[str, Any]) -> None:
    entry["count"] += 1
    entry["amount_msat"] += amount_msat
    if len(entry["examples"]) < MAX_EXAMPLES:
        entry["examples"].append(example)
    worst = entry["worst"]
    if worst is None or abs(example.get("diff_msat", 0)) > abs(worst.get("diff_msat", 0)):
        entry["worst"] = example
    last = entry["last"]
    if last is None or example.get("t_unix", 0) >= last.get("t_unix", 0):
        entry["last"] = example


def merge_tallies(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum of per-process tallies (the output of Tally.to_dict), in the same shape."""
    merged: dict[str, Any] = {
        "payouts": {},
        "checks": {},
        "kinds": {},
        "drift_msat": 0,
        "latency_ms": {},
        "left_to_reconciliation": 0,
        "retries": 0,
    }
    for snap in snapshots:
        for phase, by_outcome in snap.get("payouts", {}).items():
            target = merged["payouts"].setdefault(phase, {})
            for outcome, n in by_outcome.items():
                target[outcome] = target.get(outcome, 0) + n
        for name, (passed, failed) in snap.get("checks", {}).items():
            target = merged["checks"].setdefault(name, [0, 0])
            target[0] += passed
            target[1] += failed
        for kind, entry in snap.get("kinds", {}).items():
            target = merged["kinds"].setdefault(kind, _empty_kind())
            target["count"] += entry["count"]
            target["amount_msat"] += entry["amount_msat"]
            target["examples"].extend(entry["examples"][: MAX_EXAMPLES - len(target["examples"])])
            for key, better in (("worst", _worse), ("last", _later)):
                if entry[key] is not None and (
                    target[key] is None or better(entry[key], target[key])
                ):
                    target[key] = entry[key]
        merged["drift_msat"] += snap.get("drift_msat", 0)
        for bucket, n in snap.get("latency_ms", {}).items():
            merged["latency_ms"][str(bucket)] = merged["latency_ms"].get(str(bucket), 0) + n
        merged["left_to_reconciliation"] += snap.get("left_to_reconciliation", 0)
        merged["retries"] += snap.get("retries", 0)
    return merged


def _worse(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return abs(a.get("diff_msat", 0)) > abs(b.get("diff_msat", 0))


def _later(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("t_unix", 0) > b.get("t_unix", 0)


def payouts_by_outcome(merged: dict[str, Any]) -> dict[str, int]:
    totals = dict.fromkeys(OUTCOMES, 0)
    for by_outcome in merged["payouts"].values():
        for outcome, n in by_outcome.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return totals


def timeline_point(merged: dict[str, Any]) -> dict[str, int]:
    """The cumulative counters of one timeline sample (without t_s and phase)."""
    by_outcome = payouts_by_outcome(merged)
    return {
        "payouts": sum(by_outcome.values()),
        "timeouts": sum(by_outcome[o] for o in TIMEOUT_OUTCOMES),
        "inconsistencies": sum(entry["count"] for entry in merged["kinds"].values()),
        "drift_msat": merged["drift_msat"],
    }


def timeout_rate_by_phase(
    merged: dict[str, Any], configured_rate_by_phase: dict[str, float]
) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for phase, by_outcome in merged["payouts"].items():
        payouts = sum(by_outcome.values())
        timeouts = sum(by_outcome.get(o, 0) for o in TIMEOUT_OUTCOMES)
        result[phase] = {
            "payouts": payouts,
            "timeouts": timeouts,
            "rate": round(timeouts / payouts, 4) if payouts else 0.0,
            "configured_rate": configured_rate_by_phase.get(phase),
        }
    return result


def latency_percentiles(histogram: dict[str, int]) -> dict[str, float | None]:
    points = sorted((int(k), n) for k, n in histogram.items())
    total = sum(n for _, n in points)
    result: dict[str, float | None] = {}
    for label, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        if not total:
            result[label] = None
            continue
        rank = q * total
        seen = 0
        for value, n in points:
            seen += n
            if seen >= rank:
                result[label] = float(value)
                break
    return result


def checks_summary(merged: dict[str, Any]) -> dict[str, Any]:
    by_name = {name: {"passed": p, "failed": f} for name, (p, f) in merged["checks"].items()}
    return {
        "passed": sum(v["passed"] for v in by_name.values()),
        "failed": sum(v["failed"] for v in by_name.values()),
        "by_name": by_name,
    }


def payouts_verified(merged: dict[str, Any]) -> int:
    return sum(sum(merged["checks"].get(name, [0, 0])) for name in BALANCE_CHECKS)


def reconciliation_problems(reconciliation: dict[str, Any]) -> list[str]:
    """What the target's reconciliation reports as wrong; empty when all is well."""
    problems = []
    for kind in RECONCILED_KINDS:
        count = int((reconciliation.get(kind) or {}).get("count", 0))
        if count:
            problems.append(f"{kind}={count}")
    if reconciliation.get("conserved") is False:
        problems.append("not conserved")
    return problems


def combine_inconsistencies(
    kinds: dict[str, dict[str, Any]], reconciliation: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Inconsistencies by kind from the checks and the reconciliation (see the docstring)."""
    result: dict[str, dict[str, Any]] = {}
    for kind, entry in kinds.items():
        result[kind] = {
            "count": entry["count"],
            "amount_msat": entry["amount_msat"],
            "examples": list(entry["examples"]),
            "worst": entry["worst"],
            "last": entry["last"],
            "detected_by": {"checks": entry["count"], "reconciliation": 0},
        }
    if not reconciliation:
        return result
    double_charges = kinds.get(DOUBLE_CHARGE, {}).get("count", 0)
    for kind in RECONCILED_KINDS:
        found = reconciliation.get(kind) or {}
        found_count = int(found.get("count", 0))
        if not found_count:
            continue
        own_count = kinds.get(kind, {}).get("count", 0)
        # the reconciliation counts a double charge as charged_not_paid; the checks name it
        comparable = found_count - double_charges if kind == CHARGED_NOT_PAID else found_count
        entry = result.setdefault(
            kind,
            {
                "count": 0,
                "amount_msat": 0,
                "examples": [],
                "worst": None,
                "last": None,
                "detected_by": {"checks": 0, "reconciliation": 0},
            },
        )
        entry["count"] = max(own_count, comparable, 0)
        entry["amount_msat"] = max(entry["amount_msat"], int(found.get("amount_msat", 0)))
        entry["detected_by"]["reconciliation"] = found_count
        known = {example.get("payout_id") for example in entry["examples"]}
        # the target's examples when it gives them (payout, wallet, both statuses), else its ids
        listed = found.get("examples") or [{"payout_id": i} for i in found.get("payout_ids") or []]
        for listed_example in listed:
            if len(entry["examples"]) >= MAX_EXAMPLES:
                break
            if listed_example.get("payout_id") not in known:
                entry["examples"].append({"kind": kind, "source": RECONCILIATION, **listed_example})
    if reconciliation.get("conserved") is False:
        result[NOT_CONSERVED] = {
            "count": 1,
            "amount_msat": 0,
            "examples": [reconciliation.get("conservation")],
            "worst": None,
            "last": None,
            "detected_by": {"checks": 0, "reconciliation": 1},
        }
    return result


def timeouts_summary(
    merged: dict[str, Any],
    reconciliation: dict[str, Any] | None,
    configured_rate_by_phase: dict[str, float],
) -> dict[str, Any]:
    """Timed-out payouts and how many were resolved (by a check, or by the reconciliation)."""
    by_outcome = payouts_by_outcome(merged)
    by_checks = sum(merged["checks"].get(RESOLVED_VS_NODE_TRUTH, [0, 0]))
    by_reconciliation = int(((reconciliation or {}).get("timeouts") or {}).get("resolved", 0))
    return {
        "configured": any(rate > 0 for rate in configured_rate_by_phase.values()),
        "payouts": sum(by_outcome[o] for o in TIMEOUT_OUTCOMES),
        "resolved_by_checks": by_checks,
        "resolved_by_reconciliation": by_reconciliation,
        "left_to_reconciliation": merged.get("left_to_reconciliation", 0),
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
) -> tuple[str, int, str]:
    """(verdict, exit_code, reason): the first code by precedence 3, 5, 4, Locust's own (2, 1),
    0; the reason names every problem that applies, not only the one that chose the code."""
    problems: list[tuple[int, str]] = []
    if inconsistencies_total > threshold:
        detail = f": {kinds}" if kinds else ""
        problems.append(
            (
                EXIT_INCONSISTENT,
                f"{inconsistencies_total} inconsistencies > threshold {threshold}{detail}",
            )
        )
    if target_error:
        problems.append((EXIT_TARGET_FAILED, f"target failed: {target_error}"))
    if verified == 0:
        problems.append((EXIT_NOTHING_VERIFIED, "no payout was verified"))
    if timeouts_configured and timeouts_resolved == 0:
        problems.append(
            (
                EXIT_NOTHING_VERIFIED,
                f"a timeout rate above zero was configured but no timed-out payout was resolved"
                f" ({timeouts_seen} timed out): the run proves nothing about timeouts",
            )
        )
    if locust_exit_code != 0:
        problems.append((locust_exit_code, f"Locust's own exit code {locust_exit_code}"))
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
) -> dict[str, Any]:
    """The consistency.json document (schema in this module's docstring).

    run: {"fix", "shape", "profile", "seed", "threshold", "final_wait_s"}.
    """
    inconsistencies = combine_inconsistencies(merged["kinds"], reconciliation)
    total = sum(entry["count"] for entry in inconsistencies.values())
    earlier = before_run(reconciliation)
    earlier_total = sum(entry["count"] for entry in earlier.values())
    verified = payouts_verified(merged)
    timeouts = timeouts_summary(merged, reconciliation, configured_rate_by_phase)
    verdict, exit_code, reason = decide(
        inconsistencies_total=total,
        verified=verified,
        threshold=int(run["threshold"]),
        locust_exit_code=locust_exit_code,
        target_error=target_error,
        timeouts_configured=timeouts["configured"],
        timeouts_seen=timeouts["payouts"],
        timeouts_resolved=timeouts["resolved_by_checks"] + timeouts["resolved_by_reconciliation"],
        kinds=describe_inconsistencies(inconsistencies),
        before_run_total=earlier_total,
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
        "verdict": verdict,
        "exit_code": exit_code,
        "reason": reason,
        "duration_s": round(duration_s, 3),
        "payouts_per_s": round(payouts / duration_s, 2) if duration_s > 0 else 0.0,
        "payouts_by_outcome": by_outcome,
        "payouts_by_phase": merged["payouts"],
        "timeout_rate_by_phase": timeout_rate_by_phase(merged, configured_rate_by_phase),
        "payouts_verified": verified,
        "timeouts": timeouts,
        "retries": merged["retries"],
        "checks": checks_summary(merged),
        "inconsistencies": inconsistencies,
        "inconsistencies_total": total,
        "inconsistencies_before_run": earlier,
        "inconsistencies_before_run_total": earlier_total,
        "drift_msat": merged["drift_msat"],
        "payout_latency_ms": latency_percentiles(merged["latency_ms"]),
        "phases": phases,
        "timeline": timeline,
        "since_ms": since_ms,
        "reconciliation": reconciliation,
        "target_error": target_error,
        "written_unix": round(time.time(), 3),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
