"""One payment hash, one payout at a time, each bound to its own attempt at the node.

The bug these tests keep dead: two payouts of one invoice from two wallets; the first times out
and later fails, the second succeeds, and the resolver confirmed the first from the truth of the
payment hash (the second's success): both wallets charged for one payment."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from target_harness import (
    Api,
    assert_clean,
    eventually,
    fast_config,
    in_process,
    late_settling_config,
    leave_a_payout_pending,
    run,
)

from target.app import TargetConfig
from target.ledger import BloomFilter, OutboxState, Payout, reserved_account, wallet_account

AMOUNT_MSAT = 50_000
FUNDS_MSAT = 5_000_000


def slow_resolver(config: TargetConfig) -> TargetConfig:
    """The background resolver runs one pass at start, then not for ten minutes: the test runs
    its passes itself, at the moments it chooses."""
    config.wallet.resolver_interval_ms = 600_000
    return config


async def node_status(api: Api, payment_hash: str) -> str:
    return (await api.node_payment(payment_hash))["status"]


def test_a_second_payout_of_an_invoice_in_flight_or_paid_is_refused_and_moves_nothing(tmp_path):
    async def scenario() -> None:
        config = fast_config(
            tmp_path / "w.sqlite", fix="on", timeout_rate=1.0, late_settle_rate=1.0
        )
        async with in_process(config) as api:
            first, second = await api.new_wallet(FUNDS_MSAT), await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            pending = await api.pay(first, invoice["payment_request"])
            assert pending.status == 202, pending
            before = await api.wallet(second)
            refused = await api.pay(second, invoice["payment_request"])
            assert (refused.status, refused.error) == (409, "payment_in_progress"), refused
            assert refused.body["payment_hash"] == invoice["payment_hash"]
            # The same wallet, no key: the same refusal (only one payout may pay a hash).
            again = await api.pay(first, invoice["payment_request"])
            assert (again.status, again.error) == (409, "payment_in_progress"), again
            assert await api.wallet(second) == before
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}, rec
            assert_clean(rec)
            paid = await api.pay(second, invoice["payment_request"])
            assert (paid.status, paid.error) == (409, "invoice_already_paid"), paid
            assert await api.wallet(second) == before
            assert (await api.reconciliation())["payouts"]["succeeded"] == 1

    run(scenario())


@pytest.mark.parametrize("late_settles", [False, True], ids=["late_fail", "late_settle"])
def test_once_the_first_payout_failed_another_may_pay_and_each_is_judged_by_its_attempt(
    tmp_path, late_settles
):
    """First wallet: timeout, late failure. Second wallet, afterwards: timeout, then a late
    settle or failure. Each payout follows its own attempt only."""

    async def scenario() -> None:
        config = fast_config(
            tmp_path / "w.sqlite", fix="on", timeout_rate=1.0, late_settle_rate=0.0
        )
        async with in_process(config) as api:
            first, second = await api.new_wallet(FUNDS_MSAT), await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            p1 = await api.pay(first, invoice["payment_request"])
            assert p1.status == 202, p1

            async def final(payout_id: str, wallet: Any) -> dict[str, Any] | None:
                payout = await api.payout(payout_id, wallet)
                return payout if payout["status"] != "pending" else None

            done = await eventually(lambda: final(p1.body["payout_id"], first), what="p1")
            assert done["status"] == "failed"
            rate = 1.0 if late_settles else 0.0
            reply = await api.admin("PUT", "/admin/faults", {"late_settle_rate": rate})
            assert reply.status == 200, reply
            p2 = await api.pay(second, invoice["payment_request"])
            assert p2.status == 202, p2
            done2 = await eventually(lambda: final(p2.body["payout_id"], second), what="p2")
            assert done2["status"] == ("succeeded" if late_settles else "failed")
            assert await api.wallet(first) == {
                "wallet_id": first.wallet_id,
                "balance_msat": FUNDS_MSAT,
                "reserved_msat": 0,
            }
            truth = await api.node_payment(invoice["payment_hash"])
            charged = AMOUNT_MSAT + truth["fee_msat"] if late_settles else 0
            assert (await api.wallet(second))["balance_msat"] == FUNDS_MSAT - charged
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def test_the_resolver_judges_a_payout_by_its_own_attempt_not_by_the_hash(tmp_path):
    """The incident's shape at the node: this payout's attempt failed late, then another attempt
    of the same hash (made past the wallet, straight at the node) succeeded. The payout must be
    cancelled, not confirmed from the hash's success."""

    async def scenario() -> None:
        config = slow_resolver(
            fast_config(tmp_path / "w.sqlite", fix="on", timeout_rate=1.0, late_settle_rate=0.0)
        )
        async with in_process(config) as api:
            assert api.state is not None
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            pending = await api.pay(wallet, invoice["payment_request"])
            assert pending.status == 202, pending

            async def failed() -> bool:
                return await node_status(api, invoice["payment_hash"]) == "failed"

            await eventually(failed, what="the payout's attempt to fail at the node")
            reply = await api.admin("PUT", "/admin/faults", {"timeout_rate": 0.0})
            assert reply.status == 200, reply
            node = api.state.node_client
            decoded = await node.decode(invoice["payment_request"])
            other_attempt = await node.send(decoded, 10_000)
            truth = await node.wait(invoice["payment_hash"], 5.0, attempt_id=other_attempt)
            assert truth.status == "succeeded", truth
            assert await api.state.payouts.resolve_pending() == 1
            payout = await api.payout(pending.body["payout_id"], wallet)
            assert payout["status"] == "failed", payout
            view = await api.wallet(wallet)
            assert view == {"wallet_id": wallet.wallet_id, "balance_msat": FUNDS_MSAT,
                            "reserved_msat": 0}  # fmt: skip
            rec = await api.reconciliation()
            assert rec["conserved"] is True, rec

    run(scenario())


