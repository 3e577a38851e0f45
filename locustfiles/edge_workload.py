"""The edge workload (issue 25, item 3): a run that goes where money bugs live, seeded by --seed.

- amounts over orders of magnitude: a share of the payers' payouts (--edge-amount-share) is
  log-uniform from 1 sat to --edge-amount-max-msat, and a share (--near-balance-share) is sized
  to leave less than one fee reserve of the wallet's balance (the payer knows its balance);
  wallets are funded so the largest amount is possible (`funding_msat`);
- the node's fees up to the wallet's fee limit (the `fee_limit_msat` each send carries): a share
  charged exactly the limit (--fee-at-limit-rate), a share drawn up to it (--fee-to-limit-rate);
- retries of payouts still in flight: of the payouts answered pending or timed out, a share
  (--retry-in-flight-share) is sent again with the same Idempotency-Key;
- a long tail of in-flight holds: of the timed-out payments, a share (--long-hold-rate) held
  --long-hold-ms, many times the normal hold and longer than the wallet's stuck threshold
  (--stuck-after-s, which the embedded target is started with); the final wait and the users'
  resolve bound follow, so every long hold still ends within the run.

The node draws fees and holds (target/node/faults.py), so the payers' hot path makes no extra
request: the only per-payout work here is the amount's draw. What the run reached is measured by
the judge (lnchaos/checker/coverage.py), from the node's truth and the history, never from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

from lnchaos.checker.coverage import LARGE_PAYOUT_MSAT

SAT_MSAT = 1000
# the ordinary payers' band (users.py), kept for the share that is not the edge's
AMOUNT_MSAT_MIN = 10_000
AMOUNT_MSAT_MAX = 2_000_000
# defaults, each stated in --help
EDGE_AMOUNT_SHARE = 0.2
EDGE_AMOUNT_MAX_MSAT = 1_000_000_000_000  # 10 BTC: see README "The edge workload"
NEAR_BALANCE_SHARE = 0.02
FEE_AT_LIMIT_RATE = 0.05
FEE_TO_LIMIT_RATE = 0.1
LONG_HOLD_RATE = 0.2
LONG_HOLD_MS = 10_000.0
STUCK_AFTER_S = 5.0
RETRY_IN_FLIGHT_SHARE = 0.5
# Deposits are bounded for the whole target (target/common/limits.py MAX_AMOUNT_MSAT, 21M BTC),
# so the largest payout is a bound well below it: a wallet funded for FUNDING_PAYOUTS of them.
EDGE_AMOUNT_MAX_MSAT_MAX = 10**15
FUNDING_PAYOUTS = 4
# The fee reserve the payer assumes when it sizes a payout near its balance: the lnchaos
# target's (target/config.py). Another wallet's may differ; the judge measures the window from
# the fee limit the node saw, so a wrong guess shows as a window not reached, never as a pass.
RESERVE_BASE_MSAT = 2000
RESERVE_PPM = 10_000


@dataclass(frozen=True)
class EdgeSettings:
    edge_amount_share: float = EDGE_AMOUNT_SHARE
    edge_amount_max_msat: int = EDGE_AMOUNT_MAX_MSAT
    near_balance_share: float = NEAR_BALANCE_SHARE
    fee_at_limit_rate: float = FEE_AT_LIMIT_RATE
    fee_to_limit_rate: float = FEE_TO_LIMIT_RATE
    long_hold_rate: float = LONG_HOLD_RATE
    long_hold_ms: float = LONG_HOLD_MS
    stuck_after_s: float = STUCK_AFTER_S
    retry_in_flight_share: float = RETRY_IN_FLIGHT_SHARE


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: must be within [0, 1]")
    return value


def _amount_max(text: str) -> int:
    value = int(text)
    if not AMOUNT_MSAT_MAX <= value <= EDGE_AMOUNT_MAX_MSAT_MAX:
        raise argparse.ArgumentTypeError(
            f"{text}: must be within [{AMOUNT_MSAT_MAX}, {EDGE_AMOUNT_MAX_MSAT_MAX}] msat"
        )
    return value


def _hold_ms(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 60_000.0:
        raise argparse.ArgumentTypeError(f"{text}: must be within [0, 60000] ms")
    return value


def _stuck_s(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 600.0:
        raise argparse.ArgumentTypeError(f"{text}: must be within (0, 600] s")
    return value


def add_arguments(parser: Any) -> None:
    """Listener for `events.init_command_line_parser`: fixed at start (not in the web form;
    Locust's argument groups cannot hide an option from it). Seeded by --seed; 0 turns a part
    off."""
    for flag, kind, default, text in (
        ("--edge-amount-share", _rate, EDGE_AMOUNT_SHARE,
         "share of payouts log-uniform from 1 sat to --edge-amount-max-msat"),
        ("--edge-amount-max-msat", _amount_max, EDGE_AMOUNT_MAX_MSAT,
         "the largest payout (wallets are funded for a few of them)"),
        ("--near-balance-share", _rate, NEAR_BALANCE_SHARE,
         "share of payouts sized to leave less than one fee reserve of the balance"),
        ("--fee-at-limit-rate", _rate, FEE_AT_LIMIT_RATE,
         "share of payments the node charges exactly the wallet's fee limit"),
        ("--fee-to-limit-rate", _rate, FEE_TO_LIMIT_RATE,
         "share of payments whose node fee is drawn uniformly up to the fee limit"),
        ("--long-hold-rate", _rate, LONG_HOLD_RATE,
         "of timed-out payments, the share held in flight --long-hold-ms"),
        ("--long-hold-ms", _hold_ms, LONG_HOLD_MS,
         "the long in-flight hold (the normal one is the node's inflight_hold_ms)"),
        ("--retry-in-flight-share", _rate, RETRY_IN_FLIGHT_SHARE,
         "of the payouts answered pending or timed out (still in flight), the share retried with "
         "the same Idempotency-Key (besides --retry-share)"),
        ("--stuck-after-s", _stuck_s, STUCK_AFTER_S,
         "the wallet's stuck threshold: the embedded target is started with it; for another "
         "wallet, state its own (a long hold must outlast it)"),
    ):  # fmt: skip
        parser.add_argument(
            flag, type=kind, default=default, include_in_web_ui=False,
            help=f"Edge workload: {text} (default {default:g}).",
        )  # fmt: skip


def settings_from(options: Any) -> EdgeSettings:
    """The run's edge settings (defaults for what the options do not say: tests, the web UI);
    each field is named as its option's dest."""
    d = EdgeSettings()
    return EdgeSettings(
        **{
            name: type(getattr(d, name))(_get(options, name, getattr(d, name)))
            for name in d.__dataclass_fields__
        }
    )


def _get(options: Any, name: str, default: Any) -> Any:
    value = getattr(options, name, None) if options is not None else None
    return default if value is None else value


def node_faults(edge: EdgeSettings) -> dict[str, float]:
    """The node's fault settings that make its part (PUT /admin/faults at test start)."""
    return {
        "fee_at_limit_rate": edge.fee_at_limit_rate,
        "fee_to_limit_rate": edge.fee_to_limit_rate,
        "long_hold_rate": edge.long_hold_rate,
        "long_hold_ms": edge.long_hold_ms,
    }


def target_args(edge: EdgeSettings) -> list[str]:
    """The embedded target's command line: the wallet's stuck threshold (the node's faults are
    set at each test start, fault_control.py)."""
    return ["--stuck-after-s", f"{edge.stuck_after_s:g}"]


def longest_hold_s(edge: EdgeSettings, inflight_hold_ms: float) -> float:
    """The longest a payment of this run stays in flight at the node."""
    longest_ms = edge.long_hold_ms if edge.long_hold_rate > 0 else 0.0
    return max(longest_ms, inflight_hold_ms) / 1000


def within(edge: EdgeSettings, amount_max_msat: int | None) -> EdgeSettings:
    """The edge settings within a service's largest single amount (None: no limit of its own):
    the funding of FUNDING_PAYOUTS of the largest payout, with their reserves, must fit in one
    of its invoices, so the largest payout is at most a fifth of that amount."""
    if amount_max_msat is None:
        return edge
    largest_msat = amount_max_msat // (FUNDING_PAYOUTS + 1)
    if edge.edge_amount_max_msat <= largest_msat:
        return edge
    return dataclasses.replace(edge, edge_amount_max_msat=max(SAT_MSAT, largest_msat))


def funding_msat(edge: EdgeSettings, base_msat: int) -> int:
    """A new wallet's funding: enough for FUNDING_PAYOUTS of the largest payout."""
    if edge.edge_amount_share <= 0 and edge.near_balance_share <= 0:
        return base_msat
    return max(base_msat, FUNDING_PAYOUTS * reserve_needed_msat(edge.edge_amount_max_msat))


def reserve_needed_msat(amount_msat: int) -> int:
    return amount_msat + RESERVE_BASE_MSAT + amount_msat * RESERVE_PPM // 1_000_000


def near_balance_amount_msat(balance_msat: int) -> int:
    """An amount whose hold (amount + fee reserve) leaves half a reserve of `balance_msat`:
    amount + 1.5 * reserve(amount) = balance. 0 when the balance is too small for one."""
    numerator = (balance_msat - 3 * RESERVE_BASE_MSAT // 2) * 1_000_000
    amount_msat = numerator // (1_000_000 + 3 * RESERVE_PPM // 2)
    return int(amount_msat) if amount_msat >= SAT_MSAT else 0


def draw_amount_msat(rng: random.Random, edge: EdgeSettings) -> int:
    """A payer's amount: log-uniform from 1 sat to the largest for the edge share (whole sats),
    else the ordinary band (the load the bench measures)."""
    if edge.edge_amount_share > 0 and rng.random() < edge.edge_amount_share:
        low, high = math.log(SAT_MSAT), math.log(edge.edge_amount_max_msat)
        sats = int(math.exp(rng.uniform(low, high))) // SAT_MSAT
        return min(max(sats, 1) * SAT_MSAT, edge.edge_amount_max_msat)
    return rng.randrange(AMOUNT_MSAT_MIN, AMOUNT_MSAT_MAX)


def retries_in_flight(rng: random.Random, edge: EdgeSettings, first_kind: str) -> bool:
    """Whether to retry a payout whose first answer left it in flight ("info": pending or timed
    out). No draw for any other answer, so the payers' streams stay as they were."""
    return first_kind == "info" and rng.random() < edge.retry_in_flight_share


def wants_near_balance(rng: random.Random, edge: EdgeSettings) -> bool:
    return edge.near_balance_share > 0 and rng.random() < edge.near_balance_share


def coverage_settings(
    edge: EdgeSettings, run: Any, faults: dict[str, Any], crashes: int, crash_every_s: float
) -> dict[str, Any]:
    """What the judge needs to know of the run to say which windows it should reach
    (lnchaos/checker/coverage.py `expected_counts`), recorded in consistency.json's `run`:
    `run` is the suite's Settings (options.py), `faults` the node's in force at test start."""

    def fault(key: str) -> float:
        value = faults.get(key, 0.0)
        return float(value) if isinstance(value, int | float) else 0.0

    mix = dict(run.traffic_mix)
    return {
        "edge_amount_share": edge.edge_amount_share,
        "edge_amount_max_msat": edge.edge_amount_max_msat,
        "near_balance_share": edge.near_balance_share,
        "fee_at_limit_rate": fault("fee_at_limit_rate"),
        "long_hold_rate": fault("long_hold_rate"),
        "long_hold_ms": fault("long_hold_ms"),
        "stuck_after_s": edge.stuck_after_s,
        "late_settle_rate": run.late_settle_rate,
        # a payout left in flight is retried at --retry-share, or else at the edge's own share
        # (--retry-share 0: no retry at all, none in flight either)
        "retry_share": run.retry_share
        + (1 - run.retry_share) * edge.retry_in_flight_share * (run.retry_share > 0),
        "drain_rounds_on": mix.get("drain", 0) > 0,
        "crash_every_s": crash_every_s,
        "crashes": crashes,
        "http_fault_rate": sum(
            fault(key) for key in ("http_error_rate", "http_reset_rate", "http_stall_rate")
        ),
        "http_fault_after_rate": fault("http_fault_after_rate"),
    }


__all__ = ["LARGE_PAYOUT_MSAT", "EdgeSettings"]
