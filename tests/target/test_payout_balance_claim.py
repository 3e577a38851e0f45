"""A payout's answer reports the wallet's balance right after its own transaction
(`balance_msat`): what the suite's checks take instead of a separate read (issue 14). It must
be exactly the balance a read shows right after, in every flow and outcome, also for a payout
that left money reserved (202) and for one of several payouts of one wallet at once."""

from __future__ import annotations

import asyncio

import pytest
from target_harness import fast_config, in_process, run

from target.openapi import BALANCE_HEADER

AMOUNT_MSAT = 100_000
FUNDS_MSAT = 10_000_000


@pytest.mark.parametrize(
    ("mode", "faults", "status"),
    [
        ("off", {}, 200),
        ("off", {"failure_rate": 1.0}, 502),
        ("off", {"timeout_rate": 1.0}, 504),
        ("rollback", {"timeout_rate": 1.0}, 504),
        ("on", {}, 200),
        ("on", {"failure_rate": 1.0}, 502),
        ("on", {"timeout_rate": 1.0}, 202),
    ],
    ids=["off-ok", "off-fail", "off-timeout", "rollback-timeout", "on-ok", "on-fail", "on-202"],
)
def test_the_answer_reports_the_balance_a_read_shows(tmp_path, mode, faults, status):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix=mode, **faults)) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            for n in range(2):  # the second starts from the first's balance
                invoice = await api.invoice(AMOUNT_MSAT)
                reply = await api.pay(wallet, invoice["payment_request"], idempotency_key=f"{n}")
                assert reply.status == status, reply
                view = await api.wallet(wallet)
                assert reply.body["balance_msat"] == view["balance_msat"], (reply, view)
                assert reply.headers[BALANCE_HEADER] == str(view["balance_msat"]), reply
            moved = status in (200, 202) or mode == "off"
            # charged or reserved (fix off keeps the charge of a failure: the incident), else
            # given back: the claim follows the money either way
            assert (view["balance_msat"] < FUNDS_MSAT) is moved, view

    run(scenario())


def test_concurrent_payouts_of_one_wallet_each_report_a_balance_in_order(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(4)]
            replies = await asyncio.gather(
                *(api.pay(wallet, i["payment_request"]) for i in invoices)
            )
            assert all(r.status == 200 for r in replies), replies
            view = await api.wallet(wallet)
            claims = [r.body["balance_msat"] for r in replies]
            # each claim is the balance right after that payout's confirmation, while the others
            # still hold their reservations (amount + the whole fee reserve): all distinct, none
            # above the final balance, and the last to confirm reports the final balance
            assert len(set(claims)) == 4, claims
            assert max(claims) == view["balance_msat"], (claims, view)
            cost_msat = sum(AMOUNT_MSAT + r.body["fee_msat"] for r in replies)
            assert view["balance_msat"] == FUNDS_MSAT - cost_msat

    run(scenario())


@pytest.mark.parametrize("mode", ["off", "on"])
def test_a_retry_replays_the_answer_and_reports_the_balance_now(tmp_path, mode):
    """A retry (same Idempotency-Key) gets the first answer's body back, `balance_msat`
    included, while its X-Wallet-Balance-Msat header reports the balance when the retry was
    answered: what the suite's retry check takes instead of a read. Between the first request
    and its retry another payout of the wallet moved money, so the two differ."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix=mode)) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            first = await api.pay(wallet, invoice["payment_request"], idempotency_key="k1")
            assert first.status == 200, first
            other = await api.invoice(AMOUNT_MSAT)
            second = await api.pay(wallet, other["payment_request"], idempotency_key="k2")
            assert second.status == 200, second
            retry = await api.pay(wallet, invoice["payment_request"], idempotency_key="k1")
            view = await api.wallet(wallet)
            assert retry.status == 200 and retry.body == first.body, (retry, first)
            assert retry.headers[BALANCE_HEADER] == str(view["balance_msat"]), (retry, view)
            assert int(retry.headers[BALANCE_HEADER]) < first.body["balance_msat"], retry
            # refused before any payout: no claim of a balance
            refused = await api.pay(wallet, "lnbcrt1nonsense", idempotency_key="k3")
            assert refused.status == 400 and BALANCE_HEADER not in refused.headers, refused

    run(scenario())
