"""A node error is not a failure: under fix on, a send that ends in a connection error keeps the
money reserved until the node says what happened, whether the payment went out or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from target_harness import assert_clean, eventually, fast_config, in_process, run

from target.node.client import NodeClient, PaymentTruth
from target.node.invoices import Invoice

AMOUNT_MSAT = 40_000
FUNDS_MSAT = 1_000_000


class FlakyNode:
    """The real node behind a link that drops the answer to the first send: `after` the node
    acted (the payment went out) or `before` it did (nothing was sent)."""

    def __init__(self, inner: NodeClient, when: str):
        self.inner = inner
        self.when = when
        self.sends = 0

    async def decode(self, payment_request: str) -> Invoice:
        return await self.inner.decode(payment_request)

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        self.sends += 1
        if self.sends == 1:
            if self.when == "after":
                await self.inner.send(invoice, fee_limit_msat)
            raise ConnectionError("connection reset by peer")
        return await self.inner.send(invoice, fee_limit_msat)

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        return await self.inner.wait(payment_hash, timeout_s, attempt_id=attempt_id)

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        return await self.inner.lookup(payment_hash, attempt_id=attempt_id)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_dropped_send_is_resolved_against_the_node_never_refunded_blindly(
    tmp_path: Path, when: str
) -> None:
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            assert api.state is not None
            flaky = FlakyNode(api.state.payouts.node, when)
            api.state.payouts.node = flaky
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            reply = await api.pay(wallet, invoice["payment_request"])
            # After the node acted the payment settles within the deadline; before it, the
            # outcome is unknown and the payout waits, reserved, for the resolver.
            assert reply.status == (200 if when == "after" else 202), reply
            payout_id = reply.body["payout_id"]

            async def final() -> dict | None:
                payout = await api.payout(payout_id, wallet)
                return payout if payout["status"] != "pending" else None

            payout = await eventually(final, timeout_s=10, what="the payout to resolve")
            truth = await api.node_payment(invoice["payment_hash"])
            assert truth["status"] == "succeeded"
            assert payout["status"] == "succeeded"
            balance = await api.wallet(wallet)
            assert balance["reserved_msat"] == 0
            assert balance["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            assert flaky.sends == (2 if when == "before" else 1)
            assert_clean(await api.settled_reconciliation())

    run(scenario())
