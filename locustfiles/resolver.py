"""The payers' background resolver: timed-out payouts resolved off the payers' path.

A payout answered 504 (fix off, rollback) or 202 (fix on), or one the wallet called failed while
the node still has it in flight, is not final yet: resolving it takes the node's in-flight hold
(1.5 s by default) and polls. A payer that waited for it would offer no load meanwhile, exactly
when a spike makes timeouts. So the payer hands it here, with its wallet (the wallet sees no
other payout after it, so the balance expected before it stays exact), and goes on with a fresh
wallet and the next arrival. One resolver per Locust process:
- bounded: at most HELD_MAX payouts held and CONCURRENCY polled at once; `submit` refuses past
  that and the payer resolves the payout itself (back-pressure, not growth);
- each payout bounded in time by the users' bound (--resolve-timeout-s, as the payer's own);
- the check still happens and counts as the payer's would: the node's truth, then the wallet
  read on its own (this is also the wallet's read at the end of its use);
- a payout not final within the bound, or still held when the run stops, goes to the final
  audit (checker.py) with the balance expected before it: the final wait and the audit see it.
It also reads the wallet of a payer the shape stopped mid-run (`submit_end_of_use`: the end of a
spike stops three quarters of the payers at once), so their last payouts are judged during the
run instead of piling up in the final audit: an hour of spike cycles stopped ten thousand payers,
five times the audit's bound per process (issue 24).
The test_stop listener is registered when this module is imported (users.py imports it, before
lnchaos_suite registers its own), so a worker's final tally carries what the stop left here.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
from locust import events
from locust.contrib.fasthttp import FastHttpSession

from locustfiles import checker, crash, payout_check
from locustfiles.payout_check import SentPayout
from locustfiles.wallet_client import Wallet, WalletClient

log = logging.getLogger(__name__)

HELD_MAX = 2000  # payouts held at once per process (about 8 s of 5% timeouts at 5000/s)
CONCURRENCY = 64  # payouts polled at once per process (each mostly sleeps between polls)
STOP_JOIN_S = 1.0  # at test_stop: how long the killed greenlets get to end
NETWORK_TIMEOUT_S = 10.0
CONNECTION_TIMEOUT_S = 5.0


# one job of the resolver: (request event, its wallet client, its job id) -> None
Job = Callable[[Any, WalletClient, int], None]


class BackgroundResolver:
    """Per process: resolves and checks the payouts the payers handed over."""

    def __init__(self) -> None:
        self.pool = gevent.pool.Pool(CONCURRENCY)
        # submitted, not yet judged: the audit entry each leaves to the final audit if stopped
        self.held: dict[int, dict[str, Any] | None] = {}
        self.waiting: list[tuple[int, Job]] = []  # held, not started (FIFO)
        self._ids = itertools.count()
        self._session: FastHttpSession | None = None
        self._session_host: str | None = None
        self.accepting = True
        self.refused = 0
        self.resolved = 0

    def submit(self, environment: Any, sent: SentPayout, bound_s: float) -> bool:
        """Take a payout over; False when full (or stopping): the caller resolves it itself."""

        def job(request_event: Any, wallets: WalletClient, job_id: int) -> None:
            self._resolve_and_check(request_event, wallets, job_id, sent, bound_s)

        return self._submit(environment, job, sent.entry)

    def submit_end_of_use(
        self, environment: Any, wallet: Wallet, expected_msat: int, entry: dict[str, Any]
    ) -> bool:
        """Read a stopped payer's wallet and judge it as its payer would have at the end of its
        use (`entry`: its last payout's audit entry, the final audit's if this cannot be done);
        False when full or stopping: the caller leaves it to the final audit."""

        def job(request_event: Any, wallets: WalletClient, job_id: int) -> None:
            started = time.perf_counter()
            view = wallets.get_wallet(wallet)
            self.held.pop(job_id, None)  # from here on no request
            if view is None:
                payout_check.abandon(entry, checker.ABANDONED_NO_WALLET_VIEW)
                return
            payout_check.check_wallet_at_end(request_event, wallet, expected_msat, view, started)

        return self._submit(environment, job, entry)

    def _submit(self, environment: Any, job: Job, entry: dict[str, Any] | None) -> bool:
        if not self.accepting or len(self.held) >= HELD_MAX:
            self.refused += 1
            return False
        wallets = self._wallets(environment)
        if wallets is None:
            self.refused += 1
            return False
        job_id = next(self._ids)
        self.held[job_id] = entry
        self.waiting.append((job_id, job))
        self._start_waiting(environment.events.request, wallets)
        return True

    def _start_waiting(self, request_event: Any, wallets: WalletClient) -> None:
        while self.waiting and self.pool.free_count() > 0:
            job_id, job = self.waiting.pop(0)
            self.pool.spawn(self._run, request_event, wallets, job_id, job)

    def _run(self, request_event: Any, wallets: WalletClient, job_id: int, job: Job) -> None:
        try:
            job(request_event, wallets, job_id)
        except Exception:  # a bug here must not kill the pool; the payout goes to the audit
            log.exception("background resolver: job %s", job_id)
            if job_id in self.held:
                payout_check.abandon(self.held.pop(job_id), checker.ABANDONED_ERROR)
        finally:
            if self.accepting:
                self._start_waiting(request_event, wallets)

    def _resolve_and_check(
        self,
        request_event: Any,
        wallets: WalletClient,
        job_id: int,
        sent: SentPayout,
        bound_s: float,
    ) -> None:
        # the bound counts from the payout's start, as the payer's own did
        remaining_s = max(0.0, bound_s - (time.perf_counter() - sent.started))
        resolved = payout_check.resolve(wallets, sent, remaining_s)
        if resolved is None:
            self.held.pop(job_id, None)
            payout_check.record_unresolved(request_event, sent, bound_s)
            return
        view = wallets.get_wallet(sent.wallet)
        # from here on no request: a stop either finds the payout held (audited) or judged
        self.held.pop(job_id, None)
        if view is None:
            payout_check.abandon(sent.entry, checker.ABANDONED_NO_WALLET_VIEW)
            return
        payout_status, node = resolved
        payout_check.judge(
            request_event,
            sent,
            payout_status,
            node,
            int(view["balance_msat"]),
            view.get("reserved_msat"),
        )
        self.resolved += 1

    def _wallets(self, environment: Any) -> WalletClient | None:
        host = environment.host
        if not host:
            return None
        if self._session is None or self._session_host != host:
            # a session of its own: the payers' sessions are theirs, and a payer may stop
            # while its payouts are still resolved here
            self._session = FastHttpSession(
                base_url=host,
                request_event=environment.events.request,
                user=None,
                concurrency=CONCURRENCY,
                network_timeout=NETWORK_TIMEOUT_S,
                connection_timeout=CONNECTION_TIMEOUT_S,
            )
            self._session_host = host
        wallets = WalletClient(self._session, environment.events.request)
        # under the crash fault a connection error is the chaos (an unknown outcome), as for payers
        wallets.chaos_connection_errors = crash.crash_every_s(environment.parsed_options) > 0
        return wallets

    def start(self) -> None:
        self.accepting = True

    def stop(self) -> int:
        """End of the run: every payout still held goes to the final audit. Returns how many."""
        self.accepting = False
        self.waiting.clear()
        self.pool.kill(block=True, timeout=STOP_JOIN_S)
        left = list(self.held.values())
        self.held.clear()
        for entry in left:
            payout_check.abandon(entry, checker.ABANDONED_STOPPED)
        if left:
            log.info("background resolver: %d payouts left to the final audit at stop", len(left))
        return len(left)


RESOLVER = BackgroundResolver()


@events.test_start.add_listener
def _on_test_start(**_kwargs: Any) -> None:
    RESOLVER.start()


@events.test_stop.add_listener
def _on_test_stop(**_kwargs: Any) -> None:
    # after the users stopped (their own unjudged payouts are audit entries by now) and before
    # a worker sends its final tally (lnchaos_suite's listener comes later)
    RESOLVER.stop()
