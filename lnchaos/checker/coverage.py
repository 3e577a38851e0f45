"""Coverage: the dangerous windows a run reached, measured from the node's truth and the history.

A pass must mean the run went where money goes wrong. Each window is counted from what a check
record carries of the node's truth (the attempt's status, fee, fee limit, whether the network
held it past the deadline, its span: target/node/network_http.py `truth_json`) and from the
history's own facts (the balance the judge expected, when the suite sent a retry, a request cut
by a crash), never from the wallet's answers. The fold (history.apply) observes each record into
the tally's `coverage`, so the live run and `lnchaos check` count the same; the verdict says which
windows the run's settings enable (`enabled_windows`) and, for each, how many the run should have
reached; a window with an expected count of at least COVERAGE_EXPECTED_MIN that was never reached
makes the run exit 4 naming it (the money verdict, exit 3, still comes first).

What is counted (a payout judged by the payers' checks, or by the final audit from the node's
truth it read; the audit's read of a payout a check judged already is not counted twice):
- late_settle / late_fail: the node held the attempt past the wallet's deadline, then paid it /
  failed it (a timeout is not a failure);
- in_flight_past_stuck: the attempt was in flight at least the wallet's stuck threshold (counted
  by whole seconds of its span, rounded down: a count is never generous);
- retry_in_flight: the suite sent the retry (same Idempotency-Key) while the node still had the
  attempt in flight;
- two_at_once: two payouts of one wallet in flight at the node at once (a drain round's spans
  overlap);
- near_balance: the wallet was left less than one fee reserve (the fee limit the node saw) after
  holding amount + reserve, from the balance the judge expected before the payout;
- fee_at_limit: the node paid and charged exactly the fee limit the wallet passed;
- large_payout: an amount of at least LARGE_PAYOUT_MSAT;
- across_crash: the payout's request got no answer because the target was killed (--crash-every)
  and the node had acted on it;
- node_acted_wallet_not_told: the node started the payout's attempt and an HTTP fault after it
  hid its answer from the wallet (the node's own record, `answer_lost` in its truth: with the
  node's HTTP faults after it acted on). Once this counted a wallet's first answer "failed" for
  a payment the node made: only a wallet that misreads the lost answer reaches that, so a correct
  one under these faults exited 4.
"""

from __future__ import annotations

import json
import math
from typing import Any

LATE_SETTLE = "late_settle"
LATE_FAIL = "late_fail"
PAST_STUCK = "in_flight_past_stuck"
RETRY_IN_FLIGHT = "retry_in_flight"
TWO_AT_ONCE = "two_at_once"
NEAR_BALANCE = "near_balance"
FEE_AT_LIMIT = "fee_at_limit"
LARGE_PAYOUT = "large_payout"
ACROSS_CRASH = "across_crash"
NODE_ACTED_NOT_TOLD = "node_acted_wallet_not_told"
WINDOWS = (
    LATE_SETTLE,
    LATE_FAIL,
    PAST_STUCK,
    RETRY_IN_FLIGHT,
    TWO_AT_ONCE,
    NEAR_BALANCE,
    FEE_AT_LIMIT,
    LARGE_PAYOUT,
    ACROSS_CRASH,
    NODE_ACTED_NOT_TOLD,
)
WINDOW_TEXT = {
    LATE_SETTLE: "timeout, then settled late",
    LATE_FAIL: "timeout, then failed late",
    PAST_STUCK: "in flight longer than the wallet's stuck threshold",
    RETRY_IN_FLIGHT: "a retry of a payout still in flight",
    TWO_AT_ONCE: "two payouts of one wallet at once",
    NEAR_BALANCE: "an amount within the fee reserve of the balance",
    FEE_AT_LIMIT: "a fee at the limit",
    LARGE_PAYOUT: "a large payout",
    ACROSS_CRASH: "a payout pending across a crash",
    NODE_ACTED_NOT_TOLD: "the node acted, an HTTP fault after it hid its answer from the wallet",
}
# a payout of at least 1 BTC is large (the edge workload draws up to --edge-amount-max-msat)
LARGE_PAYOUT_MSAT = 100_000_000_000
# As SUCCESSES_EXPECTED_MIN (kinds.py): a window the run should have reached at least this many
# times (Poisson, by the settings and the payouts judged) and never did proves it was not
# exercised, with a chance of e**-10 of blaming a run that was merely unlucky. Fewer expected (a
# short run, a window its settings make rare): shown, not required.
COVERAGE_EXPECTED_MIN = 10.0
# a drain round's parallel payouts: the share of rounds with two of them at the node at once
# is high (they are sent together); counted conservatively
TWO_AT_ONCE_PER_ROUND = 0.5
# near-balance payouts are sized from the lnchaos target's reserve; about half land in the window
NEAR_BALANCE_HIT_SHARE = 0.5
ACROSS_CRASH_PER_KILL = 0.5
HOLD_BUCKETS_MAX = 600  # seconds of span kept by the second (bounded)


