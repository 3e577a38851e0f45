"""Every in-memory set of the wallet has a limit; at a hard limit new work is refused with a
clear 503 that moves nothing, rather than grown into."""

from __future__ import annotations

from target_harness import assert_clean, fast_config, in_process, run

from target.ledger import HOT_WALLETS_MAX, PENDING_PAYOUTS_MAX, RECENT_PAYOUTS_MAX
from target.payouts import ACTIVE_PAYOUTS_MAX

AMOUNT_MSAT = 40_000
FUNDS_MSAT = 2_000_000


def test_the_limits_are_named_and_in_force_by_default(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            assert api.state is not None
            assert api.state.ledger.pending_max == PENDING_PAYOUTS_MAX == 50_000
            assert api.state.ledger.hot_wallets_max == HOT_WALLETS_MAX == 20_000
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


def test_past_the_running_limit_new_work_is_refused(tmp_path):
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
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def test_wallets_past_the_hot_limit_leave_memory_and_are_read_back_exactly(tmp_path):
    """Issue 24: a long run opens a wallet every few payouts, and a target that kept every
    wallet in memory grew without bound. Past hot_wallets_max the least recently used idle
    wallets leave memory; each is read back from the database when asked for, with its key and
    its balances as committed, and pays as before."""

    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on")
        async with in_process(config) as api:
            assert api.state is not None
            ledger = api.state.ledger
            ledger.hot_wallets_max = 3
            wallets = [await api.new_wallet(FUNDS_MSAT + i) for i in range(8)]
            await ledger.journal.flush()
            await api.wallet(wallets[-1])  # one more use: the oldest idle ones go
            assert len(ledger.api_keys) <= 3, len(ledger.api_keys)
            cold = wallets[0]
            assert not ledger.is_hot(cold.wallet_id)
            bad = await api.call(
                "GET", f"/api/wallets/{cold.wallet_id}", headers={"X-Api-Key": "wrong"}
            )
            assert (bad.status, bad.error) == (401, "unauthorized"), bad
            for i, wallet in enumerate(wallets):
                view = await api.wallet(wallet)
                assert (view["balance_msat"], view["reserved_msat"]) == (FUNDS_MSAT + i, 0)
            invoice = await api.invoice(AMOUNT_MSAT)
            paid = await api.pay(cold, invoice["payment_request"])
            assert paid.status == 200, paid
            fee_msat = int(paid.body["fee_msat"])
            assert (await api.wallet(cold))["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - fee_msat
            for wallet in wallets[1:]:  # the others again, the paid one leaving memory
                await api.wallet(wallet)
            assert not ledger.is_hot(cold.wallet_id)
            view = await api.wallet(cold)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - fee_msat
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def test_a_wallet_in_use_is_never_let_go(tmp_path):
    """A pending payout's wallet (money reserved) stays in memory however many wallets come
    after it, and its payout settles on the balance it had."""

    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on", timeout_rate=1.0)
        async with in_process(config) as api:
            assert api.state is not None
            ledger = api.state.ledger
            ledger.hot_wallets_max = 2
            busy = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            assert (await api.pay(busy, invoice["payment_request"])).status == 202
            for _ in range(5):
                await api.wallet(await api.new_wallet(FUNDS_MSAT))
            assert ledger.is_hot(busy.wallet_id)
            assert (await api.wallet(busy))["reserved_msat"] > 0
            assert_clean(await api.settled_reconciliation())

    run(scenario())
