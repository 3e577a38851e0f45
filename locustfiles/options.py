"""The suite's options, registered on Locust's own parser so they show in the web UI too.

The load shape is `--shape steady|spike`. Locust's own `--profile` keeps its meaning (a free-text
label for grouping runs); an old command that still says `--profile steady|spike` gets a one-line
hint (`profile_hint`), so it never silently becomes another run. Values reach `Settings` through
one function, because the web UI hands some of them over as strings.

The final wait (`--final-wait-s`): after the load stops, how long the verdict waits for the run's
payouts to become final before whatever is still not final counts as `unresolved`. Its default
follows from the timing the embedded target is started with (embedded_target.py passes these
values explicitly): a timed-out payment stays in flight for TARGET_INFLIGHT_HOLD_MS at the node,
the wallet's own wait for it ends after TARGET_NODE_TIMEOUT_MS, and the resolver settles a pending
payout at its next pass (TARGET_RESOLVER_INTERVAL_MS, counted twice: a pass may be running), plus
FINAL_WAIT_MARGIN_S for a loaded machine. Seconds, not minutes: a fix whose payouts do not resolve
within that is not resolving them. Against a target of other settings (--host), set it to match.

The embedded target's address (`--target-bind`, a master-side option): 127.0.0.1 by default;
workers on other hosts need an address they reach, and the URL they are given (Locust's host,
sent with every spawn message) is the bound one. So a wildcard (0.0.0.0, ::) is refused here,
and anything but loopback needs an explicit --admin-token (target/common/server.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locustfiles.shapes import SHAPES
from target.common.server import LOOPBACK, bind_problem

FIX_MODES = ("off", "rollback", "on")

# The traffic classes beside the ordinary payers (locustfiles/traffic.py), by weight. The payers
# weigh PAYER_WEIGHT, so the default puts about 1 user in 12 on each class: every run meets a
# shared invoice and a drained wallet, while the payers still carry the load the bench measures
# and the checks that need many payouts (timeouts resolved, retries).
TRAFFIC_CLASSES = ("shared", "drain")
PAYER_WEIGHT = 10
TRAFFIC_WEIGHT_MAX = 100
DEFAULT_TRAFFIC_MIX = "shared=1,drain=1"
ADMIN_TOKEN_ENV = "LNCHAOS_ADMIN_TOKEN"

# The embedded target's timing (passed explicitly; the target's own defaults are the same).
TARGET_INFLIGHT_HOLD_MS = 1500
TARGET_NODE_TIMEOUT_MS = 500
TARGET_RESOLVER_INTERVAL_MS = 100
FINAL_WAIT_MARGIN_S = 3.0
DEFAULT_FINAL_WAIT_S = float(
    math.ceil(
        (TARGET_INFLIGHT_HOLD_MS + TARGET_NODE_TIMEOUT_MS + 2 * TARGET_RESOLVER_INTERVAL_MS) / 1000
        + FINAL_WAIT_MARGIN_S
    )
)  # 6 s
FINAL_WAIT_S_MAX = 600.0


def add_arguments(parser: Any) -> None:
    """Listener for `events.init_command_line_parser`."""
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="steady",
        help="Load shape: steady or spike (see locustfiles/shapes.py). Locust's --profile is "
        "only a run label.",
    )
    parser.add_argument(
        "--fix",
        choices=FIX_MODES,
        default="off",
        help="Payout flow of the target: off (the incident), rollback, on (the saga).",
    )
    parser.add_argument(
        "--timeout-rate",
        type=float,
        default=0.01,
        help="Share of Lightning payments that time out under normal traffic.",
    )
    parser.add_argument(
        "--spike-timeout-rate",
        type=float,
        default=0.05,
        help="Share of Lightning payments that time out during the spike phase.",
    )
    parser.add_argument(
        "--late-settle-rate",
        type=float,
        default=0.5,
        help="Share of timed-out payments that the network settles late (the rest fail).",
    )
    parser.add_argument(
        "--spike-factor",
        type=int,
        default=4,
        help="Spike profile: users during the spike, as a multiple of -u.",
    )
    parser.add_argument(
        "--retry-share",
        type=float,
        default=0.1,
        help="Share of payouts retried with the same Idempotency-Key.",
    )
    parser.add_argument(
        "--checks",
        choices=("on", "off"),
        default="on",
        help="off: load only (no retries, balance reads or resolution polls), to measure what "
        "the checks cost (lnchaos bench).",
    )
    parser.add_argument(
        "--traffic-mix",
        type=_traffic_mix_argument,
        default=DEFAULT_TRAFFIC_MIX,
        include_in_web_ui=False,  # user classes and their weights are fixed at start
        help=f"Traffic classes beside the ordinary payers (weight {PAYER_WEIGHT}), as NAME=WEIGHT "
        f"pairs ({', '.join(TRAFFIC_CLASSES)}; weights 0-{TRAFFIC_WEIGHT_MAX}), or none. Shared: "
        "one invoice paid from two wallets at once; drain: parallel payouts over a wallet's "
        "balance. Off with --checks off.",
    )
    parser.add_argument(
        "--max-inconsistencies",
        type=int,
        default=0,
        help="Inconsistencies tolerated before the run fails (zero tolerance by default).",
    )
    parser.add_argument(
        "--final-wait-s",
        type=float,
        default=DEFAULT_FINAL_WAIT_S,
        help="After the load: how long the verdict waits for the run's payouts to become final; "
        "then any payout still pending or in flight counts as `unresolved`. The default follows "
        "from the embedded target's in-flight hold, node timeout and resolver interval.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="Seed of the target's network and of the users' choices (amounts, retries).",
    )
    parser.add_argument(
        "--report-dir",
        default="reports",
        help="Where consistency.json (and the embedded target's log) are written.",
    )
    parser.add_argument(
        "--admin-token",
        default=None,
        env_var=ADMIN_TOKEN_ENV,
        include_in_web_ui=False,
        help=f"Admin token of a running target given with --host (or ${ADMIN_TOKEN_ENV}); "
        "also the embedded target's, which needs one when --target-bind is not loopback.",
    )
    parser.add_argument(
        "--target-bind",
        default=LOOPBACK,
        include_in_web_ui=False,
        help="IP address the embedded target listens on (no --host); workers are given it as "
        "the target's URL. Anything but loopback needs --admin-token.",
    )


def parse_traffic_mix(text: str | dict[str, int]) -> dict[str, int]:
    """`shared=1,drain=1` -> {"shared": 1, "drain": 1}; `none` (or an empty text) -> {}.
    A class left out or of weight 0 is off. ValueError names what is wrong (argparse shows it)."""
    if isinstance(text, dict):  # already parsed (a default handed over twice)
        return dict(text)
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return {}
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, sep, weight_text = part.partition("=")
        name = name.strip()
        if not sep or name not in TRAFFIC_CLASSES:
            raise ValueError(
                f"--traffic-mix: {part.strip()!r} is not NAME=WEIGHT with NAME one of "
                f"{', '.join(TRAFFIC_CLASSES)} (or say none)"
            )
        if name in mix:
            raise ValueError(f"--traffic-mix: {name} given twice")
        try:
            weight = int(weight_text.strip())
        except ValueError:
            raise ValueError(f"--traffic-mix: weight of {name} must be an integer") from None
        if not 0 <= weight <= TRAFFIC_WEIGHT_MAX:
            raise ValueError(
                f"--traffic-mix: weight of {name} must be within [0, {TRAFFIC_WEIGHT_MAX}]"
            )
        mix[name] = weight
    return {name: weight for name, weight in mix.items() if weight > 0}


def _traffic_mix_argument(text: str) -> dict[str, int]:
    try:
        return parse_traffic_mix(text)
    except ValueError as err:  # argparse shows an ArgumentTypeError's own words
        raise argparse.ArgumentTypeError(str(err)) from None


def profile_hint(options: Any) -> str | None:
    """The hint for `--profile steady|spike` (the shape's old option), else None."""
    profile = getattr(options, "profile", None)
    if profile in SHAPES:
        return (
            f"--profile {profile} is only Locust's run label now: the load shape is "
            f"--shape {profile} (this run's shape: {getattr(options, 'shape', None) or 'steady'})"
        )
    return None


@dataclass(frozen=True)
class Settings:
    fix: str
    shape: str
    profile: str | None  # Locust's run label, reported as it is
    timeout_rate: float
    spike_timeout_rate: float
    late_settle_rate: float
    spike_factor: int
    retry_share: float
    max_inconsistencies: int
    final_wait_s: float
    seed: int
    report_dir: Path
    admin_token: str | None
    host: str | None
    target_bind: str = LOOPBACK
    traffic_mix: tuple[tuple[str, int], ...] = ()  # the classes on, with their weights

    @property
    def consistency_path(self) -> Path:
        return self.report_dir / "consistency.json"


def settings_from(options: Any) -> Settings:
    """Typed, validated settings from Locust's parsed options; ValueError names a bad one."""
    settings = Settings(
        fix=str(_get(options, "fix", "off")),
        shape=str(_get(options, "shape", None) or "steady"),
        profile=_get(options, "profile", None) or None,
        timeout_rate=float(_get(options, "timeout_rate", 0.01)),
        spike_timeout_rate=float(_get(options, "spike_timeout_rate", 0.05)),
        late_settle_rate=float(_get(options, "late_settle_rate", 0.5)),
        spike_factor=int(_get(options, "spike_factor", 4)),
        retry_share=float(_get(options, "retry_share", 0.1)),
        max_inconsistencies=int(_get(options, "max_inconsistencies", 0)),
        final_wait_s=float(_get(options, "final_wait_s", DEFAULT_FINAL_WAIT_S)),
        seed=int(_get(options, "seed", 1)),
        report_dir=Path(str(_get(options, "report_dir", "reports") or "reports")),
        admin_token=_get(options, "admin_token", None) or os.environ.get(ADMIN_TOKEN_ENV),
        host=_get(options, "host", None) or None,
        target_bind=str(_get(options, "target_bind", LOOPBACK) or LOOPBACK).strip(),
        traffic_mix=tuple(
            sorted(parse_traffic_mix(_get(options, "traffic_mix", DEFAULT_TRAFFIC_MIX)).items())
        ),
    )
    if settings.fix not in FIX_MODES:
        raise ValueError(f"--fix must be one of {', '.join(FIX_MODES)}, not {settings.fix!r}")
    if settings.shape not in SHAPES:
        raise ValueError(f"--shape must be one of {', '.join(SHAPES)}")
    if not 0.0 <= settings.final_wait_s <= FINAL_WAIT_S_MAX:
        raise ValueError(f"--final-wait-s must be within [0, {FINAL_WAIT_S_MAX:.0f}]")
    for name in ("timeout_rate", "spike_timeout_rate", "late_settle_rate", "retry_share"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be within [0, 1]")
    if settings.max_inconsistencies < 0 or settings.spike_factor < 1:
        raise ValueError("--max-inconsistencies must be >= 0 and --spike-factor >= 1")
    return settings


def target_bind_problem(settings: Settings) -> str | None:
    """Why the embedded target may not bind `--target-bind`, else None: an IP address that the
    workers can be given as a URL (no wildcard), beyond loopback only with --admin-token."""
    problem = bind_problem(settings.target_bind, settings.admin_token, option="--target-bind")
    if problem:
        return problem
    if ipaddress.ip_address(settings.target_bind.strip("[]")).is_unspecified:
        return (
            f"--target-bind {settings.target_bind} is a wildcard, but the workers are given the "
            "bound address as the target's URL: bind an address of this host that they reach, "
            "or run `lnchaos target --bind 0.0.0.0 --admin-token T` and give its URL with --host"
        )
    return None


def _get(options: Any, name: str, default: Any) -> Any:
    value = getattr(options, name, default)
    return default if value is None else value


# ---- the open model (issue 14): payouts arriving at a rate -----------------------------------
# Kept apart from the options above. 0 (the default) keeps the closed model: -u users, each
# paying as soon as its last payout was judged (README "Closed versus open model" says why that
# stays the default). locustfiles/arrival.py is the scheduler.

ARRIVALS = ("constant", "poisson")
ARRIVAL_RATE_MAX_PER_S = 100_000.0
MAX_PAYERS_MAX = 5000  # each payer is a Locust user with its own wallet and connections
DEFAULT_MAX_PAYERS = 50
DEFAULT_MAX_START_DELAY_MS = 50
MAX_START_DELAY_MS_MAX = 60_000


@dataclass(frozen=True)
class ArrivalSettings:
    arrival_rate_per_s: float  # in normal traffic, over all processes
    spike_factor: int
    max_payers: int
    max_start_delay_ms: int
    arrivals: str  # constant | poisson gaps

    def report(self) -> dict[str, Any]:
        """What consistency.json's `arrivals` says of the settings."""
        return {
            "arrival_rate_per_s": self.arrival_rate_per_s,
            "spike_factor": self.spike_factor,
            "max_payers": self.max_payers,
            "max_start_delay_ms": self.max_start_delay_ms,
            "arrivals": self.arrivals,
        }


def add_arrival_arguments(parser: Any) -> None:
    """Listener for `events.init_command_line_parser` (registered by locustfiles/arrival.py)."""
    group = parser.add_argument_group(
        "lnchaos open model", "payouts arriving at a rate, whether or not earlier ones finished"
    )
    group.add_argument(
        "--arrival-rate",
        type=_bounded(float, 0.0, ARRIVAL_RATE_MAX_PER_S, "--arrival-rate"),
        default=0.0,
        help="Open model: payouts per second offered in normal traffic (the spike shape "
        "multiplies it by --spike-factor). 0: the closed model (-u users).",
    )
    group.add_argument(
        "--max-payers",
        type=_bounded(int, 1, MAX_PAYERS_MAX, "--max-payers"),
        default=DEFAULT_MAX_PAYERS,
        help="Open model: payers allocated at the start (Locust users, spread over the workers; "
        "the rate is split in proportion). An arrival finding none free waits, then is dropped.",
    )
    group.add_argument(
        "--max-start-delay-ms",
        "--max-start-delay",
        type=_bounded(int, 0, MAX_START_DELAY_MS_MAX, "--max-start-delay-ms"),
        default=DEFAULT_MAX_START_DELAY_MS,
        help="Open model: how long an arrival waits for a free payer before it is dropped and "
        "counted (dropped_iterations in consistency.json).",
    )
    group.add_argument(
        "--arrivals",
        choices=ARRIVALS,
        default="constant",
        help="Open model: gaps between arrivals, constant or Poisson (seeded by --seed).",
    )


def arrival_settings_from(options: Any) -> ArrivalSettings | None:
    """The open model's settings, or None for the closed model (no --arrival-rate)."""
    rate = float(_get(options, "arrival_rate", 0.0) or 0.0)
    if rate <= 0:
        return None
    return ArrivalSettings(
        arrival_rate_per_s=rate,
        spike_factor=max(1, int(_get(options, "spike_factor", 4))),
        max_payers=int(_get(options, "max_payers", DEFAULT_MAX_PAYERS)),
        max_start_delay_ms=int(_get(options, "max_start_delay_ms", DEFAULT_MAX_START_DELAY_MS)),
        arrivals=str(_get(options, "arrivals", "constant")),
    )


def _bounded(kind: type, low: float, high: float, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a {kind.__name__}") from None
        if not low <= value <= high or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be within [{low:g}, {high:g}]")
        return value

    return parse
