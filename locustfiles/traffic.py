"""Traffic classes beside the ordinary payers (issue 10): rough traffic, each with its own check.

Jepsen's split: these users make the rough traffic and judge it by the node's truth; the kinds
and the tally are checker.py's. Chosen with `--traffic-mix` (options.py; `apply_mix` sets the
weights at init, before any user starts):

- `SharedInvoiceUser` (`shared`): one invoice of the node, two fresh wallets; both pay it at
  once (two greenlets), then one pays it again after both answered. The target may answer a
  refusal (409 payment_in_progress / invoice_already_paid), a failure or a success, but once
  every payout is final the node paid the hash at most once and the wallets were charged for it,
  together, exactly what the node paid (amount + its fee, or nothing), each wallet either
  untouched or charged once (check `shared_invoice`).
- `DrainUser` (`drain`): one fresh wallet, DRAIN_PARALLEL payouts at once whose sum exceeds its
  balance. The balance (read while they run and at the end) never goes below zero (`overdrawn`),
  a refusal (409 insufficient_funds) moves nothing, and the final balance is exactly funding -
  sum(amount + the node's fee) over the hashes the node paid (check `drain`).
- `RetryUser` (`retry`): one fresh wallet and invoice a round. Key K twice at once (2 ms apart):
  an "in progress" answer (409 request_in_progress) is asked again until it is an answer, and
  both end with the same answer (status, payout); K with another invoice: a clear 4xx (422
  idempotency_key_reused), and that invoice never reaches the node; once the first is final, the
  invoice with a new key: refused (409 invoice_already_paid) after a success, a new attempt
  after a failure (half the rounds pay a payee nobody routes to: a failure at the node). The
  wallet ends charged amount + the node's fee if the node paid, else nothing (check `retry`;
  an answer against these rules is `idempotency_mismatch`, a second charge `double_charge`).
- `EdgeUser` (`edge`): one fresh wallet a round and a few EDGE_CASES (amounts at the limits,
  expired, foreign-network and amountless invoices), each due a clear 4xx with its error code;
  after them the wallet holds exactly its funding with nothing reserved, and the node never saw
  any of their hashes (check `edge`; a wrong answer or money moved is `accepted_bad_input`, or
  the balance's own kind when only money moved).

`--traffic-mix` also takes `payers=N` (the payers' weight, 0: the classes alone). `allocation`
replays Locust's dispatch to say which classes get no user at a small -u (a warning at start);
`report_section` is consistency.json's `traffic`. Under the crash fault (crash.py) a payout that
got no answer is sent again with the same key once the target is back, as the payers do.

All judge money only by the node's truth (GET /node/payments/{hash}), after every payout is
final (bounded polling, as users.py). The rules are the judge's (lnchaos/checker/rounds.py): a
class gathers a round's facts (amounts, the node's final truth of each invoice, the balances
read, the answers' HTTP status, status and error code) and `judged` records them with the kind
the rule gives, so `lnchaos check` judges the same facts again with the same rule.

A round whose payouts are not final within the bound, that got no answer or an answer it cannot
interpret (a 5xx, a reset, an unreadable body: its outcome unknown), or whose wallet could not
be read, is not guessed: it fires a failed
`resolved_within_bound` (not an inconsistency) and its fresh wallets go to the final audit
(issue 25, rule 4; docs/strict-reading.md), judged from the node's truth of every invoice the
round sent: a drain's or a retry's wallet as one payer's (`leave_to_audit`, the round's other
invoices in `also`), a shared invoice's two wallets together (`pair_to_audit`: which one paid is
not known), an edge round's wallet as one that must have moved nothing (`edge_to_audit`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bolt11
import gevent
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

from lnchaos.checker import answers as reading
from lnchaos.checker import rounds, rules
from locustfiles import checker, counters, crash, payout_check, recording, word_check
from locustfiles.checker import CheckFailed
from locustfiles.options import PAYER_WEIGHT, PAYERS
from locustfiles.telemetry import LOCAL
from locustfiles.users import (
    AFTER_CRASH_MAX_POLLS,
    AFTER_CRASH_MAX_S,
    AFTER_CRASH_POLL_S,
    RESOLVE_MAX_POLLS,
    RESOLVE_POLL_INTERVAL_S,
    resolve_bound_s,
)
from locustfiles.wallet_client import (
    FINAL_NODE_STATUSES,
    FINAL_PAYOUT_STATUSES,
    Invoice,
    PayoutResult,
    Wallet,
    WalletClient,
)
from locustfiles.wallets.lnchaos import LnchaosWalletApi
from target.common.limits import MAX_AMOUNT_MSAT  # the contract's limit (docs/target-api.md)

SHARED_FUNDING_MSAT = 10_000_000
SHARED_AMOUNT_MSAT_MIN = 10_000
SHARED_AMOUNT_MSAT_MAX = 2_000_000
DRAIN_PARALLEL = 6
DRAIN_FUNDING_MSAT_MIN = 3_000_000
DRAIN_FUNDING_MSAT_MAX = 6_000_000
# each payout between a fifth and a third of the funding: 6 of them ask for more than it holds
# (at least 1.2 x), while the first two or three always fit
DRAIN_SHARE_MIN = (1, 5)
DRAIN_SHARE_MAX = (1, 3)
# the greenlets of one round answer within the client's own network timeout; this bounds a join
ROUND_JOIN_TIMEOUT_S = 30.0
# Each payout request's own id, echoed by the target on its answer (target/common/errors.py)
REQUEST_ID = "X-Request-Id"
REQUEST_IDS = itertools.count(1)
# the answers a round expects besides success, failure and timeout: refusals that move nothing
REFUSALS = rounds.REFUSALS

# the retry class: one round's in-progress answers re-asked (bounded), and its check's name
RETRY = checker.RETRY_ROUND
IN_PROGRESS_POLLS_MAX = 40
IN_PROGRESS_POLL_S = 0.1
RETRY_FUNDING_MSAT = 10_000_000
# the edge class: bad requests that must get a clear 4xx and move nothing (check `edge`)
EDGE = checker.EDGE_ROUND
EDGE_FUNDING_MSAT = 5_000_000
EDGE_CASES_PER_ROUND = 3
USERS_SIMULATED_MAX = 100_000
# payout ids a user remembers so a replay is not counted twice: a round's replays come within the
# round (a fresh wallet each), whose payouts are a handful; 10 000 per user made a long run's
# Locust process grow by tens of MB at the spike's users
COUNTED_MAX = 256
IN_PROGRESS = rounds.IN_PROGRESS

_user_numbers = itertools.count()
log = logging.getLogger(__name__)


def apply_mix(environment: Any, mix: dict[str, int], checks_on: bool = True) -> None:
    """Weights and the user classes of the run from --traffic-mix (at init, master or local:
    workers spawn what the master tells them). Off with --checks off: the bench measures the
    payers alone."""
    from locustfiles.users import PayerUser

    classes = traffic_classes()
    on = {name: weight for name, weight in mix.items() if weight > 0 and name in classes}
    on = on if checks_on else {}
    # `payers=0` runs the classes alone (a class's own check against a mutant); never no user
    payers = int(mix.get(PAYERS, PAYER_WEIGHT)) if on else PAYER_WEIGHT
    PayerUser.weight = payers
    for name, cls in classes.items():
        cls.weight = on.get(name, 0)
    kept = [
        cls
        for cls in environment.user_classes
        if cls not in classes.values() and (cls is not PayerUser or payers > 0)
    ]
    kept += [classes[name] for name in sorted(on)]
    environment.user_classes[:] = kept  # in place: the runner reads this very list


def traffic_classes() -> dict[str, type[TrafficUser]]:
    return {
        "shared": SharedInvoiceUser,
        "drain": DrainUser,
        "retry": RetryUser,
        "edge": EdgeUser,
    }


def allocation(mix: dict[str, int], users: int) -> dict[str, int]:
    """How many users each class gets at `users` users: Locust's own dispatch (its weighted
    KL generator, locust/dispatch.py) replayed, so a class that gets none at a small -u is
    named before the run (and in consistency.json), never silently missing."""
    from locust.dispatch import _kl_generator

    weights = {PAYERS: int(mix.get(PAYERS, PAYER_WEIGHT))}
    weights.update({name: w for name, w in mix.items() if name != PAYERS and w > 0})
    order = sorted(weights.items(), key=lambda item: class_name(item[0]))
    counts = dict.fromkeys(weights, 0)
    picks = _kl_generator(order)
    for _ in range(max(0, min(int(users), USERS_SIMULATED_MAX))):
        name = next(picks)
        if name is None:
            break
        counts[name] += 1
    return counts


def warn_unallocated(mix: dict[str, int], users: int) -> list[str]:
    """The classes of the mix that get no user at `users` (-u) users, logged in one line."""
    counts = allocation(mix, users)
    missing = sorted(name for name, n in counts.items() if n == 0)
    if missing:
        log.warning(
            "--traffic-mix at -u %d: %s get no user (allocation %s); raise -u or their weights",
            users,
            ", ".join(missing),
            counts,
        )
    return missing


class PeakUsers:
    """The most users of each class seen running at once (after each spawn), for the report."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}

    def on_spawning_complete(self, environment: Any) -> None:
        counts = getattr(environment.runner, "user_classes_count", None) or {}
        for cls_name, n in counts.items():
            self.peak[cls_name] = max(self.peak.get(cls_name, 0), int(n))


