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
    "NodeTruth",
    "TruthReader",
]


@dataclass(frozen=True)
class PaymentTruth:
    """What the node says about a payment: of one attempt, or of a hash (its newest attempt).
    `attempt_id` is the node's payment_index of the attempt the truth is about (None when the
    node knows no such attempt: status UNKNOWN)."""

    payment_hash: str
    status: PaymentStatus
    amount_msat: int = 0
    fee_msat: int = 0
    failure_reason: str = "FAILURE_REASON_NONE"
    attempt_id: int | None = None

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
    """A payment hash may have several attempts: a new one starts only once every earlier one
    failed, so at most one succeeds. Without `attempt_id` a truth is the hash's (its succeeded
    attempt if any, else the one in flight, else the latest failed; UNKNOWN if none); with it,
    that attempt's (UNKNOWN if the node has no such attempt of that hash)."""

    async def decode(self, payment_request: str) -> Invoice: ...

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        """Start a new attempt; returns its id. Raises SendRefused (code "in_transition",
        "already_paid", "self_payment", ...) when the node will not."""
        ...

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        """The truth once final or when `timeout_s` has passed, whichever is first."""
        ...

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth: ...

    async def close(self) -> None: ...


class TruthReader(Protocol):
    """What reconciliation needs: each hash's truth, many at a time."""

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, PaymentTruth]: ...


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
        payment = await self.node.lookup(payment_hash, attempt_id)
        if payment is not None:
            payment = await self.node.wait(payment, timeout_s)
        return truth_of(payment, payment_hash)

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        return truth_of(await self.node.lookup(payment_hash, attempt_id), payment_hash)

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, PaymentTruth]:
        """Each hash's truth (for reconciliation)."""
        found = await self.node.lookup_many(payment_hashes)
        return {h: truth_of(found.get(h), h) for h in payment_hashes}

    async def close(self) -> None:
        return None


class NodeTruth:
    """The node's own answer to "what happened to these payments", for reconciliation: read from
    the node's records by the node's code, not through the client the wallet pays with, so a
    fault in the wallet's client (a fee or status misreported) cannot also blind the check of
    it. Only `lookup_many` and `lookup` (a hash's truth); it sends nothing."""

    def __init__(self, node: LightningNode):
        self._node = node

    async def lookup(self, payment_hash: str) -> PaymentTruth:
        return truth_of(await self._node.lookup(payment_hash), payment_hash)

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, PaymentTruth]:
        found = await self._node.lookup_many(payment_hashes)
        return {h: truth_of(found.get(h), h) for h in payment_hashes}

    async def sent_since(self, since_ms: int) -> dict[str, int]:
        """What the node sent and charged since `since_ms`, from its own records."""
        return await self._node.sent_since(since_ms)