def test_two_wallets_paying_the_same_invoices_under_timeouts_never_both_pay(tmp_path):
    """Two wallets race over the same invoices, again and again, while payments time out and
    then fail or settle late: an invoice is charged at most once, to the wallet whose own
    attempt succeeded, and nothing is charged for a payment that was not made."""
    rng = random.Random(20261125)

    async def scenario() -> None:
        config = fast_config(
            tmp_path / "w.sqlite",
            fix="on",
            timeout_rate=0.6,
            failure_rate=0.2,
            late_settle_rate=0.4,
            inflight_hold_ms=150.0,
        )
        async with in_process(config) as api:
            wallets = [await api.new_wallet(FUNDS_MSAT) for _ in range(2)]
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(6)]
            payouts: list[tuple[int, str, str]] = []  # (wallet index, payout id, hash)
            errors: set[str] = set()

            async def hammer(index: int) -> None:
                for _ in range(25):
                    invoice = rng.choice(invoices)
                    reply = await api.pay(wallets[index], invoice["payment_request"])
                    if reply.status in (200, 202, 502):
                        payouts.append((index, reply.body["payout_id"], invoice["payment_hash"]))
                    else:
                        assert reply.status == 409, reply
                        errors.add(str(reply.error))
                    await asyncio.sleep(rng.uniform(0.0, 0.05))

            await asyncio.gather(hammer(0), hammer(1))
            assert errors <= {"payment_in_progress", "invoice_already_paid"}, errors
            assert "payment_in_progress" in errors, "the wallets never raced over an invoice"
            rec = await api.settled_reconciliation(timeout_s=15)
            assert_clean(rec)
            charged = [0, 0]
            succeeded: dict[str, int] = {}
            for index, payout_id, payment_hash in payouts:
                payout = await api.payout(payout_id, wallets[index])
                if payout["status"] == "succeeded":
                    assert payment_hash not in succeeded, f"{payment_hash} paid twice"
                    succeeded[payment_hash] = index
                    charged[index] += AMOUNT_MSAT + payout["fee_msat"]
            for invoice in invoices:
                truth = await api.node_payment(invoice["payment_hash"])
                paid = truth["status"] == "succeeded"
                assert paid == (invoice["payment_hash"] in succeeded), (invoice, truth)
            for index, wallet in enumerate(wallets):
                view = await api.wallet(wallet)
                assert view["reserved_msat"] == 0
                assert view["balance_msat"] == FUNDS_MSAT - charged[index]
            assert rec["node"]["succeeded"] == len(succeeded) > 0, rec["node"]

    run(scenario(), timeout_s=60)