PEAK_USERS = PeakUsers()
CLASS_CHECKS = {
    "shared": checker.SHARED_INVOICE,
    "drain": checker.DRAIN,
    "retry": RETRY,
    "edge": EDGE,
}


def report_section(mix: dict[str, int], users: int, checks: dict[str, Any]) -> dict[str, Any]:
    """consistency.json's `traffic`: the mix, each class's users (planned at -u and the peak
    seen) and rounds judged (its check's passed + failed), and the classes that got no user."""
    planned = allocation(mix, users)
    by_name = checks.get("by_name", {})
    classes: dict[str, Any] = {}
    for name in planned:
        check = CLASS_CHECKS.get(name)
        counts = by_name.get(check, {}) if check else {}
        classes[name] = {
            "weight": int(mix.get(name, PAYER_WEIGHT if name == PAYERS else 0)),
            "users_planned": planned[name],
            "users_peak": PEAK_USERS.peak.get(class_name(name), 0),
            "rounds_passed": counts.get("passed", 0) if check else None,
            "rounds_failed": counts.get("failed", 0) if check else None,
        }
    return {
        "mix": dict(mix),
        "users": users,
        "classes": classes,
        "classes_without_users": sorted(
            name for name, entry in classes.items() if not entry["users_peak"]
        ),
    }


def class_name(name: str) -> str:
    """The Locust user class name of a --traffic-mix name (the dispatcher orders by it)."""
    if name == PAYERS:
        return "PayerUser"
    return traffic_classes()[name].__name__


