"""The suite's options, registered on Locust's own parser so they show in the web UI too.

`--profile` is Locust's own option (a free-text label for grouping runs, with a field of its own
in the web UI); the suite adopts it instead of adding a second one: it gains choices and a
default. Every other option is the suite's. Values reach `Settings` through one function,
because the web UI hands some of them over as strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locustfiles.shapes import PROFILES

FIX_MODES = ("off", "rollback", "on")
ADMIN_TOKEN_ENV = "LNCHAOS_ADMIN_TOKEN"


def add_arguments(parser: Any) -> None:
    """Listener for `events.init_command_line_parser`."""
    _adopt_profile(parser)
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
        "--max-inconsistencies",
        type=int,
        default=0,
        help="Inconsistencies tolerated before the run fails (zero tolerance by default).",
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
        help=f"Admin token of a running target given with --host (or ${ADMIN_TOKEN_ENV}).",
    )


def _adopt_profile(parser: Any) -> None:
    for action in parser._actions:
        if action.dest == "profile":
            action.choices = PROFILES
            action.default = "steady"
            action.help = "Load profile: steady or spike (see locustfiles/shapes.py)."
            return
    parser.add_argument("--profile", choices=PROFILES, default="steady", help="Load profile.")


@dataclass(frozen=True)
class Settings:
    fix: str
    profile: str
    timeout_rate: float
    spike_timeout_rate: float
    late_settle_rate: float
    spike_factor: int
    retry_share: float
    max_inconsistencies: int
    seed: int
    report_dir: Path
    admin_token: str | None
    host: str | None

    @property
    def consistency_path(self) -> Path:
        return self.report_dir / "consistency.json"


def settings_from(options: Any) -> Settings:
    """Typed, validated settings from Locust's parsed options; ValueError names a bad one."""
    settings = Settings(
        fix=str(_get(options, "fix", "off")),
        profile=str(_get(options, "profile", None) or "steady"),
        timeout_rate=float(_get(options, "timeout_rate", 0.01)),
        spike_timeout_rate=float(_get(options, "spike_timeout_rate", 0.05)),
        late_settle_rate=float(_get(options, "late_settle_rate", 0.5)),
        spike_factor=int(_get(options, "spike_factor", 4)),
        retry_share=float(_get(options, "retry_share", 0.1)),
        max_inconsistencies=int(_get(options, "max_inconsistencies", 0)),
        seed=int(_get(options, "seed", 1)),
        report_dir=Path(str(_get(options, "report_dir", "reports") or "reports")),
        admin_token=_get(options, "admin_token", None) or os.environ.get(ADMIN_TOKEN_ENV),
        host=_get(options, "host", None) or None,
    )
    if settings.fix not in FIX_MODES:
        raise ValueError(f"--fix must be one of {', '.join(FIX_MODES)}, not {settings.fix!r}")
    if settings.profile not in PROFILES:
        raise ValueError(f"--profile must be one of {', '.join(PROFILES)}")
    for name in ("timeout_rate", "spike_timeout_rate", "late_settle_rate", "retry_share"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be within [0, 1]")
    if settings.max_inconsistencies < 0 or settings.spike_factor < 1:
        raise ValueError("--max-inconsistencies must be >= 0 and --spike-factor >= 1")
    return settings


def _get(options: Any, name: str, default: Any) -> Any:
    value = getattr(options, name, default)
    return default if value is None else value
