"""The suite with the retry class's racing request always first (issue 24's reproduction).

A retry round sends its key with the invoice ("first", then "same key" 2 ms later) and, in a
share of rounds, with another invoice 1 ms after the first ("key reused, racing"). Under a busy
spike the racing request sometimes reached the wallet first and, as Stripe's rule says, took the
key; the judge still took the invoice as the key's and failed a correct fix-on run with
charged_not_paid. Here every round races, and the invoice's two requests are held until the
racing one has its answer: the conditions of that failure in every round, in seconds.

Only the Locust side is changed (the order of one round's requests); the target is the real one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gevent.event import Event
from locust import events

from locustfiles.lnchaos_suite import *  # noqa: F403  (the whole suite: its events and users)
from locustfiles.traffic import RawAnswer, RetryUser

HELD_MAX_S = 10.0  # a held request goes anyway after this (a round never hangs)
GATES_MAX = 8  # keys remembered per user (one round at a time uses one key)
RACING = "key reused, racing"
HELD = ("first", "same key")
COUNTS = {"rounds": 0, "first_refused": 0, "held_timed_out": 0}

RetryUser.racing_share = 1.0
_raw_payout = RetryUser.raw_payout


def _gate(user: RetryUser, key: str) -> Event:
    gates: dict[str, Event] = user.__dict__.setdefault("_race_gates", {})
    if key not in gates:
        if len(gates) >= GATES_MAX:
            gates.clear()
        gates[key] = Event()
    return gates[key]


def _racing_first(
    self: RetryUser, wallet: Any, payment_request: str, key: str, phase: str, step: str = ""
) -> RawAnswer:
    gate = _gate(self, key)
    if step == RACING:
        try:
            return _raw_payout(self, wallet, payment_request, key, phase, step)
        finally:
            gate.set()
    if step in HELD:
        if not gate.wait(HELD_MAX_S):
            COUNTS["held_timed_out"] += 1
    answer = _raw_payout(self, wallet, payment_request, key, phase, step)
    if step == "first":
        COUNTS["rounds"] += 1
        COUNTS["first_refused"] += answer.error == "idempotency_key_reused"
    return answer


RetryUser.raw_payout = _racing_first  # type: ignore[method-assign]


@events.quitting.add_listener
def _write_counts(environment: Any, **_kwargs: Any) -> None:
    folder = Path(getattr(environment.parsed_options, "report_dir", None) or os.getcwd())
    (folder / "race_first.json").write_text(json.dumps(COUNTS))
