"""One payout judged from the node's truth: shared by the payers and their background resolver.

A payer knows what a payout must have cost only from the node (GET /node/payments/{hash}: paid
or not, and the fee), never from the wallet's answer. What the balance is may come from two
places:
- the payout answer's `balance_msat` (the wallet's claim right after the payout's transaction):
  used for a payout that was answered final (200 or 502) and not retried, so the check costs no
  extra request;
- for a retried one, the retry answer's own claim: its body is the first answer replayed, so
  the retry's effect must show in the balance its `X-Wallet-Balance-Msat` header reports (the
  wallet's balance when the retry was answered); a wallet without that header is read instead;
- a read of its own (GET /api/wallets/{id}): for a timed-out payout once it is final, for a
  retried one without the header, and for every wallet at the end of its use
  (`WALLET_AT_END`; at the end of the run the final audit reads it, users.py). So a wallet whose
  claims and whose view disagree is caught, and the target's reconciliation still covers every
  payout of the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gevent

from lnchaos.checker import history, rules
from locustfiles import checker, truth_batcher, word_check
from locustfiles.checker import CheckFailed
from locustfiles.telemetry import LOCAL
from locustfiles.wallet_client import (
    FINAL_NODE_STATUSES,
    FINAL_PAYOUT_STATUSES,
    Invoice,
    PayoutResult,
    Wallet,
    WalletClient,
)

# A wallet's balance read on its own when the payer leaves it (its claims since the last read
# must add up to what it shows). Not a payout check: it does not count as a payout verified.
WALLET_AT_END = "wallet_at_end_of_use"
# Why a payout judged already is in the final audit: its wallet's use ended with the run, while
# its balance was known from claims only; the audit reads the wallet and judges the payout again.
END_OF_USE = "wallet_end_of_use"
RESOLVE_POLL_INTERVAL_S = 0.2
RESOLVE_MAX_POLLS = 120  # 24 s of polls at most: the edge workload's long holds end within
# the node's facts of the attempt a check record keeps (coverage.py reads them)
NODE_FACTS = (
    "status",
    "fee_msat",
    "fee_limit_msat",
    "timed_out",
    "created_ms",
    "resolved_ms",
    "held_ms",  # the node's word: its timeouts counted (rules.answered_in_flight)
    "answer_lost",  # a fault hid the answer to a send after the node acted (coverage)
)


@dataclass
class SentPayout:
    """What a payer knows of one payout it sent."""

    wallet: Wallet
    expected_msat: int  # the wallet's balance before this payout (exact)
    invoice: Invoice
    first: PayoutResult
    retry: PayoutResult | None
    phase: str
    started: float  # time.perf_counter() at the payout's start: check events are timed from it
    entry: dict[str, Any] | None  # the final audit's entry while nobody judged it
    # the wallet's API has an Idempotency-Key (lnchaos's does; LNbits' has none: a resent
    # invoice is refused, and only "never charged twice" is checked)
    idempotent: bool = True
    # coverage (lnchaos/checker/coverage.py): when the retry was sent (unix ms), and whether the
    # first request got no answer because the target was killed (--crash-every)
    retry_ms: int | None = None
    after_crash: bool = False
    # what the wallet holds at most as the fee for this payout (its adapter's rule; None:
    # not known, the view's upper bound is not judged)
    fee_reserve_msat: int | None = None
    # the wallet's payout read that found it final (its word, word_check.py), and its view
    # while the payout was pending
    final_read: dict[str, Any] | None = None
    pending: word_check.PendingView = field(default_factory=word_check.PendingView)


def claimed_balance(result: PayoutResult | None) -> int | None:
    """The payout answer's `balance_msat`, when it carries one."""
    if result is None:
        return None
    value = result.body.get("balance_msat")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def balance_claim(sent: SentPayout) -> int | None:
    """The wallet's own claim of its balance after this payout, retry included, when its
    answers carry one: the first answer's `balance_msat` when it was not retried, else the
    balance the retry's answer reports (`balance_now_msat`). None: read the wallet."""
    if sent.retry is None:
        return claimed_balance(sent.first)
    return sent.retry.balance_now_msat


