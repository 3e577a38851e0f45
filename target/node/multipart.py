"""Multi-part payments routed by the caller (QueryRoutes, then one SendToRouteV2 per part), as
Cashu mints send their multi-path melts.

The payee holds the parts of one payment hash until they add up to the invoice's amount (the
`total_amt_msat` of their MPP record), then the node pays the whole invoice once, through the
same `LightningNode.send` as every other payment (the same faults, one attempt in the truth,
the fee the sum of the parts' route fees); every part then ends as that payment ended: all
settled with its preimage, or all failed. A set that is not complete within `timeout_s` (LND's
receiver: 60 s) fails every part with MPP_TIMEOUT and pays nothing.

Until its set completes, a payment is not in the node's truth (TrackPaymentV2 answers not
found): no money has moved yet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field

from .invoices import Invoice
from .network import FailureReason, LightningNode, Payment, PaymentStatus, SendRefused

log = logging.getLogger("lnchaos.multipart")

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
    total_msat: int
    collected_msat: int = 0
    fees_msat: int = 0
    parts: int = 0
    done: asyncio.Future[tuple[Payment | None, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    timer: asyncio.TimerHandle | None = None


class MultiPart:
    """The payee's side of the parts in flight, per payment hash."""

    def __init__(self, node: LightningNode, *, timeout_s: float = MPP_TIMEOUT_S):
        self.node = node
        self.timeout_s = timeout_s
        self._sets: dict[str, PartSet] = {}
        self._attempt_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def send_part(
        self, invoice: Invoice, amount_msat: int, fee_msat: int, total_msat: int
    ) -> PartOutcome:
        """One part of `invoice`'s payment: waits until the whole payment ended (or the set
        timed out) and returns this part's end. PartRefused when the hash is paid or in flight
        already, or too many sets or parts are open."""
        outcome = PartOutcome(next(self._attempt_ids), time.time_ns())
        if total_msat != invoice.amount_msat:  # the payee fails it; no set is opened for it
            return self._failed(outcome, "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS")
        part_set = self._sets.get(invoice.payment_hash)
        if part_set is None:
            await self._check_unpaid(invoice.payment_hash)
            part_set = self._sets.get(invoice.payment_hash) or self._open(invoice, total_msat)
        if part_set.parts >= PARTS_MAX:
            raise PartRefused("too many parts for one payment", too_many=True)
        part_set.parts += 1
        part_set.collected_msat += amount_msat
        part_set.fees_msat += fee_msat
        if part_set.collected_msat >= part_set.total_msat:
            self._complete(part_set)
        payment, failure_code = await asyncio.shield(part_set.done)
        outcome.payment = payment
        outcome.resolve_time_ns = time.time_ns()
        if payment is None or payment.status is not PaymentStatus.SUCCEEDED:
            outcome.failure_code = failure_code or _failure_code(payment)
        return outcome

    async def _check_unpaid(self, payment_hash: str) -> None:
        latest = await self.node.lookup(payment_hash)
        if latest is not None and latest.status is PaymentStatus.SUCCEEDED:
            raise PartRefused("invoice is already paid")
        if latest is not None and latest.status is PaymentStatus.IN_FLIGHT:
            raise PartRefused("payment is in transition")

    def _open(self, invoice: Invoice, total_msat: int) -> PartSet:
        if len(self._sets) >= SETS_MAX:
            raise PartRefused("too many multi-part payments in flight", too_many=True)
        part_set = PartSet(invoice, total_msat)
        loop = asyncio.get_running_loop()
        part_set.timer = loop.call_later(self.timeout_s, self._expire, part_set)
        self._sets[invoice.payment_hash] = part_set
        return part_set

    def _expire(self, part_set: PartSet) -> None:
        if self._sets.get(part_set.invoice.payment_hash) is part_set:
            del self._sets[part_set.invoice.payment_hash]
        if not part_set.done.done():
            part_set.done.set_result((None, "MPP_TIMEOUT"))

    def _complete(self, part_set: PartSet) -> None:
        """The set is whole: pay the invoice once (a task, so no part's caller can cancel it)."""
        del self._sets[part_set.invoice.payment_hash]
        if part_set.timer is not None:
            part_set.timer.cancel()
        task = asyncio.ensure_future(self._pay(part_set))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pay(self, part_set: PartSet) -> None:
        try:
            payment = await self.node.send(
                part_set.invoice, part_set.fees_msat, route_fee_msat=part_set.fees_msat
            )
        except SendRefused:
            # another send of the hash got there first: these parts move nothing
            part_set.done.set_result((None, "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"))
            return
        except Exception:
            log.exception("multi-part payment %s not sent", part_set.invoice.payment_hash)
            part_set.done.set_result((None, "TEMPORARY_CHANNEL_FAILURE"))
            return
        await payment.done.wait()  # the node resolves every attempt (its own timer)
        part_set.done.set_result((payment, ""))

    @staticmethod
    def _failed(outcome: PartOutcome, failure_code: str) -> PartOutcome:
        outcome.failure_code = failure_code
        outcome.resolve_time_ns = time.time_ns()
        return outcome

    def close(self) -> None:
        for part_set in list(self._sets.values()):
            if part_set.timer is not None:
                part_set.timer.cancel()
            self._expire(part_set)
        for task in self._tasks:
            task.cancel()


def _failure_code(payment: Payment | None) -> str:
    if payment is not None and payment.failure_reason is FailureReason.INCORRECT_PAYMENT_DETAILS:
        return "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    return "TEMPORARY_CHANNEL_FAILURE"


__all__ = ["MPP_TIMEOUT_S", "MultiPart", "PartOutcome", "PartRefused"]
