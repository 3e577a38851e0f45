"""Our Lightning node and the simulated network behind it.

The network decides each outgoing payment's fate when it is sent, from a seeded random source and
the fault settings of that moment: a route latency, a fee (base + proportional, never above the
caller's limit), and an outcome. A payment that "times out" stays in flight for `inflight_hold_ms`,
well past the wallet's deadline, and then settles or fails as `late_settle_rate` says: on Lightning
a timeout is not a failure. The node records the truth of every payment hash durably before it
answers, so a checker can always ask what really happened, even after the wallet crashed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..common.journal import Journal
from .faults import FaultSettings
from .invoices import Invoice, InvoiceBook, InvoiceError, decode, private_key_for
from .receiving import Receiver

log = logging.getLogger("lnchaos.node")

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_payments (
    payment_hash TEXT PRIMARY KEY,
    payment_index INTEGER NOT NULL,
    payment_request TEXT NOT NULL,
    destination TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    fee_limit_msat INTEGER NOT NULL,
    status TEXT NOT NULL,
    fee_msat INTEGER NOT NULL,
    failure_reason TEXT NOT NULL,
    preimage TEXT,
    outcome TEXT NOT NULL,
    outcome_fee_msat INTEGER NOT NULL,
    outcome_reason TEXT NOT NULL,
    timed_out INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    resolve_at_ms INTEGER NOT NULL,
    resolved_ms INTEGER
);
CREATE INDEX IF NOT EXISTS node_payments_status ON node_payments(status);
CREATE TABLE IF NOT EXISTS node_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COLUMNS = (
    "payment_hash, payment_index, payment_request, destination, amount_msat, fee_limit_msat,"
    " status, fee_msat, failure_reason, preimage, outcome, outcome_fee_msat, outcome_reason,"
    " timed_out, created_ms, resolve_at_ms, resolved_ms"
)
UPSERT = f"INSERT OR REPLACE INTO node_payments ({COLUMNS}) VALUES ({','.join('?' * 17)})"


class PaymentStatus(StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


class FailureReason(StrEnum):
    """LND's names (lnrpc.PaymentFailureReason)."""

    NONE = "FAILURE_REASON_NONE"
    TIMEOUT = "FAILURE_REASON_TIMEOUT"
    NO_ROUTE = "FAILURE_REASON_NO_ROUTE"
    ERROR = "FAILURE_REASON_ERROR"
    INCORRECT_PAYMENT_DETAILS = "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
    INSUFFICIENT_BALANCE = "FAILURE_REASON_INSUFFICIENT_BALANCE"