def resolve(
    wallets: WalletClient, sent: SentPayout, timeout_s: float, *, batched: bool = False
) -> tuple[str, dict[str, Any]] | None:
    """(final payout status, node's final payment) or None when not final within timeout_s.
    A succeeded or failed payout is final already: one look at the node, as a rule.
    `batched`: the node's truth through the process's batcher (truth_batcher.py: one request
    for many payers' hashes) when the client speaks lnchaos's node API; no record from it is
    like a look that found nothing final."""
    batched = batched and isinstance(wallets, WalletClient)
    payout_status = sent.first.payout_status or ""
    node: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    for _ in range(RESOLVE_MAX_POLLS):
        if payout_status not in FINAL_PAYOUT_STATUSES and sent.first.payout_id:
            payout = wallets.get_payout(sent.wallet, sent.first.payout_id)
            payout_status = str((payout or {}).get("status", payout_status))
            if payout_status in FINAL_PAYOUT_STATUSES:
                sent.final_read = payout
            if payout is not None and sent.pending.after_payout_read(payout_status):
                # pending: what does the wallet show of it? (judged once the node is final)
                sent.pending.take(wallets.get_wallet(sent.wallet))
        if node.get("status") not in FINAL_NODE_STATUSES:
            payment_hash = sent.invoice.payment_hash
            if batched:
                node = truth_batcher.TRUTH.lookup(wallets, payment_hash) or node
            else:
                node = wallets.get_node_payment(payment_hash) or node
        if payout_status in FINAL_PAYOUT_STATUSES and node.get("status") in FINAL_NODE_STATUSES:
            return payout_status, node
        if time.monotonic() >= deadline:
            break
        gevent.sleep(RESOLVE_POLL_INTERVAL_S)
    return None


def judge(
    request_event: Any,
    sent: SentPayout,
    payout_status: str,
    node: dict[str, Any],
    actual_msat: int,
    reserved_msat: Any,
) -> str | None:
    """The balance check of one final payout (no request: the caller got the balance, from the
    answer's claim or a read): recorded in the history with its inputs, and judged by the
    history's fold (lnchaos/checker/history.py: the same function `lnchaos check` runs); fires
    the check event(s). Returns the inconsistency kind, or None."""
    first = sent.first
    name = {
        "ok": checker.BALANCE_AFTER_SUCCESS,
        "fail": checker.BALANCE_AFTER_FAILURE,
    }.get(first.kind, checker.RESOLVED_VS_NODE_TRUTH)
    record = _check_record(sent, name, payout_status, node, actual_msat, reserved_msat)
    kind = LOCAL.history.emit(record)
    word_check.fire_word_findings(request_event, record, sent.started)
    word_check.record_view(request_event, sent, sent.pending, node, sent.started)
    if rules.answered_in_flight(record["in"]["node"], record["answered_ms"]):
        # a timeout the run reached (the fold counts it too): in the suite's own table as well
        checker.fire_check(request_event, checker.NODE_TIMEOUT_JUDGED, None, sent.started)
    if kind is None and sent.retry is None:
        checker.fire_check(request_event, name, None, sent.started)  # most checks: no example
        return None
    example = history.check_example(record, kind)
    _fire(request_event, name, kind, example, sent.started)
    if sent.retry is not None:
        _check_retry(request_event, sent, kind, example)
    return kind


def _check_record(
    sent: SentPayout,
    name: str,
    payout_status: str,
    node: dict[str, Any],
    actual_msat: int,
    reserved_msat: Any,
) -> dict[str, Any]:
    """The history's record of a final payout's balance check: its inputs, which the fold judges
    (lnchaos/checker/history.py), and what the wallet said of it."""
    first = sent.first
    record = {
        "type": history.CHECK,
        "name": name,
        "wallet": sent.wallet.wallet_id,
        "hash": sent.invoice.payment_hash,
        "payout_id": first.payout_id,
        "phase": sent.phase,
        # the invoice's amount, not the wallet's echo of it: a wrong amount must show as drift
        "in": {
            "before_msat": sent.expected_msat,
            "amount_msat": sent.invoice.amount_msat,
            "node": {key: node.get(key) for key in NODE_FACTS if key in node},
            "actual_msat": actual_msat,
            "retried": sent.retry is not None,
        },
        "reserved_msat": reserved_msat,
        "payout_status": payout_status,
        # what the wallet told its user of it, judged against `in.node` by the fold
        "word": word_check.word_of(first, sent.final_read),
        # how long the wallet took to give its first answer (the suite's clock): less than the
        # node held the payment means the wallet answered while it was in flight
        "answered_ms": round(first.latency_ms, 1),
    }
    if sent.retry_ms is not None:
        record["retry_ms"] = sent.retry_ms
    if sent.after_crash:
        record["after_crash"] = True
    return record


