"""Every in-memory set of the wallet has a limit; at a hard limit new work is refused with a
clear 503 that moves nothing, rather than grown into."""

from __future__ import annotations

from target_harness import assert_clean, fast_config, in_process, run

from target.ledger import PENDING_PAYOUTS_MAX, RECENT_PAYOUTS_MAX, WALLETS_MAX
from target.payouts import ACTIVE_PAYOUTS_MAX

AMOUNT_MSAT = 40_000
FUNDS_MSAT = 2_000_000


def test_the_limits_are_named_and_in_force_by_default(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            assert api.state is not None
            assert api.state.ledger.pending_max == PENDING_PAYOUTS_MAX == 50_000
            assert api.state.ledger.wallets_max == WALLETS_MAX == 100_000
            assert RECENT_PAYOUTS_MAX == 5_000
            assert api.state.payouts.active_max == ACTIVE_PAYOUTS_MAX == 10_000

    run(scenario())


def test_past_the_pending_limit_a_payout_is_refused_and_moves_nothing(tmp_path):
    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on", timeout_rate=1.0)
        async with in_process(config) as api:
            assert api.state is not None
            api.state.ledger.pending_max = 1
            wallet = await api.new_wallet(FUNDS_MSAT)
            first, second = await api.invoice(AMOUNT_MSAT), await api.invoice(AMOUNT_MSAT)
            assert (await api.pay(wallet, first["payment_request"])).status == 202
            view = await api.wallet(wallet)
            refused = await api.pay(wallet, second["payment_request"])
            assert (refused.status, refused.error) == (503, "too_many_pending"), refused
            assert await api.wallet(wallet) == view
            assert len(api.state.ledger.pending) == 1
            assert (await api.node_payment(second["payment_hash"]))["status"] == "unknown"
            assert_clean(await api.settled_reconciliation())
            # Once the first is final there is room again, and the refused invoice is not held.
            reply = await api.pay(wallet, second["payment_request"])
            assert reply.status == 202, reply

    run(scenario())


def test_past_the_running_and_wallet_limits_new_work_is_refused(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            assert api.state is not None
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            api.state.payouts.active_max = 0
            refused = await api.pay(wallet, invoice["payment_request"])
            assert (refused.status, refused.error) == (503, "too_many_payouts"), refused
            api.state.payouts.active_max = 10
            assert (await api.pay(wallet, invoice["payment_request"])).status == 200
            api.state.ledger.wallets_max = len(api.state.ledger.api_keys)
            full = await api.call("POST", "/api/wallets", json_body={"balance_msat": 1})
            assert (full.status, full.error) == (503, "wallet_limit"), full
            assert_clean(await api.settled_reconciliation())

    run(scenario())