class TrafficUser(FastHttpUser):
    abstract = True
    wait_time = between(0.05, 0.2)
    network_timeout = 10.0
    connection_timeout = 5.0
    concurrency = DRAIN_PARALLEL + 4  # the round's payouts and a balance read at once

    def on_start(self) -> None:
        options = self.environment.parsed_options
        seed = int(getattr(options, "seed", 1) or 1)
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        name = type(self).__name__
        self.rng = random.Random(f"{seed}/{worker_index}/{name}/{next(_user_numbers)}")
        self.wallets = WalletClient(self.client, self.environment.events.request)
        self.wallets.chaos_connection_errors = crash.crash_every_s(options) > 0
        self.resolve_timeout_s = resolve_bound_s(options)
        # payout ids already in the tally (a replay is not a new payout), the oldest forgotten
        self.counted: OrderedDict[str, None] = OrderedDict()

    # ---- the client: payouts whose refusals are expected answers --------------------------------

    def pay(self, wallet: Wallet, invoice: Invoice, phase: str) -> PayoutResult:
        key = f"{LOCAL.run_id}-{self.rng.getrandbits(96):024x}"
        result = self.wallets.pay(
            wallet, invoice, key, phase, label=self.traffic_name, refusals=REFUSALS
        )
        if result.http_status == 0 and self.wallets.chaos_connection_errors:
            # no answer: the crash fault's; the same request again once the target is back
            for _ in self.after_crash():
                again = self.wallets.pay(
                    wallet, invoice, key, phase, retry=True, refusals=(*REFUSALS, *IN_PROGRESS)
                )
                if again.http_status != 0 and again.body.get("error") not in IN_PROGRESS:
                    result = again
                    break
        if result.kind != "refused":
            # a refusal stores no payout: the tally's payouts stay what the target's
            # reconciliation can count (Locust's statistics still show every request)
            recording.payout(phase, result.outcome, result.latency_ms)
        return result

    def resolve(
        self, wallet_of: dict[str, Wallet], answers: list[PayoutResult], hashes: list[str]
    ) -> dict[str, dict[str, Any]] | None:
        """{hash: the node's final payment} once every payout of `answers` is final at the wallet
        and every hash at the node; None when not within the users' bound."""
        pending = {a.payout_id: a for a in answers if a.payout_id and a.kind != "refused"}
        pending = {
            pid: a for pid, a in pending.items() if a.payout_status not in FINAL_PAYOUT_STATUSES
        }
        nodes: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.resolve_timeout_s
        for _ in range(RESOLVE_MAX_POLLS):
            for payout_id in list(pending):
                payout = self.wallets.get_payout(wallet_of[payout_id], payout_id)
                if str((payout or {}).get("status")) in FINAL_PAYOUT_STATUSES:
                    del pending[payout_id]
            for payment_hash in hashes:
                if nodes.get(payment_hash, {}).get("status") not in FINAL_NODE_STATUSES:
                    node = self.wallets.get_node_payment(payment_hash)
                    nodes[payment_hash] = node or nodes.get(payment_hash, {})
            final = all(n.get("status") in FINAL_NODE_STATUSES for n in nodes.values())
            if not pending and final:
                return nodes
            if time.monotonic() >= deadline:
                break
            gevent.sleep(RESOLVE_POLL_INTERVAL_S)
        return None

    def after_crash(self) -> Iterator[int]:
        """The bounded re-asks of a request that got no answer under the crash fault (as the
        payers do, users.py): one every AFTER_CRASH_POLL_S until AFTER_CRASH_MAX_S."""
        deadline = time.monotonic() + AFTER_CRASH_MAX_S
        for attempt in range(AFTER_CRASH_MAX_POLLS):
            if time.monotonic() >= deadline:
                return
            gevent.sleep(AFTER_CRASH_POLL_S)
            yield attempt

    def new_key(self) -> str:
        return f"{LOCAL.run_id}-{self.rng.getrandbits(96):024x}"

    def raw_payout(
        self, wallet: Wallet, payment_request: str, key: str, phase: str, step: str = ""
    ) -> RawAnswer:
        answer = self.raw_payout_once(wallet, payment_request, key, phase, step)
        if answer.status == 0 and self.wallets.chaos_connection_errors:
            # no answer: the crash fault's; the same request again once the target is back
            for _ in self.after_crash():
                again = self.raw_payout_once(wallet, payment_request, key, phase, "after crash")
                if again.status != 0 and not is_in_progress(again):
                    return again
        return answer

    def raw_payout_once(
        self, wallet: Wallet, payment_request: str, key: str, phase: str, step: str
    ) -> RawAnswer:
        """One payout request whose every answer this class judges itself (a 4xx included): the
        request is a Locust failure only for a 5xx that is no payout's answer, or no answer at
        all outside a crash window. A new payout (an id not seen before) counts in the tally."""
        # the step in the name: Locust's statistics count each kind of request of the class
        label = f"{self.traffic_name}: {step}" if step else self.traffic_name
        name = f"POST /payouts ({label}) [{phase}]"
        fields = {"wallet": wallet.wallet_id, "phase": phase, "traffic": label, "key": key}
        recording.invoke("payout", **fields)
        request_id = f"{key}.{next(REQUEST_IDS)}"
        started = time.perf_counter()
        with self.client.post(
            f"/api/wallets/{wallet.wallet_id}/payouts",
            name=name,
            json={"payment_request": payment_request},
            headers={"X-Api-Key": wallet.api_key, "Idempotency-Key": key, REQUEST_ID: request_id},
            catch_response=True,
        ) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            status = int(response.status_code or 0)
            body = json_body(response)
            echoed = (response.headers or {}).get(REQUEST_ID) if status else None
            crossed = echoed is not None and echoed != request_id
            if crossed:
                # the answer of another request (a connection reused wrongly, under a crash): it
                # says nothing of this one, whose outcome is then unknown, never another's
                log.error("POST /payouts %s: the answer of request %s", request_id, echoed)
                status, body = 0, {"error": "crossed_answer", "answer_of": echoed}
            answer = RawAnswer(status, body, latency_ms)
            if crossed:
                response.failure(f"the answer of another request ({echoed})")
            elif status == 0 and self.wallets.crashed(response, latency_ms):
                response.success()  # the crash fault's: the outcome is unknown, not judged
            elif status == 0 or (status >= 500 and status not in (502, 504)):
                response.failure(f"HTTP {status} {body or (response.text or '')[:200]}")
            else:
                response.success()
        outcome = answer.outcome()
        recording.complete(
            "payout",
            checker.RESULT_OF_OUTCOME.get(outcome, "error"),
            http=status,
            status=body.get("status"),
            error=body.get("error"),
            payout_id=answer.payout_id,
            hash=body.get("payment_hash"),
            fee_msat=body.get("fee_msat"),
            balance_msat=body.get("balance_msat"),
            latency_ms=round(latency_ms, 1),
            **fields,
        )
        if answer.payout_id and outcome != "rejected" and answer.payout_id not in self.counted:
            self.counted[answer.payout_id] = None
            if len(self.counted) > COUNTED_MAX:
                self.counted.popitem(last=False)
            recording.payout(phase, outcome, latency_ms)
            # the fault this payout met, counted once as WalletClient.pay counts it, so the
            # FAULT rows match the tally's per-phase timeouts
            if outcome in (*checker.TIMEOUT_OUTCOMES, "failed"):
                fault = "timeout" if outcome in checker.TIMEOUT_OUTCOMES else "payment_failed"
                counters.record_fault(f"{fault} [{phase}]", latency_ms)
        return answer

    counted: OrderedDict[str, None]  # set per user in on_start

    # ---- the checks' events --------------------------------------------------------------------

    def not_judged(self, why: str, started: float) -> None:
        """Not final within the bound, or an answer of unknown outcome: the audit's (to_audit)."""
        recording.left_unresolved(traffic=self.traffic_name, why=why)
        message = f"{self.traffic_name}: {why}; left to the final audit"
        self.fire(checker.RESOLVED_WITHIN_BOUND, CheckFailed(message), started)

    def to_audit(self, entry: dict[str, Any], why: str, started: float) -> None:
        """A round of unknown outcome: its entry (rules.py's shapes) to the final audit, so money
        lost in the dark is still found; the round's own check is left unresolved."""
        payout_check.abandon(entry, checker.ABANDONED_ROUND)
        self.not_judged(why, started)

    def leave_to_audit(
        self,
        wallet: Wallet,
        funding_msat: int,
        invoices: list[Invoice],
        phase: str,
        why: str,
        started: float,
        *,
        retried: bool = False,
    ) -> None:
        """A round of unknown outcome (no answer, a 5xx, not final within the bound, no wallet
        view): its fresh wallet goes to the final audit, judged from the node's truth of every
        invoice the round sent (each paid at most once; the wallet sees nothing after them), so
        money lost in the dark is still found. The round's own check is left unresolved."""
        first, *others = invoices
        entry = checker.audit_entry(
            wallet_id=wallet.wallet_id,
            api_key=wallet.api_key,
            expected_msat=funding_msat,
            payment_hash=first.payment_hash,
            amount_msat=first.amount_msat,
            phase=phase,
            also=[(invoice.payment_hash, invoice.amount_msat) for invoice in others],
        )
        entry["retried"] = retried  # the same key sent twice: a second charge is a double one
        self.to_audit(entry, why, started)

    def judged(
        self,
        name: str,
        facts: dict[str, Any],
        started: float,
        answered: list[tuple[dict[str, Any], float]] | None = None,
        **ids: Any,
    ) -> None:
        """A round judged by its class's rule (lnchaos/checker/rounds.py) from `facts`, which
        the history records so `lnchaos check` judges them again; ids: the record's wallet,
        hash, phase and what the judge's coverage reads (a drain's `node_spans`). answered: (the
        node's final truth, the answer's latency in ms) of each payout the wallet took: one
        answered sooner than the node held its payment was answered in flight, a timeout the
        run reached whatever the wallet said (the node's word and the suite's clock,
        rules.answered_in_flight)."""
        in_flight = sum(rules.answered_in_flight(node, ms) for node, ms in answered or [])
        kind, example = recording.round_check(name, facts, in_flight, **ids)
        for _ in range(in_flight):  # counted by the fold: in the suite's own table as well
            self.fire(checker.NODE_TIMEOUT_JUDGED, None, started)
        if kind is None or example is None:
            self.fire(name, None, started)
            return
        detail = (
            f"{kind}: {name} wallet {example['wallet_id']} expected {example['expected_msat']} "
            f"msat, actual {example['actual_msat']} msat ({example.get('detail', '')})"
        )
        self.fire(name, CheckFailed(detail), started)

    def fire(self, name: str, exception: Exception | None, started: float) -> None:
        checker.fire_check(self.environment.events.request, name, exception, started)

    traffic_name = "traffic"


