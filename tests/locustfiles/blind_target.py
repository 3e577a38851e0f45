"""Serve the target with its reconciliation blinded: `python blind_target.py MODE [--] ARGS`.

For the final audit's test only (test_suite_audit.py); the product has no such flag or path.
- `blind`: the target's reconciliation (target.reconcile.judge) calls every payment hash "ok",
  so GET /admin/reconciliation reports no mismatch and nothing unresolved, whatever the ledger;
- `blind-keeps-charge`: blinded, and the resolver also keeps the charge of a timed-out payout the
  node failed late (it confirms it as if the node had paid it, fee 0): a money bug that only a
  judge of its own, not the wallet's reconciliation, can see.
ARGS go to the target's own CLI (`target.cli.main`); it prints its `listening on URL` line.
"""

from __future__ import annotations

import contextvars
import dataclasses
import sys
from typing import Any

MODES = ("blind", "blind-keeps-charge")
EXIT_USAGE = 2

IN_RESOLVER: contextvars.ContextVar[bool] = contextvars.ContextVar("in_resolver", default=False)


def blind_reconciliation() -> None:
    from target import reconcile

    def judge(row: tuple[Any, ...], truth: Any, stuck_before_ms: int) -> Any:
        return reconcile.OK, 0, str(row[reconcile.IDS] or "").split(",")

    reconcile.judge = judge


def keep_charge_of_late_failures() -> None:
    from target.payouts import PaymentStatus, PayoutService

    resolve_one = PayoutService._resolve_one
    settle = PayoutService.settle

    async def resolve_one_flagged(self: Any, payout: Any) -> bool:
        token = IN_RESOLVER.set(True)  # asyncio copies the context per task: no leak
        try:
            return await resolve_one(self, payout)
        finally:
            IN_RESOLVER.reset(token)

    async def settle_keeping_charge(self: Any, payout: Any, truth: Any, reason: Any = None) -> Any:
        if IN_RESOLVER.get() and truth.status is PaymentStatus.FAILED:
            truth = dataclasses.replace(
                truth,
                status=PaymentStatus.SUCCEEDED,
                amount_msat=payout.amount_msat,
                fee_msat=0,
                attempt_id=payout.attempt_id,
            )
        return await settle(self, payout, truth, reason)

    PayoutService._resolve_one = resolve_one_flagged  # type: ignore[method-assign]
    PayoutService.settle = settle_keeping_charge  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MODES:
        print(f"usage: blind_target.py {{{'|'.join(MODES)}}} [--] TARGET_ARGS...", file=sys.stderr)
        return EXIT_USAGE
    mode, args = argv[0], argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    blind_reconciliation()
    if mode == "blind-keeps-charge":
        keep_charge_of_late_failures()
    from target.cli import main as target_main

    print(f"target patched: {mode}", flush=True)
    return int(target_main(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
