"""The lnchaos adapter: the embedded target's wallet API, as locustfiles/wallet_client.py speaks
it (invoices and the node's truth through the target's /node/* routes)."""

from __future__ import annotations

from typing import Any

from locustfiles.wallet_client import Wallet, WalletClient
from locustfiles.wallets.base import CONTRACT_VERSION
from target.config import WalletSettings


class LnchaosWalletApi(WalletClient):
    contract = CONTRACT_VERSION
    name = "lnchaos"
    idempotent = True
    judged_by = "target"
    accounting = "balance"

    @classmethod
    def for_user(cls, user: Any) -> LnchaosWalletApi:
        return cls(user.client, user.environment.events.request)

    @staticmethod
    def fee_reserve_msat(amount_msat: int) -> int:
        """The target's fee reserve at its defaults (target/config.py; a target started with
        other --fee-reserve-* may hold more, which the view check then reports)."""
        return WalletSettings().fee_reserve_msat(amount_msat)

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        # the target's API has no list of a wallet's payouts; its reconciliation covers them
        return None
