"""What the wallet needs from a Lightning node, and the in-process implementation.

This is the only module of the node the wallet imports (a test holds that rule): the wallet speaks
only this interface and the types it names, so the same payout code can use the node mock
in-process or, over HTTP (target/node/lnd_client.py), anything that answers LND's REST API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .invoices import Invoice, InvoiceError
from .network import LightningNode, Payment, PaymentStatus, SendRefused

__all__ = [
    "Invoice",
    "InvoiceError",
    "LocalNodeClient",
    "NodeClient",
    "PaymentStatus",
    "PaymentTruth",
    "SendRefused",
]


@dataclass(frozen=True)
class PaymentTruth:
    payment_hash: str
    status: PaymentStatus
    amount_msat: int = 0
    fee_msat: int = 0
    failure_reason: str = "FAILURE_REASON_NONE"
    attempt_id: int | None = None  # the node's payment_index of this attempt

    @property
    def final(self) -> bool:
        return self.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)


def truth_of(payment: Payment | None, payment_hash: str) -> PaymentTruth:
    if payment is None:
        return PaymentTruth(payment_hash, PaymentStatus.UNKNOWN)
    return PaymentTruth(
        payment_hash,
        payment.status,
        payment.amount_msat,
        payment.fee_msat,
        str(payment.failure_reason),
        payment.payment_index,
    )


class NodeClient(Protocol):
    async def decode(self, payment_request: str) -> Invoice: ...

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        """Hand the payment to the node; returns the new attempt's id. Raises SendRefused when
        the node will not (in_transition, already_paid, self_payment)."""

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        """The payment's state once final or when `timeout_s` has passed, whichever is first."""

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        """The hash's truth; with `attempt_id`, that attempt's (UNKNOWN if there is none)."""

    async def close(self) -> None: ...


class LocalNodeClient:
    """The node mock in this process: no network between wallet and node."""

    def __init__(self, node: LightningNode):
        self.node = node

    async def decode(self, payment_request: str) -> Invoice:
        return self.node.decode(payment_request)

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        return (await self.node.send(invoice, fee_limit_msat)).payment_index

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        payment = await self.node.lookup(payment_hash)
        if payment is not None and attempt_id in (None, payment.payment_index):
            payment = await self.node.wait(payment, timeout_s)
        return self._truth(payment, payment_hash, attempt_id)

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        return self._truth(await self.node.lookup(payment_hash), payment_hash, attempt_id)

    @staticmethod
    def _truth(payment: Payment | None, payment_hash: str, attempt_id: int | None) -> PaymentTruth:
        # The node keeps the latest attempt of a hash and starts one only after the earlier ones
        # failed: an older attempt asked for is a failed one.
        if attempt_id is None or (payment is not None and payment.payment_index == attempt_id):
            return truth_of(payment, payment_hash)
        if payment is not None and payment.payment_index > attempt_id:
            return PaymentTruth(payment_hash, PaymentStatus.FAILED, attempt_id=attempt_id)
        return PaymentTruth(payment_hash, PaymentStatus.UNKNOWN)

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, PaymentTruth]:
        found = await self.node.lookup_many(payment_hashes)
        return {h: truth_of(found.get(h), h) for h in payment_hashes}

    async def close(self) -> None:
        return None
