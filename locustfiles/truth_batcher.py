"""The node's truth for the payers' checks, many payment hashes per request.

A payout answered final is judged from the node's truth of its payment hash (payout_check.py).
One GET /node/payments/{hash} per payout made that a third request per payout; here the payers of
a process share the lookup: each submits its hash and waits (bounded) for its own record, and a
sender greenlet asks the node for every hash waiting, up to LOOKUP_MAX_HASHES, in one
POST /node/payments/lookup. A batch short of LOOKUP_MAX_HASHES lingers LINGER_S for more hashes
before it goes, and while MAX_IN_FLIGHT lookups are out the next batch gathers, so under load
one request serves many payers (a group commit, for reads); a payer waits at most LINGER_S more.

Only the lookup is shared: each payer still judges its own payout, before its next one, and the
judge stays independent of the wallet (the records come from the node). A record is handed to a
waiter only when the node answered for exactly its hash; anything else (no answer, a short or
malformed answer, the waiter's bound passed) is None: the check is not judged here, never passed
(the payer hands the payout on, as when a look at the node finds it not final).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import gevent
from gevent.event import AsyncResult

log = logging.getLogger(__name__)

LOOKUP_MAX_HASHES = 128  # per request: target/node/network_http.LOOKUP_MAX_HASHES
MAX_IN_FLIGHT = 1  # lookups out at once per process
MAX_WAITING = 8192  # hashes waiting at once per process; past it a payer asks alone (GET)
LOOKUP_TIMEOUT_S = 5.0  # a payer's wait for its record
SENDER_MAX_BATCHES = 1000  # batches one sender greenlet sends before it hands over to a new one
# a batch short of max_batch waits this long for more hashes before it goes (a linger, as in
# Kafka's producer): under load the next payers' hashes join it, one lookup instead of several;
# a payer's check waits at most this much longer, never more than once
LINGER_S = 0.005


class TruthSource(Protocol):
    def lookup_node_payments(self, payment_hashes: list[str]) -> list[dict[str, Any]] | None: ...

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None: ...


class TruthBatcher:
    """Per process: the payers' node-truth lookups, batched."""

    def __init__(
        self,
        max_batch: int = LOOKUP_MAX_HASHES,
        max_in_flight: int = MAX_IN_FLIGHT,
        linger_s: float = LINGER_S,
    ) -> None:
        assert 1 <= max_batch <= LOOKUP_MAX_HASHES and max_in_flight >= 1
        assert 0.0 <= linger_s <= 0.1
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.linger_s = linger_s
        self.waiting: list[tuple[str, AsyncResult]] = []
        self.senders = 0
        self.batches = 0  # lookups sent
        self.failed_batches = 0  # lookups that brought no usable answer
        self.hashes = 0  # hashes asked about in them

    def lookup(
        self, source: TruthSource, payment_hash: str, timeout_s: float = LOOKUP_TIMEOUT_S
    ) -> dict[str, Any] | None:
        """The node's record of `payment_hash`, or None (no answer within timeout_s). A batch
        opened by this call is sent through `source` (the caller's client)."""
        if len(self.waiting) >= MAX_WAITING:
            return source.get_node_payment(payment_hash)  # back-pressure: alone, not queued
        waiter: AsyncResult = AsyncResult()
        self.waiting.append((payment_hash.lower(), waiter))
        if self.senders < self.max_in_flight:
            self.senders += 1
            gevent.spawn(self._send, source)
        try:
            record = waiter.get(timeout=timeout_s)
        except gevent.Timeout:
            return None
        return record if isinstance(record, dict) else None

    def _send(self, source: TruthSource) -> None:
        try:
            for _ in range(SENDER_MAX_BATCHES):
                if not self.waiting:
                    return
                if self.linger_s and len(self.waiting) < self.max_batch:
                    gevent.sleep(self.linger_s)
                batch = self.waiting[: self.max_batch]
                del self.waiting[: self.max_batch]
                self._send_batch(source, batch)
        finally:
            self.senders -= 1
            if self.waiting and self.senders < self.max_in_flight:
                # this sender's share ended with hashes still waiting: a fresh sender takes them
                self.senders += 1
                gevent.spawn(self._send, source)

    def _send_batch(self, source: TruthSource, batch: list[tuple[str, AsyncResult]]) -> None:
        hashes = [payment_hash for payment_hash, _ in batch]
        self.batches += 1
        self.hashes += len(hashes)
        records: list[dict[str, Any]] | None = None
        try:
            records = source.lookup_node_payments(hashes)
        except Exception:  # a bug or a dead connection must not leave payers waiting
            log.exception("node truth lookup of %d hashes", len(hashes))
        if records is None or len(records) != len(batch):
            self.failed_batches += 1
            records = [{} for _ in batch]
        for (payment_hash, waiter), record in zip(batch, records, strict=True):
            answered = isinstance(record, dict) and str(record.get("payment_hash", "")).lower()
            waiter.set(record if answered == payment_hash else None)


TRUTH = TruthBatcher()
