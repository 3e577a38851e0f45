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

One payment hash, one payout at a time: a payout claims its hash (in memory, with no await
between the check and the claim) before it moves money, and keeps the claim until it is final
and committed. A payout of a hash another payout holds is refused (409 payment_in_progress), and
so is one of a hash a committed payout already paid (409 invoice_already_paid). Each payout is
bound to its own attempt at the node (the id `send` returns, stored with the payout): it is
confirmed or cancelled only from the truth of that attempt, never from the hash's, which may be
another payout's.

An attempt whose id was never recorded (the send's answer was lost, or the process crashed
between send and the next write) is recovered by asking the node for the hash's latest attempt:
it is ours unless another payout recorded it, because while we hold the claim no other payout of
this wallet sends the hash. If the node has none, the payout is sent again; a refusal
(in_transition, already_paid) of that re-send is looked at again the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from .common import json_body
from .common.bounded import bounded
from .common.errors import ApiError
from .common.limits import MAX_AMOUNT_MSAT
from .config import FixMode, WalletSettings
from .ledger import (
    DEPOSITS,
    FEES,
    OUTBOUND,
    InsufficientFunds,
    Ledger,
    LimitReached,
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
T = TypeVar("T")

# Limits. Past a hard one new work is refused with a 503, never grown into.
ACTIVE_PAYOUTS_MAX = 10_000  # payout requests being driven at once (and their hash claims)
NODE_CALL_TIMEOUT_S = 5.0  # any one call to the node (a wait: its own timeout plus this)
RESOLVER_PASS_MAX_PAYOUTS = 500  # pending payouts one resolver pass looks at, oldest first
RESOLVER_PASS_MAX_S = 1.0  # a pass starts no new payout after this long
RESOLVER_CONCURRENCY = 16  # payouts one pass resolves at once (a slow one holds up no other)
# Refusals of a re-send that mean the node has an attempt of the hash, maybe our own earlier one.
HASH_BUSY = ("in_transition", "already_paid")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer that can be stored and replayed for an idempotent retry."""

    status: int
    body: dict[str, Any]


def new_payout_id() -> str:
    """32 hex digits: the time in ms (12), then 80 random bits. Ids in time order land at the
    end of the indexes keyed by them (payouts, outbox, transfers by payout), so a batch of new
    payouts dirties a few pages instead of one per payout per index: 35 % less SQLite CPU per
    payout than uuid4 (reserve + settle, 12 a commit, 5000 payouts in the file)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """Which payout holds a payment hash (a retry with its key is told request_in_progress)."""

    payout_id: str
    wallet_id: str
    idempotency_key: str | None


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
        self.active_max = ACTIVE_PAYOUTS_MAX
        self.node_call_timeout_s = NODE_CALL_TIMEOUT_S
        self.resolver_pass_max_payouts = RESOLVER_PASS_MAX_PAYOUTS
        self.resolver_pass_max_s = RESOLVER_PASS_MAX_S
        self.resolver_concurrency = RESOLVER_CONCURRENCY
        # Payouts a request coroutine (or a resolver pass) is driving now; others keep off.
        self._active: set[str] = set()
        # payment_hash -> the payout that may pay it: each is active or pending, so the map is
        # bounded by ACTIVE_PAYOUTS_MAX + the ledger's PENDING_PAYOUTS_MAX.
        self._claims: dict[str, Claim] = {}
        for payout in ledger.pending.values():
            self._claims.setdefault(
                payout.payment_hash,
                Claim(payout.payout_id, payout.wallet_id, payout.idempotency_key),
            )

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

    async def authorize(self, wallet_id: str, api_key: str | None) -> None:
        """The wallet exists and the key is its own; one answer for both so ids cannot be probed.
        Leaves the wallet hot (ledger.warm): its view and its payouts read it from memory."""
        await self.ledger.warm(wallet_id)
        expected = self.ledger.api_keys.get(wallet_id)
        given = sha256_hex(api_key or "")
        if expected is None or not api_key or not hmac.compare_digest(expected, given):
            raise ApiError(401, "unauthorized", "unknown wallet or wrong X-Api-Key")

    def wallet_view(self, wallet_id: str) -> dict[str, Any]:
        """The wallet as committed to disk (never a change still on its way there). The wallet
        is hot: authorize() made it so, with no await since."""
        assert self.ledger.is_hot(wallet_id), f"wallet {wallet_id} read while not hot"
        return {
            "wallet_id": wallet_id,
            "balance_msat": self.ledger.committed_balance(wallet_account(wallet_id)),
            "reserved_msat": self.ledger.committed_balance(reserved_account(wallet_id)),
        }

    # ---- paying --------------------------------------------------------------------------------

    async def pay(
        self, wallet_id: str, payment_request: str, idempotency_key: str | None
    ) -> Answer:
        """Pay an invoice from an authorized wallet: the wallet stays hot (pinned in the ledger)
        while its payout runs, whatever other wallets a long run reads meanwhile."""
        if not await self.ledger.warm(wallet_id):
            raise ApiError(401, "unauthorized", "unknown wallet or wrong X-Api-Key")
        self.ledger.pin(wallet_id)
        try:
            return await self._pay(wallet_id, payment_request, idempotency_key)
        finally:
            self.ledger.unpin(wallet_id)

    async def _pay(
        self, wallet_id: str, payment_request: str, idempotency_key: str | None
    ) -> Answer:
        request_sha256 = sha256_hex(payment_request.strip().lower())
        if idempotency_key is not None:
            replay = await self._replay(wallet_id, idempotency_key, request_sha256)
            if replay is not None:
                return replay
        try:
            invoice = await self._node_call(self.node.decode(payment_request))
        except InvoiceError as err:
            raise ApiError(400, err.code, str(err)) from None
        except AMBIGUOUS:
            raise ApiError(503, "node_unavailable", "the node did not answer; retry") from None
        if invoice.amount_msat > MAX_AMOUNT_MSAT:
            raise ApiError(400, "invalid_amount", "invoice amount is over the limit")
        if invoice.expired():
            raise ApiError(400, "expired_invoice", "the invoice has expired")
        # After the awaits above, look again: a concurrent request may have taken the key.
        if idempotency_key is not None and (wallet_id, idempotency_key) in self.ledger.idempotency:
            return await self._replay_now(wallet_id, idempotency_key, request_sha256)
        if len(self._active) >= self.active_max:
            raise ApiError(
                503, "too_many_payouts", f"{self.active_max} payouts are running; retry later"
            )
        mode = self.fix  # a payout keeps the mode it started under, even if the fix flips mid-run
        payout = Payout(
            payout_id=new_payout_id(),
            wallet_id=wallet_id,
            idempotency_key=idempotency_key,
            request_sha256=request_sha256,
            payment_request=invoice.payment_request,
            payment_hash=invoice.payment_hash,
            amount_msat=invoice.amount_msat,
            fee_limit_msat=self.settings.fee_reserve_msat(invoice.amount_msat),
            mode=str(mode),
        )
        self._claim(payout)  # no await since the checks above: the claim is race-free
        self._active.add(payout.payout_id)
        try:
            # Claimed first, read second: a payout gives its claim up only once its success is
            # committed, so this read sees every success of the hash.
            if await self.ledger.hash_paid(payout.payment_hash):
                raise ApiError(
                    409,
                    "invoice_already_paid",
                    "another payout already paid this invoice",
                    payment_hash=payout.payment_hash,
                )
            key = (wallet_id, idempotency_key)
            if idempotency_key is not None and key in self.ledger.idempotency:
                assert idempotency_key is not None
                return await self._replay_now(wallet_id, idempotency_key, request_sha256)
            if mode is FixMode.ON:
                answer = await self._pay_saga(payout, invoice)
            else:
                answer = await self._pay_charge_first(payout, invoice, mode)
        finally:
            self._active.discard(payout.payout_id)
            if payout.payout_id not in self.ledger.pending:
                self._release(payout)  # refused before reserving, or final and committed
        self.metrics.payout_answered(answer.status)
        return answer

    def _claim(self, payout: Payout) -> None:
        held = self._claims.get(payout.payment_hash)
        if held is not None:
            same_key = payout.idempotency_key is not None and (
                held.wallet_id,
                held.idempotency_key,
            ) == (payout.wallet_id, payout.idempotency_key)
            if same_key:
                raise ApiError(
                    409,
                    "request_in_progress",
                    "a request with this Idempotency-Key is still running; retry later",
                    payout_id=held.payout_id,
                )
            raise ApiError(
                409,
                "payment_in_progress",
                "another payout is paying this invoice; nothing was charged",
                payment_hash=payout.payment_hash,
            )
        claims_max = self.active_max + self.ledger.pending_max
        if len(self._claims) >= claims_max:  # only if the bookkeeping leaked: refuse, not grow
            raise ApiError(503, "too_many_payouts", "too many payouts in progress; retry later")
        self._claims[payout.payment_hash] = Claim(
            payout.payout_id, payout.wallet_id, payout.idempotency_key
        )

    def _holds_claim(self, payout: Payout) -> bool:
        """Whether this pending payout holds its hash's claim, taking it if it is free: one
        payout of a hash at a time, for the resolver too."""
        held = self._claims.setdefault(
            payout.payment_hash,
            Claim(payout.payout_id, payout.wallet_id, payout.idempotency_key),
        )
        return held.payout_id == payout.payout_id

    def _release(self, payout: Payout) -> None:
        held = self._claims.get(payout.payment_hash)
        if held is not None and held.payout_id == payout.payout_id:
            del self._claims[payout.payment_hash]

    async def _replay_now(
        self, wallet_id: str, idempotency_key: str, request_sha256: str
    ) -> Answer:
        replay = await self._replay(wallet_id, idempotency_key, request_sha256)
        if replay is None:  # the payout of the key was refused meanwhile: it is not stored
            raise ApiError(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is still running; retry later",
            )
        return replay

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
        if previous.committed_answer is None:  # no answer yet, or not yet durable
            raise ApiError(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is still running; retry later",
                payout_id=previous.payout_id,
            )
        self.metrics.idempotent_replays.inc()
        status, body = previous.committed_answer
        return Answer(status, json.loads(body))

    # ---- talking to the node -----------------------------------------------------------------

    async def _node_call(self, call: Awaitable[T], extra_s: float = 0.0) -> T:
        """Every node call is bounded: a slow node is an unknown outcome (TimeoutError, one of
        AMBIGUOUS), never a failure."""
        # A bare timer (common/bounded.py), not asyncio.timeout's context manager around one, nor
        # wait_for's task: three calls per payout.
        return await bounded(call, self.node_call_timeout_s + extra_s)

    async def _send(self, payout: Payout, invoice: Invoice) -> None:
        """Send and keep the new attempt's id (stored with the payout's next write). Raises
        SendRefused, or an AMBIGUOUS error when it is unknown whether the node took it."""
        # Fail-stop: once a commit failed, a reservation that never became durable still shows
        # as pending in memory; a send now would pay out money no durable record knows of.
        self.ledger.journal.refuse_if_failed("not sent, the journal failed")
        payout.attempt_id = await self._node_call(self.node.send(invoice, payout.fee_limit_msat))

    async def _wait(self, payout: Payout, timeout_s: float) -> PaymentTruth:
        """The truth of this payout's own attempt once final or after `timeout_s`."""
        try:
            if payout.attempt_id is None:  # a client without attempt ids: the hash's truth
                call = self.node.wait(payout.payment_hash, timeout_s)
            else:
                call = self.node.wait(payout.payment_hash, timeout_s, attempt_id=payout.attempt_id)
            return await self._node_call(call, extra_s=timeout_s)
        except AMBIGUOUS as err:
            log.warning("payout %s: node error while waiting: %s", payout.payout_id, err)
            return PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)

    async def _adopt(self, payout: Payout) -> PaymentTruth | None:
        """For a payout whose attempt id was never recorded: the hash's latest attempt, if it is
        ours (its id then kept on the payout, to be written); None if the node has no attempt of
        ours. Ours unless another payout recorded it: no other payout of the hash sends while we
        hold its claim, and attempt ids only grow, so an attempt of ours would be the latest."""
        truth = await self._node_call(self.node.lookup(payout.payment_hash))
        if truth.status is PaymentStatus.UNKNOWN:
            return None
        if truth.attempt_id is not None:
            others = await self.ledger.payouts_for_hash(payout.payment_hash)
            if any(
                p.payout_id != payout.payout_id and p.attempt_id == truth.attempt_id for p in others
            ):
                return None
        payout.attempt_id = truth.attempt_id
        log.info("payout %s: adopted attempt %s", payout.payout_id, truth.attempt_id)
        return truth

    # ---- off and rollback: charge first ------------------------------------------------------

    async def _pay_charge_first(self, payout: Payout, invoice: Invoice, mode: FixMode) -> Answer:
        wallet = wallet_account(payout.wallet_id)
        tx = self.ledger.tx()
        tx.move(wallet, OUTBOUND, payout.amount_msat, payout.payout_id, "charge")
        tx.move(wallet, FEES, payout.fee_limit_msat, payout.payout_id, "charge_fee_reserve")
        tx.save_payout(payout)
        await self._commit_or_refuse(tx)
        truth = PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)
        try:
            await self._send(payout, invoice)
            truth = await self._wait(payout, self._deadline_s())
        except SendRefused as err:
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.FAILED, failure_reason=err.code)
        except AMBIGUOUS as err:
            # The node could not be asked: to these flows that is one more timeout. The attempt,
            # if the node has one, is still recorded as this payout's (it holds the claim).
            log.warning("payout %s: node error, outcome unknown: %s", payout.payout_id, err)
            try:
                truth = await self._adopt(payout) or truth
            except AMBIGUOUS:
                pass
        return await self._close_charge_first(payout, truth, mode)

    async def _close_charge_first(
        self, payout: Payout, truth: PaymentTruth, mode: FixMode
    ) -> Answer:
        wallet = wallet_account(payout.wallet_id)
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
        # No write of its own after the send: the attempt id and the outbox's end go with the
        # settle (or the pending answer) below; a crash before it leaves the payout QUEUED with
        # no attempt id, which the resolver recovers (_adopt).
        try:
            await self._send(payout, invoice)
        except SendRefused as err:
            # Refused outright: nothing of ours reached the node (the claim rules out an earlier
            # attempt of ours), so the reservation goes back.
            return await self._cancel(payout, err.code)
        except AMBIGUOUS as err:
            # The node may or may not have it: keep the money reserved; the resolver asks.
            log.warning("payout %s: send outcome unknown: %s", payout.payout_id, err)
            if payout.outbox is OutboxState.QUEUED:
                await self._write(payout, payout.snapshot(), OutboxState.SENT)
            try:
                adopted = await self._adopt(payout)
            except AMBIGUOUS:
                adopted = None
            if adopted is None:
                return await self._pending(payout)
        truth = await self._wait(payout, self._deadline_s())
        answer = await self.settle(payout, truth)
        if answer is not None:
            return answer
        # Still in flight: the outcome is unknown, so the money stays reserved.
        self.metrics.node_timeouts.inc()
        return await self._pending(payout)

    async def _pending(self, payout: Payout) -> Answer:
        pending = Answer(
            202,
            {
                "payout_id": payout.payout_id,
                "status": "pending",
                "amount_msat": payout.amount_msat,
                "payment_hash": payout.payment_hash,
            },
        )
        pending = self._with_balance(pending, payout.wallet_id)  # after its reservation
        if payout.status is PayoutStatus.PENDING:
            before = payout.snapshot()
            self._store_answer(payout, pending)
            await self._write(payout, before, OutboxState.SENT)
        return pending

    async def _write(
        self, payout: Payout, before: tuple[Any, ...], outbox: OutboxState | None = None
    ) -> None:
        """Write the payout row (and the outbox state, if it changes); a write the journal
        refuses leaves the payout in memory as it was (`before`)."""
        tx = self.ledger.tx()
        if outbox is not None and payout.outbox is not outbox and payout.outbox is not None:
            if payout.outbox is not OutboxState.DONE:
                tx.set_outbox(payout, outbox)
        tx.save_payout(payout)
        try:
            fut = tx.commit()
        except BaseException:
            payout.restore(before)
            raise
        await fut

    async def _cancel(self, payout: Payout, reason: str) -> Answer:
        truth = PaymentTruth(payout.payment_hash, PaymentStatus.FAILED)
        answer = await self.settle(payout, truth, reason=reason)
        assert answer is not None
        return answer

    async def settle(
        self, payout: Payout, truth: PaymentTruth, reason: str | None = None
    ) -> Answer | None:
        """Confirm or cancel a pending saga payout from the truth of ITS OWN attempt. None while
        in flight. A pending payout resolves at most once; a second call is a no-op."""
        if truth.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED):
            return None
        if payout.status is not PayoutStatus.PENDING:
            return self._answer_of(payout)
        assert (
            truth.attempt_id is None
            or truth.attempt_id == payout.attempt_id
            or (truth.status is PaymentStatus.FAILED)
        ), "a payout is settled only from its own attempt"
        wallet = wallet_account(payout.wallet_id)
        reserved = reserved_account(payout.wallet_id)
        held_msat = payout.amount_msat + payout.fee_limit_msat
        before = payout.snapshot()
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
        return await self._finish(tx, payout, status, fee_msat, reason=reason, before=before)

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
        except LimitReached as err:
            self.metrics.payout_answered(503)
            raise ApiError(503, err.code, err.message) from None
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
        before: tuple[Any, ...] | None = None,
    ) -> Answer:
        assert payout.status is PayoutStatus.PENDING, "a payout resolves at most once"
        if before is None:
            before = payout.snapshot()
        payout.status = status
        payout.fee_msat = fee_msat
        answer = self._with_balance(
            self._answer_of(payout, timed_out=timed_out, reason=reason), payout.wallet_id, tx
        )
        if payout.response_status is None:
            # A retry gets the first answer back: a 202 stays 202 once the resolver settles it.
            self._store_answer(payout, answer)
        try:
            fut = tx.save_payout(payout).commit()
        except BaseException:
            payout.restore(before)  # not queued: the payout stays pending, as on disk
            raise
        await fut
        self._release(payout)  # its end is committed: the hash is free (or paid, on disk)
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

    def _with_balance(self, answer: Answer, wallet_id: str, tx: Any = None) -> Answer:
        """The answer with `balance_msat`: the wallet's balance right after this payout's own
        transaction (`tx`, not applied yet: its moves of the wallet are added), in the order
        the ledger applies transactions. Stored with the answer, so a replay is the same answer.
        A client may check it against what the payout must have cost instead of reading the
        wallet again."""
        account = wallet_account(wallet_id)
        balance_msat = self.ledger.balance(account)
        for debit, credit, amount_msat, _payout_id, _kind in tx._moves if tx is not None else ():
            balance_msat += (amount_msat if credit == account else 0) - (
                amount_msat if debit == account else 0
            )
        return Answer(answer.status, {**answer.body, "balance_msat": balance_msat})

    @staticmethod
    def _store_answer(payout: Payout, answer: Answer) -> None:
        payout.response_status = answer.status
        payout.response_json = json_body.dumps(answer.body)

    # ---- the resolver ---------------------------------------------------------------------------

    async def resolve_pending(self, limit: int | None = None) -> int:
        """One pass over the pending payouts no request is driving, oldest first, bounded in
        count and time: ask the node about each one's own attempt and settle what is final,
        recover attempts never recorded. A charge-first payout left pending (its last write was
        refused) is closed as its flow closes a timeout. Returns how many were settled."""
        if self.ledger.journal.failed is not None:
            return 0  # fail-stop: memory is ahead of the disk; act on none of it
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resolver_pass_max_s
        limit = self.resolver_pass_max_payouts if limit is None else limit
        candidates = iter(
            heapq.nsmallest(
                limit,
                (p for p in self.ledger.pending.values() if p.payout_id not in self._active),
                key=lambda p: p.created_ms,
            )
        )
        settled = 0

        async def worker() -> None:
            nonlocal settled
            for payout in candidates:  # shared by the workers: each payout once
                if loop.time() > deadline:
                    return
                if payout.status is not PayoutStatus.PENDING or payout.payout_id in self._active:
                    continue
                if not self._holds_claim(payout):
                    continue  # another payout of the hash first (one left by an older version)
                self._active.add(payout.payout_id)
                try:
                    if await self._resolve_one(payout):
                        settled += 1
                except AMBIGUOUS as err:  # unknown, never failed: next pass asks again
                    log.info("resolver: payout %s: node did not answer: %r", payout.payout_id, err)
                except Exception:
                    log.exception("resolver: payout %s", payout.payout_id)
                finally:
                    self._active.discard(payout.payout_id)

        await asyncio.gather(*(worker() for _ in range(self.resolver_concurrency)))
        return settled

    async def _resolve_one(self, payout: Payout) -> bool:
        if payout.mode != FixMode.ON:
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)
            await self._close_charge_first(payout, truth, FixMode(payout.mode))
            return True
        if payout.attempt_id is None:
            return await self._recover_attempt(payout)
        truth = await self._node_call(
            self.node.lookup(payout.payment_hash, attempt_id=payout.attempt_id)
        )
        if truth.status is PaymentStatus.UNKNOWN:
            # The node took this attempt and no longer knows it: not a failure we may assume.
            log.error("payout %s: the node lost attempt %s", payout.payout_id, payout.attempt_id)
            return False
        return await self.settle(payout, truth) is not None

    async def _recover_attempt(self, payout: Payout) -> bool:
        """A saga payout with no recorded attempt: adopt the node's attempt of ours, or send."""
        truth = await self._adopt(payout)
        if truth is None:
            invoice = await self._node_call(self.node.decode(payout.payment_request))
            try:
                await self._send(payout, invoice)
            except SendRefused as err:
                # A refusal of a re-send may come from our own earlier send, arrived meanwhile.
                truth = await self._adopt(payout) if err.code in HASH_BUSY else None
                if truth is None:
                    await self._cancel(payout, err.code)
                    return True
            else:
                await self._write(payout, payout.snapshot(), OutboxState.SENT)
                return False  # sent: its attempt is asked about on the next pass
        if payout.attempt_id is not None:  # (a client without attempt ids has none to keep)
            await self._write(payout, payout.snapshot())  # the adopted attempt id, durable
        return await self.settle(payout, truth) is not None

    async def recover_charge_first(self) -> None:
        """After a crash, payouts of the charge-first flows that never answered are closed as
        their flow would have closed them: off keeps the charge, rollback gives it back."""
        for payout in list(self.ledger.pending.values()):
            if payout.mode == FixMode.ON:
                continue
            if payout.attempt_id is None:
                # Keep the attempt it may have made as its own (it still holds the claim), so no
                # later payout of the hash ever mistakes that attempt for one of its own.
                try:
                    await self._adopt(payout)
                except AMBIGUOUS as err:
                    log.warning("payout %s: node not asked: %r", payout.payout_id, err)
            truth = PaymentTruth(payout.payment_hash, PaymentStatus.IN_FLIGHT)
            await self._close_charge_first(payout, truth, FixMode(payout.mode))


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
