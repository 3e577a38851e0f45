"""The adapter interface: what the payers need of a wallet, in the suite's own terms.

An adapter turns one wallet API into these calls. Each call is one (or a few) HTTP requests
named for Locust's statistics; money is integer msat; a payout's outcome is classified as the
lnchaos wallet client does (`PayoutResult.kind`: ok / fail / info / refused / error, Jepsen's):
- ok: the wallet says the payment succeeded; fail: it says it failed; info: it does not know yet
  (pending, a timeout); refused: a refusal the caller expected (the payout moved nothing);
  error: an answer the adapter does not understand (a failed Locust request; the final audit
  judges the payout).
None of it is believed: the checks take whether a payment was made, and its fee, from the node.

Invoices and the node's truth come from the node (`create_invoice`, `get_node_payment`), never
from the wallet, whatever the adapter.
"""

from __future__ import annotations

from typing import Any, Protocol

from locustfiles.wallet_client import Invoice, PayoutResult, Wallet

WALLET_APIS = ("lnchaos", "lnbits")

__all__ = ["WALLET_APIS", "Invoice", "PayoutResult", "Wallet", "WalletApi"]


class WalletApi(Protocol):
    """What a wallet adapter offers the payers (locustfiles/users.py)."""

    name: str
    # True when the wallet honours an Idempotency-Key (the same key answers the same payout);
    # False: a retry resends the same invoice and only "never charged twice" is checked.
    idempotent: bool

    def create_wallet(self, balance_msat: int) -> Wallet | None:
        """Open a wallet holding `balance_msat` (funded and credited when it returns)."""
        ...

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        """An invoice of a payee in the node's network (the node's, not the wallet's)."""
        ...

    def pay(
        self,
        wallet: Wallet,
        invoice: Invoice,
        idempotency_key: str,
        phase: str,
        *,
        retry: bool = False,
        label: str = "",
        refusals: tuple[str, ...] = (),
    ) -> PayoutResult:
        """Pay `invoice` from `wallet`; `idempotency_key` is sent where the API has one."""
        ...

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        """The wallet's view: {"balance_msat", "reserved_msat"} (None: could not be read)."""
        ...

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        """A payout by its id (or payment hash, where that is the id): {"status": pending |
        succeeded | failed, ...}."""
        ...

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        """The node's truth of a payment hash (GET /node/payments/{hash})."""
        ...

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        """What the wallet believes it paid: [{payment_hash, status, amount_msat, fee_msat}],
        or None when its API has no such list."""
        ...