class SharedInvoiceUser(TrafficUser):
    """One invoice, two wallets, paid at once and again after (module docstring)."""

    traffic_name = "shared"
    weight = 1

    @task
    def shared_invoice(self) -> None:
        phase = LOCAL.phase
        amount_msat = self.rng.randrange(SHARED_AMOUNT_MSAT_MIN, SHARED_AMOUNT_MSAT_MAX)
        first = self.wallets.create_wallet(SHARED_FUNDING_MSAT)
        second = self.wallets.create_wallet(SHARED_FUNDING_MSAT)
        invoice = self.wallets.create_invoice(amount_msat)
        if first is None or second is None or invoice is None:
            return
        started = time.perf_counter()
        both = [gevent.spawn(self.pay, wallet, invoice, phase) for wallet in (first, second)]
        gevent.joinall(both, timeout=ROUND_JOIN_TIMEOUT_S)
        pair = (first, second)
        if not all(g.successful() for g in both):
            gevent.killall(both, block=False)
            why = f"a payout of invoice {invoice.payment_hash} did not answer"
            self.pair_to_audit(pair, invoice, phase, why, started)
            return
        answers = [(first, both[0].value), (second, both[1].value)]
        # again, after both answered: refused unless every payout of it failed
        answers.append((second, self.pay(second, invoice, phase)))
        if any(answer.kind == "error" for _, answer in answers):
            detail = ", ".join(answer.describe() for _, answer in answers)
            why = f"invoice {invoice.payment_hash}: outcome unknown ({detail})"
            self.pair_to_audit(pair, invoice, phase, why, started)
            return
        wallet_of = {a.payout_id: w for w, a in answers if a.payout_id}
        nodes = self.resolve(wallet_of, [a for _, a in answers], [invoice.payment_hash])
        if nodes is None:
            why = f"invoice {invoice.payment_hash}: not final within bound"
            self.pair_to_audit(pair, invoice, phase, why, started)
            return
        node = nodes[invoice.payment_hash]
        # what the wallets said of the one payment (word_check.py), beside its money below
        request_event = self.environment.events.request
        word_check.record_shared(request_event, invoice, answers, node, phase, started)
        views = [self.wallets.get_wallet(first), self.wallets.get_wallet(second)]
        if views[0] is None or views[1] is None:
            why = f"invoice {invoice.payment_hash}: a wallet could not be read"
            self.pair_to_audit(pair, invoice, phase, why, started)
            return
        # the rule (rounds.judge_shared) takes what the history records of the round
        facts = {
            "amount_msat": invoice.amount_msat,
            "node": rounds.node(node),
            "before_msat": [SHARED_FUNDING_MSAT, SHARED_FUNDING_MSAT],
            "balances_msat": [int(view["balance_msat"]) for view in views],
            "answers": [answer_facts(a) for _, a in answers],
        }
        taken_answers = [(node, a.latency_ms) for _, a in answers if a.kind != "refused"]
        self.judged(
            checker.SHARED_INVOICE, facts, started, taken_answers,
            wallet=f"{first.wallet_id}+{second.wallet_id}", hash=invoice.payment_hash, phase=phase,
        )  # fmt: skip

    def pair_to_audit(
        self, pair: tuple[Wallet, Wallet], invoice: Invoice, phase: str, why: str, started: float
    ) -> None:
        """The round's outcome is unknown: both wallets to the final audit as one group entry
        (rules.audit_group_entry), since which of them paid is not known: together charged the
        node's cost of the invoice if it paid, each 0 or that cost (rules.shared_kind)."""
        entry = checker.audit_group_entry(
            wallets=[(w.wallet_id, w.api_key, SHARED_FUNDING_MSAT) for w in pair],
            payment_hash=invoice.payment_hash,
            amount_msat=invoice.amount_msat,
            phase=phase,
        )
        self.to_audit(entry, why, started)


