"""Multi-part payments routed by the caller (QueryRoutes, then one SendToRouteV2 per part), as
Cashu mints send their multi-path melts.

The first part of a payment hash starts the node's attempt to pay the invoice, through the same
`LightningNode.send` as every other payment (the same faults, one attempt in the truth): it is
IN_FLIGHT from then on, on TrackPaymentV2 and ListPayments as in LND, but held. The payee holds
the parts until they add up to the invoice's amount (the `total_amt_msat` of their MPP record);
then the node releases the attempt, its fee the sum of the parts' route fees, and every part
ends as that payment ends: all settled with its preimage, or all failed. A set not complete
within `timeout_s` (LND's receiver: 60 s) fails every part MPP_TIMEOUT; the attempt fails
TIMEOUT and pays nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from ..common.limits import MAX_AMOUNT_MSAT
from .invoices import Invoice
from .network import FailureReason, LightningNode, Payment, PaymentStatus, SendRefused

MPP_TIMEOUT_S = 60.0  # LND's invoice registry gives up on an incomplete MPP set after 60 s
SETS_MAX = 10_000  # incomplete sets held at once; more are refused (bounded memory)
PARTS_MAX = 128  # parts of one set


class PartRefused(Exception):
    """The part was not sent at all (LND answers the call with an error, no attempt)."""

    def __init__(self, message: str, *, too_many: bool = False):
        super().__init__(message)
        self.too_many = too_many  # a bound of ours, not the payment's state


@dataclass
class PartOutcome:
    """How one part ended: the whole payment's outcome, or why the payee failed it."""

    attempt_id: int
    attempt_time_ns: int
    payment: Payment | None = None  # the payment the parts made (None: never sent)
    failure_code: str = ""  # lnrpc.Failure.FailureCode name when the part failed
    resolve_time_ns: int = 0

    @property
    def succeeded(self) -> bool:
        return self.payment is not None and self.payment.status is PaymentStatus.SUCCEEDED


@dataclass
class PartSet:
    invoice: Invoice
    payment: Payment | None = None  # the held attempt, once the node recorded it
    refused: str = ""  # the node refused the attempt (a hash paid or in flight)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    collected_msat: int = 0
    fees_msat: int = 0
    parts: int = 0
    released: bool = False


class MultiPart:
    """The payee's side of the parts in flight, per payment hash."""

    def __init__(self, node: LightningNode, *, timeout_s: float = MPP_TIMEOUT_S):
        self.node = node
        self.timeout_s = timeout_s
        self._sets: dict[str, PartSet] = {}
        self._attempt_ids = itertools.count(1)

    async def send_part(
        self, invoice: Invoice, amount_msat: int, fee_msat: int, total_msat: int
    ) -> PartOutcome:
        """One part of `invoice`'s payment: waits until the whole payment ended (or the set
        timed out) and returns this part's end. PartRefused when the hash is paid or in flight
        already (other than by these parts), or too many sets or parts are open."""
        outcome = PartOutcome(next(self._attempt_ids), time.time_ns())
        if total_msat != invoice.amount_msat:  # the payee fails it; no set is opened for it
            return _failed(outcome, "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS")
        part_set = await self._set_of(invoice)
        payment = part_set.payment
        assert payment is not None
        if part_set.parts >= PARTS_MAX:
            raise PartRefused("too many parts for one payment", too_many=True)
        part_set.parts += 1
        part_set.collected_msat += amount_msat
        part_set.fees_msat += fee_msat
        if part_set.collected_msat >= invoice.amount_msat and not part_set.released:
            part_set.released = self.node.release(payment, part_set.fees_msat)
        await payment.done.wait()  # the node resolves every attempt (its own timer)
        if self._sets.get(invoice.payment_hash) is part_set:
            del self._sets[invoice.payment_hash]
        outcome.payment = payment
        outcome.resolve_time_ns = time.time_ns()
        if payment.status is not PaymentStatus.SUCCEEDED:
            outcome.failure_code = _failure_code(payment, part_set.released)
        return outcome

    async def _set_of(self, invoice: Invoice) -> PartSet:
        """The hash's open set, or a new one with the node's held attempt."""
        part_set = self._sets.get(invoice.payment_hash)
        if part_set is not None and not (part_set.payment and part_set.payment.done.is_set()):
            await part_set.started.wait()  # its first part is asking the node
        else:
            if len(self._sets) >= SETS_MAX:
                raise PartRefused("too many multi-part payments in flight", too_many=True)
            part_set = PartSet(invoice)
            self._sets[invoice.payment_hash] = part_set  # before the await: one set per hash
            try:
                part_set.payment = await self.node.send(
                    invoice, MAX_AMOUNT_MSAT, route_fee_msat=0, hold_ms=self.timeout_s * 1000
                )
            except SendRefused as err:
                part_set.refused = str(err)
                del self._sets[invoice.payment_hash]
            finally:
                part_set.started.set()
        if part_set.refused:
            raise PartRefused(part_set.refused)
        return part_set

    def close(self) -> None:
        """The node stops: its timers end every held attempt; nothing of ours to cancel."""
        self._sets.clear()


def _failed(outcome: PartOutcome, failure_code: str) -> PartOutcome:
    outcome.failure_code = failure_code
    outcome.resolve_time_ns = time.time_ns()
    return outcome


def _failure_code(payment: Payment, released: bool) -> str:
    if not released:
        return "MPP_TIMEOUT"  # the set never completed: the payee gave up on it
    if payment.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS:
        return "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    return "TEMPORARY_CHANNEL_FAILURE"


__all__ = ["MPP_TIMEOUT_S", "MultiPart", "PartOutcome", "PartRefused"]
