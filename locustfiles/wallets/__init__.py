"""Wallet adapters: how the payers talk to the system under test (`--wallet-api`).

- `lnchaos` (default): the embedded target's wallet API (locustfiles/wallet_client.py);
- `lnbits`: LNbits' wallet API, paying invoices of a `lnchaos node` that LNbits uses as its LND
  REST funding source (lnbits.py).

The interface is `WalletApi` (base.py). Whatever the adapter, invoices, faults and the truth of
every payment come from the node, never from the wallet: the checks (users.py) and the verdict
(controller.py, checker.py) judge the wallet by the node's truth.
"""

from __future__ import annotations

from typing import Any

from locustfiles.wallets.base import WALLET_APIS, WalletApi

__all__ = ["WALLET_APIS", "WalletApi", "wallet_api_for"]


def wallet_api_for(user: Any) -> WalletApi:
    """The adapter of `--wallet-api` for one Locust user (its own HTTP session to the host)."""
    name = str(getattr(user.environment.parsed_options, "wallet_api", None) or "lnchaos")
    if name == "lnbits":
        from locustfiles.wallets.lnbits import LNbitsWalletApi

        return LNbitsWalletApi.for_user(user)
    from locustfiles.wallets.lnchaos import LnchaosWalletApi

    return LnchaosWalletApi(user.client, user.environment.events.request)