def empty() -> dict[str, Any]:
    """The tally's `coverage`: per window [count, witness]; spans by whole second; per phase
    the payouts judged by a balance check with the node's truth; drain rounds judged."""
    return {"windows": {}, "held_s": {}, "judged": {}, "paid": 0, "rounds": 0}


def observe_check(coverage: dict[str, Any], record: dict[str, Any]) -> None:
    """A balance check record (with `in`): which windows its payout was in."""
    inputs = record.get("in") or {}
    node = inputs.get("node") or {}
    status = node.get("status")
    if status not in ("succeeded", "failed"):
        return  # no attempt (or not final): nothing the node can vouch for
    phase = str(record.get("phase") or "")
    coverage["judged"][phase] = coverage["judged"].get(phase, 0) + 1
    amount_msat = int(inputs.get("amount_msat") or 0)
    fee_limit_msat = _int(node.get("fee_limit_msat"))
    paid = status == "succeeded"
    coverage["paid"] += paid
    created_ms, resolved_ms = _int(node.get("created_ms")), _int(node.get("resolved_ms"))
    hits = []
    if node.get("timed_out") is True:
        hits.append(LATE_SETTLE if paid else LATE_FAIL)
    if fee_limit_msat is not None:
        if paid and _int(node.get("fee_msat")) == fee_limit_msat:
            hits.append(FEE_AT_LIMIT)
        left_msat = int(inputs.get("before_msat") or 0) - amount_msat - fee_limit_msat
        if 0 <= left_msat < fee_limit_msat:
            hits.append(NEAR_BALANCE)
    if amount_msat >= LARGE_PAYOUT_MSAT:
        hits.append(LARGE_PAYOUT)
    retry_ms = _int(record.get("retry_ms"))
    if None not in (retry_ms, created_ms, resolved_ms) and created_ms <= retry_ms < resolved_ms:
        hits.append(RETRY_IN_FLIGHT)
    if record.get("after_crash") is True:
        hits.append(ACROSS_CRASH)
    if node.get("answer_lost") is True:
        hits.append(NODE_ACTED_NOT_TOLD)
    witness = None
    if hits or (created_ms is not None and resolved_ms is not None):
        witness = _witness(record, node)
    for window in hits:
        _count(coverage["windows"], window, witness)
    if created_ms is not None and resolved_ms is not None:
        held_s = min(max(0, (resolved_ms - created_ms) // 1000), HOLD_BUCKETS_MAX)
        _count(coverage["held_s"], str(held_s), witness)


# an audit entry of a payout a check judged already (its wallet's use ended with the run):
# counted once, by its check (locustfiles/payout_check.py END_OF_USE)
JUDGED_ALREADY = "wallet_end_of_use"


def observe_audit(
    coverage: dict[str, Any], entry: dict[str, Any], node: dict[str, Any] | None
) -> None:
    """A payout only the final audit judged (not final within the users' bound, stopped by the
    run's end: a long hold ends there often): its windows from the node's truth the audit read."""
    if not node or entry.get("reason") == JUDGED_ALREADY:
        return
    record = {
        "name": "final_audit",
        "wallet": entry.get("wallet_id"),
        "hash": entry.get("payment_hash"),
        "payout_id": entry.get("payout_id"),
        "phase": entry.get("phase"),
        "in": {
            "before_msat": entry.get("expected_msat"),
            "amount_msat": entry.get("amount_msat"),
            "node": node,
        },
        # what the payer noted in the entry: when it retried, whether a crash cut its request
        **{key: entry[key] for key in ("retry_ms", "after_crash") if key in entry},
    }
    observe_check(coverage, record)


def observe_round(coverage: dict[str, Any], record: dict[str, Any]) -> None:
    """A drain round's record: did two of its payouts overlap in flight at the node?"""
    spans = record.get("node_spans")
    if not isinstance(spans, list):
        return
    coverage["rounds"] += 1
    closed = sorted(
        (int(s[0]), int(s[1])) for s in spans if isinstance(s, list) and None not in s[:2]
    )
    if any(later[0] < earlier[1] for earlier, later in zip(closed, closed[1:], strict=False)):
        example = record.get("example") or {}  # a passing round has none: its ids then
        _count(
            coverage["windows"],
            TWO_AT_ONCE,
            {
                "wallet_id": example.get("wallet_id") or record.get("wallet"),
                "spans_ms": [list(s) for s in closed],
                "t_unix": record.get("t"),
            },
        )


def merge(into: dict[str, Any], other: dict[str, Any] | None) -> None:
    """Another process's coverage added (counts summed, the earlier witness kept: whatever
    order the processes' coverages come in, live or in `lnchaos check`, the same one)."""
    if not other:
        return
    for key in ("windows", "held_s"):
        for name, (count, witness) in (other.get(key) or {}).items():
            entry = into[key].setdefault(name, [0, None])
            entry[0] += int(count)
            entry[1] = earlier_witness(entry[1], witness)
    for phase, n in (other.get("judged") or {}).items():
        into["judged"][phase] = into["judged"].get(phase, 0) + int(n)
    into["rounds"] += int(other.get("rounds") or 0)
    into["paid"] += int(other.get("paid") or 0)


def copy(coverage: dict[str, Any]) -> dict[str, Any]:
    result = empty()
    merge(result, coverage)
    return result


def earlier_witness(
    one: dict[str, Any] | None, other: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Of two witnesses, the earlier (by t_unix, then by their content): an order-free choice."""
    if one is None or other is None:
        return other if one is None else one
    return min(one, other, key=_witness_key)


def _witness_key(witness: dict[str, Any]) -> tuple[float, str]:
    t_unix = witness.get("t_unix")
    at = (
        float(t_unix)
        if isinstance(t_unix, int | float) and not isinstance(t_unix, bool)
        else math.inf
    )
    return at, json.dumps(witness, sort_keys=True, default=str)


def _count(table: dict[str, list[Any]], name: str, witness: dict[str, Any] | None) -> None:
    entry = table.setdefault(name, [0, None])
    entry[0] += 1
    if entry[1] is None:
        entry[1] = witness


def _witness(record: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    inputs = record.get("in") or {}
    return {
        "payout_id": record.get("payout_id"),
        "wallet_id": record.get("wallet"),
        "payment_hash": record.get("hash"),
        "phase": record.get("phase"),
        "amount_msat": inputs.get("amount_msat"),
        "before_msat": inputs.get("before_msat"),
        "node": {k: node.get(k) for k in ("status", "fee_msat", "fee_limit_msat", "timed_out")},
        "span_ms": [node.get("created_ms"), node.get("resolved_ms")],
        "t_unix": record.get("t"),
    }


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


# ---- the verdict's side: what the settings enable, how many were expected ---------------------


def expected_counts(
    settings: dict[str, Any], coverage: dict[str, Any], rate_by_phase: dict[str, float]
) -> dict[str, float]:
    """Per window the run's settings enable, how many times it should have been reached: the
    payouts judged with the node's truth, by the shares the settings give. A window the
    settings do not enable is absent."""
    s = settings
    n = float(sum((coverage.get("judged") or {}).values()))
    windows = coverage.get("windows") or {}
    # the payouts the node held past the deadline, by its own truth (timed_out): the base of
    # the windows that follow a timeout (a wallet that hides its timeouts cannot lower it; a
    # run with no timeout at all is exit 4 already: "no timed-out payout was resolved")
    timeouts = sum(int((windows.get(w) or [0])[0]) for w in (LATE_SETTLE, LATE_FAIL))
    late_settle_rate = float(s.get("late_settle_rate", 0.5))
    result: dict[str, float] = {}
    if any(rate > 0 for rate in rate_by_phase.values()):
        result[LATE_SETTLE] = timeouts * late_settle_rate
        result[LATE_FAIL] = timeouts * (1.0 - late_settle_rate)
        if float(s.get("retry_share", 0.0)) > 0:
            result[RETRY_IN_FLIGHT] = timeouts * float(s.get("retry_share", 0.0))
        stuck_second = _stuck_second(s)
        long_hold_s = float(s.get("long_hold_ms", 0.0)) / 1000
        if float(s.get("long_hold_rate", 0.0)) > 0 and stuck_second is not None:
            # counted by whole seconds (held_s): a long hold must clear the threshold's second
            if math.floor(long_hold_s) >= stuck_second:
                result[PAST_STUCK] = timeouts * float(s.get("long_hold_rate", 0.0))
    if s.get("drain_rounds_on"):
        result[TWO_AT_ONCE] = int(coverage.get("rounds") or 0) * TWO_AT_ONCE_PER_ROUND
    shares = (
        (NEAR_BALANCE, "near_balance_share", n * NEAR_BALANCE_HIT_SHARE),
        (FEE_AT_LIMIT, "fee_at_limit_rate", float(coverage.get("paid") or 0)),
    )
    for window, key, base in shares:
        if float(s.get(key, 0.0)) > 0:
            result[window] = base * float(s.get(key, 0.0))
    if _large_share(s) > 0:
        result[LARGE_PAYOUT] = n * _large_share(s)
    if float(s.get("crash_every_s", 0.0)) > 0:
        # a kill cuts the requests in flight then; half a payout a kill is a guess kept low
        result[ACROSS_CRASH] = float(s.get("crashes", 0)) * ACROSS_CRASH_PER_KILL
    after = float(s.get("http_fault_rate", 0.0)) * float(s.get("http_fault_after_rate", 0.0))
    if after > 0:
        result[NODE_ACTED_NOT_TOLD] = n * after
    return result


def _stuck_second(settings: dict[str, Any]) -> int | None:
    """The first whole second of span counted as past the wallet's stuck threshold."""
    stuck_s = settings.get("stuck_after_s")
    if not isinstance(stuck_s, int | float) or not math.isfinite(stuck_s) or stuck_s <= 0:
        return None
    return math.ceil(stuck_s)


def _large_share(s: dict[str, Any]) -> float:
    """The share of payouts the edge draw makes large (log-uniform from 1 sat to the max)."""
    top = int(s.get("edge_amount_max_msat", 0))
    if top < LARGE_PAYOUT_MSAT:
        return 0.0
    span = math.log(top / 1000)
    return float(s.get("edge_amount_share", 0.0)) * math.log(top / LARGE_PAYOUT_MSAT) / span


def summary(
    settings: dict[str, Any] | None,
    coverage: dict[str, Any] | None,
    rate_by_phase: dict[str, float],
) -> dict[str, dict[str, Any]]:
    """consistency.json's `coverage`: every window, enabled or not, its count, how many were
    expected, whether it is required (expected >= COVERAGE_EXPECTED_MIN), and a witness."""
    coverage = coverage or empty()
    expected = expected_counts(settings or {}, coverage, rate_by_phase) if settings else {}
    counts = dict(coverage.get("windows") or {})
    stuck_second = _stuck_second(settings or {})
    past: list[Any] = [0, None]
    for second, (n, witness) in sorted(
        (coverage.get("held_s") or {}).items(), key=lambda item: int(item[0])
    ):
        if stuck_second is not None and int(second) >= stuck_second:
            past[0] += int(n)
            past[1] = past[1] if past[1] is not None else witness
    counts[PAST_STUCK] = past
    result = {}
    for window in WINDOWS:
        count, witness = counts.get(window) or [0, None]
        wanted = expected.get(window)
        result[window] = {
            "what": WINDOW_TEXT[window],
            "enabled": wanted is not None,
            "count": int(count),
            "expected": round(wanted, 1) if wanted is not None else None,
            "required": wanted is not None and wanted >= COVERAGE_EXPECTED_MIN,
            "witness": witness,
        }
    return result


def not_reached(section: dict[str, dict[str, Any]]) -> list[str]:
    """The required windows the run never reached: each makes the run exit 4."""
    return [w for w, entry in section.items() if entry["required"] and entry["count"] == 0]