class DrainUser(TrafficUser):
    """Parallel payouts over one wallet's balance (module docstring)."""

    traffic_name = "drain"
    weight = 1

    @task
    def drain(self) -> None:
        phase = LOCAL.phase
        funded = self.funded_round()
        if funded is None:
            return
        wallet, funding_msat, ready = funded
        started = time.perf_counter()

        def to_audit(why: str) -> None:
            self.leave_to_audit(wallet, funding_msat, ready, phase, why, started)

        sent = self.send_all(wallet, ready, phase)
        if sent is None:
            return to_audit(f"a payout of wallet {wallet.wallet_id} did not answer")
        answers, seen_msat = sent
        if any(answer.kind == "error" for answer in answers):
            detail = ", ".join(answer.describe() for answer in answers)
            return to_audit(f"wallet {wallet.wallet_id}: outcome unknown ({detail})")
        # payouts of one wallet pending at once: what does the wallet show? (word_check.py)
        held = word_check.round_view(self.wallets, wallet, answers)
        hashes = [invoice.payment_hash for invoice in ready]
        nodes = self.resolve({a.payout_id: wallet for a in answers if a.payout_id}, answers, hashes)
        if nodes is None:
            return to_audit(f"wallet {wallet.wallet_id}: not final within bound")
        taken = [(i, a) for i, a in zip(ready, answers, strict=True) if a.kind != "refused"]
        word_check.record_round(
            self.environment.events.request, LnchaosWalletApi.fee_reserve_msat,
            wallet, funding_msat, taken, nodes, held, phase, started,
        )  # fmt: skip
        view = self.wallets.get_wallet(wallet)
        if view is None:
            return to_audit(f"wallet {wallet.wallet_id} could not be read")
        seen_msat.append(int(view["balance_msat"]))
        facts = drain_facts(funding_msat, seen_msat, view, ready, answers, nodes)
        answered = [(nodes[i.payment_hash], a.latency_ms) for i, a in taken]
        self.judged(
            checker.DRAIN, facts, started, answered,
            wallet=wallet.wallet_id, phase=phase, node_spans=node_spans(nodes, hashes),
        )  # fmt: skip

    def funded_round(self) -> tuple[Wallet, int, list[Invoice]] | None:
        """A fresh wallet and DRAIN_PARALLEL invoices that together may exceed its balance."""
        funding_msat = self.rng.randrange(DRAIN_FUNDING_MSAT_MIN, DRAIN_FUNDING_MSAT_MAX)
        low = funding_msat * DRAIN_SHARE_MIN[0] // DRAIN_SHARE_MIN[1]
        high = funding_msat * DRAIN_SHARE_MAX[0] // DRAIN_SHARE_MAX[1]
        wallet = self.wallets.create_wallet(funding_msat)
        if wallet is None:
            return None
        invoices = [
            self.wallets.create_invoice(self.rng.randrange(low, high))
            for _ in range(DRAIN_PARALLEL)
        ]
        ready = [invoice for invoice in invoices if invoice is not None]
        return (wallet, funding_msat, ready) if len(ready) == len(invoices) else None

    def send_all(
        self, wallet: Wallet, ready: list[Invoice], phase: str
    ) -> tuple[list[PayoutResult], list[int]] | None:
        """Every payout at once, and one look at the wallet while they run (a balance below
        zero is an overdraft, even if repaid later): the answers and the balance seen, or None
        when a payout did not answer within the round's bound."""
        payouts = [gevent.spawn(self.pay, wallet, invoice, phase) for invoice in ready]
        watch = gevent.spawn(self.wallets.get_wallet, wallet)
        gevent.joinall([*payouts, watch], timeout=ROUND_JOIN_TIMEOUT_S)
        if not all(g.successful() for g in payouts):
            gevent.killall([*payouts, watch], block=False)
            return None
        seen_msat = [int(watch.value["balance_msat"])] if watch.successful() and watch.value else []
        return [g.value for g in payouts], seen_msat


# ---- retry: the same Idempotency-Key at the wrong moments ---------------------------------------


@dataclass
class RetryRound:
    """One round of the retry class: its wallet, the invoice the key is for (the one that
    claimed the key first, step 1), the other invoice, the key, what it found wrong so far (for
    a round sent to the audit), and the facts its rule takes (rounds.judge_retry) as they come."""

    phase: str
    started: float
    wallet: Wallet
    invoice: Invoice
    other: Invoice
    key: str
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def found(self, problem: str | None) -> None:
        if problem is not None:
            self.problems.append(problem)


