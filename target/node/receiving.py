"""The node's own invoices and what the network paid into them (the incoming side of the truth).

An invoice is OPEN when added; the simulated network pays it on request (`pay`): it becomes
SETTLED, or ACCEPTED for a hold invoice (added with only a hash) until its preimage is given
(`settle`) or it is cancelled (`cancel`). Every change gets the next add or settle index, is made
durable through the node's journal before it is announced, and is announced to every subscriber
(LND's SubscribeInvoices). An invoice is paid at most once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from ..common.journal import Journal
from ..common.rows import Table
from .invoices import Invoice, InvoiceBook

log = logging.getLogger("lnchaos.node")

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_invoices (
    payment_hash TEXT PRIMARY KEY,
    add_index INTEGER NOT NULL UNIQUE,
    settle_index INTEGER NOT NULL,
    payment_request TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    memo TEXT NOT NULL,
    description_hash TEXT,
    preimage TEXT,
    payment_addr TEXT NOT NULL,
    private INTEGER NOT NULL,
    state TEXT NOT NULL,
    amt_paid_msat INTEGER NOT NULL,
    created_s INTEGER NOT NULL,
    expiry_s INTEGER NOT NULL,
    cltv_expiry INTEGER NOT NULL,
    accepted_s INTEGER NOT NULL,
    settled_s INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS node_invoices_settle ON node_invoices(settle_index);
"""
SUBSCRIBER_QUEUE_MAX = 10_000  # a subscriber this far behind is dropped (its stream ends)
SUBSCRIBERS_MAX = 1_000


class InvoiceState(StrEnum):
    """lnrpc.Invoice.InvoiceState."""

    OPEN = "OPEN"
    SETTLED = "SETTLED"
    CANCELED = "CANCELED"
    ACCEPTED = "ACCEPTED"


