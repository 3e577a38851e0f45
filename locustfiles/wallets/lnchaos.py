"""The lnchaos adapter: the embedded target's wallet API, as locustfiles/wallet_client.py speaks
it (invoices and the node's truth through the target's /node/* routes)."""

from __future__ import annotations

from typing import Any

from locustfiles.wallet_client import Wallet, WalletClient


class LnchaosWalletApi(WalletClient):
    name = "lnchaos"
    idempotent = True

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        # the target's API has no list of a wallet's payouts; its reconciliation covers them
        return None