class RetryUser(TrafficUser):
    """A client that retries at the wrong moments (module docstring): one fresh wallet a round,
    one invoice, paid with key K twice at once; K again with another invoice; then the same
    invoice with a new key once the first is final."""

    traffic_name = RETRY
    weight = 1
    # the share of rounds whose key is also sent with the other invoice at the same moment
    racing_share = 0.5

    @task
    def retry(self) -> None:
        """One round: the same key twice at once (step 1), the key with another invoice (2),
        the same invoice with a new key once the first is final (3); then the money."""
        round_ = self.new_round()
        if round_ is None:
            return
        claimed = self.same_key_at_once(round_)
        if claimed is None:
            return
        first, raced, answers = claimed
        reused = self.same_key_other_invoice(round_, raced)
        again = self.new_key_once_final(round_, first)
        if again is None:
            return
        # rule 4: an answer of unknown outcome (a 5xx but the payment's own 502 and 504) may
        # hide a payout still running: the money is the final audit's, never judged mid-flight
        # (a 500 to step 3's payout, judged while its money was still held: charged_not_paid)
        unknown = [a for a in (*answers, reused, again) if a.outcome() == "error"]
        if unknown:
            detail = ", ".join(a.describe() for a in unknown)
            self.round_to_audit(
                round_, f"invoice {round_.invoice.payment_hash}: outcome unknown ({detail})"
            )
            return
        self.judge_round(round_, first, [*answers, reused, again])

    def new_round(self) -> RetryRound | None:
        """A fresh wallet, the invoice to pay (half the rounds one of a payee nobody routes to:
        it fails at the node, so "a new key after a failure" is met every few rounds, not only
        at a timeout's late fail), another invoice, a key."""
        phase, started = LOCAL.phase, time.perf_counter()
        wallet = self.wallets.create_wallet(RETRY_FUNDING_MSAT)
        amount_msat = self.rng.randrange(SHARED_AMOUNT_MSAT_MIN, SHARED_AMOUNT_MSAT_MAX)
        failing = self.rng.random() < 0.5
        invoice = (
            stranger_invoice(self.rng, amount_msat=amount_msat)
            if failing
            else self.wallets.create_invoice(amount_msat)
        )
        other = self.wallets.create_invoice(amount_msat)
        if wallet is None or invoice is None or other is None:
            return None
        return RetryRound(phase, started, wallet, invoice, other, self.new_key())

    def same_key_at_once(
        self, round_: RetryRound
    ) -> tuple[RawAnswer, RawAnswer | None, list[RawAnswer]] | None:
        """Step 1: the same key twice at once: at most one payout; the other is told "in
        progress" (or gets the first's answer); re-asked, both end with the same answer. Every
        other round the key is also reused with the other invoice at the same moment (step 2
        racing the first: a key two requests claim at once). (the key's first answer, the racing
        request's answer or None, the two answers); None: not judged."""
        wallet, invoice, key, phase = round_.wallet, round_.invoice, round_.key, round_.phase
        racing = self.rng.random() < self.racing_share
        both = [
            gevent.spawn(self.raw_payout, wallet, invoice.payment_request, key, phase, "first"),
            gevent.spawn_later(
                0.002, self.raw_payout, wallet, invoice.payment_request, key, phase, "same key"
            ),
        ]
        if racing:
            reuse = ("key reused, racing",)
            other_request = round_.other.payment_request
            both.append(
                gevent.spawn_later(
                    0.001, self.raw_payout, wallet, other_request, key, phase, *reuse
                )
            )
        gevent.joinall(both, timeout=ROUND_JOIN_TIMEOUT_S)
        if not all(g.successful() for g in both):
            gevent.killall(both, block=False)
            self.round_to_audit(
                round_, f"a payout of invoice {invoice.payment_hash} did not answer"
            )
            return None
        raced = both.pop().value if racing else None
        answers = [self.settle_in_progress(wallet, invoice, key, phase, g.value) for g in both]
        if any(is_in_progress(a) or a.status == 0 for a in answers):
            detail = ", ".join(a.describe() for a in answers)
            message = f"invoice {invoice.payment_hash}: outcome unknown ({detail})"
            self.round_to_audit(round_, message)
            return None
        round_.facts["pair"] = pair = [a.facts for a in answers]
        if not rounds.one_answer(pair):
            # the two answers named with their payouts' invoices, as the wallet reports them
            round_.facts["said"] = [self.witness(round_, a) for a in answers]
        round_.found(rounds.same_key_problem(pair, round_.facts.get("said")))
        first = answers[0]
        if raced is not None and took_key(raced) and not took_key(first):
            # Stripe's rule: the key is the request's that claimed it first. Under load the racing
            # request (sent 1 ms after the first) can reach the wallet first: then it owns the key,
            # and the invoice's two requests are the ones to be refused (issue 24: a judge that
            # kept the invoice as the key's failed fix-on runs with charged_not_paid).
            round_.invoice, round_.other = round_.other, round_.invoice
            first, raced = raced, first
        if not first.payout_id:
            message = f"invoice {round_.invoice.payment_hash}: no payout ({first.describe()})"
            self.round_to_audit(round_, message)
            return None
        round_.facts["first"] = first.facts
        return first, raced, answers

    def round_to_audit(self, round_: RetryRound, why: str) -> None:
        """The round's outcome is unknown: its wallet to the final audit (leave_to_audit), both
        invoices judged from the node's truth, the same key's second charge a double one."""
        invoices = [round_.invoice, round_.other]
        why = with_problems(why, round_.problems)
        self.leave_to_audit(
            round_.wallet, RETRY_FUNDING_MSAT, invoices, round_.phase, why, round_.started,
            retried=True,
        )  # fmt: skip

    def witness(self, round_: RetryRound, answer: RawAnswer) -> str:
        """An answer with the payout it names and that payout's invoice as the wallet reports it
        (the round's own, its other, or neither): what tells a wallet that started a payout of
        the other invoice from an answer that reached the wrong request."""
        if not answer.payout_id:
            return answer.describe()
        view = self.wallets.get_payout(round_.wallet, answer.payout_id) or {}
        payment_hash = view.get("payment_hash")
        invoice = {
            round_.invoice.payment_hash: "this invoice",
            round_.other.payment_hash: "the other",
        }
        named = invoice.get(str(payment_hash), f"hash {payment_hash}")
        return f"{answer.describe()} (payout {answer.payout_id}: {named}, {view.get('status')})"

    def same_key_other_invoice(self, round_: RetryRound, raced: RawAnswer | None) -> RawAnswer:
        """Step 2: the same key with another invoice: a clear 4xx, nothing paid (racing the
        first, "in progress" is one: the key is taken)."""
        reused = raced or self.raw_payout(
            round_.wallet, round_.other.payment_request, round_.key, round_.phase, "key reused"
        )
        round_.facts["reused"] = reused.facts
        round_.found(rounds.reused_problem(reused.facts))
        return reused

    def new_key_once_final(self, round_: RetryRound, first: RawAnswer) -> RawAnswer | None:
        """Step 3: once the first is final, the same invoice with a new key: refused after a
        success, a payout after a failure. Its answer; None: not judged."""
        invoice = round_.invoice
        assert first.payout_id is not None
        wallets = {first.payout_id: round_.wallet}
        nodes = self.resolve(wallets, [first.as_result()], [invoice.payment_hash])
        if nodes is None:
            self.round_to_audit(round_, f"invoice {invoice.payment_hash}: not final within bound")
            return None
        paid_first = nodes[invoice.payment_hash].get("status") == "succeeded"
        step = "new key after success" if paid_first else "new key after failure"
        again = self.raw_payout(
            round_.wallet, invoice.payment_request, self.new_key(), round_.phase, step
        )
        if again.status == 0:
            self.round_to_audit(round_, f"invoice {invoice.payment_hash}: new key unanswered")
            return None
        round_.facts.update(paid_first=paid_first, again=again.facts)
        round_.found(rounds.again_problem(paid_first, again.facts))
        return again

    def judge_round(self, round_: RetryRound, first: RawAnswer, answers: list[RawAnswer]) -> None:
        """The money, once every payout the round started is final: the round's facts completed
        with the node's truth of both invoices and the wallet's balance, judged by
        rounds.judge_retry (a key that started a second payment is idempotency_mismatch when the
        wallet charged what the node paid, a money kind when it did not). answers: the round's,
        the key's reuse and the new key's last."""
        wallet, invoice, other = round_.wallet, round_.invoice, round_.other
        reused, again = answers[-2], answers[-1]
        payout_ids = rounds.started_payouts(first.facts, reused.facts, again.facts)
        hashes = [invoice.payment_hash, other.payment_hash]
        nodes = self.resolve(
            dict.fromkeys(payout_ids, wallet), [reused.as_result(), again.as_result()], hashes
        )
        if nodes is None:
            self.round_to_audit(round_, f"invoice {invoice.payment_hash}: not final within bound")
            return
        view = self.wallets.get_wallet(wallet)
        if view is None:
            self.round_to_audit(round_, f"wallet {wallet.wallet_id} could not be read")
            return
        node = nodes[invoice.payment_hash]
        facts = {
            "funding_msat": RETRY_FUNDING_MSAT,
            "balance_msat": int(view["balance_msat"]),
            "reserved_msat": view.get("reserved_msat"),
            "amount_msat": invoice.amount_msat,
            "node": rounds.node(node),
            "other_amount_msat": other.amount_msat,
            "other_node": rounds.node(nodes[other.payment_hash]),
            **round_.facts,
        }
        self.judged(
            RETRY, facts, round_.started, [(node, first.latency_ms)],
            wallet=wallet.wallet_id, hash=invoice.payment_hash, phase=round_.phase,
        )  # fmt: skip

    def settle_in_progress(
        self, wallet: Wallet, invoice: Invoice, key: str, phase: str, answer: RawAnswer
    ) -> RawAnswer:
        """Re-ask with the same key while the answer is "in progress" (bounded): a real client's
        way to the first request's own answer."""
        for _ in range(IN_PROGRESS_POLLS_MAX):
            if not is_in_progress(answer):
                return answer
            gevent.sleep(IN_PROGRESS_POLL_S)
            answer = self.raw_payout(wallet, invoice.payment_request, key, phase, "in progress")
        return answer


