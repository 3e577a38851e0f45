"""Our Lightning node and the simulated network behind it.

The network decides each outgoing payment's fate when it is sent, from a seeded random source and
the fault settings of that moment: a route latency, a fee (base + proportional, never above the
caller's limit), and an outcome. A payment that "times out" stays in flight for `inflight_hold_ms`,
well past the wallet's deadline, and then settles or fails as `late_settle_rate` says: on Lightning
a timeout is not a failure. The node records the truth of every payment attempt durably before it
answers, so a checker can always ask what really happened, even after the wallet crashed.

The truth is kept per payment ATTEMPT, as LND numbers them (payment_index: unique and increasing
across restarts), and is atomic per payment hash, as LND's control tower is:
- a new attempt of a hash starts only when every earlier attempt of it failed; while one is in
  flight a send is refused "in_transition", once one succeeded "already_paid". So the newest
  attempt of a hash is its truth, and at most one attempt of a hash ever succeeds.
- the check and the recording of the new attempt happen with no await between them: from memory
  when memory knows the hash's attempts; otherwise under the hash's lock, across the database
  read and the recording, so no other send of that hash can slip in between.
- each attempt is one row, inserted once; its resolution updates only that row's outcome columns.
  A partial unique index makes the database itself refuse a second attempt of a hash that is not
  failed: that would be a bug here, and the journal fails (the node stops) rather than record it.
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

from ..common.bounded import bounded
from ..common.journal import Journal
from ..common.rows import Table
from .faults import FaultSettings
from .invoices import Invoice, InvoiceBook, InvoiceError, decode, private_key_for
from .receiving import Receiver

log = logging.getLogger("lnchaos.node")

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_attempts (
    payment_index INTEGER PRIMARY KEY,
    payment_hash TEXT NOT NULL,
    payment_request TEXT NOT NULL,
    destination TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    fee_limit_msat INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    outcome_fee_msat INTEGER NOT NULL,
    outcome_reason TEXT NOT NULL,
    timed_out INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    resolve_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    fee_msat INTEGER NOT NULL,
    failure_reason TEXT NOT NULL,
    preimage TEXT,
    resolved_ms INTEGER
);
CREATE INDEX IF NOT EXISTS node_attempts_hash ON node_attempts(payment_hash, payment_index);
CREATE INDEX IF NOT EXISTS node_attempts_status ON node_attempts(status);
CREATE UNIQUE INDEX IF NOT EXISTS node_attempts_one_live
    ON node_attempts(payment_hash) WHERE status != 'failed';
CREATE TABLE IF NOT EXISTS node_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Before attempts had rows of their own: one row per hash, replaced by each new attempt.
OLD_TABLE = "node_payments"

# The node's sums of its attempts since a time: succeeded ones' amounts and fees, and how many are
# still in flight (their outcome not yet in the sums).
SENT_SINCE_QUERY = (
    "SELECT SUM(CASE WHEN status = 'succeeded' THEN amount_msat ELSE 0 END),"
    " SUM(CASE WHEN status = 'succeeded' THEN fee_msat ELSE 0 END),"
    " SUM(status = 'succeeded'), SUM(status = 'in_flight')"
    " FROM node_attempts WHERE created_ms >= ?"
)
ATTEMPTS_KEPT = 16  # newest attempts of one hash kept in memory; older ones are read from disk
# hashes whose attempt's answer an HTTP fault hid after the node acted (http_faults.hide_after),
# newest kept: memory only, a bound rather than a history (a restart forgets them: fewer counted)
ANSWERS_LOST_MAX = 100_000
LOCK_STRIPES = 1024  # locks for sends of hashes memory does not know (see _lock_of)


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
    """One payment attempt: what the network decided at send, and what it revealed since."""

    payment_index: int  # the attempt's id (LND's payment_index)
    payment_hash: str
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
    unsaved: int = field(default=0, repr=False, compare=False)  # its writes not yet durable

    @property
    def attempt_id(self) -> int:
        return self.payment_index


# The outcome columns are the only ones a resolution changes; the rest are written once.
ATTEMPTS: Table[Payment] = Table(
    Payment,
    "node_attempts",
    key=("payment_index",),
    mutable=("status", "fee_msat", "failure_reason", "preimage", "resolved_ms"),
    exclude=("done", "unsaved"),
)


def attempt_from_row(row: Any) -> Payment:
    payment = ATTEMPTS.record(row)
    if payment.status is not PaymentStatus.IN_FLIGHT:
        payment.done.set()
    return payment


@dataclass
class HashAttempts:
    """What memory holds of one payment hash: its newest attempts, oldest first (the last one is
    the hash's truth), and how many it had in all."""

    attempts: list[Payment] = field(default_factory=list)
    count: int = 0

    @property
    def latest(self) -> Payment | None:
        return self.attempts[-1] if self.attempts else None

    def find(self, attempt_id: int) -> Payment | None:
        for payment in reversed(self.attempts):
            if payment.payment_index == attempt_id:
                return payment
        return None


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
        assert recent_payments_max >= 1
        self.faults = faults
        self.seed = seed
        self.journal = journal
        self.merchants = InvoiceBook(private_key_for(seed, "merchant"))
        self.own_invoices = InvoiceBook(private_key_for(seed, "node"))
        self.receiver = Receiver(self.own_invoices, journal)
        self._outcome_rng = random.Random(f"outcomes:{seed}")
        self._answers_lost: OrderedDict[str, None] = OrderedDict()
        self._secret_rng = random.Random(f"secrets:{seed}")
        # Hashes with attempts in flight always in memory; the others in a bounded cache (about
        # `recent_payments_max` attempts), the rest on disk only. A hash leaves memory only once
        # its writes are durable, so what memory does not hold, the database does.
        self._hashes: OrderedDict[str, HashAttempts] = OrderedDict()
        self._cached = 0  # attempts held in _hashes
        self._in_flight: dict[str, Payment] = {}  # by hash: at most one per hash
        self._timers: dict[int, asyncio.TimerHandle] = {}
        # attempts waiting for their parts (multipart.py): payment_index -> what the network
        # decided (outcome, reason, latency_ms), applied when `release` lets the attempt go
        self._held: dict[int, tuple[PaymentStatus, FailureReason, int]] = {}
        self._recent_max = recent_payments_max
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        self._next_index = 1
        self.counts: dict[str, int] = {"succeeded": 0, "failed": 0, "timed_out": 0}
        # told of every attempt when it starts and when it ends (routerrpc.TrackPayments); each
        # must return at once (no await: it runs inside the node's no-await sections)
        self.watchers: set[Callable[[Payment], None]] = set()
        self.sent_msat = 0  # amounts of succeeded attempts, ever
        self.fees_msat = 0  # their fees

    # ---- life cycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        db = self.journal.db
        await db.executescript(SCHEMA)
        await self._migrate()
        # Secrets (preimages, payment hashes) must never repeat across restarts: each start of
        # the same database draws them from a sequence of its own. A fresh run keeps its ids.
        async with db.execute("SELECT value FROM node_meta WHERE key = 'starts'") as c:
            row = await c.fetchone()
        starts = row[0] if row else 0
        await db.execute("INSERT OR REPLACE INTO node_meta VALUES ('starts', ?)", (starts + 1,))
        if starts:
            self._secret_rng = random.Random(f"secrets:{self.seed}:start{starts}")
        q = (
            "SELECT COALESCE(MAX(payment_index), 0),"
            " COALESCE(SUM(status = 'succeeded'), 0), COALESCE(SUM(status = 'failed'), 0),"
            " COALESCE(SUM(CASE WHEN status = 'succeeded' THEN amount_msat END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'succeeded' THEN fee_msat END), 0),"
            " COALESCE(SUM(timed_out AND status != 'in_flight'), 0) FROM node_attempts"
        )
        async with db.execute(q) as c:
            row = await c.fetchone()
        assert row is not None
        self._next_index = row[0] + 1
        self.counts = {"succeeded": row[1], "failed": row[2], "timed_out": row[5]}
        self.sent_msat, self.fees_msat = row[3], row[4]
        # Totals first, timers last: a due payment resolves (and counts itself) as soon as the
        # loop runs, and a total read from disk after that would overwrite its increment.
        async with db.execute(f"{ATTEMPTS.select} WHERE status = 'in_flight'") as c:
            rows = await c.fetchall()
        for row in rows:
            payment = attempt_from_row(row)
            entry = await self._read_hash(payment.payment_hash)
            found = entry.find(payment.payment_index)
            assert found is not None and found.status is PaymentStatus.IN_FLIGHT
            self._adopt(payment.payment_hash, entry)
            self._in_flight[payment.payment_hash] = found
            self._schedule(found)
        await self.receiver.load()

    async def _migrate(self) -> None:
        """A database of the node before attempts had rows of their own: its rows (one per hash,
        the hash's last attempt) become attempts."""
        db = self.journal.db
        q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        async with db.execute(q, (OLD_TABLE,)) as c:
            if await c.fetchone() is None:
                return
        await db.execute("BEGIN IMMEDIATE")
        try:
            cols = ATTEMPTS.columns
            await db.execute(f"INSERT INTO node_attempts ({cols}) SELECT {cols} FROM {OLD_TABLE}")
            await db.execute(f"DROP TABLE {OLD_TABLE}")
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
        log.warning("node: migrated %s to node_attempts", OLD_TABLE)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.receiver.close()

    def reseed(self, seed: int) -> None:
        """The fault draws of the payments sent from now on follow `seed` (the invoices' keys
        and the secrets keep theirs: invoices already issued stay valid, hashes never repeat)."""
        self._outcome_rng = random.Random(f"outcomes:{seed}")

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

    def decode(self, payment_request: str, *, amountless_ok: bool = False) -> Invoice:
        """The invoice behind a payment request: from our registries when we issued it, else the
        full decoder (signature recovery included). Raises InvoiceError."""
        if not isinstance(payment_request, str):
            raise InvoiceError("malformed_invoice", "payment_request must be a string")
        key = payment_request.strip().lower()
        found = self.merchants.known(key) or self.own_invoices.known(key)
        return found if found is not None else decode(key, amountless_ok=amountless_ok)

    # ---- payments ------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def send(
        self,
        invoice: Invoice,
        fee_limit_msat: int,
        *,
        route_fee_msat: int | None = None,
        hold_ms: float | None = None,
    ) -> Payment:
        """Start a new attempt to pay `invoice`. Returns it once its record is durable; its
        outcome comes later (see `wait`). Raises SendRefused ("in_transition", "already_paid",
        "self_payment"); a refused send records nothing. `route_fee_msat`: the caller chose the
        route (SendToRoute), so the fee is the route's, not the network's draw. `hold_ms`: the
        attempt waits for its parts (`release`); not released in time, it fails TIMEOUT."""
        if invoice.payee == self.own_invoices.pubkey:
            raise SendRefused("self_payment", "cannot pay an invoice of this node to itself")
        payment_hash = invoice.payment_hash
        entry = self._memory(payment_hash)
        if entry is not None:
            payment, saved = self._start(invoice, fee_limit_msat, entry, route_fee_msat, hold_ms)
        else:
            async with self._lock_of(payment_hash):
                # Every send of a hash memory does not know comes here, so none can record an
                # attempt of it while this one reads the database.
                entry = self._memory(payment_hash)
                if entry is None:
                    entry = await self._read_hash(payment_hash)
                    assert self._memory(payment_hash) is None, "an attempt slipped past the lock"
                    self._adopt(payment_hash, entry)  # a refused send finds it next time
                try:
                    payment, saved = self._start(
                        invoice, fee_limit_msat, entry, route_fee_msat, hold_ms
                    )
                finally:
                    self._forget_old()
        await saved
        return payment

    def _start(
        self,
        invoice: Invoice,
        fee_limit_msat: int,
        entry: HashAttempts,
        route_fee_msat: int | None = None,
        hold_ms: float | None = None,
    ) -> tuple[Payment, asyncio.Future[None]]:
        """Check and record a new attempt, with no await: the heart of "at most once"."""
        latest = entry.latest
        if latest is not None and latest.status is PaymentStatus.IN_FLIGHT:
            raise SendRefused("in_transition", "payment is in transition")
        if latest is not None and latest.status is PaymentStatus.SUCCEEDED:
            raise SendRefused("already_paid", "invoice is already paid")
        payment = self._draw(invoice, fee_limit_msat, route_fee_msat)
        if hold_ms is not None:
            self._hold(payment, hold_ms)
        saved = self._save(payment)  # queued first: when it cannot be, memory stays unchanged
        self._adopt(payment.payment_hash, entry)
        entry.attempts.append(payment)
        entry.count += 1
        self._cached += 1
        self._in_flight[payment.payment_hash] = payment
        self._schedule(payment)
        self._tell(payment)
        # A hash retried many times keeps only its newest attempts in memory (the older ones
        # are final, and on disk once saved).
        while len(entry.attempts) > ATTEMPTS_KEPT and entry.attempts[0].unsaved == 0:
            entry.attempts.pop(0)
            self._cached -= 1
        self._forget_old()
        return payment, saved

    def _hold(self, payment: Payment, hold_ms: float) -> None:
        """Keep what the network decided aside: until released, the attempt fails TIMEOUT at the
        hold's end (what its row says too, should the node stop before the release)."""
        latency_ms = payment.resolve_at_ms - payment.created_ms
        self._held[payment.payment_index] = (payment.outcome, payment.outcome_reason, latency_ms)
        payment.outcome, payment.outcome_reason = PaymentStatus.FAILED, FailureReason.TIMEOUT
        payment.outcome_fee_msat = 0
        payment.resolve_at_ms = payment.created_ms + int(hold_ms)

    def release(self, payment: Payment, route_fee_msat: int) -> bool:
        """A held attempt's parts are complete: it now ends as the network decided at its start,
        that long from now, its fee the routes' fees. False when it was not held or is over."""
        held = self._held.pop(payment.payment_index, None)
        if held is None or payment.status is not PaymentStatus.IN_FLIGHT:
            return False
        timer = self._timers.pop(payment.payment_index, None)
        if timer is not None:
            timer.cancel()
        outcome, reason, latency_ms = held
        payment.outcome, payment.outcome_reason = outcome, reason
        payment.outcome_fee_msat = route_fee_msat if outcome is PaymentStatus.SUCCEEDED else 0
        payment.resolve_at_ms = now_ms() + latency_ms
        self._schedule(payment)
        return True

    def _lock_of(self, payment_hash: str) -> asyncio.Lock:
        """The lock of a hash: one of a fixed set (bounded memory, nothing to clean up); two
        hashes that share one only wait for each other's database read."""
        return self._locks[int(payment_hash[:8], 16) % LOCK_STRIPES]

    def _save(self, payment: Payment) -> asyncio.Future[None]:
        """Queue the attempt's row (insert, or update of its outcome columns)."""
        saved = self.journal.write([(ATTEMPTS.upsert, ATTEMPTS.row(payment))])
        payment.unsaved += 1

        def done(fut: asyncio.Future[None]) -> None:
            payment.unsaved -= 1
            if not fut.cancelled() and fut.exception() is not None:
                # The journal has failed (and said why); a constraint the database refused
                # means the node broke its own rule. Either way the node must stop.
                log.critical("node: attempt %d not saved", payment.payment_index)

        saved.add_done_callback(done)
        return saved

    def _draw(
        self, invoice: Invoice, fee_limit_msat: int, route_fee_msat: int | None = None
    ) -> Payment:
        f = self.faults
        rng = self._outcome_rng
        latency_ms = rng.lognormvariate(math.log(max(f.latency_ms_median, 0.001)), 0.5)
        if rng.random() < f.latency_spike_rate:
            latency_ms += f.latency_spike_ms
        timeout_p = min(1.0, f.timeout_rate + f.load_coupling * len(self._in_flight))
        fee_msat = f.fee_base_msat + invoice.amount_msat * f.fee_ppm // 1_000_000
        # The fee varies with the route found: up to half again the nominal fee.
        fee_msat += rng.randrange(0, fee_msat // 2 + 1)
        if route_fee_msat is not None:
            fee_msat = route_fee_msat
        else:
            fee_msat = self._edge_fee(fee_msat, fee_limit_msat)
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
            latency_ms += self._hold_ms()
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
            payment_index=index,
            payment_hash=invoice.payment_hash,
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

    def _edge_fee(self, fee_msat: int, fee_limit_msat: int) -> int:
        """The edge workload's fees: a share charged exactly the caller's limit, a share drawn
        up to it (a wallet that books the fee reserve, not the fee, or that rounds at the limit,
        only shows there). No draw when both shares are 0, so older seeds draw as before."""
        f = self.faults
        if fee_limit_msat < fee_msat or f.fee_at_limit_rate + f.fee_to_limit_rate <= 0.0:
            return fee_msat
        draw = self._outcome_rng.random()
        if draw < f.fee_at_limit_rate:
            return fee_limit_msat
        if draw < f.fee_at_limit_rate + f.fee_to_limit_rate:
            return self._outcome_rng.randint(fee_msat, fee_limit_msat)
        return fee_msat

    def _hold_ms(self) -> float:
        """How long a timed-out payment stays in flight: the normal hold, or for a share the
        long one (a wallet that gives up on a payment once it is "old enough" meets it)."""
        f = self.faults
        if f.long_hold_rate > 0.0 and self._outcome_rng.random() < f.long_hold_rate:
            return f.long_hold_ms
        return f.inflight_hold_ms

    def _schedule(self, payment: Payment) -> None:
        delay_s = max(0.0, (payment.resolve_at_ms - now_ms()) / 1000)
        loop = asyncio.get_running_loop()
        self._timers[payment.payment_index] = loop.call_later(delay_s, self._resolve, payment)

    def _resolve(self, payment: Payment) -> None:
        self._timers.pop(payment.payment_index, None)
        self._held.pop(payment.payment_index, None)
        assert payment.status is PaymentStatus.IN_FLIGHT, "a payment resolves at most once"
        assert self._in_flight.get(payment.payment_hash) is payment
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
        del self._in_flight[payment.payment_hash]
        self._save(payment)  # awaited by nobody: its callback reports a failure
        self._forget_old()
        payment.done.set()
        self._tell(payment)

    def _tell(self, payment: Payment) -> None:
        for watcher in list(self.watchers):
            watcher(payment)

    # ---- memory --------------------------------------------------------------------------------

    def _memory(self, payment_hash: str) -> HashAttempts | None:
        """The hash's attempts when memory knows them all, else None (ask the database)."""
        entry = self._hashes.get(payment_hash)
        if entry is not None:
            return entry
        if self.merchants.by_hash(payment_hash) is not None:
            # An invoice still in our registry whose hash is not in memory was never paid: a
            # hash leaves memory together with its invoice (see _forget_old). This keeps a
            # database read off the path of every new payment.
            return HashAttempts()
        return None

    async def _read_hash(self, payment_hash: str) -> HashAttempts:
        """The hash's newest attempts and their count, from the database (one query)."""
        q = (
            f"SELECT {ATTEMPTS.columns},"
            " (SELECT COUNT(*) FROM node_attempts c WHERE c.payment_hash = ?1)"
            " FROM node_attempts WHERE payment_hash = ?1 ORDER BY payment_index DESC LIMIT ?2"
        )
        async with self.journal.db.execute(q, (payment_hash, ATTEMPTS_KEPT)) as cur:
            rows = await cur.fetchall()
        attempts = [attempt_from_row(r[:-1]) for r in reversed(rows)]
        return HashAttempts(attempts, rows[0][-1] if rows else 0)

    def _adopt(self, payment_hash: str, entry: HashAttempts) -> None:
        """Hold `entry` in memory as the hash's (the most recently used)."""
        if self._hashes.get(payment_hash) is not entry:
            assert payment_hash not in self._hashes
            self._hashes[payment_hash] = entry
            self._cached += len(entry.attempts)
        self._hashes.move_to_end(payment_hash)

    def _forget_old(self) -> None:
        """Drop the least recently used hashes past the limit; never one in flight or with
        writes not yet durable (those move to the back). Bounded: one pass at most."""
        for _ in range(len(self._hashes)):
            if self._cached - len(self._in_flight) <= self._recent_max:
                return
            payment_hash, entry = next(iter(self._hashes.items()))
            if payment_hash in self._in_flight or any(p.unsaved for p in entry.attempts):
                self._hashes.move_to_end(payment_hash)
                continue
            del self._hashes[payment_hash]
            self._cached -= len(entry.attempts)
            self.merchants.forget(payment_hash)

    # ---- reading -------------------------------------------------------------------------------

    def remembers(self, payment_hash: str) -> bool:
        """Whether memory holds the hash's attempts (else a send of it reads the database)."""
        return payment_hash in self._hashes

    async def wait(self, payment: Payment, timeout_s: float) -> Payment:
        """The attempt once final, or still in flight when `timeout_s` passed."""
        if payment.status is PaymentStatus.IN_FLIGHT:
            # A bare timer (common/bounded.py): not wait_for, which on Python 3.11 wraps the wait
            # in a task of its own, nor asyncio.timeout's context manager; one per payout.
            try:
                await bounded(payment.done.wait(), timeout_s)
            except TimeoutError:
                pass
        return payment

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> Payment | None:
        """Without `attempt_id`, the hash's truth: its newest attempt (the one that succeeded,
        else the one in flight, else the last that failed). With it, that attempt of the hash.
        None when there is no such attempt."""
        if attempt_id is None:
            return (await self.summary(payment_hash))[0]
        entry = self._memory(payment_hash)
        if entry is not None:
            found = entry.find(attempt_id)
            if found is not None or not entry.attempts or entry.count == len(entry.attempts):
                return found
        q = f"{ATTEMPTS.select} WHERE payment_index = ? AND payment_hash = ?"
        async with self.journal.db.execute(q, (attempt_id, payment_hash)) as cur:
            row = await cur.fetchone()
        return attempt_from_row(row) if row else None

    def note_answer_lost(self, payment_hash: str) -> None:
        """An HTTP fault hid the answer to an attempt of this hash after the node made it."""
        self._answers_lost[payment_hash] = None
        self._answers_lost.move_to_end(payment_hash)
        while len(self._answers_lost) > ANSWERS_LOST_MAX:
            self._answers_lost.popitem(last=False)

    def answer_lost(self, payment_hash: str) -> bool:
        return payment_hash in self._answers_lost

    async def summary(self, payment_hash: str) -> tuple[Payment | None, int]:
        """The hash's newest attempt (its truth) and how many attempts it had."""
        entry = self._memory(payment_hash)
        if entry is None:
            entry = await self._read_hash(payment_hash)
        return entry.latest, entry.count

    async def lookup_many(self, payment_hashes: list[str]) -> dict[str, Payment]:
        """The truth of many hashes, with one query per 500 hashes not in memory (for
        reconciliation); hashes without attempts are left out."""
        found: dict[str, Payment] = {}
        missing: list[str] = []
        for h in payment_hashes:
            entry = self._memory(h)
            if entry is None:
                missing.append(h)
            elif entry.latest is not None:
                found[h] = entry.latest
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            q = f"{ATTEMPTS.select} WHERE payment_hash IN ({marks}) ORDER BY payment_index"
            async with self.journal.db.execute(q, chunk) as cur:
                async for row in cur:
                    payment = attempt_from_row(row)
                    found[payment.payment_hash] = payment  # ascending: the newest stays
        return found

    async def totals(self) -> dict[str, int]:
        return {"in_flight": len(self._in_flight), **self.counts}

    async def sent_since(self, since_ms: int) -> dict[str, int]:
        """What this node sent and charged for the attempts it started at or after `since_ms`
        (its own clock and records): the books' other side (target/reconcile.py `books`)."""
        await self.journal.flush()
        rows = await self.journal.db.execute_fetchall(SENT_SINCE_QUERY, (since_ms,))
        sent_msat, fees_msat, payments, in_flight = rows[0] if rows else (0, 0, 0, 0)
        return {
            "sent_msat": int(sent_msat or 0),
            "fees_msat": int(fees_msat or 0),
            "payments": int(payments or 0),
            "in_flight": int(in_flight or 0),
        }

    def in_flight_msat(self) -> int:
        return sum(p.amount_msat for p in self._in_flight.values())

    async def list_payments(
        self,
        *,
        index_offset: int,
        max_payments: int,
        reversed_: bool,
        include_incomplete: bool,
    ) -> list[Payment]:
        """Payments as LND's ListPayments pages them: each hash once, as its newest attempt
        (LND re-initialises a retried payment under a new payment_index and drops the old
        index entry), by payment_index: after `index_offset` (exclusive) going forwards, or
        before it going backwards (0: from the newest); the page is always in ascending order.
        Without `include_incomplete`, only succeeded payments."""
        await self.journal.flush()
        where = [NEWEST]
        params: list[Any] = []
        if reversed_:
            if index_offset > 0:
                where.append("a.payment_index < ?")
                params.append(index_offset)
        else:
            where.append("a.payment_index > ?")
            params.append(index_offset)
        if not include_incomplete:
            where.append("a.status = 'succeeded'")
        order = "DESC" if reversed_ else "ASC"
        columns = ", ".join(f"a.{n}" for n in ATTEMPTS.names)
        q = (
            f"SELECT {columns} FROM node_attempts a WHERE {' AND '.join(where)}"
            f" ORDER BY a.payment_index {order} LIMIT ?"
        )
        params.append(max_payments)
        page: list[Payment] = []
        async with self.journal.db.execute(q, params) as cur:
            async for row in cur:
                stored = attempt_from_row(row)
                entry = self._hashes.get(stored.payment_hash)
                fresher = entry.find(stored.payment_index) if entry is not None else None
                page.append(fresher if fresher is not None else stored)  # memory is ahead
        if not include_incomplete:
            page = [p for p in page if p.status is PaymentStatus.SUCCEEDED]
        page.sort(key=lambda p: p.payment_index)
        return page

    async def count_payments(self, include_incomplete: bool) -> int:
        """How many entries ListPayments has (each hash once)."""
        q = f"SELECT COUNT(*) FROM node_attempts a WHERE {NEWEST}"
        if not include_incomplete:
            q += " AND a.status = 'succeeded'"
        async with self.journal.db.execute(q) as cur:
            row = await cur.fetchone()
        return row[0] if row else 0

    async def count_attempts(self) -> int:
        """Every attempt ever recorded (after a flush, so the queued ones count too)."""
        await self.journal.flush()
        async with self.journal.db.execute("SELECT COUNT(*) FROM node_attempts") as cur:
            row = await cur.fetchone()
        return row[0] if row else 0


# The newest attempt of its hash (row `a`).
NEWEST = (
    "NOT EXISTS (SELECT 1 FROM node_attempts b"
    " WHERE b.payment_hash = a.payment_hash AND b.payment_index > a.payment_index)"
)


def payment_hash_of(preimage: bytes) -> str:
    return hashlib.sha256(preimage).hexdigest()
