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
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locustfiles.edge_workload import LONG_HOLD_MS
from locustfiles.shapes import SHAPES, SPIKE_CYCLE_S_MIN
from target.common.server import LOOPBACK, bind_problem
from target.config import FIX_MODES  # the one list of fix modes

log = logging.getLogger(__name__)


# The traffic classes beside the ordinary payers (locustfiles/traffic.py), by weight. The payers
# weigh PAYER_WEIGHT, so the default puts about 1 user in 12 on each class: every run meets a
# shared invoice and a drained wallet, while the payers still carry the load the bench measures
# and the checks that need many payouts (timeouts resolved, retries).
# (issue 10, items 1-2: retry and edge join them; `payers=N` sets the payers' weight, 0 runs the
# classes alone, as the mutant runs that prove one class's check do)
TRAFFIC_CLASSES = ("shared", "drain", "retry", "edge")
PAYERS = "payers"
PAYER_WEIGHT = 10
TRAFFIC_WEIGHT_MAX = 100
DEFAULT_TRAFFIC_MIX = "shared=1,drain=1,retry=1,edge=1"
ADMIN_TOKEN_ENV = "LNCHAOS_ADMIN_TOKEN"

# The embedded target's timing (passed explicitly; the target's own defaults are the same).
TARGET_INFLIGHT_HOLD_MS = 1500
TARGET_NODE_TIMEOUT_MS = 500
TARGET_RESOLVER_INTERVAL_MS = 100
FINAL_WAIT_MARGIN_S = 3.0
# the edge workload's long hold (locustfiles/edge_workload.py) is the longest a payment of a
# default run stays in flight: the final wait covers it
_LONGEST_HOLD_MS = max(TARGET_INFLIGHT_HOLD_MS, LONG_HOLD_MS)
DEFAULT_FINAL_WAIT_S = float(
    math.ceil(
        (_LONGEST_HOLD_MS + TARGET_NODE_TIMEOUT_MS + 2 * TARGET_RESOLVER_INTERVAL_MS) / 1000
        + FINAL_WAIT_MARGIN_S
    )
)  # 14 s (6 s before the long holds)
FINAL_WAIT_S_MAX = 600.0


SPIKE_FACTOR_MAX = 100
SPIKE_CYCLE_S_MAX = 3600.0
SEED_MAX = 2**63 - 1

# the open model (issue 14, add_arrival_arguments below)
ARRIVALS = ("constant", "poisson")
ARRIVAL_RATE_MAX_PER_S = 100_000.0
MAX_PAYERS_MAX = 5000  # each payer is a Locust user with its own wallet and connections
DEFAULT_MAX_PAYERS = 50
DEFAULT_MAX_START_DELAY_MS = 50
MAX_START_DELAY_MS_MAX = 60_000


# ---- validation: one place for the command line (argparse types) and the web UI's form ---------


def _within(kind: type, low: float, high: float, noun: str) -> Any:
    """The parse of a bounded number: `kind` (int or float) within [low, high], else a
    ValueError saying `must be {noun} within [low, high]`."""

    def text(bound: float) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    def parse(value: Any) -> Any:
        number = _number(value, kind)
        if not low <= number <= high:
            raise ValueError(f"must be {noun} within [{text(low)}, {text(high)}], not {value!r}")
        return number

    return parse


def _whole(low: int, high: int) -> Any:
    return _within(int, low, high, "a whole number")


_share = _within(float, 0.0, 1.0, "a share")
_seconds = _within(float, 0.0, FINAL_WAIT_S_MAX, "seconds")


