"""Settings of the wallet: its payout flow and its limits. (The node's faults are the node's own,
target/node/faults.py; the whole process's settings are the app factory's, target/app.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .common.limits import MAX_AMOUNT_MSAT


class FixMode(StrEnum):
    OFF = "off"  # the incident: debit, pay, never roll back
    ROLLBACK = "rollback"  # the "immediate safeguard": refund on timeout too (pays for free)
    ON = "on"  # the saga: reserve, send, resolve against the node, confirm or cancel


# The fix modes by name, in the order they are shown (the suite's --fix, lnchaos compare --modes):
# the one list, here where the modes are.
FIX_MODES = tuple(mode.value for mode in FixMode)


@dataclass
class WalletSettings:
    node_timeout_ms: int = 500  # the wallet's deadline for one Lightning payment
    fee_reserve_base_msat: int = 2000
    fee_reserve_ppm: int = 10_000
    resolver_interval_ms: int = 100
    reconcile_interval_s: float = 5.0
    stuck_after_s: float = 30.0  # a payout pending longer than this is reported as stuck
    max_body_bytes: int = 16 * 1024
    max_wallet_balance_msat: int = MAX_AMOUNT_MSAT

    def fee_reserve_msat(self, amount_msat: int) -> int:
        return self.fee_reserve_base_msat + amount_msat * self.fee_reserve_ppm // 1_000_000
