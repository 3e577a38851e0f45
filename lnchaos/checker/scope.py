"""The run's scope is the judge's, not the wallet's clock.

The target's reconciliation splits its findings by its own timestamps: a payment hash belongs to
the run when its newest payout was created at or after `since_ms` (the target's clock), and the
rest goes to `before_run`, reported and never counted. A wallet whose clock is off (a payout's
created_ms written an hour in the past, a clock stepped forward at the run's start) would push
the run's damage into "before this run", and the run would pass.

So the judge keeps its own record of what was there before: at the run's start (on the suite's
clock: test_start) it reads the target's whole reconciliation (`start_counts`: each kind's count
over the target's whole history, and what was still pending then, which may end either way).
At the verdict, whatever `before_run` holds beyond that cannot be older than the run: it is the
run's (`pushed_into_run`), counted in the run with its payouts named, and no longer excused.
Without a record of the start (a history written before it existed) nothing is moved.
"""

from __future__ import annotations

from typing import Any

from lnchaos.checker.kinds import BEFORE_RUN_KINDS, MAX_EXAMPLES, RECONCILIATION, UNRESOLVED

# why a finding the target called "before this run" is counted in it
PUSHED = "before_run by the target's clock, but not there at the run's start (the judge's clock)"


def start_counts(reconciliation: dict[str, Any] | None) -> dict[str, int] | None:
    """What the target's unscoped reconciliation at the run's start says was there already:
    each kind's count, and `pending` (payouts not final then). None when it could not be read."""
    if not isinstance(reconciliation, dict):
        return None
    counts = {kind: _count(reconciliation.get(kind)) for kind in BEFORE_RUN_KINDS}
    counts["pending"] = _whole(reconciliation.get("pending"))
    return counts


def pushed_into_run(
    reconciliation: dict[str, Any] | None, at_start: dict[str, int] | None
) -> dict[str, dict[str, Any]]:
    """{kind: {count, amount_msat, payout_ids}}: what `before_run` holds beyond what was there at
    the run's start. A payout pending at the start may have ended any way since, so each kind is
    allowed its count at the start plus the payouts then pending."""
    earlier = (reconciliation or {}).get("before_run")
    if at_start is None or not isinstance(earlier, dict):
        return {}
    pushed: dict[str, dict[str, Any]] = {}
    for kind in BEFORE_RUN_KINDS:
        found = earlier.get(kind) if isinstance(earlier.get(kind), dict) else {}
        allowed = int(at_start.get(kind, 0)) + int(at_start.get("pending", 0))
        excess = _count(found) - allowed
        if excess > 0:
            pushed[kind] = {
                "count": excess,
                "amount_msat": _whole(found.get("amount_msat")) if kind != UNRESOLVED else 0,
                "payout_ids": list(found.get("payout_ids") or [])[:MAX_EXAMPLES],
            }
    return pushed


def pushed_examples(kind: str, found: dict[str, Any]) -> list[dict[str, Any]]:
    """The examples of a kind pushed out of the run: the payouts the target named."""
    ids = found.get("payout_ids") or [None]
    return [
        {"kind": kind, "source": RECONCILIATION, "payout_id": payout_id, "scope": PUSHED}
        for payout_id in ids[:MAX_EXAMPLES]
    ]


def _count(found: Any) -> int:
    return _whole(found.get("count")) if isinstance(found, dict) else 0


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