# ---- edge: requests the wallet must refuse, under load -------------------------------------------


class EdgeUser(TrafficUser):
    """Bad payouts beside the load (module docstring): each round a fresh wallet and a few of
    EDGE_CASES, each answered with a clear 4xx (the code it names); after them the wallet holds
    exactly its funding with nothing reserved, and the node never saw any of their hashes."""

    traffic_name = EDGE
    weight = 1

    @task
    def edge(self) -> None:
        phase = LOCAL.phase
        started = time.perf_counter()
        wallet = self.wallets.create_wallet(EDGE_FUNDING_MSAT)
        if wallet is None:
            return
        cases = self.rng.sample(sorted(EDGE_CASES), EDGE_CASES_PER_ROUND)
        problems: list[str] = []  # the wrong answers so far, named if the round goes to audit
        sent: list[Invoice] = []
        said: list[dict[str, Any]] = []  # each case sent with its answer (the rule's facts)
        for case in cases:
            invoice = self.make_case(case)
            if invoice is None:
                break  # the node gave no invoice: the round is judged on the cases sent before
            sent.append(invoice)
            answer = self.raw_payout(wallet, invoice.payment_request, self.new_key(), phase, case)
            if answer.status == 0:
                why = with_problems(f"edge {case}: no answer", problems)
                self.edge_to_audit(wallet, sent, phase, why, started)
                return
            answer_said = rounds.answer(answer.status, answer.body, message=True)
            said.append({"case": case, "answer": answer_said})
            problem = rounds.edge_problem(case, answer_said)
            if problem is not None:
                problems.append(problem)
        if not sent:
            return  # nothing was sent: nothing to judge
        hashes = [invoice.payment_hash for invoice in sent]
        nodes = self.resolve({}, [], hashes)
        view = self.wallets.get_wallet(wallet)
        if nodes is None or view is None:
            why = with_problems(f"wallet {wallet.wallet_id}: not readable or not final", problems)
            self.edge_to_audit(wallet, sent, phase, why, started)
            return
        # the rule (rounds.judge_edge, the audit's rules.bad_input_kind) takes these facts; a
        # missing or malformed reserve is recorded as malformed_answer by get_wallet's strict
        # reading, and counts as none in the round's own judgement
        facts = {
            "funding_msat": EDGE_FUNDING_MSAT,
            "balance_msat": int(view["balance_msat"]),
            "reserved_msat": reading.msat_or_none(view, "reserved_msat"),
            "cases": [
                {**case, "node_status": nodes[h].get("status")}
                for case, h in zip(said, hashes, strict=True)
            ],
        }
        self.judged(EDGE, facts, started, wallet=wallet.wallet_id, phase=phase)

    def edge_to_audit(
        self, wallet: Wallet, sent: list[Invoice], phase: str, why: str, started: float
    ) -> None:
        """The round's outcome is unknown: its wallet to the final audit as a bad-input entry
        (rules.audit_bad_input_entry): every invoice it sent was due a refusal, so the node
        never saw one and the wallet holds its funding, nothing reserved."""
        entry = checker.audit_bad_input_entry(
            wallet_id=wallet.wallet_id,
            api_key=wallet.api_key,
            expected_msat=EDGE_FUNDING_MSAT,
            invoices=[(invoice.payment_hash, invoice.amount_msat) for invoice in sent],
            phase=phase,
        )
        self.to_audit(entry, why, started)

    def make_case(self, case: str) -> Invoice | None:
        """The invoice of one edge case (None: the node gave none)."""
        if case in ("over_balance", "max_amount"):
            amount_msat = EDGE_FUNDING_MSAT if case == "over_balance" else MAX_AMOUNT_MSAT
            return self.wallets.create_invoice(amount_msat)
        made = {
            "expired": lambda: stranger_invoice(self.rng, created_s=int(time.time()) - 7200),
            "mainnet": lambda: stranger_invoice(self.rng, currency="bc"),
            "testnet": lambda: stranger_invoice(self.rng, currency="tb"),
            "amountless": lambda: stranger_invoice(self.rng, amount_msat=None),
            "over_limit": lambda: stranger_invoice(self.rng, amount_msat=MAX_AMOUNT_MSAT + 1000),
        }[case]()
        return made


