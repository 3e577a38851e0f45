"""The payers: each owns a wallet, pays invoices of the node mock and checks its balance.

A payer tracks the balance it expects instead of reading it before each payout. After every
payout it checks the balance (locustfiles/payout_check.py):
- succeeded -> lower by amount + the node's fee for that payment (`balance_after_success`): the fee
  and whether it was paid at all come from the node's truth of the hash of the invoice the payer
  created (read in batches shared by the process's payers, locustfiles/truth_batcher.py: one
  POST /node/payments/lookup for many hashes), never from the wallet's answer;
- failed -> unchanged (`balance_after_failure`), when the node's truth says so: the wallet's
  502 is not taken on trust (a payment the node still has in flight is resolved as a timeout is,
  and one the node paid must have been charged);
- timeout / pending -> handed to the background resolver (locustfiles/resolver.py) with its
  wallet; the payer goes on with a fresh wallet and its next payout. The resolver polls the payout
  and the node (bounded) until both are final, reads the wallet and judges by the node's truth
  (`resolved_vs_node_truth`): paid -> lower by amount + the node's fee, not paid -> unchanged.
The balance of a payout answered final is the answer's own `balance_msat` (the wallet's claim
right after its transaction), so a payout costs three requests (invoice, payout, the node's
truth). Each wallet is also read on its own: after a retried or timed-out payout, when the payer
leaves it (`wallet_at_end_of_use`), and, for the wallets in use when the run stops, by the final
audit (an audit entry of the wallet's last payout, why `wallet_end_of_use`). A share of payouts
is sent twice with the same Idempotency-Key (`idempotent_retry`: same answer, no second charge;
the balance then comes from a read). After a failed check the expected balance is set to the
actual one, so one bug is counted once, not again at every later payout of the wallet.

A payout its payer cannot judge (not final within the users' bound, a payout request that failed
with its outcome unknown, a wallet that could not be read, a run that stopped the payer or the
resolver mid-payout) is never left to the wallet's own reconciliation: it becomes an audit entry
(checker.audit_entry: the exact balance expected before it, the payout, the invoice) and the
payer takes a fresh wallet; the master audits every entry at the end from the node's truth.

The open model (--arrival-rate, locustfiles/arrival.py): the payers have no think time; each
takes its next payout from the process's arrival scheduler (waiting at most a second, so a stop
is never held up) and its phase is the one the arrival was scheduled in.

With the crash fault on (--crash-every, locustfiles/crash.py), a payout request that got no
answer (the target was killed) has an unknown outcome: the payer sends it again with the same
Idempotency-Key until the restarted target answers (bounded: AFTER_CRASH_MAX_S; "request in
progress" is asked again too), and judges that answer as the first one (the payout counts as
retried, so a second charge is a double charge). Still no answer: the final audit's.

`--resolve-timeout-s` (hidden, default RESOLVE_TIMEOUT_S): the users' bound for a timed-out
payout to become final. Tests set it tiny to force every timed-out payout into the final audit.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any

import gevent
from configargparse import SUPPRESS
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

from locustfiles import (
    arrival,
    checker,
    crash,
    edge_workload,
    payout_check,
    recording,
    resolver,
    word_check,
)
from locustfiles.payout_check import RESOLVE_MAX_POLLS as RESOLVE_MAX_POLLS  # traffic.py's
from locustfiles.payout_check import RESOLVE_POLL_INTERVAL_S as RESOLVE_POLL_INTERVAL_S
from locustfiles.payout_check import SentPayout
from locustfiles.telemetry import LOCAL
from locustfiles.wallet_client import Invoice, PayoutResult, Wallet, WalletClient
from locustfiles.wallets import amount_max_msat, wallet_api_for

log = logging.getLogger(__name__)

FUNDING_MSAT = 1_000_000_000  # 1M sat: about a thousand payouts before a new wallet
AMOUNT_MSAT_MIN = 10_000
AMOUNT_MSAT_MAX = 2_000_000
# Room for the wallet's fee reserve (2000 msat + 1 %) with a margin, so a payout is never
# refused for funds the payer thought it had.
RESERVE_MARGIN_PPM = 50_000
RESERVE_MARGIN_MSAT = 10_000
# Resolving a timed-out payout: the node holds it in flight for inflight_hold_ms (1.5 s by
# default) before its late outcome; bounded in time and in polls.
RESOLVE_TIMEOUT_S = 8.0
RESOLVE_MARGIN_S = 4.0  # past the longest hold: the wallet's resolver, the polls, a busy machine
RESOLVE_TIMEOUT_S_MAX = 600.0
# A payout that got no answer under the crash fault: asked again until the target is back.
AFTER_CRASH_MAX_S = 60.0
AFTER_CRASH_POLL_S = 0.25
AFTER_CRASH_MAX_POLLS = 400


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    # hidden: for tests that must force timed-out payouts into the final audit
    parser.add_argument(
        "--resolve-timeout-s",
        type=float,
        default=None,  # RESOLVE_TIMEOUT_S, or longer to cover the edge workload's long holds
        include_in_web_ui=False,
        help=SUPPRESS,
    )


_user_numbers = itertools.count()


def _no_wait() -> float:
    return 0.0


class PayerUser(FastHttpUser):
    wait_time = between(0.01, 0.1)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        seed = int(getattr(options, "seed", 1) or 1)
        self.retry_share = float(getattr(options, "retry_share", 0.1) or 0.0)
        self.checks_on = str(getattr(options, "checks", "on") or "on") != "off"
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        # every payer has its own stream, reproducible from --seed
        self.rng = random.Random(f"{seed}/{worker_index}/{next(_user_numbers)}")
        # the wallet adapter of --wallet-api (locustfiles/wallets/): lnchaos or lnbits
        self.wallets = wallet_api_for(self)
        self.wallets.chaos_connection_errors = crash.crash_every_s(options) > 0
        self.wallet: Wallet | None = None
        self.expected_msat = 0
        # the edge workload (edge_workload.py): amounts, and the funding they need
        self.edge = edge_workload.within(
            edge_workload.settings_from(options), amount_max_msat(options)
        )
        self.funding_msat = edge_workload.funding_msat(self.edge, FUNDING_MSAT)
        self.resolve_timeout_s = resolve_bound_s(options)
        # the payout in progress until a check judged it: what the final audit needs of it
        self.unjudged: dict[str, Any] | None = None
        # the wallet's balance is known from payout answers' claims since its last read of its
        # own: the last such payout's audit entry, for the read at the end of the wallet's use
        self.claimed_entry: dict[str, Any] | None = None
        # the open model: arrivals from this process's scheduler, no think time
        self.arrivals = arrival.scheduler()
        if self.arrivals is not None:
            self.wait_time = _no_wait  # type: ignore[method-assign]

    def on_stop(self) -> None:
        if self.arrivals is not None:
            self.arrivals.leave(self)
        # the run stopped this payer mid-payout: the payout is the final audit's to judge (its
        # audit reads the wallet: the read at the end of the wallet's use)
        if self.unjudged is not None:
            self._abandon(checker.ABANDONED_STOPPED)
        elif self.claimed_entry is not None:
            # no request here (the user is being stopped): the background resolver reads the
            # wallet while the run goes on (the end of a spike stops most payers at once); once
            # the run stops, the final audit does, after the final wait, judging its last
            # payout again from the node's truth
            entry, self.claimed_entry = self.claimed_entry, None
            # the background resolver speaks lnchaos's wallet API; another adapter's: the audit
            own_api = isinstance(self.wallets, WalletClient)
            handed = (
                own_api
                and self.wallet is not None
                and resolver.RESOLVER.submit_end_of_use(
                    self.environment, self.wallet, self.expected_msat, entry
                )
            )
            if not handed:
                payout_check.abandon(entry, payout_check.END_OF_USE)

    @task
    def pay_one_invoice(self) -> None:
        if self.unjudged is not None:
            # the last task ended in an exception before judging its payout
            self._abandon(checker.ABANDONED_ERROR)
        arrival_now = self._next_arrival()
        if arrival_now is None:
            return
        phase, scheduled = arrival_now
        drawn = self._draw_payout()
        if drawn is None:
            return
        invoice, retried, key = drawn
        self._open_audit_entry(invoice, phase)
        started = time.perf_counter()
        first, after_crash = self._send_first(invoice, key, phase, scheduled)
        if first.kind == "error":
            # outcome unknown: the final audit judges it; continue with a fresh wallet
            self._abandon(checker.ABANDONED_ERROR)
            return
        # the edge workload: a payout still in flight (answered pending or timed out) is retried
        # more often, so the retry of an in-flight payout is met in every run
        # (--retry-share 0: no retry at all, none of these either)
        in_flight = edge_workload.retries_in_flight(self.rng, self.edge, first.kind)
        retried = retried or (self.retry_share > 0 and in_flight)
        retry, retry_ms = self._send_retry(invoice, key, phase) if retried else (None, None)
        if not self.checks_on:
            self._take_on_trust(invoice, first)
            return
        assert self.wallet is not None
        sent = SentPayout(
            wallet=self.wallet,
            expected_msat=self.expected_msat,
            invoice=invoice,
            first=first,
            retry=retry,
            phase=phase,
            started=started,
            entry=self.unjudged,
            idempotent=self.wallets.idempotent,
            retry_ms=retry_ms,
            after_crash=after_crash,
            fee_reserve_msat=word_check.fee_reserve_of(self.wallets, invoice.amount_msat),
        )
        self._verify(sent)

    def _next_arrival(self) -> tuple[str, float | None] | None:
        """The next payout's phase and, in the open model, when it was scheduled (None: no
        payout this time: no arrival taken, or no wallet funded for one)."""
        if self.arrivals is None:
            return LOCAL.phase, None
        # funded before taking an arrival: a new wallet is not part of a payout's latency
        if not self._ensure_funds(AMOUNT_MSAT_MAX):
            return None
        self.arrivals.join(self)
        arrival_now = self.arrivals.take()
        if arrival_now is None:
            return None
        return arrival_now.phase, arrival_now.scheduled

    def _draw_payout(self) -> tuple[Invoice, bool, str] | None:
        """The payout's invoice (from a wallet funded for it), whether it is retried, and its
        Idempotency-Key; None: no wallet or no invoice to be had."""
        amount_msat = edge_workload.draw_amount_msat(self.rng, self.edge)
        near_balance = edge_workload.wants_near_balance(self.rng, self.edge)
        # a client's retry is traffic, sent with the checks on or off (the bench compares the
        # same traffic, checked and unchecked); only its verification is a check
        retried = self.rng.random() < self.retry_share
        key = f"{LOCAL.run_id}-{self.rng.getrandbits(96):024x}"
        if not self._ensure_funds(amount_msat):
            return None
        if near_balance:
            # sized from the balance the payer knows: what the hold leaves is under a reserve
            amount_msat = edge_workload.near_balance_amount_msat(self.expected_msat) or amount_msat
        invoice = self.wallets.create_invoice(amount_msat)
        if invoice is None:
            return None
        return invoice, retried, key

    def _open_audit_entry(self, invoice: Invoice, phase: str) -> None:
        """With the checks on, the payout is the final audit's until its payer judges it."""
        assert self.wallet is not None
        if self.checks_on:
            self.unjudged = checker.audit_entry(
                wallet_id=self.wallet.wallet_id,
                api_key=self.wallet.api_key,
                expected_msat=self.expected_msat,
                payment_hash=invoice.payment_hash,
                amount_msat=invoice.amount_msat,
                phase=phase,
            )

    def _send_first(
        self, invoice: Invoice, key: str, phase: str, scheduled: float | None
    ) -> tuple[PayoutResult, bool]:
        """The payout's first request, sent again after a crash until answered; recorded, and
        its answer noted in the audit entry. Also whether it crossed a crash."""
        assert self.wallet is not None
        first = self.wallets.pay(self.wallet, invoice, key, phase)
        after_crash = first.http_status == 0 and self.wallets.chaos_connection_errors
        if after_crash:
            if self.unjudged is not None:
                self.unjudged["after_crash"] = True  # the final audit's coverage
            first = self._answer_after_crash(invoice, key, phase, first)
        recording.payout(phase, first.outcome, first.latency_ms, payer=True)
        if scheduled is not None:
            LOCAL.arrivals.answered(time.monotonic() - scheduled)
        if self.unjudged is not None:
            # answered_ms: how long the first answer took (the suite's clock), so the audit can
            # tell a payout answered while the node held its payment (rules.answered_in_flight)
            self.unjudged.update(
                payout_id=first.payout_id,
                outcome=first.outcome,
                answered_ms=round(first.latency_ms, 1),
            )
        return first, after_crash

    def _send_retry(
        self, invoice: Invoice, key: str, phase: str
    ) -> tuple[PayoutResult | None, int]:
        """The same payout again with the same Idempotency-Key, and when it was sent (unix ms).
        The answer is None when a crash left it unanswered (then it is not judged)."""
        assert self.wallet is not None
        recording.retry()
        retry_ms = int(time.time() * 1000)  # coverage: was the node still paying it?
        if self.unjudged is not None:
            # the final audit's coverage too (a payout its payer leaves to the audit)
            self.unjudged.update(retried=True, retry_ms=retry_ms)
        retry: PayoutResult | None = self.wallets.pay(self.wallet, invoice, key, phase, retry=True)
        if retry.http_status == 0 and self.wallets.chaos_connection_errors:
            retry = self._answer_after_crash(invoice, key, phase, retry)
            retry = retry if retry.http_status != 0 else None  # never answered: unjudged
        return retry, retry_ms

    def _take_on_trust(self, invoice: Invoice, first: PayoutResult) -> None:
        """Load only (--checks off): what the payout cost is taken on trust (no balance read, no
        polls), the retry's answer too."""
        paid_msat = invoice.amount_msat + first.fee_msat if first.kind == "ok" else 0
        self.expected_msat -= (
            paid_msat if first.kind in ("ok", "fail") else needed_msat(invoice.amount_msat)
        )

    def _answer_after_crash(
        self, invoice: Invoice, key: str, phase: str, first: PayoutResult
    ) -> PayoutResult:
        """No answer (the target was killed): the same request, same key, until it answers."""
        assert self.wallet is not None
        if self.unjudged is not None:
            self.unjudged["retried"] = True  # sent again: a second charge is a double charge
        deadline = time.monotonic() + AFTER_CRASH_MAX_S
        answer = first
        for _ in range(AFTER_CRASH_MAX_POLLS):
            if time.monotonic() >= deadline:
                break
            gevent.sleep(AFTER_CRASH_POLL_S)
            answer = self.wallets.pay(
                self.wallet, invoice, key, phase, retry=True, refusals=("request_in_progress",)
            )
            if answer.http_status != 0 and answer.kind != "refused":
                return answer
        return answer if answer.kind != "refused" else first

    def _ensure_funds(self, amount_msat: int) -> bool:
        if self.wallet is not None and self.expected_msat >= needed_msat(amount_msat):
            return True
        self._leave_wallet()
        self.wallet = self.wallets.create_wallet(self.funding_msat)
        if self.wallet is None:
            return False
        self.expected_msat = self.wallet.balance_msat
        return True

    def _leave_wallet(self) -> None:
        """The wallet's balance read on its own at the end of its use, when payout answers'
        claims are all that was seen of it since its last read."""
        wallet, entry = self.wallet, self.claimed_entry
        self.wallet, self.claimed_entry = None, None
        if wallet is None or entry is None or not self.checks_on:
            return
        started = time.perf_counter()
        view = self.wallets.get_wallet(wallet)
        if view is None:
            payout_check.abandon(entry, checker.ABANDONED_NO_WALLET_VIEW)
            return
        payout_check.check_wallet_at_end(
            self.environment.events.request, wallet, self.expected_msat, view, started
        )

    def _verify(self, sent: SentPayout) -> None:
        """Every outcome, the wallet's "failed" too, is judged by the node's truth of the
        invoice's payment hash, never by the wallet's answer. A payout answered final gets one
        look at the node here; one not final (timed out, or failed at the wallet while the node
        still has it in flight) goes to the background resolver with its wallet."""
        if sent.first.kind == "info":
            self._hand_over(sent)
            return
        # one look, shared: the process's payers ask the node for their hashes in batches
        resolved = payout_check.resolve(self.wallets, sent, 0.0, batched=True)
        if resolved is None:
            self._hand_over(sent)
            return
        claimed = payout_check.balance_claim(sent)
        if claimed is not None:
            # the wallet's claim right after the payout's transaction (a retried one: right
            # after the retry); its own read comes at the end of the wallet's use
            # (_leave_wallet, or the final audit)
            actual_msat, reserved_msat = claimed, None
        else:
            # no claim in the answers: a read of its own
            view = self.wallets.get_wallet(sent.wallet)
            if view is None:
                # cannot check: the final audit judges it; start again with a fresh wallet
                self._abandon(checker.ABANDONED_NO_WALLET_VIEW)
                return
            actual_msat, reserved_msat = int(view["balance_msat"]), view.get("reserved_msat")
        # resynchronise now, before anything below may raise: one bug is counted once, not at
        # every later payout of this wallet, and the next payout's audit entry starts exact
        self.expected_msat = actual_msat
        self.unjudged = None  # judged here, from now on
        payout_status, node = resolved
        kind = payout_check.judge(
            self.environment.events.request, sent, payout_status, node, actual_msat, reserved_msat
        )
        if claimed is None:
            self.claimed_entry = None  # just read on its own
        elif kind is None and sent.entry is not None:
            self.claimed_entry = sent.entry
        else:
            # its claim was wrong: found already; its view is read when the payer leaves it
            self.claimed_entry = None

    def _hand_over(self, sent: SentPayout) -> None:
        """A payout not final yet: to the background resolver, with its wallet; the payer goes
        on with a fresh wallet. The resolver full: resolved here (back-pressure)."""
        # the background resolver speaks lnchaos's wallet API; another adapter resolves here
        own_api = isinstance(self.wallets, WalletClient)
        if own_api and resolver.RESOLVER.submit(self.environment, sent, self.resolve_timeout_s):
            self.unjudged = None  # the resolver owns its audit entry now
            self.wallet, self.claimed_entry = None, None
            return
        remaining_s = max(0.0, self.resolve_timeout_s - (time.perf_counter() - sent.started))
        resolved = payout_check.resolve(self.wallets, sent, remaining_s)
        if resolved is None:
            self.unjudged = None
            payout_check.record_unresolved(
                self.environment.events.request, sent, self.resolve_timeout_s
            )
            self.wallet, self.claimed_entry = None, None
            return
        view = self.wallets.get_wallet(sent.wallet)
        if view is None:
            self._abandon(checker.ABANDONED_NO_WALLET_VIEW)
            return
        actual_msat = int(view["balance_msat"])
        self.expected_msat = actual_msat
        self.unjudged = None
        self.claimed_entry = None
        payout_status, node = resolved
        payout_check.judge(
            self.environment.events.request,
            sent,
            payout_status,
            node,
            actual_msat,
            view.get("reserved_msat"),
        )

    def _abandon(self, why: str) -> None:
        """Leave the wallet; its unjudged payout (if any) goes to the final audit. The wallet
        sees no other payout after it, so the balance expected before it stays exact."""
        payout_check.abandon(self.unjudged, why)
        self.unjudged = None
        self.wallet, self.claimed_entry = None, None


def resolve_bound_s(options: Any) -> float:
    """The users' bound for a payout to become final: --resolve-timeout-s, else
    RESOLVE_TIMEOUT_S or, past the edge workload's long hold, long enough that a long hold is
    still judged by a check (the payers' and the traffic classes' alike)."""
    bound_s = getattr(options, "resolve_timeout_s", None)
    if bound_s is None:
        edge = edge_workload.settings_from(options)
        hold_s = edge_workload.longest_hold_s(edge, 0.0) + RESOLVE_MARGIN_S
        bound_s = max(RESOLVE_TIMEOUT_S, hold_s)
    return min(max(float(bound_s), 0.0), RESOLVE_TIMEOUT_S_MAX)


def needed_msat(amount_msat: int) -> int:
    """What a payout of `amount_msat` may hold at most: amount + fee reserve, with a margin."""
    return amount_msat + amount_msat * RESERVE_MARGIN_PPM // 1_000_000 + RESERVE_MARGIN_MSAT