class SendRefused(Exception):
    """The node will not send: the hash is already paid or in flight (as LND refuses)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Payment:
    payment_hash: str
    payment_index: int
    payment_request: str
    destination: str
    amount_msat: int
    fee_limit_msat: int
    outcome: PaymentStatus  # decided at send, revealed at resolve_at_ms
    outcome_fee_msat: int
    outcome_reason: FailureReason
    timed_out: bool  # the network held it past any sane deadline
    created_ms: int
    resolve_at_ms: int
    status: PaymentStatus = PaymentStatus.IN_FLIGHT
    fee_msat: int = 0
    failure_reason: FailureReason = FailureReason.NONE
    preimage: str | None = None  # hex, once settled
    resolved_ms: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)

    def row(self) -> tuple[Any, ...]:
        return (
            self.payment_hash,
            self.payment_index,
            self.payment_request,
            self.destination,
            self.amount_msat,
            self.fee_limit_msat,
            str(self.status),
            self.fee_msat,
            str(self.failure_reason),
            self.preimage,
            str(self.outcome),
            self.outcome_fee_msat,
            str(self.outcome_reason),
            int(self.timed_out),
            self.created_ms,
            self.resolve_at_ms,
            self.resolved_ms,
        )

    def truth(self) -> dict[str, Any]:
        return {
            "payment_hash": self.payment_hash,
            "status": str(self.status),
            "amount_msat": self.amount_msat,
            "fee_msat": self.fee_msat,
            "failure_reason": str(self.failure_reason),
        }

    @classmethod
    def from_row(cls, row: Any) -> Payment:
        (ph, idx, pr, dest, amount, limit, status, fee, reason, preimage, outcome, ofee, oreason,
         timed_out, created, resolve_at, resolved) = row  # fmt: skip
        payment = cls(
            payment_hash=ph,
            payment_index=idx,
            payment_request=pr,
            destination=dest,
            amount_msat=amount,
            fee_limit_msat=limit,
            outcome=PaymentStatus(outcome),
            outcome_fee_msat=ofee,
            outcome_reason=FailureReason(oreason),
            timed_out=bool(timed_out),
            created_ms=created,
            resolve_at_ms=resolve_at,
            status=PaymentStatus(status),
            fee_msat=fee,
            failure_reason=FailureReason(reason),
            preimage=preimage,
            resolved_ms=resolved,
        )
        if payment.status is not PaymentStatus.IN_FLIGHT:
            payment.done.set()
        return payment


class LightningNode:
    """Our node (sends payments) and the network's merchants (issue the invoices we pay)."""

    def __init__(
        self,
        faults: FaultSettings,
        *,
        seed: int,
        journal: Journal,
        recent_payments_max: int = 5_000,
    ):
        self.faults = faults
        self.seed = seed
        self.journal = journal
        self.merchants = InvoiceBook(private_key_for(seed, "merchant"))
        self.own_invoices = InvoiceBook(private_key_for(seed, "node"))
        self.receiver = Receiver(self.own_invoices, journal)
        self._outcome_rng = random.Random(f"outcomes:{seed}")
        self._secret_rng = random.Random(f"secrets:{seed}")
        # In-flight payments always in memory; finished ones in a bounded cache, the rest on disk.
        self._payments: OrderedDict[str, Payment] = OrderedDict()
        self._in_flight: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._recent_max = recent_payments_max
        self._next_index = 1
        self.counts: dict[str, int] = {"succeeded": 0, "failed": 0, "timed_out": 0}
        self.sent_msat = 0  # amounts of succeeded payments, ever
        self.fees_msat = 0  # their fees
        self.listeners: list[Callable[[Payment], None]] = []

    # ---- life cycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        db = self.journal.db
        await db.executescript(SCHEMA)
        # Secrets (preimages, payment hashes) must never repeat across restarts: each start of
        # the same database draws them from a sequence of its own. A fresh run keeps its ids.
        async with db.execute("SELECT value FROM node_meta WHERE key = 'starts'") as c:
            row = await c.fetchone()
        starts = row[0] if row else 0
        await db.execute("INSERT OR REPLACE INTO node_meta VALUES ('starts', ?)", (starts + 1,))
        if starts:
            self._secret_rng = random.Random(f"secrets:{self.seed}:start{starts}")
        async with db.execute("SELECT COALESCE(MAX(payment_index), 0) FROM node_payments") as c:
            row = await c.fetchone()
            self._next_index = (row[0] if row else 0) + 1
        for status in ("succeeded", "failed"):
            q = "SELECT COUNT(*) FROM node_payments WHERE status = ?"
            async with db.execute(q, (status,)) as c:
                row = await c.fetchone()
                self.counts[status] = row[0] if row else 0
        q = (
            "SELECT COALESCE(SUM(amount_msat), 0), COALESCE(SUM(fee_msat), 0)"
            " FROM node_payments WHERE status = 'succeeded'"
        )
        async with db.execute(q) as c:
            row = await c.fetchone()
            self.sent_msat, self.fees_msat = (row[0], row[1]) if row else (0, 0)
        # Totals first, timers last: a due payment resolves (and counts itself) as soon as the
        # loop runs, and a total read from disk after that would overwrite its increment.
        q = f"SELECT {COLUMNS} FROM node_payments WHERE status = 'in_flight'"
        async with db.execute(q) as c:
            rows = await c.fetchall()
        for row in rows:
            payment = Payment.from_row(row)
            self._track(payment)
            self._schedule(payment)
        await self.receiver.load()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.receiver.close()

    def set_faults(self, faults: FaultSettings) -> None:
        """New fault settings, for the payments sent from now on."""
        faults.validate()
        self.faults = faults

    @property
    def pubkey(self) -> str:
        """This node's id (the payee of its own invoices)."""
        return self.own_invoices.pubkey

    # ---- invoices ------------------------------------------------------------------------------

    def secret(self) -> bytes:
        return self._secret_rng.randbytes(32)

    def create_merchant_invoice(self, amount_msat: int, memo: str = "lnchaos") -> Invoice:
        """An invoice from a payee somewhere in the simulated network, for the wallet to pay."""
        return self.merchants.issue(
            amount_msat, preimage=self.secret(), payment_addr=self.secret(), memo=memo
        )

    def decode(self, payment_request: str) -> Invoice:
        """The invoice behind a payment request: from our registries when we issued it, else the
        full decoder (signature recovery included). Raises InvoiceError."""
        if not isinstance(payment_request, str):
            raise InvoiceError("malformed_invoice", "payment_request must be a string")
        key = payment_request.strip().lower()
        found = self.merchants.known(key) or self.own_invoices.known(key)
        return found if found is not None else decode(key)

    # ---- payments ------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> Payment:
        """Hand a payment to the network. Returns once its record is durable; its outcome comes
        later (see `wait`). Raises SendRefused for a hash already paid or in flight."""
        if invoice.payee == self.own_invoices.pubkey:
            raise SendRefused("self_payment", "cannot pay an invoice of this node to itself")
        existing = await self.lookup(invoice.payment_hash)
        if existing is not None and existing.status is PaymentStatus.IN_FLIGHT:
            raise SendRefused("in_transition", "payment is in transition")
        if existing is not None and existing.status is PaymentStatus.SUCCEEDED:
            raise SendRefused("already_paid", "invoice is already paid")
        payment = self._draw(invoice, fee_limit_msat)
        self._track(payment)
        await self.journal.write([(UPSERT, payment.row())])
        self._schedule(payment)
        return payment

    def _draw(self, invoice: Invoice, fee_limit_msat: int) -> Payment:
        f = self.faults
        rng = self._outcome_rng
        latency_ms = rng.lognormvariate(math.log(max(f.latency_ms_median, 0.001)), 0.5)
        if rng.random() < f.latency_spike_rate:
            latency_ms += f.latency_spike_ms
        timeout_p = min(1.0, f.timeout_rate + f.load_coupling * len(self._in_flight))
        fee_msat = f.fee_base_msat + invoice.amount_msat * f.fee_ppm // 1_000_000
        # The fee varies with the route found: up to half again the nominal fee.
        fee_msat += rng.randrange(0, fee_msat // 2 + 1)
        draw = rng.random()
        late_settles = rng.random() < f.late_settle_rate
        timed_out = False
        if invoice.payee != self.merchants.pubkey:
            outcome, reason = PaymentStatus.FAILED, FailureReason.NO_ROUTE  # nobody we know
        elif invoice.expired():
            outcome, reason = PaymentStatus.FAILED, FailureReason.INCORRECT_PAYMENT_DETAILS
        elif fee_msat > fee_limit_msat:
            outcome, reason = PaymentStatus.FAILED, FailureReason.NO_ROUTE  # no route within limit
        elif draw < timeout_p:
            timed_out = True
            latency_ms += f.inflight_hold_ms
            if late_settles:
                outcome, reason = PaymentStatus.SUCCEEDED, FailureReason.NONE
            else:
                outcome, reason = PaymentStatus.FAILED, FailureReason.TIMEOUT
        elif draw < timeout_p + f.failure_rate:
            outcome, reason = PaymentStatus.FAILED, FailureReason.NO_ROUTE
        else:
            outcome, reason = PaymentStatus.SUCCEEDED, FailureReason.NONE
        created_ms = now_ms()
        index = self._next_index
        self._next_index += 1
        return Payment(
            payment_hash=invoice.payment_hash,
            payment_index=index,
            payment_request=invoice.payment_request,
            destination=invoice.payee,
            amount_msat=invoice.amount_msat,
            fee_limit_msat=fee_limit_msat,
            outcome=outcome,
            outcome_fee_msat=fee_msat if outcome is PaymentStatus.SUCCEEDED else 0,
            outcome_reason=reason,
            timed_out=timed_out,
            created_ms=created_ms,
            resolve_at_ms=created_ms + int(latency_ms),
        )

    def _schedule(self, payment: Payment) -> None:
        delay_s = max(0.0, (payment.resolve_at_ms - now_ms()) / 1000)
        loop = asyncio.get_running_loop()
        self._timers[payment.payment_hash] = loop.call_later(delay_s, self._resolve, payment)

    def _resolve(self, payment: Payment) -> None:
        self._timers.pop(payment.payment_hash, None)
        assert payment.status is PaymentStatus.IN_FLIGHT, "a payment resolves at most once"
        payment.status = payment.outcome
        payment.failure_reason = payment.outcome_reason
        payment.fee_msat = payment.outcome_fee_msat
        payment.resolved_ms = now_ms()
        if payment.status is PaymentStatus.SUCCEEDED:
            invoice = self.merchants.by_hash(payment.payment_hash)
            # The network reveals the preimage on settlement; for foreign payees we never get here.
            payment.preimage = invoice.preimage.hex() if invoice and invoice.preimage else None
            self.counts["succeeded"] += 1
            self.sent_msat += payment.amount_msat
            self.fees_msat += payment.fee_msat
        else:
            self.counts["failed"] += 1
        if payment.timed_out:
            self.counts["timed_out"] += 1
        self._in_flight.discard(payment.payment_hash)
        self.journal.write([(UPSERT, payment.row())])
        self._forget_old()
        payment.done.set()
        for listener in self.listeners:
            listener(payment)

    def _track(self, payment: Payment) -> None:
        self._payments[payment.payment_hash] = payment
        self._payments.move_to_end(payment.payment_hash)
        if payment.status is PaymentStatus.IN_FLIGHT:
            self._in_flight.add(payment.payment_hash)
        self._forget_old()

    def _forget_old(self) -> None:
        while len(self._payments) > self._recent_max + len(self._in_flight):
            payment_hash, old = next(iter(self._payments.items()))
            if old.status is PaymentStatus.IN_FLIGHT:
                self._payments.move_to_end(payment_hash)
                continue
            del self._payments[payment_hash]
            self.merchants.forget(payment_hash)

    async def wait(self, payment: Payment, timeout_s: float) -> Payment:
        """The payment once final, or still in flight when `timeout_s` passed."""
        if payment.status is PaymentStatus.IN_FLIGHT:
            try:
                await asyncio.wait_for(payment.done.wait(), timeout=timeout_s)
            except TimeoutError:
                pass
        return payment

    async def lookup(self, payment_hash: str) -> Payment | None:
        """The truth about a payment hash: memory for recent ones, the database for the rest."""
        found = self._payments.get(payment_hash)
        if found is not None:
            return found
        if self.merchants.by_hash(payment_hash) is not None:
            # An invoice still in our registry whose payment is not in memory was never paid:
            # a payment leaves memory together with its invoice (see _forget_old). This keeps a
            # database read off the path of every new payment.
            return None
        q = f"SELECT {COLUMNS} FROM node_payments WHERE payment_hash = ?"
        async with self.journal.db.execute(q, (payment_hash,)) as cur:
            row = await cur.fetchone()
        return Payment.from_row(row) if row else None

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, Payment]:
        """Many lookups with one query per 500 hashes not in memory (for reconciliation)."""
        found = {h: p for h in payment_hashes if (p := self._payments.get(h)) is not None}
        missing = [h for h in payment_hashes if h not in found]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            q = f"SELECT {COLUMNS} FROM node_payments WHERE payment_hash IN ({marks})"
            async with self.journal.db.execute(q, chunk) as cur:
                async for row in cur:
                    found[row[0]] = Payment.from_row(row)
        return found

    async def totals(self) -> dict[str, int]:
        return {"in_flight": len(self._in_flight), **self.counts}

    def in_flight_msat(self) -> int:
        return sum(self._payments[h].amount_msat for h in self._in_flight)

    async def list_payments(
        self,
        *,
        index_offset: int,
        max_payments: int,
        reversed_: bool,
        include_incomplete: bool,
    ) -> list[Payment]:
        """Payments by payment_index, as LND's ListPayments pages them: after `index_offset`
        (exclusive) going forwards, or before it going backwards (0: from the newest); the page
        is always in ascending order. Without `include_incomplete`, only succeeded payments."""
        await self.journal.flush()
        where = ["1 = 1"]
        params: list[Any] = []
        if reversed_:
            if index_offset > 0:
                where.append("payment_index < ?")
                params.append(index_offset)
        else:
            where.append("payment_index > ?")
            params.append(index_offset)
        if not include_incomplete:
            where.append("status = 'succeeded'")
        order = "DESC" if reversed_ else "ASC"
        q = (
            f"SELECT {COLUMNS} FROM node_payments WHERE {' AND '.join(where)}"
            f" ORDER BY payment_index {order} LIMIT ?"
        )
        params.append(max_payments)
        page: list[Payment] = []
        async with self.journal.db.execute(q, params) as cur:
            async for row in cur:
                fresher = self._payments.get(row[0])  # memory is ahead of a queued write
                page.append(fresher if fresher is not None else Payment.from_row(row))
        if not include_incomplete:
            page = [p for p in page if p.status is PaymentStatus.SUCCEEDED]
        page.sort(key=lambda p: p.payment_index)
        return page

    async def count_payments(self, include_incomplete: bool) -> int:
        q = "SELECT COUNT(*) FROM node_payments"
        if not include_incomplete:
            q += " WHERE status = 'succeeded'"
        async with self.journal.db.execute(q) as cur:
            row = await cur.fetchone()
        return row[0] if row else 0


def payment_hash_of(preimage: bytes) -> str:
    return hashlib.sha256(preimage).hexdigest()