# each case: the answer due (status, error code): the edge rule's, rounds.py
EDGE_CASES = rounds.EDGE_CASES
# a payee no node of the network knows: its invoices fail at the node (no route)
STRANGER_KEY = hashlib.sha256(b"lnchaos: a payee nobody routes to").hexdigest()


def stranger_invoice(
    rng: random.Random,
    *,
    amount_msat: int | None = 10_000,
    currency: str = "bcrt",
    created_s: int | None = None,
    expiry_s: int = 3600,
) -> Invoice:
    """A correctly signed BOLT11 invoice of a payee outside the network, made with the bolt11
    package (not by the target or its node), with a fresh random payment hash."""
    payment_hash = f"{rng.getrandbits(256):064x}"
    tags = bolt11.Tags(
        [
            bolt11.Tag(bolt11.TagChar.payment_hash, payment_hash),
            bolt11.Tag(bolt11.TagChar.payment_secret, f"{rng.getrandbits(256):064x}"),
            bolt11.Tag(bolt11.TagChar.description, "lnchaos edge case"),
            bolt11.Tag(bolt11.TagChar.expire_time, expiry_s),
        ]
    )
    raw = bolt11.Bolt11(
        currency=currency,
        date=int(time.time()) if created_s is None else created_s,
        amount_msat=bolt11.MilliSatoshi(amount_msat) if amount_msat else None,
        tags=tags,
    )
    return Invoice(bolt11.encode(raw, STRANGER_KEY), payment_hash, int(amount_msat or 0))


@dataclass(frozen=True)
class RawAnswer:
    """A payout request's answer as it came (status 0: no answer, a connection error)."""

    status: int
    body: dict[str, Any]
    latency_ms: float

    @property
    def error(self) -> str | None:
        return self.body.get("error")

    @property
    def payout_id(self) -> str | None:
        return self.body.get("payout_id")

    @property
    def facts(self) -> dict[str, Any]:
        """The answer as a round's recorded facts keep it (lnchaos/checker/rounds.py)."""
        return rounds.answer(self.status, self.body)

    def outcome(self) -> str:
        return rounds.outcome(self.facts)

    def as_result(self) -> PayoutResult:
        outcome = self.outcome()
        kind = {"succeeded": "ok", "failed": "fail", "pending": "info", "timeout": "info"}.get(
            outcome, "refused" if outcome == "rejected" else "error"
        )
        return PayoutResult(
            kind=kind,
            outcome=outcome,
            http_status=self.status,
            latency_ms=self.latency_ms,
            payout_id=self.payout_id,
            payout_status=self.body.get("status"),
            body=self.body,
        )

    def describe(self) -> str:
        return rounds.describe(self.facts)


def with_problems(why: str, problems: list[str]) -> str:
    """Why a round went to the audit, with the wrong answers it had seen before: the audit judges
    the money alone, so these are named in the round's resolved_within_bound failure."""
    return f"{why} (answers found wrong before: {'; '.join(problems)})" if problems else why


def is_in_progress(answer: RawAnswer) -> bool:
    return answer.status == 409 and answer.error in IN_PROGRESS


def took_key(answer: RawAnswer) -> bool:
    """Whether the wallet took this request as its Idempotency-Key's own (rounds.took_key)."""
    return rounds.took_key(answer.facts)


def answer_facts(result: PayoutResult) -> dict[str, Any]:
    """A payout answer of the wallet client as a round's recorded facts keep it."""
    return rounds.answer(int(result.http_status or 0), result.body or {})


def drain_facts(
    funding_msat: int,
    seen_msat: list[int],
    view: dict[str, Any],
    ready: list[Invoice],
    answers: list[PayoutResult],
    nodes: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What the history records of a drain round: what its rule (rounds.judge_drain) takes."""
    return {
        "funding_msat": funding_msat,
        "balances_msat": seen_msat,
        "reserved_msat": view.get("reserved_msat"),
        "payouts": [
            {
                "amount_msat": invoice.amount_msat,
                "node": rounds.node(nodes[invoice.payment_hash]),
                "answer": answer_facts(answer),
            }
            for invoice, answer in zip(ready, answers, strict=True)
        ],
    }


def node_spans(nodes: dict[str, dict[str, Any]], hashes: list[str]) -> list[list[Any]]:
    """Coverage: the node's span of each payout it acted on (two at once overlap)."""
    return [
        [nodes[h].get("created_ms"), nodes[h].get("resolved_ms")]
        for h in hashes
        if nodes[h].get("created_ms") is not None
    ]


def json_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:  # not JSON: judged as an unclear answer by the caller
        return {}
    return body if isinstance(body, dict) else {}