def _number(value: Any, kind: type) -> Any:
    """A finite int or float from an option's text (or a value already parsed)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {value!r}")
    try:
        number = kind(str(value).strip()) if isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"must be {what}, not {value!r}") from None
    if kind is int and not isinstance(value, (int, str)) and number != value:
        raise ValueError(f"must be a whole number, not {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, not {value!r}")
    return number


def _spike_cycle(value: Any) -> float:
    cycle_s = _number(value, float)
    if cycle_s != 0 and not SPIKE_CYCLE_S_MIN <= cycle_s <= SPIKE_CYCLE_S_MAX:
        raise ValueError(f"must be 0 or within [{SPIKE_CYCLE_S_MIN:g}, {SPIKE_CYCLE_S_MAX:g}]")
    return cycle_s


def _traffic(value: Any) -> dict[str, int]:
    try:
        return parse_traffic_mix(value)
    except ValueError as err:  # its text starts with the option's name: keep only the why
        raise ValueError(str(err).removeprefix("--traffic-mix: ")) from None


# Every suite option with a value to check: dest -> (flag, parse). parse returns the typed
# value or raises ValueError saying why (without the flag: the callers name it).
PARSERS: dict[str, tuple[str, Any]] = {
    "timeout_rate": ("--timeout-rate", _share),
    "spike_timeout_rate": ("--spike-timeout-rate", _share),
    "late_settle_rate": ("--late-settle-rate", _share),
    "failure_rate": ("--failure-rate", _share),
    "retry_share": ("--retry-share", _share),
    "spike_factor": ("--spike-factor", _whole(1, SPIKE_FACTOR_MAX)),
    "spike_cycle_s": ("--spike-cycle-s", _spike_cycle),
    "max_inconsistencies": ("--max-inconsistencies", _whole(0, SEED_MAX)),
    "final_wait_s": ("--final-wait-s", _seconds),
    "seed": ("--seed", _whole(0, SEED_MAX)),
    "traffic_mix": ("--traffic-mix", _traffic),
    "arrival_rate": ("--arrival-rate", _within(float, 0.0, ARRIVAL_RATE_MAX_PER_S, "a number")),
    "max_payers": ("--max-payers", _whole(1, MAX_PAYERS_MAX)),
    "max_start_delay_ms": ("--max-start-delay-ms", _whole(0, MAX_START_DELAY_MS_MAX)),
}
# The options with choices (argparse checks them on the command line; the form is checked here).
CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fix": ("--fix", FIX_MODES),
    "shape": ("--shape", tuple(SHAPES)),
    "checks": ("--checks", ("on", "off")),
    "arrivals": ("--arrivals", ARRIVALS),
}


def value_problem(dest: str, value: Any) -> str | None:
    """Why `value` is not valid for the suite option `dest`, naming the option; None if it is
    (or if `dest` is not a suite option with a value to check)."""
    if dest in CHOICES:
        flag, choices = CHOICES[dest]
        if str(value).strip() not in choices:
            return f"{flag}: {value!r} is not one of {', '.join(choices)}"
        return None
    if dest in PARSERS:
        flag, parse = PARSERS[dest]
        try:
            parse(value)
        except ValueError as err:
            return f"{flag}: {err}"
    return None


def form_problems(form: Any) -> list[str]:
    """What is wrong in a web UI start form (a mapping of option dest -> text): every suite
    option it carries is checked as the command line checks it."""
    return [
        problem
        for dest in (*CHOICES, *PARSERS)
        if dest in form and (problem := value_problem(dest, form[dest])) is not None
    ]


def host_problem(form_host: str | None, host_in_use: str | None) -> str | None:
    """The start form's host must be the one the suite judges: the embedded target, or the
    --host it was started with (its admin token, or LNbits' judge, is bound to that address).
    Locust would take any text, an empty one too (its users then stop on a traceback), and
    send the load there while the checks read another service."""
    if form_host is None:
        return None
    if form_host.strip().rstrip("/") == (host_in_use or "").rstrip("/"):
        return None
    return (
        f"host: {form_host.strip()!r} is not this run's target {host_in_use!r} (the one the "
        "suite judges); another target or wallet is set with --host on the command line"
    )


def guard_web_form(environment: Any) -> None:
    """In the web UI, a start (POST /swarm) whose form has a bad suite option is answered
    `{"success": false, "message": "--fix: 'maybe' is not one of off, rollback, on"}` and
    starts nothing, as the command line refuses it (exit 2). A Flask before_request hook on
    Locust's own app: Locust's /swarm copies form fields into the parsed options unchecked
    (`type(default)(value)`, or the text as it is). The answer keeps Locust's own shape and
    status (200 with success false): its start form shows `message` only from a 2xx answer."""
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is None:
        return
    from flask import jsonify, request  # Locust's web UI is Flask: here only when it runs

    def check_swarm_form() -> Any:
        if request.method != "POST" or not request.path.rstrip("/").endswith("/swarm"):
            return None
        problems = form_problems(request.form)
        host = host_problem(request.form.get("host"), environment.host)
        if host:
            problems.append(host)
        in_use = str(getattr(environment.parsed_options, "wallet_api", None) or "lnchaos")
        switch = wallet_api_switch_problem(request.form.get("wallet_api"), in_use)
        if switch:
            problems.append(switch)
        if not problems:
            return None
        message = "not started: " + "; ".join(problems)
        log.error("web UI start refused: %s", message)
        return jsonify({"success": False, "message": message, "host": environment.host})

    web_ui.app.before_request(check_swarm_form)


def _argument(dest: str) -> Any:
    """The argparse type of a suite option: its parse, its why as argparse's error (exit 2)."""
    _, parse = PARSERS[dest]

    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse_argument.__name__ = dest  # argparse names the type in some of its messages
    return parse_argument


def add_arguments(parser: Any) -> None:
    """Listener for `events.init_command_line_parser`."""
    # the order is --help's and the web UI's: one group after another
    _add_run_arguments(parser)
    _add_fault_arguments(parser)
    _add_spike_arguments(parser)
    _add_traffic_arguments(parser)
    _add_verdict_arguments(parser)
    _add_target_arguments(parser)
    add_wallet_api_arguments(parser)


def _add_run_arguments(parser: Any) -> None:
    """What runs: the load shape and the target's payout flow."""
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


def _add_fault_arguments(parser: Any) -> None:
    """The network's faults: timeouts (normal and spike), late settles, failures."""
    parser.add_argument(
        "--timeout-rate",
        type=_argument("timeout_rate"),
        default=0.01,
        help="Share of Lightning payments that time out under normal traffic.",
    )
    parser.add_argument(
        "--spike-timeout-rate",
        type=_argument("spike_timeout_rate"),
        default=0.05,
        help="Share of Lightning payments that time out during the spike phase.",
    )
    parser.add_argument(
        "--late-settle-rate",
        type=_argument("late_settle_rate"),
        default=0.5,
        help="Share of timed-out payments that the network settles late (the rest fail).",
    )
    parser.add_argument(
        "--failure-rate",
        type=_argument("failure_rate"),
        default=None,
        # not in the start form: its default (none: the target's own) is no number the form can
        # show (Locust's form failed to render at all), and the Consistency tab's controls set
        # the failure rate mid-run
        include_in_web_ui=False,
        help="Share of Lightning payments the network fails at once (a definite failure); "
        "default: the target's own (0 for the embedded target).",
    )


def _add_spike_arguments(parser: Any) -> None:
    """The spike shape's size and cycle."""
    parser.add_argument(
        "--spike-factor",
        type=_argument("spike_factor"),
        default=4,
        help=f"Spike shape: users during the spike, as a multiple of -u (1-{SPIKE_FACTOR_MAX}).",
    )
    parser.add_argument(
        "--spike-cycle-s",
        type=_argument("spike_cycle_s"),
        default=0.0,
        help="Spike shape: seconds of one cycle (ramp or normal, spike, recovery), repeated "
        f"until -t (a soak); 0: one cycle fitted into -t ({SPIKE_CYCLE_S_MIN:g}-"
        f"{SPIKE_CYCLE_S_MAX:g}).",
    )


def _add_traffic_arguments(parser: Any) -> None:
    """What the users send: retries, checks on or off, the traffic classes."""
    parser.add_argument(
        "--retry-share",
        type=_argument("retry_share"),
        default=0.1,
        help="Share of payouts retried with the same Idempotency-Key.",
    )
    parser.add_argument(
        "--checks",
        choices=("on", "off"),
        default="on",
        help="off: load only (the same payouts and retries, taken on trust: no balance reads, "
        "node lookups or resolution polls), to measure what the checks cost (lnchaos bench).",
    )
    parser.add_argument(
        "--traffic-mix",
        type=_argument("traffic_mix"),
        default=DEFAULT_TRAFFIC_MIX,
        include_in_web_ui=False,  # user classes and their weights are fixed at start
        help=f"Traffic classes beside the ordinary payers (weight {PAYER_WEIGHT}), as NAME=WEIGHT "
        f"pairs ({', '.join(TRAFFIC_CLASSES)}; weights 0-{TRAFFIC_WEIGHT_MAX}), or none. Shared: "
        "one invoice paid from two wallets at once; drain: parallel payouts over a wallet's "
        "balance; retry: the same Idempotency-Key again while the first runs, with another "
        "invoice, a new key after a failure or a success; edge: expired, foreign, amountless "
        "and over-limit invoices. payers=N sets the payers' weight (0: the classes alone). "
        "Off with --checks off.",
    )


def _add_verdict_arguments(parser: Any) -> None:
    """How the run is judged: the threshold and the final wait."""
    parser.add_argument(
        "--max-inconsistencies",
        type=_argument("max_inconsistencies"),
        default=0,
        help="Inconsistencies tolerated before the run fails (zero tolerance by default).",
    )
    parser.add_argument(
        "--final-wait-s",
        type=_argument("final_wait_s"),
        default=DEFAULT_FINAL_WAIT_S,
        help="After the load: how long the verdict waits for the run's payouts to become final; "
        "then any payout still pending or in flight counts as `unresolved`. The default follows "
        "from the embedded target's in-flight hold, node timeout and resolver interval.",
    )


def _add_target_arguments(parser: Any) -> None:
    """The run's seed, its files, and how the target is reached."""
    parser.add_argument(
        "--seed",
        type=_argument("seed"),
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
        "--progress-file",
        default=None,
        include_in_web_ui=False,
        help="Also write the run's progress (phase, payouts, timeouts, inconsistencies, drift) "
        "to this JSON file once a second while it runs (lnchaos compare's progress line).",
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
        if not sep or name not in (*TRAFFIC_CLASSES, PAYERS):
            raise ValueError(
                f"--traffic-mix: {part.strip()!r} is not NAME=WEIGHT with NAME one of "
                f"{', '.join((*TRAFFIC_CLASSES, PAYERS))} (or say none)"
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
    if mix.get(PAYERS) == 0 and not any(mix.get(name) for name in TRAFFIC_CLASSES):
        raise ValueError("--traffic-mix: payers=0 needs a traffic class of weight above 0")
    # a class of weight 0 is off; the payers' weight is kept as given (0: the classes alone)
    return {name: weight for name, weight in mix.items() if weight > 0 or name == PAYERS}


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
    failure_rate: float | None = None  # None: the target's own
    # --- the wallet adapter (locustfiles/wallets/) ---
    wallet_api: str = "lnchaos"
    node_url: str | None = None
    node_admin_token: str | None = None

    @property
    def consistency_path(self) -> Path:
        return self.report_dir / "consistency.json"


def settings_from(options: Any) -> Settings:
    """Typed, validated settings from Locust's parsed options (the web UI hands some over as
    text); ValueError names every bad option and why (the same checks as the command line)."""
    defaults: dict[str, Any] = {
        "fix": "off",
        "shape": "steady",
        "checks": "on",
        "timeout_rate": 0.01,
        "spike_timeout_rate": 0.05,
        "late_settle_rate": 0.5,
        "retry_share": 0.1,
        "spike_factor": 4,
        "max_inconsistencies": 0,
        "final_wait_s": DEFAULT_FINAL_WAIT_S,
        "seed": 1,
        "traffic_mix": DEFAULT_TRAFFIC_MIX,
    }
    raw = {dest: _get(options, dest, default) for dest, default in defaults.items()}
    raw["shape"] = raw["shape"] or "steady"
    failure_rate = _get(options, "failure_rate", None)
    if failure_rate not in (None, ""):  # unset: the target keeps its own
        raw["failure_rate"] = failure_rate
    problems = [p for dest, value in raw.items() if (p := value_problem(dest, value)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    value = {dest: PARSERS[dest][1](raw[dest]) for dest in raw if dest in PARSERS}
    return Settings(
        fix=str(raw["fix"]).strip(),
        shape=str(raw["shape"]).strip(),
        profile=_get(options, "profile", None) or None,
        timeout_rate=value["timeout_rate"],
        spike_timeout_rate=value["spike_timeout_rate"],
        late_settle_rate=value["late_settle_rate"],
        spike_factor=value["spike_factor"],
        retry_share=value["retry_share"],
        max_inconsistencies=value["max_inconsistencies"],
        final_wait_s=value["final_wait_s"],
        seed=value["seed"],
        report_dir=Path(str(_get(options, "report_dir", "reports") or "reports")),
        admin_token=_get(options, "admin_token", None) or os.environ.get(ADMIN_TOKEN_ENV),
        host=_get(options, "host", None) or None,
        target_bind=str(_get(options, "target_bind", LOOPBACK) or LOOPBACK).strip(),
        traffic_mix=tuple(sorted(value["traffic_mix"].items())),
        failure_rate=value.get("failure_rate"),
        **wallet_api_settings(options),
    )


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


# ---- the wallet adapter (locustfiles/wallets/): --wallet-api and the node it needs -------------
# With --wallet-api lnbits the suite drives a wallet it did not start (--host), and the judge is a
# `lnchaos node` the wallet uses as its funding source: invoices, faults and the truth of every
# payment come from --node-url, with --node-admin-token for its /admin routes.

NODE_ADMIN_TOKEN_ENV = "LNCHAOS_NODE_ADMIN_TOKEN"


def add_wallet_api_arguments(parser: Any) -> None:
    from locustfiles.wallets import registry

    parser.add_argument(
        "--wallet-api",
        choices=registry.choices(),  # the installed adapters: the web UI's form lists them
        default=registry.DEFAULT,
        metavar="NAME",
        help="The wallet API the payers drive: lnchaos (the embedded target, or --host), lnbits "
        "(LNbits at --host, funded from and judged by the lnchaos node at --node-url), an "
        f"installed adapter (entry point group {registry.ENTRY_POINT_GROUP}) or "
        "package.module:Class (docs/adapters.md). Fixed at start: the web UI keeps it.",
    )
    parser.add_argument(
        "--node-url",
        default=None,
        include_in_web_ui=False,
        help="--wallet-api lnbits: URL of the `lnchaos node` the wallet pays through (the judge).",
    )
    parser.add_argument(
        "--node-admin-token",
        default=None,
        env_var=NODE_ADMIN_TOKEN_ENV,
        include_in_web_ui=False,
        help=f"--wallet-api lnbits: the node's admin token (or ${NODE_ADMIN_TOKEN_ENV}).",
    )


def wallet_api_settings(options: Any) -> dict[str, Any]:
    wallet_api = str(_get(options, "wallet_api", "lnchaos") or "lnchaos")
    node_url = _get(options, "node_url", None) or None
    token = _get(options, "node_admin_token", None) or os.environ.get(NODE_ADMIN_TOKEN_ENV)
    return {
        "wallet_api": wallet_api,
        "node_url": str(node_url).rstrip("/") if node_url else None,
        "node_admin_token": token or None,
    }


def wallet_api_problem(settings: Settings) -> str | None:
    """Why the run cannot drive this wallet API, else None."""
    from locustfiles.wallets import registry

    try:
        adapter = registry.load(settings.wallet_api)
    except registry.AdapterError as err:
        return str(err)
    if adapter.judged_by == "target":
        return None
    missing = [
        option
        for option, value in (
            ("--host", settings.host),
            ("--node-url", settings.node_url),
            ("--node-admin-token", settings.node_admin_token),
        )
        if not value
    ]
    if missing:
        return f"--wallet-api {settings.wallet_api} needs {', '.join(missing)}"
    return None


def wallet_api_switch_problem(form_value: str | None, in_use: str) -> str | None:
    """The web UI's start form may pick another adapter the same judge reads: one more that
    the target judges, when the target judges this run. A node-judged adapter's judge was built
    for it at start (it reads that adapter's own record), so it stays."""
    from locustfiles.wallets import registry

    if form_value is None or form_value == in_use:
        return None
    try:
        wanted, current = registry.load(form_value), registry.load(in_use)
    except registry.AdapterError as err:
        return str(err)
    if wanted.judged_by == current.judged_by == "target":
        return None
    return (
        f"--wallet-api: {form_value!r} needs another judge than {in_use!r}, which this run "
        "was started with; start locust again with --wallet-api to change it"
    )


def wallet_api_note(settings: Settings) -> dict[str, Any]:
    """consistency.json's `wallet_api`: which API was driven and what it could not be asked."""
    from locustfiles.wallets import registry

    if settings.wallet_api == registry.DEFAULT:
        return {"name": registry.DEFAULT, "left_out": []}
    note: dict[str, Any] = {"name": settings.wallet_api, "left_out": []}
    try:
        adapter = registry.load(settings.wallet_api)
    except registry.AdapterError as err:
        return {**note, "error": str(err)}
    note.update(
        adapter=registry.spec_of(settings.wallet_api),
        contract=adapter.contract,
        judged_by=adapter.judged_by,
        accounting=adapter.accounting,
    )
    left_out = note["left_out"]
    if not adapter.idempotent:
        left_out.append(
            "idempotent_retry with an Idempotency-Key: the wallet's API has none; a retry "
            "resends the same invoice and is checked for never charging twice"
        )
    left_out.append(
        "traffic classes shared and drain (--traffic-mix): they speak lnchaos's wallet API"
    )
    if adapter.accounting != "balance":
        left_out.append(
            f"the balance checks: {adapter.accounting} have no balance; each payout is judged "
            "by resolved_vs_node_truth and again by the end-of-run judge"
        )
    if adapter.judged_by == "node":
        note["node_url"] = settings.node_url
        left_out.append("fix modes (--fix): the wallet has its own payout flow")
    return note


# ---- the open model (issue 14): payouts arriving at a rate -----------------------------------
# Kept apart from the options above. 0 (the default) keeps the closed model: -u users, each
# paying as soon as its last payout was judged (README "Closed versus open model" says why that
# stays the default). locustfiles/arrival.py is the scheduler.

# the open model's limits: with the options below (add_arrival_arguments)


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
        type=_argument("arrival_rate"),
        default=0.0,
        help="Open model: payouts per second offered in normal traffic (the spike shape "
        "multiplies it by --spike-factor). 0: the closed model (-u users).",
    )
    group.add_argument(
        "--max-payers",
        type=_argument("max_payers"),
        default=DEFAULT_MAX_PAYERS,
        help="Open model: payers allocated at the start (Locust users, spread over the workers; "
        "the rate is split in proportion). An arrival finding none free waits, then is dropped.",
    )
    group.add_argument(
        "--max-start-delay-ms",
        "--max-start-delay",
        type=_argument("max_start_delay_ms"),
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
    # the web UI's form hands values over as text: parsed (and bounded) as the command line's
    rate = _parsed(options, "arrival_rate", 0.0)
    if rate <= 0:
        return None
    arrivals = str(_get(options, "arrivals", "constant")).strip()
    if arrivals not in ARRIVALS:
        raise ValueError(value_problem("arrivals", arrivals))
    return ArrivalSettings(
        arrival_rate_per_s=rate,
        spike_factor=_parsed(options, "spike_factor", 4),
        max_payers=_parsed(options, "max_payers", DEFAULT_MAX_PAYERS),
        max_start_delay_ms=_parsed(options, "max_start_delay_ms", DEFAULT_MAX_START_DELAY_MS),
        arrivals=arrivals,
    )


def _parsed(options: Any, dest: str, default: Any) -> Any:
    """An option's value through its one parse (PARSERS), naming the option when it is bad."""
    value = _get(options, dest, default)
    flag, parse = PARSERS[dest]
    try:
        return parse(default if value is None or value == "" else value)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
