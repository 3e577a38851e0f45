"""The judge's door on Locust's side: the judge itself is lnchaos/checker/ (no Locust in it).

Every name of the judge (kinds, exit codes, rules, Tally, Audit, build_report, ...) is
re-exported here, so the suite's modules say `checker.UNRESOLVED` as before; what is Locust's
alone lives here: `CheckFailed` and `fire_check` (a check counted in the suite's own table,
locustfiles/counters.py, and a failure listed in Locust's Failures). The kinds, the exit codes
and consistency.json's schema are documented in lnchaos/checker/verdict.py.
"""

from __future__ import annotations

import time
from typing import Any

from lnchaos.checker import *  # noqa: F403
from lnchaos.checker.kinds import KINDS
from locustfiles import counters


class CheckFailed(Exception):
    """A failed check: its message in words (wallet, payout, expected and actual msat) and its
    kind (None: not judged, e.g. not final within the users' bound). Without `kind`, a message
    that starts with `<kind>:` names it."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind if kind is not None else _kind_of(message)


def _kind_of(message: str) -> str | None:
    head = message.partition(":")[0].strip()
    return head if head in KINDS else None


def fire_check(request_event: Any, name: str, exception: Exception | None, started: float) -> None:
    """One check, timed from `started` (time.perf_counter()), counted in the suite's own table
    (counters.py), never as a Locust request: Locust's totals stay HTTP only. A failure is also
    listed in Locust's Failures under its kind's stable text. `request_event` is no longer used
    (kept so every caller stays as it is)."""
    del request_event
    counters.record_check(
        name,
        failed=exception is not None,
        kind=getattr(exception, "kind", None) if exception is not None else None,
        response_time_ms=(time.perf_counter() - started) * 1000,
        message=str(exception) if exception is not None else None,
    )


def count_in_flight(node: dict[str, Any], latency_ms: float, started: float) -> None:
    """A timeout the run reached, by the node's word: the node timed the payment out (its
    `timed_out`), or the wallet answered sooner than the node held it (rules.answered_in_flight).
    Counted as the payers' checks count theirs (NODE_TIMEOUT_JUDGED), for the users that keep
    their own tally: withdraw links and melts, whose services may wait a held payment out (a
    synchronous send) and so never answer while it is in flight."""
    from locustfiles.telemetry import LOCAL  # here: telemetry imports this module

    timed_out = node.get("timed_out") is True
    if timed_out or answered_in_flight(node, latency_ms):  # noqa: F405 (lnchaos.checker's)
        LOCAL.tally.record_check(NODE_TIMEOUT_JUDGED, passed=True)  # noqa: F405
        fire_check(None, NODE_TIMEOUT_JUDGED, None, started)  # noqa: F405
