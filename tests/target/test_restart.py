"""A restart on the same database (and the same --seed, as the docs suggest for a replay)."""

from __future__ import annotations

import asyncio
import time

from target_harness import assert_clean, fast_config, in_process, run

from target.app import TargetConfig

AMOUNT_MSAT = 100_000
FUNDS_MSAT = 10_000_000


def test_invoices_issued_after_a_restart_have_fresh_payment_hashes(tmp_path):
    """With the same --seed the node used to issue the same payment hashes again after a restart
    (its secrets restarted from random.Random(seed)); the old payment's truth was overwritten and
    reconciliation reported a false charged_not_paid (fixed in the node, defb6fc)."""

    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        async with in_process(fast_config(db, fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            before = await api.invoice(AMOUNT_MSAT)
            assert (await api.pay(wallet, before["payment_request"])).status == 200
        async with in_process(fast_config(db, fix="on"), check_conserved=False) as api:
            after = await api.invoice(AMOUNT_MSAT)
            assert after["payment_hash"] != before["payment_hash"]
            assert (await api.pay(wallet, after["payment_request"])).status == 200
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def test_a_restart_keeps_balances_payouts_and_keys(tmp_path):
    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        async with in_process(fast_config(db, fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            paid = await api.pay(wallet, invoice["payment_request"])
            assert paid.status == 200
            view = await api.wallet(wallet)
            rec = await api.settled_reconciliation()
        async with in_process(fast_config(db, fix="off")) as api:
            assert await api.wallet(wallet) == view
            assert await api.payout(paid.body["payout_id"], wallet) == {
                "wallet_id": wallet.wallet_id,
                **{k: paid.body[k] for k in ("payout_id", "status", "amount_msat", "fee_msat")},
                "payment_hash": invoice["payment_hash"],
            }
            again = await api.settled_reconciliation()
            assert again["conservation"] == rec["conservation"]
            assert again["payouts"] == rec["payouts"]
            assert_clean(again)
            assert (await api.call("GET", "/health")).body["fix"] == "off"
            # The same invoice again (no key): the wallet knows it paid it (its database, across
            # the restart) and refuses it before moving anything.
            assert (await api.admin("PUT", "/admin/fix", {"mode": "on"})).status == 200
            replay = await api.pay(wallet, invoice["payment_request"])
            assert replay.status == 409 and replay.error == "invoice_already_paid", replay
            assert await api.wallet(wallet) == view
            assert (await api.reconciliation())["payouts"] == rec["payouts"]

    run(scenario())


def test_node_totals_count_payments_that_resolve_during_a_restart(tmp_path):
    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        hold_ms = 800.0  # longer than the five payouts below take to answer (one deadline)

        def config() -> TargetConfig:
            return fast_config(
                db, fix="on", timeout_rate=1.0, late_settle_rate=1.0, inflight_hold_ms=hold_ms
            )

        async with in_process(config()) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(5)]
            replies = await asyncio.gather(
                *(api.pay(wallet, invoice["payment_request"]) for invoice in invoices)
            )
            assert [reply.status for reply in replies] == [202] * 5
            stopped_s = time.time()
            assert (await api.reconciliation())["node"]["in_flight"] == 5
        # Restart once the held payments are overdue (a wait for the clock, not for an event),
        # so that they resolve while the node loads.
        await asyncio.sleep(max(0.0, stopped_s + 2 * hold_ms / 1000 - time.time()))
        async with in_process(config()) as api:
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 5, "failed": 0, "pending": 0}
            assert_clean(rec)
            assert rec["node"]["succeeded"] == 5, rec["node"]

    run(scenario())
