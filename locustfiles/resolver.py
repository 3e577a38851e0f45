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
The test_stop listener is registered when this module is imported (users.py imports it, before
lnchaos_suite registers its own), so a worker's final tally carries what the stop left here.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import gevent
import gevent.pool
from locust import events
from locust.contrib.fasthttp import FastHttpSession

from locustfiles import checker, crash, payout_check
from locustfiles.payout_check import SentPayout
from locustfiles.wallet_client import WalletClient

log = logging.getLogger(__name__)

HELD_MAX = 2000  # payouts held at once per process (about 8 s of 5% timeouts at 5000/s)
CONCURRENCY = 64  # payouts polled at once per process (each mostly sleeps between polls)
STOP_JOIN_S = 1.0  # at test_stop: how long the killed greenlets get to end
NETWORK_TIMEOUT_S = 10.0
CONNECTION_TIMEOUT_S = 5.0


class BackgroundResolver:
    """Per process: resolves and checks the payouts the payers handed over."""

    def __init__(self) -> None:
        self.pool = gevent.pool.Pool(CONCURRENCY)
        self.held: dict[int, SentPayout] = {}  # submitted, not yet judged
        self.waiting: list[tuple[int, SentPayout, float]] = []  # held, not started (FIFO)
        self._ids = itertools.count()
        self._session: FastHttpSession | None = None
        self._session_host: str | None = None
        self.accepting = True
        self.refused = 0
        self.resolved = 0

    def submit(self, environment: Any, sent: SentPayout, bound_s: float) -> bool:
        """Take a payout over; False when full (or stopping): the caller resolves it itself."""
        if not self.accepting or len(self.held) >= HELD_MAX:
            self.refused += 1
            return False
        wallets = self._wallets(environment)
        if wallets is None:
            self.refused += 1
            return False
        job_id = next(self._ids)
        self.held[job_id] = sent
        self.waiting.append((job_id, sent, bound_s))
        self._start_waiting(environment.events.request, wallets)
        return True

    def _start_waiting(self, request_event: Any, wallets: WalletClient) -> None:
        while self.waiting and self.pool.free_count() > 0:
            job_id, sent, bound_s = self.waiting.pop(0)
            self.pool.spawn(self._run, request_event, wallets, job_id, sent, bound_s)

    def _run(
        self,
        request_event: Any,
        wallets: WalletClient,
        job_id: int,
        sent: SentPayout,
        bound_s: float,
    ) -> None:
        try:
            self._resolve_and_check(request_event, wallets, job_id, sent, bound_s)
        except Exception:  # a bug here must not kill the pool; the payout goes to the audit
            log.exception("background resolver: payout %s", sent.first.payout_id)
            if self.held.pop(job_id, None) is not None:
                payout_check.abandon(sent.entry, checker.ABANDONED_ERROR)
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
        for sent in left:
            payout_check.abandon(sent.entry, checker.ABANDONED_STOPPED)
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
