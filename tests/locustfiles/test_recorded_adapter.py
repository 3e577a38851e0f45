"""Any adapter's payouts and reads reach the run's history (issue 26: every operation as an
invocation and a completion, every read), as the suite's own client's do: an adapter written by
another team records nothing itself; `wallet_api_for` wraps it (locustfiles/wallets/recorded.py)."""

from __future__ import annotations

import json
from typing import Any

from locustfiles import recording
from locustfiles.telemetry import LOCAL
from locustfiles.wallet_client import WalletClient
from locustfiles.wallets.base import Invoice, PayoutResult, Wallet
from locustfiles.wallets.recorded import RecordedWalletApi, recorded


class TeamAdapter:
    """A service's adapter as a team writes it: no recording of its own."""

    name = "team"
    idempotent = True

    def __init__(self) -> None:
        self.chaos_connection_errors = False

    def pay(
        self, wallet: Wallet, invoice: Invoice, key: str, phase: str, **kw: Any
    ) -> PayoutResult:
        return PayoutResult(
            kind="ok", outcome="succeeded", http_status=201, latency_ms=12.34,
            payout_id="p-1", payout_status="succeeded", amount_msat=invoice.amount_msat,
            fee_msat=1_000, payment_hash=invoice.payment_hash,
        )  # fmt: skip

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        return {"balance_msat": 8_999_000, "reserved_msat": 0}

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        return None  # not readable: nothing recorded

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        return {"status": "succeeded", "fee_msat": 1_000}


def recorded_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LOCAL.history.drain()]


def test_a_team_adapters_payout_and_reads_are_recorded_as_the_suites_own() -> None:
    recording.configure(True)
    api = recorded(TeamAdapter())
    assert isinstance(api, RecordedWalletApi)
    recorded_lines()  # what earlier tests left
    wallet, invoice = (
        Wallet("w-1", "secret-key", 10_000_000),
        Invoice("lnbcrt1...", "h" * 64, 8_000_000),
    )
    result = api.pay(wallet, invoice, "key-1", "spike", retry=False)
    assert result.payout_id == "p-1"
    assert api.get_wallet(wallet) == {"balance_msat": 8_999_000, "reserved_msat": 0}
    assert api.get_payout(wallet, "p-1") is None
    api.get_node_payment(invoice.payment_hash)
    lines = recorded_lines()
    assert [(r["type"], r.get("op"), r.get("result")) for r in lines] == [
        ("invoke", "payout", None),
        ("complete", "payout", "ok"),
        ("wallet_read", None, None),
        ("node_read", None, None),
    ]
    invoke, complete, view, node = lines
    assert invoke["amount_msat"] == 8_000_000 and invoke["key"] == "key-1"
    assert complete["fee_msat"] == 1_000 and complete["http"] == 201
    assert complete["payout_id"] == "p-1" and complete["latency_ms"] == 12.3
    assert invoke["wallet"] == complete["wallet"] == view["wallet"] == "w-1"
    assert view["balance_msat"] == 8_999_000 and node["status"] == "succeeded"
    assert "secret-key" not in json.dumps(lines)  # a wallet's key never reaches the history


def test_the_payers_settings_reach_the_adapter_and_the_suites_client_is_not_wrapped() -> None:
    inner = TeamAdapter()
    api = recorded(inner)
    api.chaos_connection_errors = True  # set by the payers under the crash fault
    assert inner.chaos_connection_errors is True and api.name == "team"
    assert WalletClient.records_history  # records its own, with its balance header
    links = type("LinkAdapter", (), {"withdraw": lambda self: None})()
    assert recorded(links) is links  # not a payout API: nothing to wrap
