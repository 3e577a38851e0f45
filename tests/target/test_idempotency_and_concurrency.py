"""Retries never pay twice, and concurrent payouts never overdraw a wallet."""

from __future__ import annotations

import asyncio

import pytest
from target_harness import assert_clean, fast_config, in_process, run

AMOUNT_MSAT = 100_000
FUNDS_MSAT = 10_000_000


@pytest.mark.parametrize(
    ("mode", "faults", "status"),
    [
        ("off", {}, 200),
        ("rollback", {"failure_rate": 1.0}, 502),
        ("on", {}, 200),
        ("on", {"failure_rate": 1.0}, 502),
        ("off", {"timeout_rate": 1.0}, 504),
    ],
    ids=["off-success", "rollback-failure", "on-success", "on-failure", "off-timeout"],
)
def test_same_key_same_body_returns_the_first_answer(tmp_path, mode, faults, status):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix=mode, **faults)) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            first = await api.pay(wallet, invoice["payment_request"], idempotency_key="k-1")
            assert first.status == status, first
            after_first = await api.wallet(wallet)
            for _ in range(3):
                again = await api.pay(wallet, invoice["payment_request"], idempotency_key="k-1")
                assert (again.status, again.body) == (first.status, first.body)
            # Case and surrounding blanks do not make it another request.
            spaced = " " + invoice["payment_request"].upper() + " "
            again = await api.pay(wallet, spaced, idempotency_key="k-1")
            assert (again.status, again.body) == (first.status, first.body)
            assert await api.wallet(wallet) == after_first
            rec = await api.settled_reconciliation()
            assert sum(rec["payouts"].values()) == 1, rec
            metrics = (await api.call("GET", "/metrics")).text
            assert "lnchaos_idempotent_replays_total 4.0" in metrics

    run(scenario())


@pytest.mark.parametrize("late_settles", [True, False], ids=["late_settle", "late_fail"])
def test_a_retry_of_a_pending_payout_gets_the_first_answer_after_it_resolved(
    tmp_path, late_settles
):
    """The stored answer is the first one (202 pending), even once the resolver has settled the
    payout; its outcome is read with GET /api/payouts/{id}."""

    async def scenario() -> None:
        config = fast_config(
            tmp_path / "w.sqlite",
            fix="on",
            timeout_rate=1.0,
            late_settle_rate=1.0 if late_settles else 0.0,
        )
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            first = await api.pay(wallet, invoice["payment_request"], idempotency_key="k")
            assert first.status == 202, first
            await api.settled_reconciliation()
            final = await api.payout(first.body["payout_id"], wallet)
            assert final["status"] == ("succeeded" if late_settles else "failed")
            view = await api.wallet(wallet)
            again = await api.pay(wallet, invoice["payment_request"], idempotency_key="k")
            assert (again.status, again.body) == (first.status, first.body)
            assert await api.wallet(wallet) == view

    run(scenario())


def test_reusing_a_key_for_another_request_is_rejected_with_422(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            first_invoice = await api.invoice(AMOUNT_MSAT)
            other_invoice = await api.invoice(AMOUNT_MSAT)
            first = await api.pay(wallet, first_invoice["payment_request"], idempotency_key="k")
            assert first.status == 200, first
            before = await api.conservation()
            view = await api.wallet(wallet)
            reused = await api.pay(wallet, other_invoice["payment_request"], idempotency_key="k")
            assert reused.status == 422, reused
            assert reused.error == "idempotency_key_reused"
            assert reused.body["payout_id"] == first.body["payout_id"]
            assert await api.conservation() == before
            assert await api.wallet(wallet) == view
            truth = await api.node_payment(other_invoice["payment_hash"])
            assert truth["status"] == "unknown", "the other invoice must never reach the node"
            # The key is per wallet: another wallet may use the same key for its own payout.
            other_wallet = await api.new_wallet(FUNDS_MSAT)
            own = await api.pay(other_wallet, other_invoice["payment_request"], idempotency_key="k")
            assert own.status == 200 and own.body["payout_id"] != first.body["payout_id"]

    run(scenario())


def test_concurrent_retries_with_one_key_pay_once(tmp_path):
    """Retries racing the first request: one payout, the others replay it or hear 409."""

    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on", latency_ms_median=30.0)
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            replies = await asyncio.gather(
                *(
                    api.pay(wallet, invoice["payment_request"], idempotency_key="race")
                    for _ in range(20)
                )
            )
            statuses = sorted(r.status for r in replies)
            assert set(statuses) <= {200, 409}, statuses
            assert 200 in statuses
            ids = {r.body["payout_id"] for r in replies}
            assert len(ids) == 1, "every answer names the one payout"
            for reply in replies:
                if reply.status == 409:
                    assert reply.error == "request_in_progress"
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(wallet)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}
            assert_clean(rec)

    run(scenario())


