"""The open model: payouts arrive at a rate, whether or not earlier ones have finished.

Locust's users are a closed model: each waits for its answer before its next payout, so a slow
target lowers the load it is offered (coordinated omission) and a spike is softer than the one
rehearsed. With `--arrival-rate R` (options.py) each Locust process runs one scheduler greenlet:
- it schedules arrivals at R x its share (its payers ready for arrivals / --max-payers: Locust
  spreads the payers over the workers, so the workers split the rate), times the shape's factor
  for the phase the master announced (spike: --spike-factor; every other phase: 1), with
  constant or Poisson gaps (--arrivals, seeded by --seed and the worker's index);
- an arrival waits for a free payer (the payers are Locust users, --max-payers of them, spawned
  at once by the shape and blocked in `take`) at most --max-start-delay-ms; then it is dropped
  and counted (`dropped` of its phase in arrival_stats), never queued for later;
- the start delay (scheduled -> a payer took it) and the latency from the scheduled start to the
  payout's answer are recorded per process and merged by the master (consistency.json
  `arrivals`).
A scheduler that falls behind (a starved process) still emits every arrival with its own
scheduled time: those past the delay are dropped, so a slow driver shows as drops, not as a
lower offered rate.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.queue
from locust import events
from locust.runners import MasterRunner

from locustfiles.options import add_arrival_arguments, arrival_settings_from
from locustfiles.shapes import arrival_rate_factor
from locustfiles.telemetry import LOCAL

log = logging.getLogger(__name__)

TICK_S = 0.05  # the scheduler sleeps at most this long (a new phase's rate within a tick)
EMIT_MAX_PER_TICK = 5000  # arrivals emitted before the scheduler yields once
QUEUE_MAX = 100_000  # arrivals waiting for a payer, whatever the delay (a bound, not a plan)
TAKE_WAIT_S = 1.0  # a payer's wait for an arrival before its task returns (graceful stops)


@dataclass(frozen=True)
class Arrival:
    scheduled: float  # time.monotonic() it was due at
    phase: str


class ArrivalScheduler:
    """One per Locust process (not on a master): schedules arrivals and hands them to payers."""

    def __init__(
        self,
        rate_per_s: float,
        spike_factor: int,
        max_payers: int,
        max_start_delay_s: float,
        poisson: bool,
        seed: str,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.config = dict(config or {})
        self.rate_per_s = rate_per_s
        self.spike_factor = spike_factor
        self.max_payers = max(1, max_payers)
        self.max_start_delay_s = max_start_delay_s
        self.poisson = poisson
        self.rng = random.Random(seed)
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self._greenlet: gevent.Greenlet | None = None
        self.ready: set[int] = set()  # the payers taking arrivals
        self.accepting = True

    def share(self) -> float:
        """This process's share of the rate: its payers ready (funded, taking arrivals) over all
        payers. Payers still being spawned or funded offer nothing yet, so the start is not a
        burst of drops, and the workers split the rate as Locust split the payers."""
        return min(1.0, len(self.ready) / self.max_payers)

    def join(self, payer: object) -> None:
        """A payer is ready for arrivals (bounded: there are at most --max-payers of them)."""
        if self.accepting:
            self.ready.add(id(payer))

    def leave(self, payer: object) -> None:
        self.ready.discard(id(payer))

    def rate_now(self, phase: str) -> float:
        return self.rate_per_s * arrival_rate_factor(phase, self.spike_factor) * self.share()

    def start(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1.0)
        self.queue = gevent.queue.Queue()
        self.accepting = True
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self.accepting = False
        self.ready.clear()
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1.0)
            self._greenlet = None
        # arrivals still waiting when the run ends were cut by the end: neither started nor
        # dropped for want of a payer (offered - started - dropped in the report)
        while not self.queue.empty():
            self.queue.get_nowait()

    def _run(self) -> None:
        next_due: float | None = None
        while True:
            now = time.monotonic()
            rate = self.rate_now(LOCAL.phase)
            if rate <= 0:
                next_due = None  # nothing offered (no payers here yet): no backlog either
                gevent.sleep(TICK_S)
                continue
            if next_due is None:
                next_due = now
            emitted = 0
            while next_due <= now and emitted < EMIT_MAX_PER_TICK:
                self._emit(Arrival(next_due, LOCAL.phase), now)
                emitted += 1
                gap_s = self.rng.expovariate(rate) if self.poisson else 1.0 / rate
                next_due += gap_s
            gevent.sleep(min(TICK_S, max(0.0, next_due - time.monotonic())))

    def _emit(self, arrival: Arrival, now: float) -> None:
        self._expire(now)
        if self.queue.qsize() >= QUEUE_MAX:
            self._drop(self.queue.get_nowait())
        if not LOCAL.arrivals.config:  # a new run's tally (telemetry resets it on its run id)
            LOCAL.arrivals.config = self.config
        LOCAL.arrivals.count(arrival.phase, "offered")
        if now - arrival.scheduled > self.max_start_delay_s:
            # the scheduler itself was late (its process starved of CPU): dropped, and told
            # apart, since no payer ever had a chance at it
            LOCAL.arrivals.count(arrival.phase, "late")
            self._drop(arrival)
            return
        self.queue.put(arrival)

    def _expire(self, now: float) -> None:
        """Drop the waiting arrivals older than the start delay allows (oldest first)."""
        while not self.queue.empty():
            head: Arrival = self.queue.peek_nowait()
            if now - head.scheduled <= self.max_start_delay_s:
                return
            self._drop(self.queue.get_nowait())

    def _drop(self, arrival: Arrival) -> None:
        LOCAL.arrivals.count(arrival.phase, "dropped")

    def take(self, wait_s: float = TAKE_WAIT_S) -> Arrival | None:
        """The next arrival for a free payer (counted as started), or None after wait_s."""
        deadline = time.monotonic() + wait_s
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            try:
                arrival: Arrival = self.queue.get(timeout=remaining_s)
            except gevent.queue.Empty:
                return None
            delay_s = time.monotonic() - arrival.scheduled
            if delay_s > self.max_start_delay_s:
                self._drop(arrival)
                continue
            LOCAL.arrivals.started(arrival.phase, delay_s)
            return arrival


SCHEDULER: ArrivalScheduler | None = None

events.init_command_line_parser.add_listener(add_arrival_arguments)


def scheduler() -> ArrivalScheduler | None:
    """This process's scheduler, or None in the closed model."""
    return SCHEDULER


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    global SCHEDULER
    if SCHEDULER is not None:
        SCHEDULER.stop()
        SCHEDULER = None
    runner = environment.runner
    if runner is None or isinstance(runner, MasterRunner):
        return
    settings = arrival_settings_from(environment.parsed_options)
    if settings is None:
        return
    worker_index = int(getattr(runner, "worker_index", 0) or 0)
    seed = int(getattr(environment.parsed_options, "seed", 1) or 1)
    SCHEDULER = ArrivalScheduler(
        rate_per_s=settings.arrival_rate_per_s,
        spike_factor=settings.spike_factor,
        max_payers=settings.max_payers,
        max_start_delay_s=settings.max_start_delay_ms / 1000,
        poisson=settings.arrivals == "poisson",
        seed=f"arrivals/{seed}/{worker_index}",
        config=settings.report(),
    )
    LOCAL.arrivals.config = settings.report()
    SCHEDULER.start()
    log.info(
        "open model: %.1f payouts/s offered (x%d in the spike), %d payers, start delay <= %d ms",
        settings.arrival_rate_per_s,
        settings.spike_factor,
        settings.max_payers,
        settings.max_start_delay_ms,
    )


@events.test_stopping.add_listener
def _on_test_stopping(**_kwargs: Any) -> None:
    # before Locust stops the payers: arrivals emitted while they are being stopped would be
    # counted as dropped for want of a payer, which is the run's end, not the target's limit
    if SCHEDULER is not None:
        SCHEDULER.stop()


@events.test_stop.add_listener
def _on_test_stop(**_kwargs: Any) -> None:
    if SCHEDULER is not None:
        SCHEDULER.stop()