class ReceiveError(Exception):
    """A refused change to an invoice; `kind` says which (not_found, not_open, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class OwnInvoice:
    payment_hash: str
    add_index: int
    payment_request: str
    amount_msat: int
    memo: str
    description_hash: str | None
    preimage: str | None  # hex; None for a hold invoice until settled
    payment_addr: str  # hex
    private: bool
    created_s: int
    expiry_s: int
    cltv_expiry: int
    state: InvoiceState = InvoiceState.OPEN
    settle_index: int = 0
    amt_paid_msat: int = 0
    accepted_s: int = 0
    settled_s: int = 0

    def expired(self, at_s: float | None = None) -> bool:
        return (time.time() if at_s is None else at_s) > self.created_s + self.expiry_s


# A change updates the invoice's state columns; what it was issued with is written once.
INVOICES: Table[OwnInvoice] = Table(
    OwnInvoice,
    "node_invoices",
    key=("payment_hash",),
    mutable=("state", "settle_index", "preimage", "amt_paid_msat", "accepted_s", "settled_s"),
)


@dataclass(eq=False)
class Subscription:
    """One SubscribeInvoices stream: a bounded queue of invoice snapshots."""

    queue: asyncio.Queue[OwnInvoice | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_MAX)
    )
    dropped: bool = False


class Receiver:
    """The node's own invoices: add, pay from the network, settle or cancel a hold invoice."""

    def __init__(self, book: InvoiceBook, journal: Journal, *, recent_max: int = 100_000):
        self.book = book
        self.journal = journal
        self._recent: OrderedDict[str, OwnInvoice] = OrderedDict()
        self._recent_max = recent_max
        self._next_add_index = 1
        self._next_settle_index = 1
        self._subscribers: set[Subscription] = set()
        self.received_msat = 0  # settled into our invoices, ever
        self.received_count = 0

    async def load(self) -> None:
        db = self.journal.db
        await db.executescript(SCHEMA)
        q = (
            "SELECT COALESCE(MAX(add_index), 0), COALESCE(MAX(settle_index), 0),"
            " COALESCE(SUM(CASE WHEN state = 'SETTLED' THEN amt_paid_msat ELSE 0 END), 0),"
            " COALESCE(SUM(state = 'SETTLED'), 0) FROM node_invoices"
        )
        async with db.execute(q) as cur:
            row = await cur.fetchone()
        assert row is not None
        self._next_add_index = row[0] + 1
        self._next_settle_index = row[1] + 1
        self.received_msat = row[2]
        self.received_count = row[3]

    # ---- changes -------------------------------------------------------------------------------

    async def add(
        self,
        amount_msat: int,
        *,
        preimage: bytes | None,
        payment_hash: str | None,
        payment_addr: bytes,
        memo: str,
        description_hash: str | None,
        expiry_s: int,
        private: bool,
    ) -> OwnInvoice:
        """A new invoice of this node (real BOLT11, signed by its key). Raises ReceiveError
        'exists' when an invoice with that hash exists already (as LND refuses it)."""
        if preimage is not None:
            payment_hash = hashlib.sha256(preimage).hexdigest()
        assert payment_hash is not None
        if await self.lookup(payment_hash) is not None:
            raise ReceiveError("exists", "invoice with payment hash already exists")
        issued: Invoice = self.book.issue(
            amount_msat,
            preimage=preimage,
            payment_hash=payment_hash,
            payment_addr=payment_addr,
            memo=memo,
            description_hash=description_hash,
            expiry_s=expiry_s,
        )
        invoice = OwnInvoice(
            payment_hash=payment_hash,
            add_index=self._next_add_index,
            payment_request=issued.payment_request,
            amount_msat=amount_msat,
            memo=memo,
            description_hash=description_hash,
            preimage=preimage.hex() if preimage is not None else None,
            payment_addr=payment_addr.hex(),
            private=private,
            created_s=issued.created_s,
            expiry_s=expiry_s,
            cltv_expiry=issued.min_final_cltv_expiry,
        )
        self._next_add_index += 1
        await self._commit(invoice)
        return invoice

    async def pay(self, payment_hash: str, amount_msat: int) -> OwnInvoice:
        """The simulated network pays the invoice: SETTLED, or ACCEPTED for a hold invoice."""
        invoice = await self.lookup(payment_hash)
        if invoice is None:
            raise ReceiveError("not_found", "unable to locate invoice")
        if invoice.state is not InvoiceState.OPEN:
            raise ReceiveError("not_open", f"invoice is {invoice.state.lower()}, not open")
        if invoice.expired():
            raise ReceiveError("expired", "invoice expired")
        if amount_msat < invoice.amount_msat:
            raise ReceiveError("underpaid", "amount below the invoice's")
        now_s = int(time.time())
        invoice.amt_paid_msat = amount_msat
        invoice.accepted_s = now_s
        if invoice.preimage is None:
            invoice.state = InvoiceState.ACCEPTED
        else:
            self._settle(invoice, now_s)
        await self._commit(invoice)
        return invoice

    async def settle(self, preimage: bytes) -> OwnInvoice:
        """Settle an ACCEPTED hold invoice with its preimage (invoicesrpc.SettleInvoice)."""
        payment_hash = hashlib.sha256(preimage).hexdigest()
        invoice = await self.lookup(payment_hash)
        if invoice is None:
            raise ReceiveError("not_found", "unable to locate invoice")
        if invoice.state is InvoiceState.SETTLED:
            return invoice  # LND: settling a settled invoice is a no-op
        if invoice.state is not InvoiceState.ACCEPTED:
            raise ReceiveError("not_accepted", f"invoice is {invoice.state.lower()}, not accepted")
        invoice.preimage = preimage.hex()
        self._settle(invoice, int(time.time()))
        await self._commit(invoice)
        return invoice

    async def cancel(self, payment_hash: str) -> OwnInvoice:
        """Cancel an OPEN or ACCEPTED invoice (invoicesrpc.CancelInvoice); money held is
        returned to the payer, so nothing was received."""
        invoice = await self.lookup(payment_hash)
        if invoice is None:
            raise ReceiveError("not_found", "unable to locate invoice")
        if invoice.state is InvoiceState.SETTLED:
            raise ReceiveError("settled", "invoice already settled")
        if invoice.state is not InvoiceState.CANCELED:
            invoice.state = InvoiceState.CANCELED
            invoice.amt_paid_msat = 0
            await self._commit(invoice)
        return invoice

    def _settle(self, invoice: OwnInvoice, now_s: int) -> None:
        assert invoice.state is not InvoiceState.SETTLED, "an invoice settles at most once"
        invoice.state = InvoiceState.SETTLED
        invoice.settled_s = now_s
        invoice.settle_index = self._next_settle_index
        self._next_settle_index += 1
        self.received_msat += invoice.amt_paid_msat
        self.received_count += 1

    async def _commit(self, invoice: OwnInvoice) -> None:
        self._remember(invoice)
        await self.journal.write([(INVOICES.upsert, INVOICES.row(invoice))])
        snapshot = dataclasses.replace(invoice)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(snapshot)
            except asyncio.QueueFull:
                log.warning("invoice subscriber %d behind; dropping it", id(sub))
                self.unsubscribe(sub)

    def _remember(self, invoice: OwnInvoice) -> None:
        self._recent[invoice.payment_hash] = invoice
        self._recent.move_to_end(invoice.payment_hash)
        while len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)

    # ---- reading -------------------------------------------------------------------------------

    async def lookup(self, payment_hash: str) -> OwnInvoice | None:
        found = self._recent.get(payment_hash)
        if found is not None:
            return found
        q = f"{INVOICES.select} WHERE payment_hash = ?"
        async with self.journal.db.execute(q, (payment_hash,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        found = self._recent.get(payment_hash)
        if found is not None:
            return found  # another lookup got there first: one object per invoice in memory
        invoice = INVOICES.record(row)
        self._remember(invoice)
        return invoice

    async def since(self, add_index: int, settle_index: int, limit: int) -> list[OwnInvoice]:
        """The backlog of a subscription: invoices added after `add_index` (when it is not 0)
        and settled after `settle_index` (when it is not 0), oldest first, at most `limit`."""
        await self.journal.flush()
        out: list[OwnInvoice] = []
        queries = []
        if add_index > 0:
            queries.append(("add_index > ? ORDER BY add_index", add_index))
        if settle_index > 0:
            queries.append(("settle_index > ? ORDER BY settle_index", settle_index))
        for where, value in queries:
            q = f"{INVOICES.select} WHERE {where} LIMIT ?"
            async with self.journal.db.execute(q, (value, limit)) as cur:
                async for row in cur:
                    recent = self._recent.get(row[0])
                    out.append(recent if recent is not None else INVOICES.record(row))
        return out[:limit]

    async def page(
        self, index_offset: int, limit: int, *, reversed_: bool, pending_only: bool
    ) -> list[OwnInvoice]:
        """lnrpc.ListInvoices: up to `limit` invoices after `index_offset` (reversed: before
        it, or the newest when it is 0), by add_index ascending; pending: OPEN or ACCEPTED."""
        await self.journal.flush()
        where = ["(add_index < ? OR ? = 0)" if reversed_ else "add_index > ?"]
        args: list[object] = [index_offset, index_offset] if reversed_ else [index_offset]
        if pending_only:
            where.append("state IN ('OPEN', 'ACCEPTED')")
        order = "DESC" if reversed_ else "ASC"
        q = f"{INVOICES.select} WHERE {' AND '.join(where)} ORDER BY add_index {order} LIMIT ?"
        out = []
        async with self.journal.db.execute(q, (*args, limit)) as cur:
            async for row in cur:
                recent = self._recent.get(row[0])
                out.append(recent if recent is not None else INVOICES.record(row))
        return sorted(out, key=lambda invoice: invoice.add_index)

    def subscribe(self) -> Subscription:
        if len(self._subscribers) >= SUBSCRIBERS_MAX:
            raise ReceiveError("too_many_subscribers", "too many invoice subscriptions")
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            sub.dropped = True
            try:
                sub.queue.put_nowait(None)  # wakes the stream so it ends
            except asyncio.QueueFull:
                pass

    def close(self) -> None:
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