def test_retry_after_a_restart_replays_the_stored_answer(tmp_path):
    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        async with in_process(fast_config(db, fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            first = await api.pay(wallet, invoice["payment_request"], idempotency_key="k")
            assert first.status == 200, first
            view = await api.wallet(wallet)
        async with in_process(fast_config(db, fix="on")) as api:
            again = await api.pay(wallet, invoice["payment_request"], idempotency_key="k")
            assert (again.status, again.body) == (first.status, first.body)
            assert await api.wallet(wallet) == view

    run(scenario())


def test_a_retry_of_a_payout_no_longer_in_memory_replays_the_stored_answer(tmp_path):
    """A key not in memory (its payout left the bounded cache of recent ones) is read from the
    database: the filter of used keys says "maybe" for every key ever stored, "no" only for new
    ones, and a new key costs no read."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            assert api.state is not None
            ledger = api.state.ledger
            ledger._recent_max = 2
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(4)]
            answers = []
            for n, invoice in enumerate(invoices):
                reply = await api.pay(wallet, invoice["payment_request"], idempotency_key=f"k{n}")
                assert reply.status == 200, reply
                answers.append(reply)
            assert (wallet.wallet_id, "k0") not in ledger.idempotency  # left the cache
            assert ledger.used_keys.maybe((wallet.wallet_id, "k0"))
            view = await api.wallet(wallet)
            again = await api.pay(wallet, invoices[0]["payment_request"], idempotency_key="k0")
            assert (again.status, again.body) == (answers[0].status, answers[0].body)
            assert await api.wallet(wallet) == view

    run(scenario())


def test_paying_one_invoice_twice_without_a_key_charges_once_under_the_saga(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            replies = await asyncio.gather(
                *(api.pay(wallet, invoice["payment_request"]) for _ in range(5))
            )
            assert sorted(r.status for r in replies).count(200) == 1, replies
            # The others are refused before any money moves: the invoice is being paid, or paid.
            refused = {r.error for r in replies if r.status != 200}
            assert refused <= {"payment_in_progress", "invoice_already_paid"}, replies
            assert all(r.status in (200, 409) for r in replies), replies
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(wallet)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}, rec
            assert_clean(rec)
            again = await api.pay(wallet, invoice["payment_request"])
            assert (again.status, again.error) == (409, "invoice_already_paid"), again
            assert await api.wallet(wallet) == view

    run(scenario())


@pytest.mark.parametrize("mode", ["off", "rollback", "on"])
def test_fifty_concurrent_payouts_from_a_wallet_funded_for_ten(tmp_path, mode):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix=mode)) as api:
            assert api.state is not None
            held_msat = AMOUNT_MSAT + api.state.wallet_settings.fee_reserve_msat(AMOUNT_MSAT)
            funds_msat = 10 * held_msat
            wallet = await api.new_wallet(funds_msat)
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(50)]
            replies = await asyncio.gather(
                *(api.pay(wallet, inv["payment_request"]) for inv in invoices)
            )
            statuses = [r.status for r in replies]
            assert statuses.count(200) == 10, statuses
            assert statuses.count(409) == 40, statuses
            assert {r.error for r in replies if r.status == 409} == {"insufficient_funds"}
            spent = 0
            for inv, reply in zip(invoices, replies, strict=True):
                truth = await api.node_payment(inv["payment_hash"])
                if reply.status == 200:
                    assert truth["status"] == "succeeded"
                    spent += AMOUNT_MSAT + truth["fee_msat"]
                else:
                    assert truth["status"] == "unknown", "a refused payout never reaches the node"
            view = await api.wallet(wallet)
            assert view["balance_msat"] == funds_msat - spent >= 0
            assert view["reserved_msat"] == 0
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 10, "failed": 0, "pending": 0}
            assert_clean(rec)

    run(scenario())