def test_an_attempt_never_recorded_is_adopted_after_a_restart_not_sent_again(tmp_path: Path):
    """A crash between the send and the write that records its attempt id: after the restart
    the payout finds the node's attempt of its hash (no other payout recorded it) and follows
    that one; the invoice is not paid a second time."""

    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        wallet, invoice, pending = await leave_a_payout_pending(db, AMOUNT_MSAT, FUNDS_MSAT)
        # As if the process died before the write after the send: no attempt id, still queued.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE payouts SET attempt_id = NULL")
            conn.execute("UPDATE payouts SET outbox = 'queued'")
        async with in_process(late_settling_config(db)) as api:
            assert api.state is not None
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}, rec
            assert_clean(rec)
            assert rec["node"]["succeeded"] == 1 and rec["node"]["failed"] == 0, rec["node"]
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(wallet)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            row = await api.state.ledger.payout(pending.body["payout_id"])
            assert row is not None and row.attempt_id is not None

    run(scenario())


def test_an_attempt_recorded_by_another_payout_is_never_adopted(tmp_path: Path):
    """A payout with no recorded attempt whose hash's latest attempt is another payout's (failed)
    sends its own instead of adopting that failure."""

    async def scenario() -> None:
        config = slow_resolver(fast_config(tmp_path / "w.sqlite", fix="on", failure_rate=1.0))
        async with in_process(config) as api:
            assert api.state is not None
            first, second = await api.new_wallet(FUNDS_MSAT), await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            failed = await api.pay(first, invoice["payment_request"])
            assert failed.status == 502, failed
            reply = await api.admin("PUT", "/admin/faults", {"failure_rate": 0.0})
            assert reply.status == 200, reply
            # A payout of the second wallet that crashed before its send: reserved, queued, no
            # attempt. (Made through the ledger as the saga makes it.)
            service = api.state.payouts
            ledger = api.state.ledger
            payout = Payout(
                payout_id="f" * 32,
                wallet_id=second.wallet_id,
                idempotency_key=None,
                request_sha256="0" * 64,
                payment_request=invoice["payment_request"],
                payment_hash=invoice["payment_hash"],
                amount_msat=AMOUNT_MSAT,
                fee_limit_msat=api.state.wallet_settings.fee_reserve_msat(AMOUNT_MSAT),
                mode="on",
            )
            held = payout.amount_msat + payout.fee_limit_msat
            tx = ledger.tx().move(
                wallet_account(second.wallet_id),
                reserved_account(second.wallet_id),
                held,
                payout.payout_id,
                "reserve",
            )
            await tx.save_payout(payout).set_outbox(payout, OutboxState.QUEUED).commit()
            assert await service.resolve_pending() == 0  # adopted nothing: sent its own
            assert payout.attempt_id is not None
            assert await node_status(api, invoice["payment_hash"]) in ("in_flight", "succeeded")

            async def settled() -> bool:
                await service.resolve_pending()
                return payout.status != "pending"

            await eventually(settled, what="the payout's own attempt to settle")
            assert payout.status == "succeeded"
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(second)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            assert_clean(await api.settled_reconciliation())

    run(scenario())


def test_paid_hashes_never_forget_a_hash_and_rarely_claim_a_new_one():
    # hash_paid skips its read when the filter says no: a hash added must always be a maybe,
    # and a hash never added must be a maybe rarely (each one costs a read, nothing more).
    paid = BloomFilter()
    rng = random.Random(5)
    added = [rng.randbytes(32).hex() for _ in range(50_000)]
    for payment_hash in added:
        paid.add(payment_hash)
    assert all(paid.maybe(payment_hash) for payment_hash in added)
    fresh = [rng.randbytes(32).hex() for _ in range(50_000)]
    assert sum(paid.maybe(payment_hash) for payment_hash in fresh) < 50  # < 0.1 %
