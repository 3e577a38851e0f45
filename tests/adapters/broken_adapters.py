"""Adapters with one mistake each, for `lnchaos adapter-check` to name (test_adapter_check.py):
the embedded target's adapter, less a call or reading one wrong."""

from __future__ import annotations

from typing import Any

from locustfiles.wallets.base import Wallet
from locustfiles.wallets.lnchaos import LnchaosWalletApi


class NoPayoutRead(LnchaosWalletApi):
    """Lacks get_payout: the payers could not follow a payout that timed out."""

    get_payout = None  # type: ignore[assignment]


class BalanceInSat(LnchaosWalletApi):
    """Reads the balance in sat where the contract says msat."""

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        view = super().get_wallet(wallet)
        return None if view is None else {**view, "balance_msat": view["balance_msat"] // 1000}


class TimeoutAsFailure(LnchaosWalletApi):
    """Takes a payment still in flight (202 pending) for a failed one: the incident's reading."""

    def pay(self, *args: Any, **kwargs: Any) -> Any:
        result = super().pay(*args, **kwargs)
        if result.kind == "info":
            result.kind, result.outcome = "fail", "failed"
        return result
