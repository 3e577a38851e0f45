"""Mutants of the target: each one small money bug, put in by monkeypatching, in tests only.

A mutant is a function that patches the target in the process that is about to serve it
(`launch.py`); the product has no flag or code path for any of them. Each patch wraps one central
method and changes one thing, so it survives refactors of the code around it.

Everything patched is named in one table, `PATCH_TARGETS` ("module:qualname"), and some patches
rely on a word in a method's source (`ANCHORS`, e.g. the ledger kind "cancel" in settle). When
either is missing the patch raises `MutantTargetMissing` and the run fails loudly, never passes
silently: after a refactor, re-aim the table, not the mutants.

Where a bug is confined to one caller (the resolver, the saga's request path), a wrapper of that
caller sets a context variable, and the patched callee looks at it: asyncio runs every task in a
copy of the context, so the flag never leaks to another request or to the resolver.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import importlib
import inspect
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ---- what is patched: one table --------------------------------------------------------------

PATCH_TARGETS: dict[str, str] = {
    "cli_main": "target.cli:main",
    "pay": "target.payouts:PayoutService.pay",
    "pay_saga": "target.payouts:PayoutService._pay_saga",
    "settle": "target.payouts:PayoutService.settle",
    "resolve_pending": "target.payouts:PayoutService.resolve_pending",
    "resolve_one": "target.payouts:PayoutService._resolve_one",
    "recover_attempt": "target.payouts:PayoutService._recover_attempt",
    "wallet_view": "target.payouts:PayoutService.wallet_view",
    "tx_move": "target.ledger:Tx.move",
    "ledger_commit": "target.ledger:Ledger._commit",
    "payout_by_key": "target.ledger:Ledger.payout_by_key",
    "upsert_account": "target.ledger:UPSERT_ACCOUNT",
    "ledger_schema": "target.ledger:SCHEMA",
    "client_wait": "target.node.client:LocalNodeClient.wait",
    "client_lookup": "target.node.client:LocalNodeClient.lookup",
    "client_decode": "target.node.client:LocalNodeClient.decode",
    "send": "target.payouts:PayoutService._send",
    "replay": "target.payouts:PayoutService._replay",
    "hash_paid": "target.ledger:Ledger.hash_paid",
    "SendRefused": "target.payouts:SendRefused",
    # names the patches use, taken from the wallet's own namespace (what payouts.py imports)
    "PaymentTruth": "target.payouts:PaymentTruth",
    "PaymentStatus": "target.payouts:PaymentStatus",
    "PayoutStatus": "target.payouts:PayoutStatus",
    "FEES": "target.payouts:FEES",
    "OUTBOUND": "target.payouts:OUTBOUND",
    "DEPOSITS": "target.payouts:DEPOSITS",
    "wallet_account": "target.payouts:wallet_account",
    # the node's draws (the coverage mutants keep a window of the edge workload from the run)
    "node_draw": "target.node.network:LightningNode._draw",
    "node_edge_fee": "target.node.network:LightningNode._edge_fee",
    "node_hold_ms": "target.node.network:LightningNode._hold_ms",
    "fee_reserve": "target.config:WalletSettings.fee_reserve_msat",
    # the wallet's word (issue 25): its answers, its payout reads, its view
    "answer_of": "target.payouts:PayoutService._answer_of",
    "payout_public": "target.ledger:Payout.public",
}

# The ledger's funds check and its assertion, which the concurrency mutant rewrites.
FUNDS_CHECK = "self.balance(account) + change < 0"
FUNDS_ASSERT = "assert balance >= 0 or account == DEPOSITS, (account, balance)"
BALANCE_CONSTRAINT = "CHECK (balance_msat >= 0 OR account_id = 'deposits')"

# Words a patch relies on in the source of a patched method (a ledger kind, an attribute).
ANCHORS: dict[str, tuple[str, ...]] = {
    "settle": ('"cancel"', '"confirm_fee"'),
    "resolve_pending": ("self._active",),
    "resolve_one": ("self.node.lookup", "self.settle"),
    "recover_attempt": ("self._adopt", "self._cancel"),
    "ledger_commit": ("UPSERT_ACCOUNT", FUNDS_CHECK, FUNDS_ASSERT),
    "pay_saga": ("self._wait", "self.settle"),
    "send": ("self.node.send",),
    "replay": ("idempotency_key_reused", "request_sha256"),
    "hash_paid": ("status = 'succeeded'",),
}

IN_RESOLVER: contextvars.ContextVar[bool] = contextvars.ContextVar("in_resolver", default=False)
IN_SAGA: contextvars.ContextVar[bool] = contextvars.ContextVar("in_saga", default=False)
SETTLING: contextvars.ContextVar[Any] = contextvars.ContextVar("settling", default=None)


class MutantTargetMissing(RuntimeError):
    """A patch target or anchor is gone (renamed, moved): re-aim PATCH_TARGETS / ANCHORS."""


_MISSING = object()


def resolve(key: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) of PATCH_TARGETS[key]; raises MutantTargetMissing."""
    spec = PATCH_TARGETS[key]
    module_name, _, qualname = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise MutantTargetMissing(f"{key}: {spec}: module not importable ({err})") from None
    owner = obj
    parts = qualname.split(".")
    for part in parts:
        owner, obj = obj, getattr(obj, part, _MISSING)
        if obj is _MISSING:
            raise MutantTargetMissing(f"{key}: {spec}: no attribute {part!r}")
    return owner, parts[-1], obj


def value(key: str) -> Any:
    return resolve(key)[2]


def require_anchors(key: str) -> None:
    source = inspect.getsource(value(key))
    missing = [text for text in ANCHORS.get(key, ()) if text not in source]
    if missing:
        raise MutantTargetMissing(f"{key}: {PATCH_TARGETS[key]} no longer contains {missing}")


def replace(key: str, make: Callable[[Any], Any]) -> None:
    """Set PATCH_TARGETS[key] to make(original), after checking its anchors."""
    owner, name, original = resolve(key)
    require_anchors(key)
    setattr(owner, name, make(original))


def check_all_targets() -> None:
    """Every target resolves and every anchor is there (the default test suite runs this)."""
    for key in PATCH_TARGETS:
        resolve(key)
    for key in ANCHORS:
        require_anchors(key)


