"""The payout flows side by side: the incident (off), the naive safeguard (rollback), the saga.

    off       charge ─ send ─ wait(deadline) ─ success: refund unused fee reserve
                                             └ failure or timeout: answer an error, keep the charge
    rollback  charge ─ send ─ wait(deadline) ─ success: refund unused fee reserve
                                             └ failure or timeout: refund all (a late settlement
                                               is then paid but not charged)
    on        reserve + outbox (one transaction) ─ send ─ wait(deadline)
                 ─ success: confirm (capture amount + fee, release the rest)
                 ─ failure: cancel (release all)
                 └ timeout: stay pending; the resolver asks the node until it is final

Every money movement is a ledger transaction; a payout answers only after its transaction is
durable, and nothing is sent to the node before the charge or reservation is.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .common.errors import ApiError
from .common.limits import MAX_AMOUNT_MSAT
from .config import FixMode, WalletSettings
from .ledger import (
    DEPOSITS,
    FEES,
    OUTBOUND,
    InsufficientFunds,
    Ledger,
    OutboxState,
    Payout,
    PayoutStatus,
    reserved_account,
    wallet_account,
)
from .metrics import Metrics
from .node.client import (
    Invoice,
    InvoiceError,
    NodeClient,
    PaymentStatus,
    PaymentTruth,
    SendRefused,
)

log = logging.getLogger("lnchaos.payouts")

# Errors after which a payment's fate is unknown (a node that could not be reached or answered
# late): never read as a failure, because the payment may have gone out.
AMBIGUOUS = (ConnectionError, TimeoutError, OSError)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer that can be stored and replayed for an idempotent retry."""

    status: int
    body: dict[str, Any]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PayoutService:
    def __init__(
        self,
        ledger: Ledger,
        node: NodeClient,
        settings: WalletSettings,
        fix: FixMode,
        metrics: Metrics,
    ):
        self.ledger = ledger
        self.node = node
        self.settings = settings
        self.fix = fix
        self.metrics = metrics
        # Payouts a request coroutine is driving right now; the resolver keeps its hands off.
        self._active: set[str] = set()
        # Payouts whose send ended in an ambiguous error (the node may have it): never cancelled
        # on a later refusal without asking whether another payout owns the hash.
        self._maybe_sent: set[str] = set()

    # ---- wallets -------------------------------------------------------------------------------

    async def create_wallet(self, balance_msat: int) -> tuple[str, str]:
        # All deposits together stay within the bitcoin supply, so every sum of balances fits a
        # SQLite integer (a fifth max-sized wallet used to overflow it and stop the journal).
        if -self.ledger.balance(DEPOSITS) + balance_msat > MAX_AMOUNT_MSAT:
            raise ApiError(
                409, "deposit_limit", "all deposits together may not exceed 21M BTC in msat"
            )
        wallet_id = uuid.uuid4().hex
        api_key = secrets.token_urlsafe(24)
        await self.ledger.open_wallet(wallet_id, sha256_hex(api_key), balance_msat)
        return wallet_id, api_key

    def authorize(self, wallet_id: str, api_key: str | None) -> None:
        """The wallet exists and the key is its own; one answer for both so ids cannot be probed."""
        expected = self.ledger.api_keys.get(wallet_id)
        given = sha256_hex(api_key or "")
        if expected is None or not api_key or not hmac.compare_digest(expected, given):
            raise ApiError(401, "unauthorized", "unknown wallet or wrong X-Api-Key")

    def wallet_view(self, wallet_id: str) -> dict[str, Any]:
        return {
            "wallet_id": wallet_id,
            "balance_msat": self.ledger.balance(wallet_account(wallet_id)),
            "reserved_msat": self.ledger.balance(reserved_account(wallet_id)),
        }

    # ---- paying --------------------------------------------------------------------------------

    async def pay(
        self, wallet_id: str, payment_request: str, idempotency_key: str | None
    ) -> Answer:
        request_sha256 = sha256_hex(payment_request.strip().lower())
        if idempotency_key is not None:
            replay = await self._replay(wallet_id, idempotency_key, request_sha256)
            if replay is not None:
                return replay
        try:
            invoice = await self.node.decode(payment_request)
        except InvoiceError as err:
            raise ApiError(400, err.code, str(err)) from None
        if invoice.amount_msat > MAX_AMOUNT_MSAT:
            raise ApiError(400, "invalid_amount", "invoice amount is over the limit")
        if invoice.expired():
            raise ApiError(400, "expired_invoice", "the invoice has expired")
        # After the awaits above, look again: a concurrent request may have taken the key.
        if idempotency_key is not None and (wallet_id, idempotency_key) in self.ledger.idempotency:
            replay = await self._replay(wallet_id, idempotency_key, request_sha256)
            assert replay is not None
            return replay
        mode = self.fix  # a payout keeps the mode it started under, even if the fix flips mid-run
        payout = Payout(
            payout_id=uuid.uuid4().hex,
            wallet_id=wallet_id,
            idempotency_key=idempotency_key,
            request_sha256=request_sha256,
            payment_request=invoice.payment_request,
            payment_hash=invoice.payment_hash,
            amount_msat=invoice.amount_msat,
            fee_limit_msat=self.settings.fee_reserve_msat(invoice.amount_msat),
            mode=str(mode),
        )
        self._active.add(payout.payout_id)
        try:
            if mode is FixMode.ON:
                answer = await self._pay_saga(payout, invoice)
            else:
                answer = await self._pay_charge_first(payout, invoice, mode)
        finally:
            self._active.discard(payout.payout_id)
        self.metrics.payout_answered(answer.status)
        return answer

    async def _replay(
        self, wallet_id: str, idempotency_key: str, request_sha256: str
    ) -> Answer | None:
        previous = await self.ledger.payout_by_key(wallet_id, idempotency_key)
        if previous is None:
            return None
        if previous.request_sha256 != request_sha256:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                payout_id=previous.payout_id,
            )
        if previous.response_status is None or previous.response_json is None:
            raise ApiError(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is still running; retry later",
                payout_id=previous.payout_id,
            )
        self.metrics.idempotent_replays.inc()
        return Answer(previous.response_status, json.loads(previous.response_json))

    # ---- off and rollback: charge first ------------------------------------------------------

    async def _pay_charge_first(self, payout: Payout, invoice: Invoice, mode: FixMode) -> Answer:
        wallet = wallet_account(payout.wallet_id)
        tx = self.ledger.tx()
        tx.move(wallet, OUTBOUND, payout.amount_msat, payout.payout_id, "charge")
        tx.move(wallet, FEES, payout.fee_limit_msat, payout.payout_id, "charge_fee_reserve")
        tx.save_payout(payout)
        await self._commit_or_refuse(tx)
        try:
            await self.node.send(invoice, payout.fee_limit_msat)
            truth = await self.node.wait(payout.payment_hash, self._deadline_s())
        except SendRefused as err:
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.FAILED, failure_reason=err.code)
        except AMBIGUOUS as err:
            # The node could not be asked: to these flows that is one more timeout.
            log.warning("payout %s: node error, outcome unknown: %s", payout.payout_id, err)
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)
        tx = self.ledger.tx()
        if truth.status is PaymentStatus.SUCCEEDED:
            unused_fee_msat = payout.fee_limit_msat - truth.fee_msat
            assert unused_fee_msat >= 0, "the node never spends more than the fee limit"
            tx.move(FEES, wallet, unused_fee_msat, payout.payout_id, "fee_refund")
            return await self._finish(tx, payout, PayoutStatus.SUCCEEDED, truth.fee_msat)
        timed_out = truth.status is not PaymentStatus.FAILED
        if timed_out:
            self.metrics.node_timeouts.inc()
        if mode is FixMode.ROLLBACK:
            # The "immediate safeguard": give everything back, even when the outcome is unknown.
            tx.move(OUTBOUND, wallet, payout.amount_msat, payout.payout_id, "rollback")
            tx.move(FEES, wallet, payout.fee_limit_msat, payout.payout_id, "rollback_fee")
        # Under `off` nothing is moved back: this is the incident.
        return await self._finish(tx, payout, PayoutStatus.FAILED, 0, timed_out=timed_out)

    # ---- on: the saga -------------------------------------------------------------------------

    async def _pay_saga(self, payout: Payout, invoice: Invoice) -> Answer:
        held_msat = payout.amount_msat + payout.fee_limit_msat
        tx = self.ledger.tx()
        tx.move(
            wallet_account(payout.wallet_id),
            reserved_account(payout.wallet_id),
            held_msat,
            payout.payout_id,
            "reserve",
        )
        tx.save_payout(payout).set_outbox(payout, OutboxState.QUEUED)
        await self._commit_or_refuse(tx)
        # No SENT write of its own here: the settle below marks the outbox DONE; a crash before it
        # leaves the payout QUEUED, which recovery resolves (_sent_before_by_us).
        answer = await self.dispatch(payout, invoice, mark_sent=False)
        if answer is not None:
            return answer
        try:
            truth = await self.node.wait(payout.payment_hash, self._deadline_s())
        except AMBIGUOUS as err:
            log.warning("payout %s: node error while waiting: %s", payout.payout_id, err)
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)
        answer = await self.settle(payout, truth)
        if answer is not None:
            return answer
        # Still in flight: the outcome is unknown, so the money stays reserved.
        self.metrics.node_timeouts.inc()
        pending = Answer(
            202,
            {
                "payout_id": payout.payout_id,
                "status": "pending",
                "amount_msat": payout.amount_msat,
                "payment_hash": payout.payment_hash,
            },
        )
        tx = self.ledger.tx()
        if payout.status is PayoutStatus.PENDING:
            self._store_answer(payout, pending)
            if payout.outbox is OutboxState.QUEUED:
                tx.set_outbox(payout, OutboxState.SENT)
            await tx.save_payout(payout).commit()
        return pending

    async def dispatch(
        self, payout: Payout, invoice: Invoice | None = None, *, mark_sent: bool = True
    ) -> Answer | None:
        """The outbox relay: hand a reserved payout to the node. Returns an answer only when the
        node refused it outright (the payout is then cancelled)."""
        if invoice is None:
            invoice = await self.node.decode(payout.payment_request)
        try:
            await self.node.send(invoice, payout.fee_limit_msat)
        except AMBIGUOUS as err:
            # The node may or may not have it: keep the money reserved and let the resolver ask.
            log.warning("payout %s: send outcome unknown: %s", payout.payout_id, err)
            self._maybe_sent.add(payout.payout_id)
            if payout.status is PayoutStatus.PENDING and payout.outbox is OutboxState.QUEUED:
                await self.ledger.tx().set_outbox(payout, OutboxState.SENT).commit()
            return None
        except SendRefused as err:
            if await self._sent_before_by_us(payout):
                log.info("payout %s was sent before a restart; resolving", payout.payout_id)
            else:
                truth = PaymentTruth(payout.payment_hash, PaymentStatus.FAILED)
                answer = await self.settle(payout, truth, reason=err.code)
                assert answer is not None
                return answer
        if mark_sent and payout.status is PayoutStatus.PENDING:
            if payout.outbox is OutboxState.QUEUED:
                await self.ledger.tx().set_outbox(payout, OutboxState.SENT).commit()
        return None

    async def _sent_before_by_us(self, payout: Payout) -> bool:
        """After a restart a queued payout may already be at the node. It is ours unless another
        payout of this hash is not failed (two payouts of one invoice: only one may pay)."""
        if payout.outbox is not OutboxState.QUEUED:
            return True
        others = await self.ledger.payouts_for_hash(payout.payment_hash)
        return not any(
            p.payout_id != payout.payout_id and p.status is not PayoutStatus.FAILED for p in others
        ) and (payout.payout_id in self.ledger.recovered or payout.payout_id in self._maybe_sent)

    async def settle(
        self, payout: Payout, truth: PaymentTruth, reason: str | None = None
    ) -> Answer | None:
        """Confirm or cancel a pending saga payout from the node's truth. None while in flight.
        A pending payout resolves at most once; a second call is a no-op."""
        if truth.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED):
            return None
        if payout.status is not PayoutStatus.PENDING:
            return self._answer_of(payout)
        wallet = wallet_account(payout.wallet_id)
        reserved = reserved_account(payout.wallet_id)
        held_msat = payout.amount_msat + payout.fee_limit_msat
        tx = self.ledger.tx()
        if truth.status is PaymentStatus.SUCCEEDED:
            assert truth.fee_msat <= payout.fee_limit_msat, "fee over the limit"
            tx.move(reserved, OUTBOUND, payout.amount_msat, payout.payout_id, "confirm")
            tx.move(reserved, FEES, truth.fee_msat, payout.payout_id, "confirm_fee")
            tx.move(
                reserved,
                wallet,
                held_msat - payout.amount_msat - truth.fee_msat,
                payout.payout_id,
                "release_unused_fee",
            )
            status, fee_msat = PayoutStatus.SUCCEEDED, truth.fee_msat
        else:
            tx.move(reserved, wallet, held_msat, payout.payout_id, "cancel")
            status, fee_msat = PayoutStatus.FAILED, 0
        tx.set_outbox(payout, OutboxState.DONE)
        return await self._finish(tx, payout, status, fee_msat, reason=reason)

    # ---- shared ----------------------------------------------------------------------------------

    def _deadline_s(self) -> float:
        return self.settings.node_timeout_ms / 1000

    async def _commit_or_refuse(self, tx: Any) -> None:
        try:
            fut = tx.commit()
        except InsufficientFunds:
            self.metrics.payout_answered(409)
            raise ApiError(
                409, "insufficient_funds", "balance too low for amount + fee reserve"
            ) from None
        await fut

    async def _finish(
        self,
        tx: Any,
        payout: Payout,
        status: PayoutStatus,
        fee_msat: int,
        *,
        timed_out: bool = False,
        reason: str | None = None,
    ) -> Answer:
        assert payout.status is PayoutStatus.PENDING, "a payout resolves at most once"
        payout.status = status
        payout.fee_msat = fee_msat
        answer = self._answer_of(payout, timed_out=timed_out, reason=reason)
        if payout.response_status is None:
            # A retry gets the first answer back: a 202 stays 202 once the resolver settles it.
            self._store_answer(payout, answer)
        await tx.save_payout(payout).commit()
        self.metrics.payout_finished(str(status))
        return answer

    def _answer_of(
        self, payout: Payout, *, timed_out: bool = False, reason: str | None = None
    ) -> Answer:
        body: dict[str, Any] = {
            "payout_id": payout.payout_id,
            "status": str(payout.status),
            "amount_msat": payout.amount_msat,
            "fee_msat": payout.fee_msat,
            "payment_hash": payout.payment_hash,
        }
        if payout.status is PayoutStatus.SUCCEEDED:
            return Answer(200, body)
        if payout.status is PayoutStatus.PENDING:
            return Answer(202, body)
        if timed_out:
            message = "the Lightning payment timed out"
            return Answer(504, {"error": "payment_timeout", "message": message, **body})
        message = f"the Lightning payment failed ({reason})" if reason else "payment failed"
        return Answer(502, {"error": "payment_failed", "message": message, **body})

    @staticmethod
    def _store_answer(payout: Payout, answer: Answer) -> None:
        payout.response_status = answer.status
        payout.response_json = json.dumps(answer.body, separators=(",", ":"))

    # ---- the resolver ---------------------------------------------------------------------------

    async def resolve_pending(self, limit: int = 1000) -> int:
        """One pass over pending saga payouts no request is driving: ask the node, settle what is
        final, resend what the node never received. Returns how many were settled."""
        settled = 0
        candidates = [
            p
            for p in list(self.ledger.pending.values())
            if p.payout_id not in self._active and p.mode == FixMode.ON
        ][:limit]
        for payout in candidates:
            if payout.status is not PayoutStatus.PENDING or payout.payout_id in self._active:
                continue
            self._active.add(payout.payout_id)
            try:
                if payout.outbox is OutboxState.QUEUED:
                    if await self.dispatch(payout) is not None:
                        settled += 1
                        continue
                truth = await self.node.lookup(payout.payment_hash)
                if truth.status is PaymentStatus.UNKNOWN:
                    # Marked sent, but the node has no record: it never got it. Send again.
                    payout.outbox = OutboxState.QUEUED
                    if await self.dispatch(payout) is not None:
                        settled += 1
                    continue
                if await self.settle(payout, truth) is not None:
                    settled += 1
            except Exception:
                log.exception("resolver: payout %s", payout.payout_id)
            finally:
                self._active.discard(payout.payout_id)
        return settled

    async def recover_charge_first(self) -> None:
        """After a crash, payouts of the charge-first flows that never answered are closed as
        their flow would have closed them: off keeps the charge, rollback gives it back."""
        for payout in list(self.ledger.pending.values()):
            if payout.mode == FixMode.ON:
                continue
            tx = self.ledger.tx()
            if payout.mode == FixMode.ROLLBACK:
                wallet = wallet_account(payout.wallet_id)
                tx.move(OUTBOUND, wallet, payout.amount_msat, payout.payout_id, "rollback")
                tx.move(FEES, wallet, payout.fee_limit_msat, payout.payout_id, "rollback_fee")
            await self._finish(tx, payout, PayoutStatus.FAILED, 0, timed_out=True)


async def run_resolver(service: PayoutService, interval_s: float, stop: asyncio.Event) -> None:
    """Resolve pending payouts every `interval_s` until `stop` is set."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            await service.resolve_pending()
        except Exception:
            log.exception("resolver pass failed")
        elapsed = time.monotonic() - started
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, interval_s - elapsed))
        except TimeoutError:
            pass
