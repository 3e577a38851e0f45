"""Any adapter's payouts and reads into the run's history, as the suite's own client records
its own (docs/history.md: an operation's invocation and completion, each read of a wallet, a
payout or the node's truth). An adapter written by another team records nothing itself; the
suite wraps it (`wallet_api_for`), so `lnchaos check` and a finding's witness see an LNbits or
a custom service's run as they see the lnchaos target's. The shapes are recording.py's, one
home for each."""

from __future__ import annotations

from typing import Any

from locustfiles import recording
from locustfiles.wallets.base import Invoice, PayoutResult, Wallet


class RecordedWalletApi:
    """A WalletApi that records every call of the payers' contract, then answers as the adapter
    it wraps; anything else (class facts, optional calls, attributes the payers set) passes
    through to the adapter."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)  # chaos_connection_errors: the adapter's own

    def pay(
        self, wallet: Wallet, invoice: Invoice, idempotency_key: str, phase: str, **kwargs: Any
    ) -> PayoutResult:
        fields = recording.payout_sent(
            wallet.wallet_id, invoice.payment_hash, invoice.amount_msat, idempotency_key, phase
        )
        result = self._inner.pay(wallet, invoice, idempotency_key, phase, **kwargs)
        recording.payout_answered(result, fields)
        return result

    def get_wallet(self, wallet: Wallet, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        view = self._inner.get_wallet(wallet, *args, **kwargs)
        if view is not None:
            recording.wallet_read(wallet.wallet_id, view)
        return view

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        payout = self._inner.get_payout(wallet, payout_id)
        if payout is not None:
            recording.payout_read(wallet.wallet_id, payout_id, payout)
        return payout

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        node = self._inner.get_node_payment(payment_hash)
        if node is not None:
            recording.node_read(payment_hash, node)
        return node


def recorded(api: Any) -> Any:
    """The adapter as the payers use it: wrapped to record, unless it records itself (the
    suite's own client, `records_history`) or is not a payout API (withdraw links, melts)."""
    if getattr(api, "records_history", False) or not callable(getattr(api, "pay", None)):
        return api
    return RecordedWalletApi(api)