# ---- the mutants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    name: str
    bug_class: str
    expect: tuple[str, ...]  # the run must report at least one of these inconsistency kinds
    patch: Callable[[], None]
    bug: str  # the patch's docstring, up to "Class:"
    # the traffic class run alone against it (`--traffic-mix`, payers off), None: the default
    # mix; and the check that must be the one to find it (None: any source)
    traffic_mix: str | None = None
    check: str | None = None
    # run with the suite's crash fault (the embedded target, SIGKILLed and restarted): a bug of
    # what a restart does, which no run without crashes can meet
    crash: bool = False
    # a coverage mutant (issue 25): no money bug; it keeps the run from a dangerous window its
    # settings enable, and the run must exit 4 naming that window (lnchaos/checker/coverage.py)
    window: str | None = None
    # the source that must be among those that found the expected kind ("checks", "audit",
    # "reconciliation"; None: any): a mutant there to show one source's teeth
    source: str | None = None


MUTANTS: dict[str, Mutant] = {}
CONTROL = "control"  # the target as it is
CONTROL_CRASH = "control_crash"  # the target as it is, under the crash mutants' crashes
# the target as it is, with the drain class alone: the settings of the coverage mutant that needs
# drain rounds (the default mix judges too few of them for two_at_once to be required)
CONTROL_DRAIN = "control_drain"
CONTROLS = (CONTROL, CONTROL_CRASH, CONTROL_DRAIN)
DRAIN_ALONE = "payers=0,drain=1"
# a control run with a traffic mix of its own, the one its coverage mutants run with
CONTROL_MIXES = {CONTROL_DRAIN: DRAIN_ALONE}
# What a crash run's target writes to its log each time a restart meets a payout whose attempt
# was never recorded (the path the crash mutants break), and NODE_TOOK_MARK too when the node had
# taken that attempt (what a recovery that assumes "never sent" gets wrong).
RECOVERY_MARK = "lnchaos-mutants: recovering an unrecorded attempt"
NODE_TOOK_MARK = "lnchaos-mutants: the node had taken it"
# The crash runs' wallet waits this long after the node took an attempt before going on, so every
# payout spends that long with an attempt the node has and the journal does not (a kill must
# meet some, and a 500 ms deadline alone made that a matter of luck on a busy machine). Timing
# only: nothing of the money changes, and the crash control runs with it too.
UNRECORDED_WINDOW_S = 0.3


def mutant(
    bug_class: str,
    *expect: str,
    traffic_mix: str | None = None,
    check: str | None = None,
    crash: bool = False,
    window: str | None = None,
    source: str | None = None,
) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(patch: Callable[[], None]) -> Callable[[], None]:
        doc = inspect.getdoc(patch) or ""
        assert doc and "Class:" in doc, f"{patch.__name__}: docstring must name bug and class"
        assert expect or window, f"{patch.__name__}: declare the kinds expected to catch it"
        first_paragraph = " ".join(doc.split("\n\n")[0].split())
        bug = first_paragraph.split("Class:")[0].strip()
        MUTANTS[patch.__name__] = Mutant(
            patch.__name__, bug_class, expect, patch, bug, traffic_mix, check, crash, window, source
        )
        return patch

    return register


def apply(name: str) -> None:
    """Patch the target with mutant `name` (nothing for a control; the crash control only marks
    the recoveries in its log). KeyError for an unknown name."""
    if name in (CONTROL, CONTROL_DRAIN):
        check_all_targets()
        return
    if name == CONTROL_CRASH:
        check_all_targets()
    else:
        MUTANTS[name].patch()
    if name == CONTROL_CRASH or MUTANTS[name].crash:
        _widen_unrecorded_window()
        _mark_recoveries()


def _widen_unrecorded_window() -> None:
    """The crash runs' timing: UNRECORDED_WINDOW_S between the node taking an attempt and the
    wallet going on to record it."""

    def make(send: Any) -> Any:
        async def slow_to_record(self: Any, *args: Any, **kwargs: Any) -> None:
            await send(self, *args, **kwargs)
            await asyncio.sleep(UNRECORDED_WINDOW_S)

        return slow_to_record

    replace("send", make)


def _mark_recoveries() -> None:
    """Before each recovery of an unrecorded attempt (the mutant's, if it replaced it), write
    RECOVERY_MARK to stderr (the target's log), and NODE_TOOK_MARK when the node has an attempt
    of that payment. Asks the node (a read) and changes nothing else."""
    owner, name, recover = resolve("recover_attempt")  # no anchors: a mutant may have replaced it
    unknown = value("PaymentStatus").UNKNOWN

    async def marked(self: Any, payout: Any, *args: Any, **kwargs: Any) -> Any:
        print(f"{RECOVERY_MARK}: payout {payout.payout_id}", file=sys.stderr, flush=True)
        try:
            truth = await self.node.lookup(payout.payment_hash)
        except Exception:  # the node not asked: not counted, never in the way of the recovery
            truth = None
        if truth is not None and truth.status is not unknown:
            print(f"{NODE_TOOK_MARK}: payout {payout.payout_id}", file=sys.stderr, flush=True)
        return await recover(self, payout, *args, **kwargs)

    setattr(owner, name, marked)


def _wrap_settle(change: Callable[[Any, Any], Any]) -> None:
    """settle(payout, truth) with truth replaced by change(payout, truth)."""

    def make(settle: Any) -> Any:
        async def mutated_settle(self: Any, payout: Any, truth: Any, *args: Any, **kw: Any) -> Any:
            return await settle(self, payout, change(payout, truth), *args, **kw)

        return mutated_settle

    replace("settle", make)