def check_wallet_at_end(
    request_event: Any, wallet: Wallet, expected_msat: int, view: dict[str, Any], started: float
) -> str | None:
    """A wallet read on its own when its payer leaves it: the balance its payouts' claims and
    the node's truth add up to must be the one it shows. Returns the inconsistency kind."""
    record = {
        "type": history.CHECK,
        "name": WALLET_AT_END,
        "wallet": wallet.wallet_id,
        "phase": LOCAL.phase,
        "in": {
            "before_msat": expected_msat,
            "amount_msat": 0,
            "node": {},
            "actual_msat": int(view["balance_msat"]),
        },
        "reserved_msat": view.get("reserved_msat"),
    }
    kind = LOCAL.history.emit(record)
    _fire(request_event, WALLET_AT_END, kind, history.check_example(record, kind), started)
    return kind


def _fire(
    request_event: Any, name: str, kind: str | None, example: dict[str, Any], started: float
) -> None:
    failure = CheckFailed(describe(example, kind)) if kind is not None else None
    checker.fire_check(request_event, name, failure, started)


def record_unresolved(request_event: Any, sent: SentPayout, bound_s: float) -> None:
    """Not final within the users' bound: reported (not an inconsistency); the final audit
    judges it."""
    LOCAL.history.emit(
        {
            "type": history.LEFT_UNRESOLVED,
            "wallet": sent.wallet.wallet_id,
            "hash": sent.invoice.payment_hash,
            "payout_id": sent.first.payout_id,
            "phase": sent.phase,
        }
    )
    message = (
        f"wallet {sent.wallet.wallet_id} payout {sent.first.payout_id}: not final within "
        f"{bound_s:g} s (phase {sent.phase}); left to the final audit"
    )
    checker.fire_check(
        request_event, checker.RESOLVED_WITHIN_BOUND, CheckFailed(message), sent.started
    )
    abandon(sent.entry, checker.ABANDONED_NOT_FINAL)


def abandon(entry: dict[str, Any] | None, why: str) -> None:
    """The payout goes to the final audit (its wallet sees no payout after it)."""
    if entry is not None:
        entry["reason"] = why
        LOCAL.history.emit({"type": history.AUDIT_ENTRY, "entry": dict(entry)})


def _check_retry(
    request_event: Any, sent: SentPayout, balance_kind: str | None, example: dict[str, Any]
) -> None:
    first, retry = sent.first, sent.retry
    assert retry is not None
    same_answer = retry.http_status == first.http_status and retry.payout_id == first.payout_id
    same_answer = same_answer or not sent.idempotent
    record: dict[str, Any] = {"type": history.CHECK, "name": checker.IDEMPOTENT_RETRY}
    if same_answer and balance_kind != checker.DOUBLE_CHARGE:
        LOCAL.history.emit({**record, "kind": None})
        checker.fire_check(request_event, checker.IDEMPOTENT_RETRY, None, sent.started)
        return
    if not same_answer:
        detail = (
            f"retry answered HTTP {retry.http_status} payout {retry.payout_id}, first "
            f"HTTP {first.http_status} payout {first.payout_id}"
        )
        mismatch = {**example, "check": checker.IDEMPOTENT_RETRY, "detail": detail}
        mismatch.update(kind=checker.IDEMPOTENCY_MISMATCH, diff_msat=0)
        LOCAL.history.emit({**record, "kind": checker.IDEMPOTENCY_MISMATCH, "example": mismatch})
    else:
        # the double charge itself is counted once, by the balance check
        detail = "charged twice"
        LOCAL.history.emit({**record, "kind": checker.DOUBLE_CHARGE, "counted": False})
    kind = checker.IDEMPOTENCY_MISMATCH if not same_answer else checker.DOUBLE_CHARGE
    checker.fire_check(
        request_event,
        checker.IDEMPOTENT_RETRY,
        CheckFailed(describe(example, detail), kind),
        sent.started,
    )


def describe(example: dict[str, Any], what: str) -> str:
    return (
        f"{what}: wallet {example['wallet_id']} payout {example['payout_id']} "
        f"expected {example['expected_msat']} msat, actual {example['actual_msat']} msat "
        f"(payout {example['payout_status']}, node {example['node_status']})"
    )
