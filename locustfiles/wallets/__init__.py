"""Wallet adapters: how the payers talk to the service under test (`--wallet-api`).

- `lnchaos` (default): the embedded target's wallet API (locustfiles/wallet_client.py);
- `lnbits`: LNbits' wallet API, paying invoices of a `lnchaos node` that LNbits uses as its LND
  REST funding source (lnbits.py);
- any installed package's adapter (entry point group `lnchaos.wallet_apis`), or
  `package.module:Class` (registry.py; docs/adapters.md says how to write one).

The contract is base.py. Whatever the adapter, invoices, faults and the truth of every payment
come from the node, never from the service: the checks (users.py) and the verdict
(controller.py, checker.py) judge the service by the node's truth.
"""

from __future__ import annotations

from typing import Any

from locustfiles.wallets.base import CONTRACT_VERSION, WalletApi
from locustfiles.wallets.recorded import recorded
from locustfiles.wallets.registry import DEFAULT, AdapterError, load

__all__ = ["CONTRACT_VERSION", "AdapterError", "WalletApi", "amount_max_msat", "wallet_api_for"]


def wallet_api_for(user: Any) -> WalletApi:
    """The adapter of `--wallet-api` for one Locust user (its own HTTP session to the host),
    its payouts and reads recorded in the run's history (recorded.py)."""
    name = str(getattr(user.environment.parsed_options, "wallet_api", None) or DEFAULT)
    return recorded(load(name).for_user(user))


def amount_max_msat(options: Any) -> int | None:
    """The largest single amount the `--wallet-api` service takes (an adapter's optional
    `amount_max_msat`: LNbits refuses invoices over 10M sats by default), None when it sets
    none: the edge workload's largest payouts and its funding stay within it."""
    name = str(getattr(options, "wallet_api", None) or DEFAULT)
    value = getattr(load(name), "amount_max_msat", None)
    return int(value) if isinstance(value, int) and value > 0 else None