def _flag_while(key: str, flag: contextvars.ContextVar[bool]) -> None:
    """Set `flag` while the async method PATCH_TARGETS[key] runs."""

    def make(method: Any) -> Any:
        async def flagged(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = flag.set(True)
            try:
                return await method(self, *args, **kwargs)
            finally:
                flag.reset(token)

        return flagged

    replace(key, make)


def _wrap_cancel(change: Callable[..., list[tuple[str, str, int, Any, str]]]) -> None:
    """The cancel move of the payout being settled turned into the moves
    change(payout, debit, credit, amount_msat) gives; every other move as it was. settle()
    runs with SETTLING set to its payout, so the move knows whose cancel it is."""

    def make(settle: Any) -> Any:
        async def remembering(self: Any, payout: Any, *args: Any, **kwargs: Any) -> Any:
            token = SETTLING.set(payout)
            try:
                return await settle(self, payout, *args, **kwargs)
            finally:
                SETTLING.reset(token)

        return remembering

    replace("settle", make)

    def moves(debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str) -> list:
        payout = SETTLING.get()
        if kind != "cancel" or payout is None or payout.payout_id != payout_id:
            return [(debit, credit, amount_msat, payout_id, kind)]
        return change(payout, debit, credit, amount_msat)

    _wrap_move(moves)


def _wrap_move(change: Callable[..., list[tuple[str, str, int, Any, str]]]) -> None:
    """Tx.move(debit, credit, amount, payout_id, kind) turned into the moves change(...) gives."""

    def make(move: Any) -> Any:
        def mutated_move(
            self: Any, debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str
        ) -> Any:
            for args in change(debit, credit, amount_msat, payout_id, kind):
                move(self, *args)
            return self

        return mutated_move

    replace("tx_move", make)


# -- the saga's flow


@mutant("saga flow: confirm", "charged_not_paid")
def saga_confirm_charges_fee_reserve() -> None:
    """Confirm books the whole fee reserve as the fee instead of the node's fee.
    Class: the saga's confirm step (fee)."""
    succeeded = value("PaymentStatus").SUCCEEDED

    def change(payout: Any, truth: Any) -> Any:
        if truth.status is succeeded:
            return dataclasses.replace(truth, fee_msat=payout.fee_limit_msat)
        return truth

    _wrap_settle(change)


@mutant("saga flow: cancel", "charged_not_paid")
def saga_cancel_keeps_fee_reserve() -> None:
    """Cancel gives the amount back but books the fee reserve as a fee.
    Class: the saga's cancel step (release)."""
    fees = value("FEES")

    def change(payout: Any, debit: str, credit: str, amount_msat: int) -> list:
        kept = min(payout.fee_limit_msat, amount_msat)
        return [
            (debit, credit, amount_msat - kept, payout.payout_id, "cancel"),
            (debit, fees, kept, payout.payout_id, "cancel_fee_kept"),
        ]

    _wrap_cancel(change)


@mutant("saga flow: cancel gives back more", "balance_mismatch", "paid_not_charged")
def saga_cancel_refunds_fee_reserve_twice() -> None:
    """Cancel gives back what it held, and the fee reserve once more from the deposits (the one
    account that may go below zero): a failed payout leaves its wallet richer than before.
    Class: the saga's cancel step (over-release)."""
    deposits = value("DEPOSITS")

    def change(payout: Any, debit: str, credit: str, amount_msat: int) -> list:
        again = payout.fee_limit_msat
        return [
            (debit, credit, amount_msat, payout.payout_id, "cancel"),
            (deposits, credit, again, payout.payout_id, "cancel_fee_reserve_again"),
        ]

    _wrap_cancel(change)


@mutant("saga flow: deadline", "paid_not_charged")
def saga_deadline_cancels() -> None:
    """The saga reads its own deadline as a failure: a payment still in flight is cancelled
    (refunded), and pays out later for free. Class: a timeout taken for a failure."""
    status = value("PaymentStatus")
    truth_type = value("PaymentTruth")
    _flag_while("pay_saga", IN_SAGA)

    def change(payout: Any, truth: Any) -> Any:
        if IN_SAGA.get() and truth.status is status.IN_FLIGHT:
            return truth_type(truth.payment_hash, status.FAILED)
        return truth

    _wrap_settle(change)


# -- the resolver


@mutant("resolver: never runs", "unresolved")
def resolver_never_runs() -> None:
    """The resolver's pass does nothing: timed-out payouts stay pending, their money reserved.
    Class: a dead background job."""

    def make(resolve_pending: Any) -> Any:
        async def idle(self: Any, *args: Any, **kwargs: Any) -> int:
            return 0

        return idle

    replace("resolve_pending", make)


@mutant("resolver: reads the outcome", "charged_not_paid")
def resolver_confirms_failures() -> None:
    """The resolver confirms every final payment, also one the node failed.
    Class: the resolver misreads the node's outcome."""
    status = value("PaymentStatus")
    _flag_while("resolve_pending", IN_RESOLVER)

    def change(payout: Any, truth: Any) -> Any:
        if IN_RESOLVER.get() and truth.status is status.FAILED:
            return dataclasses.replace(truth, status=status.SUCCEEDED)
        return truth

    _wrap_settle(change)


@mutant("resolver: in flight read as failed", "paid_not_charged")
def resolver_cancels_in_flight() -> None:
    """The resolver reads a payment its node still has in flight as failed: it cancels the
    payout (refunds it), and the payment settles later for free. Class: the resolver's reading
    of "not final yet"."""
    status = value("PaymentStatus")
    require_anchors("resolve_one")
    _flag_while("resolve_pending", IN_RESOLVER)

    def change(payout: Any, truth: Any) -> Any:
        if IN_RESOLVER.get() and truth.status is status.IN_FLIGHT:
            return dataclasses.replace(truth, status=status.FAILED)
        return truth

    _wrap_settle(change)


@mutant("crash recovery: unrecorded attempt", "paid_not_charged", crash=True)
def recovery_cancels_unrecorded_attempt() -> None:
    """After a crash, a payout whose node attempt was never recorded is taken as never sent: it
    is cancelled (its reservation given back) without asking the node, which took the attempt
    and settles it. Class: recovery that assumes the side effect of an interrupted step did not
    happen."""

    def make(recover: Any) -> Any:
        async def never_sent(self: Any, payout: Any, *args: Any, **kwargs: Any) -> bool:
            await self._cancel(payout, "not_sent")
            return True

        return never_sent

    replace("recover_attempt", make)


# -- the node client


@mutant("node client: fee units", "paid_not_charged")
def client_fee_in_sats() -> None:
    """The node client reports a payment's fee in whole sats (fee_sat * 1000, as LND's
    `fee_sat` field would give), losing the msat: the wallet charges less than the node paid.
    Class: the node client misreports the fee."""

    def in_sats(truth: Any) -> Any:
        return dataclasses.replace(truth, fee_msat=truth.fee_msat // 1000 * 1000)

    def make(method: Any) -> Any:
        async def mutated(self: Any, *args: Any, **kwargs: Any) -> Any:
            return in_sats(await method(self, *args, **kwargs))

        return mutated

    replace("client_wait", make)
    replace("client_lookup", make)


@mutant("node client: status", "charged_not_paid", "paid_not_charged")
def client_in_flight_as_succeeded() -> None:
    """The node client's wait reports a payment still in flight at the deadline as succeeded
    (with the fee known so far, 0). Class: the node client misreports the status."""
    status = value("PaymentStatus")

    def make(wait: Any) -> Any:
        async def optimistic_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
            truth = await wait(self, *args, **kwargs)
            if truth.status is status.IN_FLIGHT:
                return dataclasses.replace(truth, status=status.SUCCEEDED)
            return truth

        return optimistic_wait

    replace("client_wait", make)


# -- idempotency


@mutant("idempotency: retry of a failure", "idempotency_mismatch", "charged_not_paid")
def idempotent_retry_of_failure_pays_again() -> None:
    """A retry (same Idempotency-Key) of a payout that failed is paid anew instead of answered
    with the stored failure. Class: idempotency (replays)."""
    failed = value("PayoutStatus").FAILED

    def make(pay: Any) -> Any:
        async def mutated_pay(
            self: Any, wallet_id: str, payment_request: str, idempotency_key: Any
        ) -> Any:
            if idempotency_key is not None:
                previous = await self.ledger.payout_by_key(wallet_id, idempotency_key)
                if previous is not None and previous.status is failed:
                    return await pay(self, wallet_id, payment_request, None)
            return await pay(self, wallet_id, payment_request, idempotency_key)

        return mutated_pay

    resolve("payout_by_key")
    replace("pay", make)


@mutant("idempotency: a replay's side effect", "double_charge")
def replay_charges_again() -> None:
    """A retry (same Idempotency-Key) of a succeeded payout gets the stored answer back, as it
    must, but the wallet is charged its amount and fee again: the client sees the right answer
    and the money goes twice. Class: idempotency (a replay's side effects). Only a look at the
    balance after the retry (its answer's X-Wallet-Balance-Msat, or a read) can see it."""
    wallet_account, outbound, fees = value("wallet_account"), value("OUTBOUND"), value("FEES")

    def make(replay: Any) -> Any:
        async def charging_replay(
            self: Any, wallet_id: str, idempotency_key: str, request_sha256: str
        ) -> Any:
            answer = await replay(self, wallet_id, idempotency_key, request_sha256)
            if answer is not None and answer.status == 200:
                payout_id, wallet = answer.body["payout_id"], wallet_account(wallet_id)
                tx = self.ledger.tx()
                tx.move(wallet, outbound, int(answer.body["amount_msat"]), payout_id, "charge")
                tx.move(wallet, fees, int(answer.body["fee_msat"]), payout_id, "charge_fee")
                try:
                    await tx.commit()
                except Exception:  # noqa: S110 (too little left: nothing charged, no bug shown)
                    pass
            return answer

        return charging_replay

    replace("replay", make)


# -- concurrency: none kept. The one we had (the resolver without its _active guard) became
# nearly harmless once payouts were bound to their own node attempt, and was caught on some seeds
# only; a lost update between payouts healed itself at the next commit. The suite's traffic (one
# payer per wallet, one payout at a time) rarely races the target; shared invoices, drains and
# concurrent retries (issue 10) are what will give concurrency mutants something to catch.


# -- the ledger


@mutant("ledger: wrong account", "not_conserved", "paid_not_charged")
def ledger_fee_to_wrong_account() -> None:
    """Confirm credits the fee to a misspelled account ("fee", not "fees"): the money leaves the
    wallet and lands outside the books. Class: the ledger posts to the wrong account."""
    fees = value("FEES")
    require_anchors("settle")

    def change(debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str) -> list:
        if kind == "confirm_fee" and credit == fees:
            credit = fees.rstrip("s")
        return [(debit, credit, amount_msat, payout_id, kind)]

    _wrap_move(change)


@mutant("ledger: durable state", "not_conserved")
def ledger_balances_never_updated_on_disk() -> None:
    """The accounts' upsert does nothing on conflict: balances change in memory, the disk keeps
    each account's first balance. Class: the ledger's durable state diverges from memory."""
    owner, name, sql = resolve("upsert_account")
    require_anchors("ledger_commit")
    if "DO UPDATE" not in sql:
        raise MutantTargetMissing(f"UPSERT_ACCOUNT has no DO UPDATE clause: {sql}")
    setattr(owner, name, sql[: sql.index("DO UPDATE")] + "DO NOTHING")


# -- the reconciliation's inputs


@mutant("reconciliation input: unattributed transfer", "paid_not_charged")
def fee_transfer_without_payout() -> None:
    """The fee of a confirmed payout is booked without its payout id: the wallet is charged,
    but the books no longer say for which payment. Class: the reconciliation's inputs."""
    require_anchors("settle")

    def change(debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str) -> list:
        return [(debit, credit, amount_msat, None if kind == "confirm_fee" else payout_id, kind)]

    _wrap_move(change)


# -- the wallet's balance view


STALE_VIEW_S = 1.0
STALE_VIEW_MAX = 10_000


@mutant("wallet view: stale read", "paid_not_charged", "charged_not_paid", "balance_mismatch")
def wallet_view_stale() -> None:
    """GET wallet answers from a cache up to 1 s old: a payout just charged does not show.
    Class: the wallet's balance view (stale read)."""

    def make(wallet_view: Any) -> Any:
        def cached_view(self: Any, wallet_id: str) -> Any:
            cache = self.__dict__.setdefault("_mutant_view_cache", {})
            now = time.monotonic()
            hit = cache.get(wallet_id)
            if hit is not None and now - hit[0] < STALE_VIEW_S:
                return hit[1]
            view = wallet_view(self, wallet_id)
            if len(cache) >= STALE_VIEW_MAX:
                cache.clear()
            cache[wallet_id] = (now, view)
            return view

        return cached_view

    replace("wallet_view", make)


# -- concurrency: payouts of one wallet at once (run with the drain traffic class)


@mutant("concurrency: funds check", "overdrawn", traffic_mix="payers=0,drain=1", check="drain")
def funds_check_misses_queued_payouts() -> None:
    """The funds check reads a wallet's durable balance instead of its working one: reservations
    still queued for the disk are not seen, so parallel payouts of one wallet overdraw it (the
    database's CHECK on balances is dropped too, as a schema without it would). Class:
    concurrency (the funds check split from the apply by the journal's write)."""
    owner, name, commit = resolve("ledger_commit")
    require_anchors("ledger_commit")
    source = textwrap.dedent(inspect.getsource(commit))
    # a debit of a wallet is checked against its durable balance only; a credit (a refund into
    # an overdrawn wallet) is never refused
    stale = (
        "((account.startswith('wallet:') and change < 0 "
        "and self.committed_balance(account) + change < 0) "
        "or (not account.startswith('wallet:') and self.balance(account) + change < 0))"
    )
    source = source.replace(FUNDS_CHECK, stale)
    source = source.replace(FUNDS_ASSERT, "pass  # mutant: negative balances allowed")
    namespace: dict[str, Any] = {}
    module_globals = vars(importlib.import_module(commit.__module__))
    exec(compile(source, f"<mutant {name}>", "exec"), module_globals, namespace)  # noqa: S102
    setattr(owner, name, namespace[name])
    # and the database's own guard, so the overdraft is stored (else the journal fail-stops)
    schema_owner, schema_name, schema = resolve("ledger_schema")
    if BALANCE_CONSTRAINT not in schema:
        raise MutantTargetMissing(f"SCHEMA has no {BALANCE_CONSTRAINT}")
    setattr(schema_owner, schema_name, schema.replace(BALANCE_CONSTRAINT, "CHECK (1)"))


# -- the traffic classes of issue 10, each run alone against the bug it is there to catch


@mutant(
    "per-hash claim: paid invoice adopted",
    "double_charge",
    traffic_mix="payers=0,shared=1",
    check="shared_invoice",
)
def paid_invoice_adopted_by_second_payout() -> None:
    """A payout of an invoice another payout already paid is not refused: the "already paid"
    look-up is skipped, and the node's refusal (already_paid) is read as this payout's own
    success, adopting the other payout's attempt. Both wallets are charged for one payment.
    Class: the per-hash claim (one payout per payment). Only a second payer of one invoice meets
    it: the payers never pay an invoice twice, so only the shared_invoice check can see it."""
    send_refused = value("SendRefused")

    def make_hash_paid(hash_paid: Any) -> Any:
        async def never_paid(self: Any, payment_hash: str) -> bool:
            return False

        return never_paid

    def make_send(send: Any) -> Any:
        async def adopting_send(self: Any, payout: Any, invoice: Any) -> None:
            try:
                await send(self, payout, invoice)
            except send_refused as err:
                if err.code != "already_paid":
                    raise
                truth = await self.node.lookup(payout.payment_hash)
                payout.attempt_id = truth.attempt_id  # "paid, so ours": the other's attempt

        return adopting_send

    replace("hash_paid", make_hash_paid)
    replace("send", make_send)


@mutant(
    "idempotency: key reused with another invoice",
    "idempotency_mismatch",
    traffic_mix="payers=0,retry=1",
    check="retry",
)
def idempotency_key_reused_replays() -> None:
    """A request with an Idempotency-Key already used for another invoice is answered with the
    first request's stored answer instead of a 422: the client is told its second invoice was
    paid (or failed) when it was never sent. Class: idempotency (the request's fingerprint)."""

    def make(replay: Any) -> Any:
        async def unchecked_replay(
            self: Any, wallet_id: str, idempotency_key: str, request_sha256: str
        ) -> Any:
            previous = await self.ledger.payout_by_key(wallet_id, idempotency_key)
            if previous is not None:
                request_sha256 = previous.request_sha256  # the fingerprint never compared
            return await replay(self, wallet_id, idempotency_key, request_sha256)

        return unchecked_replay

    replace("replay", make)


@mutant(
    "idempotency: key scoped by request",
    "idempotency_mismatch",
    traffic_mix="payers=0,retry=1",
    check="retry",
)
def idempotency_key_scoped_by_request() -> None:
    """The wallet stores an Idempotency-Key together with the request it came with, so the same
    key with another invoice is a new key: a second payment starts and the node pays both
    invoices. The wallet charges what the node paid (the books balance); only the rule that a
    key never starts a second payment is broken. Class: idempotency (a reused key accepted)."""

    def make(pay: Any) -> Any:
        async def keyed_by_request(
            self: Any, wallet_id: str, payment_request: str, idempotency_key: str | None
        ) -> Any:
            if idempotency_key is not None:
                request_digest = hashlib.sha256(payment_request.strip().lower().encode())
                idempotency_key = f"{idempotency_key}/{request_digest.hexdigest()[:16]}"
            return await pay(self, wallet_id, payment_request, idempotency_key)

        return keyed_by_request

    replace("pay", make)


@mutant("bad input: expiry", "accepted_bad_input", traffic_mix="payers=0,edge=1", check="edge")
def expiry_read_in_ms() -> None:
    """The wallet reads an invoice's expiry (seconds) as milliseconds' worth of seconds, so an
    expired invoice is taken as valid and sent to the node instead of refused with a 400.
    Class: bad input accepted (the edge class's clear 4xx)."""

    def make(decode: Any) -> Any:
        async def long_lived(self: Any, payment_request: str) -> Any:
            invoice = await decode(self, payment_request)
            return dataclasses.replace(invoice, expiry_s=invoice.expiry_s * 1000)

        return long_lived

    replace("client_decode", make)


# ---- coverage mutants: a window of the edge workload kept from the run (exit 4 naming it) -------


@mutant("coverage: fee at the limit", window="fee_at_limit")
def node_fee_never_at_limit() -> None:
    """The node never charges exactly the wallet's fee limit (one msat under it at most), as a
    network whose routes always leave some room would: a wallet that books the fee reserve as the
    fee, or rounds at the limit, is never met. Class: coverage (fee at the limit)."""

    def make(edge_fee: Any) -> Any:
        def under_limit(self: Any, fee_msat: int, fee_limit_msat: int) -> int:
            return min(edge_fee(self, fee_msat, fee_limit_msat), max(0, fee_limit_msat - 1))

        return under_limit

    replace("node_edge_fee", make)


@mutant("coverage: long holds", window="in_flight_past_stuck")
def node_holds_never_long() -> None:
    """The node's long holds are cut to the normal in-flight hold: no payment outlives the
    wallet's stuck threshold, so a wallet that gives up on "old" payments is never met.
    Class: coverage (in flight past the stuck threshold)."""

    def make(hold_ms: Any) -> Any:
        def normal_hold(self: Any) -> float:
            return min(hold_ms(self), self.faults.inflight_hold_ms)

        return normal_hold

    replace("node_hold_ms", make)


def _timed_out_ends(outcome_name: str) -> None:
    """Every payment the network holds past the deadline ends as `outcome_name`."""

    def make(draw: Any) -> Any:
        def drawn(self: Any, *args: Any, **kwargs: Any) -> Any:
            payment = draw(self, *args, **kwargs)
            if payment.timed_out:
                status = type(payment.outcome)
                payment.outcome = status(outcome_name)
                reasons = type(payment.outcome_reason)
                paid = outcome_name == "succeeded"
                payment.outcome_reason = reasons("FAILURE_REASON_NONE" if paid else
                                                 "FAILURE_REASON_TIMEOUT")  # fmt: skip
                payment.outcome_fee_msat = payment.outcome_fee_msat if paid else 0
                if paid and not payment.outcome_fee_msat:
                    payment.outcome_fee_msat = min(1000, payment.fee_limit_msat)
            return payment

        return drawn

    replace("node_draw", make)


@mutant("coverage: late settles", window="late_settle")
def node_timeouts_never_settle() -> None:
    """Every payment that times out fails at the end of its hold: a wallet that takes a timeout
    for a failure is never shown a late settle. Class: coverage (timeout, then settled late)."""
    _timed_out_ends("failed")


@mutant("coverage: late failures", window="late_fail")
def node_timeouts_always_settle() -> None:
    """Every payment that times out settles at the end of its hold: a wallet that keeps the
    money of a timed-out payment is never shown a late failure.
    Class: coverage (timeout, then failed late)."""
    _timed_out_ends("succeeded")


@mutant("coverage: large payouts", window="large_payout")
def wallet_refuses_large_payouts() -> None:
    """The wallet refuses any payout of 1 BTC or more (a version with a lower limit of its own):
    the bugs of large amounts are never met. Class: coverage (a large payout)."""

    def make(pay: Any) -> Any:
        async def capped(self: Any, wallet_id: str, payment_request: str, *args: Any) -> Any:
            try:
                amount_msat = (await self.node.decode(payment_request)).amount_msat
            except Exception:  # a bad invoice: the wallet's own answer to it, as before
                amount_msat = None
            # over the wallet's own limit: its own answer, as before (the edge class checks it)
            limits = importlib.import_module("target.common.limits")
            if amount_msat and 100_000_000_000 <= amount_msat < limits.MAX_AMOUNT_MSAT:
                error = importlib.import_module("target.common.errors")
                raise error.bad_request("amount_too_large", "payouts are capped at 1 BTC")
            return await pay(self, wallet_id, payment_request, *args)

        return capped

    replace("pay", make)


# -- strict reading (lnchaos/checker/answers.py): a field the API promises, missing or malformed,
# is a finding (`malformed_answer`), never a default. Each of these wallets moves its money right
# and only breaks its word's shape, so only the reading rules can catch it.
PATCH_TARGETS["reconciler_report"] = "target.reconcile:Reconciler.report"


def _wrap_payout_answer(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Every payout answer's body (also a replay's) turned into change(body)."""

    def make(pay: Any) -> Any:
        async def reshaped(self: Any, *args: Any, **kwargs: Any) -> Any:
            answer = await pay(self, *args, **kwargs)
            return dataclasses.replace(answer, body=change(dict(answer.body)))

        return reshaped

    replace("pay", make)


@mutant("coverage: near the balance", window="near_balance")
def wallet_reserve_triples() -> None:
    """The wallet's funds check keeps three fee reserves (it reserves one, as before): a payout
    sized near the balance is refused for funds, moving nothing, so the wallet is never paid down
    to its last reserve. Class: coverage (an amount within the fee reserve of the balance)."""

    def make(pay: Any) -> Any:
        async def wider_margin(self: Any, wallet_id: str, payment_request: str, *args: Any) -> Any:
            try:
                amount_msat = (await self.node.decode(payment_request)).amount_msat
                balance_msat = int(self.wallet_view(wallet_id)["balance_msat"])
            except Exception:  # a bad invoice, a cold or unknown wallet: its own answer
                return await pay(self, wallet_id, payment_request, *args)
            reserve_msat = self.settings.fee_reserve_msat(amount_msat)
            # only where the wallet's own check would pass: its other answers stay its own
            if amount_msat and reserve_msat <= balance_msat - amount_msat < 3 * reserve_msat:
                error = importlib.import_module("target.common.errors")
                raise error.ApiError(
                    409, "insufficient_funds", "balance too low for amount + fee reserve"
                )
            return await pay(self, wallet_id, payment_request, *args)

        return wider_margin

    replace("pay", make)


# -- the wallet's word against the node's truth (issue 25): what it tells its user, its books


@mutant("wallet's word: failure answered as success", "status_mismatch")
def failure_answered_succeeded() -> None:
    """A payout whose payment failed is answered 200 "succeeded" while the wallet refunds it
    (Blink #4022: a failed payment answered SUCCESS, then refunded): the money is right, the
    user is told a payment was made that never was. Class: the reported status (a failure
    reported as success)."""
    failed = value("PayoutStatus").FAILED

    def make(answer_of: Any) -> Any:
        def succeeded_anyway(self: Any, payout: Any, **kwargs: Any) -> Any:
            answer = answer_of(self, payout, **kwargs)
            if payout.status is not failed:
                return answer
            body = {k: v for k, v in answer.body.items() if k not in ("error", "message")}
            return dataclasses.replace(answer, status=200, body={**body, "status": "succeeded"})

        return succeeded_anyway

    replace("answer_of", make)


@mutant("wallet's word: success read as failed", "status_mismatch")
def success_read_as_failed_after_pending() -> None:
    """A payout that went pending and then succeeded reads as "failed" in GET
    /api/payouts/{id} (BTCPay Server #6365: payouts marked Cancelled after they succeeded): the
    wallet charged it, and tells its user it did not happen. Class: the reported status (a
    success reported as failure)."""
    succeeded = value("PayoutStatus").SUCCEEDED

    def make(public: Any) -> Any:
        def cancelled_after_success(self: Any) -> dict[str, Any]:
            view = public(self)
            if self.status is succeeded and self.response_status == 202:
                view["status"] = "failed"
            return view

        return cancelled_after_success

    replace("payout_public", make)


@mutant("wallet's word: fee reported", "fee_mismatch")
def fee_reported_as_fee_limit() -> None:
    """A succeeded payout's answer reports the fee limit (the reserve it held) as its fee, while
    the wallet charges the node's fee: the books and the balance are right, the receipt is not.
    Class: the reported fee."""
    succeeded = value("PayoutStatus").SUCCEEDED

    def make(answer_of: Any) -> Any:
        def reserve_as_fee(self: Any, payout: Any, **kwargs: Any) -> Any:
            answer = answer_of(self, payout, **kwargs)
            if payout.status is not succeeded:
                return answer
            body = {**answer.body, "fee_msat": payout.fee_limit_msat}
            return dataclasses.replace(answer, body=body)

        return reserve_as_fee

    replace("answer_of", make)


@mutant("wallet's word: held money shown spendable", "view_mismatch")
def view_shows_reserved_as_spendable() -> None:
    """GET /api/wallets/{id} shows the money held for pending payouts as part of the balance,
    with reserved_msat 0: a user sees as spendable what a pending payment may still take (Zeus
    #3165's users paid twice). Every payout's money is right; only the view lies. Class: the
    wallet's view while payouts are pending."""

    def make(wallet_view: Any) -> Any:
        def reserved_as_balance(self: Any, wallet_id: str) -> dict[str, Any]:
            view = wallet_view(self, wallet_id)
            held_msat = int(view["reserved_msat"])
            return {**view, "balance_msat": view["balance_msat"] + held_msat, "reserved_msat": 0}

        return reserved_as_balance

    replace("wallet_view", make)


@mutant("strict reading: payout answer's fee as text", "malformed_answer")
def payout_fee_as_text() -> None:
    """A succeeded payout's answer carries its fee as a string ("1234"), as a JSON encoder of
    big numbers would: a client reading it with int() takes it, a typed one breaks. Class: a
    promised field of the payout answer malformed."""

    def change(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("status") == "succeeded" and "fee_msat" in body:
            body["fee_msat"] = str(body["fee_msat"])
        return body

    _wrap_payout_answer(change)


@mutant("strict reading: payout answer's fee missing", "malformed_answer")
def payout_fee_missing() -> None:
    """A succeeded payout's answer no longer says what it charged (no `fee_msat`): a client
    defaulting it to 0 tells its user the payment was free. Class: a promised field of the
    payout answer missing."""

    def change(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("status") == "succeeded":
            body.pop("fee_msat", None)
        return body

    _wrap_payout_answer(change)


@mutant("strict reading: wallet view without its reserve", "malformed_answer")
def wallet_view_without_reserved() -> None:
    """GET wallet leaves out `reserved_msat`: what is held for pending payouts is not said, and
    a reader defaulting it to 0 takes a wallet with money held as settled. Class: a promised
    field of the wallet view missing."""

    def make(wallet_view: Any) -> Any:
        def without_reserve(self: Any, wallet_id: str) -> dict[str, Any]:
            view = dict(wallet_view(self, wallet_id))
            view.pop("reserved_msat", None)
            return view

        return without_reserve

    replace("wallet_view", make)


@mutant("ledger: fee booked as paid out", "books_mismatch")
def fee_booked_as_paid_out() -> None:
    """Confirm books the node's fee into the paid-out account instead of the fees account: each
    payment's charge is right, conservation holds, only the split between paid out and fees is
    wrong. Class: the books (a balanced entry in the wrong account)."""
    fees, outbound = value("FEES"), value("OUTBOUND")
    require_anchors("settle")

    def change(debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str) -> list:
        if kind == "confirm_fee" and credit == fees:
            credit = outbound
        return [(debit, credit, amount_msat, payout_id, kind)]

    _wrap_move(change)


@mutant("strict reading: reconciliation without conserved", "malformed_answer")
def reconciliation_without_conserved() -> None:
    """The reconciliation's answer leaves out `conserved` (a refactor dropped the key): a reader
    taking an absent verdict as "nothing wrong" never learns whether the books balance.
    Class: a promised field of the reconciliation missing."""

    def make(report: Any) -> Any:
        async def unsaid(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            result = dict(await report(self, *args, **kwargs))
            result.pop("conserved", None)
            return result

        return unsaid

    replace("reconciler_report", make)


# -- the run's scope (lnchaos/checker/scope.py): the judge's, not the wallet's clock
PATCH_TARGETS["payout_init"] = "target.ledger:Payout.__init__"
CLOCK_BEHIND_MS = 3_600_000


@mutant("strict reading: the wallet's clock decides the run", "paid_not_charged")
def clock_behind_hides_unattributed_fee() -> None:
    """The wallet's clock is an hour behind when it writes a payout (created_ms in the past), and
    a confirmed payout's fee is booked without its payout id (a bug only the reconciliation
    sees): the reconciliation files every hash of the run "before this run", where a verdict
    scoped by the wallet's clock never counts it. Class: the run's scope taken from the
    wallet's timestamps."""
    require_anchors("settle")

    def make(init: Any) -> Any:
        def behind(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if not args and "created_ms" not in kwargs:  # a new payout, not one read back
                self.created_ms -= CLOCK_BEHIND_MS
                self.updated_ms = self.created_ms

        return behind

    owner, name, init = resolve("payout_init")  # a dataclass's __init__ has no source: no anchor
    setattr(owner, name, make(init))

    def change(debit: str, credit: str, amount_msat: int, payout_id: Any, kind: str) -> list:
        return [(debit, credit, amount_msat, None if kind == "confirm_fee" else payout_id, kind)]

    _wrap_move(change)


# -- a refusal must have moved nothing (lnchaos/checker/refusals.py)
@mutant(
    "strict reading: a refusal reached the node",
    "refused_but_sent",
    traffic_mix="payers=0,drain=1",
    check="drain",
)
def refused_payout_still_sent() -> None:
    """A payout refused for insufficient funds is still sent to the node (a wallet that sends
    first and checks its funds after), with no fee allowance, so the node fails it: no money
    moves, the balance is right, and the answer is a clean 409; only the node's attempts show
    the refusal went out. Class: a refusal that was not one."""

    def make(pay: Any) -> Any:
        async def sends_anyway(
            self: Any, wallet_id: str, payment_request: str, *args: Any, **kwargs: Any
        ) -> Any:
            try:
                return await pay(self, wallet_id, payment_request, *args, **kwargs)
            except Exception as err:
                if getattr(err, "code", None) == "insufficient_funds":
                    invoice = await self.node.decode(payment_request)
                    try:
                        await self.node.send(invoice, 0)
                    except Exception:  # noqa: S110 (refused by the node: nothing went out)
                        pass
                raise

        return sends_anyway

    replace("pay", make)


# -- rule 4: a round of unknown outcome goes to the final audit, in every traffic class
LOST_ANSWER_SHARE_OF_256 = 128  # half the succeeded payouts of the request path lose their answer


@mutant(
    "strict reading: a lost answer's error path",
    "paid_not_charged",
    traffic_mix="payers=0,shared=1",
    source="audit",
)
def lost_answer_rolls_back_paid_payout() -> None:
    """When a payout's answer cannot be written after the node paid (an error on the way out:
    the client gets a 500), the wallet's error path rolls the payout back: cancelled and
    refunded, though the node made the payment. Only a client whose answer was lost meets it,
    and a shared invoice's round of unknown outcome was once left to the target's own
    reconciliation: the money goes out for free. Class: an error path that undoes what the
    node did."""
    status = value("PaymentStatus")
    truth_type = value("PaymentTruth")
    _flag_while("pay_saga", IN_SAGA)  # the request's own path: the resolver's settles are right

    def lost(payout_id: str) -> bool:
        digest = hashlib.sha256(f"lost-answer/{payout_id}".encode()).digest()
        return digest[0] < LOST_ANSWER_SHARE_OF_256

    def make(settle: Any) -> Any:
        async def rolls_back(self: Any, payout: Any, truth: Any, *args: Any, **kw: Any) -> Any:
            if not (IN_SAGA.get() and truth.status is status.SUCCEEDED and lost(payout.payout_id)):
                return await settle(self, payout, truth, *args, **kw)
            failed = truth_type(truth.payment_hash, status.FAILED)
            await settle(self, payout, failed, *args, **kw)  # the rollback: refunded
            raise RuntimeError("lnchaos-mutants: the answer could not be written")  # a 500

        return rolls_back

    replace("settle", make)


# -- coverage: the windows of the suite's own acts (a retry, a drain round), kept from the run


PATCH_TARGETS["pending"] = "target.payouts:PayoutService._pending"
PATCH_TARGETS["deadline_s"] = "target.payouts:PayoutService._deadline_s"


@mutant("coverage: a retry of a payout in flight", window="retry_in_flight")
def deadline_escapes_as_server_error() -> None:
    """A payout still in flight at the wallet's deadline is answered 500 (the deadline's
    TimeoutError escapes the handler) instead of 202 pending, after its pending answer was stored
    and written as before: the money stays reserved, the resolver settles it, a retry with the key
    gets the stored answer. The suite's payers leave an unknown outcome (a 5xx) to the final audit
    instead of retrying it, so no retry reaches the node while it still holds the payment.
    Class: coverage (a retry of a payout still in flight)."""

    def make(pending: Any) -> Any:
        async def unhandled(self: Any, payout: Any, *args: Any, **kwargs: Any) -> Any:
            await pending(self, payout, *args, **kwargs)  # stored and durable: nothing is lost
            raise RuntimeError("lnchaos-mutants: the wallet's deadline escaped the handler")

        return unhandled

    replace("pending", make)


# a payment keeps its wallet's turn until the node says it is final, at most this long (past the
# node's longest hold, so a turn is never given up while the payment is in flight)
TURN_HELD_MAX_S = 60.0
TURNS_MAX = 10_000  # wallets with a turn object at once (bounded: idle ones are dropped)


@mutant(
    "coverage: two payouts of one wallet at once",
    window="two_at_once",
    traffic_mix=DRAIN_ALONE,
)
def wallet_sends_one_at_a_time() -> None:
    """The wallet sends one payment per wallet at a time (a per-wallet send lock, as a wallet
    that keeps one channel or one nonce per user has): a payout waits for its wallet's turn
    before it is sent, and its payment keeps the turn until the node says it is final. A payout
    that does not get the turn within the wallet's deadline fails with nothing sent (its
    reservation given back). Reservations and the funds check are as before; only a wallet's
    payments never overlap at the node. Class: coverage (two payouts of one wallet at once)."""
    send_refused, deadline_s = value("SendRefused"), value("deadline_s")
    turns: dict[str, asyncio.Lock] = {}
    releasing: set[asyncio.Task[None]] = set()  # a task is kept referenced until it ends

    def turn_of(wallet_id: str) -> asyncio.Lock:
        if wallet_id not in turns and len(turns) >= TURNS_MAX:
            for idle in [w for w, lock in turns.items() if not lock.locked()]:
                del turns[idle]
        return turns.setdefault(wallet_id, asyncio.Lock())

    async def release_when_final(service: Any, payout: Any, turn: asyncio.Lock) -> None:
        try:
            await service.node.wait(
                payout.payment_hash, TURN_HELD_MAX_S, attempt_id=payout.attempt_id
            )
        except Exception:  # noqa: S110 (the node could not be asked: the turn is given up)
            pass
        finally:
            turn.release()

    def make(send: Any) -> Any:
        async def in_turn(self: Any, payout: Any, invoice: Any) -> None:
            turn = turn_of(payout.wallet_id)
            # bounded: a payout queued behind a long hold would otherwise outlive any deadline
            try:
                async with asyncio.timeout(deadline_s(self)):
                    await turn.acquire()
            except TimeoutError:
                busy = "another payment of the wallet is in flight"
                raise send_refused("wallet_busy", busy) from None
            try:
                await send(self, payout, invoice)
            except BaseException:  # refused or cancelled: nothing sent holds the turn
                turn.release()
                raise
            task = asyncio.get_running_loop().create_task(release_when_final(self, payout, turn))
            releasing.add(task)
            task.add_done_callback(releasing.discard)

        return in_turn

    replace("send", make)
