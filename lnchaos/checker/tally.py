"""One process's record of a run (`Tally`), the sum of many (`merge_tallies`), and what the report
reads from that sum. Plain data: a Tally is what crosses from a worker to the master."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from lnchaos.checker import coverage as coverage_rules
from lnchaos.checker.kinds import (
    AUDIT_MAX,
    BALANCE_CHECKS,
    MAX_EXAMPLES,
    OUTCOMES,
    SUCCESSES_EXPECTED_MIN,
    TIMEOUT_OUTCOMES,
    TRAFFIC_ROUND_CHECKS,
)


class Tally:
    """One process's record of the run; `to_dict()` is what crosses to the master."""

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.seq = 0
        self.payouts: dict[str, dict[str, int]] = {}
        # phase -> [payouts of the payers, of them first answered succeeded]
        self.payer_payouts: dict[str, list[int]] = {}
        self.checks: dict[str, list[int]] = {}
        self.kinds: dict[str, dict[str, Any]] = {}
        self.drift_msat = 0
        self.latency_ms: dict[int, int] = {}
        self.left_to_reconciliation = 0
        self.retries = 0
        self.audit: list[dict[str, Any]] = []
        self.audit_overflow = 0
        # the dangerous windows reached (lnchaos/checker/coverage.py), folded from the records
        self.coverage: dict[str, Any] = coverage_rules.empty()

    def record_audit(self, entry: dict[str, Any]) -> None:
        """A payout its payer could not judge, for the master's final audit. Bounded: past
        AUDIT_MAX the entry is counted, not kept, and the verdict fails on it."""
        if len(self.audit) >= AUDIT_MAX:
            self.audit_overflow += 1
            return
        self.audit.append(dict(entry))

    def record_payout(
        self, phase: str, outcome: str, latency_ms: float, *, payer: bool = False
    ) -> None:
        """A payout's first answer. `payer`: a payer's, which pays a valid invoice from a funded
        wallet, so it may succeed unless a fault stops it (the traffic classes refuse by design;
        successes_summary counts the payers' alone)."""
        assert outcome in OUTCOMES, outcome
        by_outcome = self.payouts.setdefault(phase, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        bucket = _latency_bucket(latency_ms)
        self.latency_ms[bucket] = self.latency_ms.get(bucket, 0) + 1
        if payer:
            counts = self.payer_payouts.setdefault(phase, [0, 0])
            counts[0] += 1
            counts[1] += outcome == "succeeded"

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
            "payer_payouts": {phase: list(v) for phase, v in self.payer_payouts.items()},
            "checks": {name: list(v) for name, v in self.checks.items()},
            "kinds": json.loads(json.dumps(self.kinds)),
            "drift_msat": self.drift_msat,
            "latency_ms": {str(k): v for k, v in self.latency_ms.items()},
            "left_to_reconciliation": self.left_to_reconciliation,
            "retries": self.retries,
            "audit": [dict(entry) for entry in self.audit],
            "audit_overflow": self.audit_overflow,
            "coverage": coverage_rules.copy(self.coverage),
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
        "payer_payouts": {},
        "checks": {},
        "kinds": {},
        "drift_msat": 0,
        "latency_ms": {},
        "left_to_reconciliation": 0,
        "retries": 0,
        "audit": [],
        "audit_overflow": 0,
        "coverage": coverage_rules.empty(),
    }
    for snap in snapshots:
        for phase, by_outcome in snap.get("payouts", {}).items():
            target = merged["payouts"].setdefault(phase, {})
            for outcome, n in by_outcome.items():
                target[outcome] = target.get(outcome, 0) + n
        for phase, (payer_payouts, succeeded) in snap.get("payer_payouts", {}).items():
            counts = merged["payer_payouts"].setdefault(phase, [0, 0])
            counts[0] += payer_payouts
            counts[1] += succeeded
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
        merged["audit"].extend(snap.get("audit") or [])
        merged["audit_overflow"] += int(snap.get("audit_overflow", 0))
        coverage_rules.merge(merged["coverage"], snap.get("coverage"))
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


def traffic_rounds_verified(merged: dict[str, Any]) -> int:
    return sum(sum(merged["checks"].get(name, [0, 0])) for name in TRAFFIC_ROUND_CHECKS)


def successes_summary(
    merged: dict[str, Any], success_share_by_phase: dict[str, float] | None
) -> dict[str, Any]:
    """The payers' payouts, how many first answered paid, and how many the faults in force
    should have let through: per phase, its payouts times its share (1.0 for a phase the
    shares do not name; no shares at all: nothing required)."""
    by_phase = merged.get("payer_payouts") or {}
    payer_payouts = sum(counts[0] for counts in by_phase.values())
    succeeded = sum(counts[1] for counts in by_phase.values())
    expected = 0.0
    if success_share_by_phase is not None:
        shares = success_share_by_phase
        expected = sum(counts[0] * shares.get(phase, 1.0) for phase, counts in by_phase.items())
    return {
        "payer_payouts": payer_payouts,
        "succeeded": succeeded,
        "expected": round(expected, 2),
        "required": expected >= SUCCESSES_EXPECTED_MIN,
    }
