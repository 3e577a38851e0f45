"""`lnchaos compare`: the same traffic and faults against each fix mode, then one report.

Each mode runs the Locust suite headless in a subprocess, with a fresh embedded target, the same
load shape (--shape), seed, duration and users. While it runs, a progress line shows mode,
phase, elapsed time, payouts, timeouts and inconsistencies so far, redrawn twice a second from
the suite's own telemetry (the run writes it to progress.json once a second: --progress-file;
Locust's CSV history is written only every few seconds). At the end:
the table, the path of report.html, and an exit code: 0 only when fix on passed with zero
inconsistencies and resolved at least one timed-out payout (a fix is proven only while timeouts
happen), and fix off reproduced the incident (its run failed with exit 3 and charged_not_paid).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from target.common.child import ChildProcess
from target.config import FIX_MODES

from .report import (
    mode_summary,
    msat,
    open_model_lines,
    open_model_row,
    text_table,
    write_report,
)

MODES = FIX_MODES  # target/config.py: the one list of fix modes
SUITE = Path(__file__).resolve().parent.parent / "locustfiles" / "lnchaos_suite.py"
GRACE_S = 90.0  # beyond the run time: target start, the verdict's bounded wait, report writing

EXIT_OK = 0
EXIT_NOT_PROVEN = 3  # fix on lost money, or fix off did not reproduce the incident
EXIT_RUN_FAILED = 5  # a run did not produce its consistency.json
EXIT_USAGE = 2
EXIT_CODES = """exit codes:
  0  fix on passed with zero inconsistencies and resolved at least one timed-out payout, and
     fix off reproduced the incident (exit 3 with charged_not_paid)
  2  a usage error (an unknown mode, an option out of range)
  3  not proven: fix on lost money or resolved no timeout, or fix off did not reproduce the
     incident
  5  a run produced no consistency.json (it did not start, or was stopped at its bound)"""
PROGRESS_FILE = "progress.json"


def share(text: str) -> float:
    """An argparse type: a share within [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a share within [0, 1], not {text!r}")
    return value


def at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {text!r}")
        return value

    return parse


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated fix modes, each one of {', '.join(MODES)}",
    )
    parser.add_argument(
        "--shape", choices=("steady", "spike"), default="spike", help="the suite's load shape"
    )
    # 20 s per mode: the whole first README command (install included) stays under 3 minutes.
    parser.add_argument(
        "--duration",
        type=duration_s,
        default=20,
        help="per mode: seconds (at least 5), or a Locust time string as -t takes it (30s, 1m30s)",
    )
    parser.add_argument("--users", type=at_least(1), default=10, help="users in normal traffic")
    parser.add_argument("--seed", type=at_least(0), default=1, help="the runs' seed")
    parser.add_argument(
        "--timeout-rate", type=share, default=0.01, help="share of payments timing out (normal)"
    )
    parser.add_argument(
        "--spike-timeout-rate",
        type=share,
        default=0.05,
        help="share of payments timing out during the spike",
    )
    parser.add_argument(
        "--late-settle-rate",
        type=share,
        default=0.5,
        help="share of timed-out payments that settle late (the rest fail)",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where the report goes (default: reports/compare-<UTC timestamp>)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_open_model_options(parser)


def mode_args(mode: str) -> list[str]:
    """The suite's arguments that make a run of `mode`. Tests substitute a broken mapping."""
    return ["--fix", mode]


def run(args: argparse.Namespace, *, args_for: Callable[[str], list[str]] = mode_args) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        print(
            f"lnchaos compare: --modes: unknown mode(s) {unknown or modes}; "
            f"choose from {', '.join(MODES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.duration < 5 or args.users < 1:
        print(
            "lnchaos compare: --duration must be at least 5 and --users at least 1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    problem = open_model_problem(args)
    if problem:
        print(f"lnchaos compare: {problem}", file=sys.stderr)
        return EXIT_USAGE
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = args.report_dir or Path("reports") / f"compare-{stamp}"
    report_dir.mkdir(parents=True, exist_ok=True)
    report_dir = report_dir.resolve()  # the runs' working folder is their own
    settings = {
        "shape": args.shape,
        "duration_s": args.duration,
        "users": args.users,
        "seed": args.seed,
        "timeout_rate": args.timeout_rate,
        "spike_timeout_rate": args.spike_timeout_rate,
        "late_settle_rate": args.late_settle_rate,
        **open_model_settings(args),
    }
    rows = []
    for mode in modes:
        run_dir = report_dir / mode
        run_dir.mkdir(parents=True, exist_ok=True)
        code = run_mode(mode, run_dir, args, args_for(mode))
        rows.append({**mode_summary(mode, run_dir, code), **open_model_row(run_dir)})
    verdict = judge(rows)
    path = write_report(report_dir, rows, verdict, settings)
    print()
    print(text_table(rows))
    print()
    print(open_model_lines(rows))
    print()
    print(f"report: {path.resolve()}")
    print(f"{verdict['status'].upper()}: {verdict['reason']}")
    return verdict["exit_code"]


def suite_command(
    mode: str, run_dir: Path, args: argparse.Namespace, extra: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "locust",
        "-f", str(SUITE),
        "--headless",
        "--run-time", f"{args.duration}s",
        "--users", str(args.users),
        "--spawn-rate", str(max(1, args.users)),
        "--shape", args.shape,
        "--seed", str(args.seed),
        "--timeout-rate", str(args.timeout_rate),
        "--spike-timeout-rate", str(args.spike_timeout_rate),
        "--late-settle-rate", str(args.late_settle_rate),
        "--report-dir", str(run_dir),
        "--csv", str(run_dir / "locust"),
        "--progress-file", str(run_dir / PROGRESS_FILE),  # the progress line reads it
        "--html", str(run_dir / "locust.html"),
        "--only-summary",
        "--loglevel", "WARNING",
        *open_model_args(args),
        *extra,
    ]  # fmt: skip


def run_mode(mode: str, run_dir: Path, args: argparse.Namespace, extra: list[str]) -> int:
    """One headless suite run; returns its exit code. Bounded: stopped after run time + grace."""
    progress = Progress(mode, run_dir, args.duration)
    started = time.monotonic()
    bound_s = args.duration + GRACE_S
    # cwd: a folder with no locust.conf, so only our arguments shape the run.
    child = ChildProcess(
        suite_command(mode, run_dir, args, extra),
        log_path=run_dir / "locust.log",
        cwd=run_dir,
        name=f"fix {mode}",
    )
    with child.start():

        def show_progress() -> bool:
            if not args.quiet:
                progress.show(time.monotonic() - started)
            return False

        code = child.wait(bound_s, until=show_progress, poll_s=Progress.POLL_S)
        if code is None:
            print(f"\nfix {mode}: over {bound_s:.0f} s, stopping it")
            code = child.stop(10.0)
    code = -1 if code is None else code  # no exit status at all: judged by its missing report
    progress.done(time.monotonic() - started, code)
    return code


class Progress:
    """One line: mode, phase, elapsed, payouts, timeouts and inconsistencies so far, from the
    suite's own telemetry (progress.json, rewritten once a second by the run). Redrawn in place
    on a terminal twice a second; a plain line once a second elsewhere (CI logs)."""

    POLL_S = 0.5
    PLAIN_EVERY_S = 1.0
    STALE_S = 2.5  # no sample for this long: the run's load has stopped

    def __init__(self, mode: str, run_dir: Path, duration_s: int):
        self.mode = mode
        self.path = run_dir / PROGRESS_FILE
        self.duration_s = duration_s
        self.tty = sys.stdout.isatty()
        self.latest: dict[str, Any] = {}  # the run's newest sample
        self.last_plain_s = -self.PLAIN_EVERY_S

    def line(self, elapsed_s: float) -> str:
        self.read()
        sample = self.latest
        if not sample:  # Locust and the target still starting: the time since launch
            return f"fix {self.mode:<8} starting  {elapsed_s:5.1f} s since launch"
        # the run's own clock (its load starts after Locust and the target are up)
        phase, t_s = str(sample.get("phase", "?")), float(sample.get("t_s", 0.0))
        if time.time() - float(sample.get("written_unix", 0.0)) > self.STALE_S:
            phase = "verdict"  # the load stopped (no new sample): the verdict's final wait
        line = f"fix {self.mode:<8} {phase:<9} {t_s:5.1f}/{self.duration_s} s"
        line += f"  payouts {int(sample.get('payouts', 0)):,}"
        line += f"  timeouts {int(sample.get('timeouts', 0)):,}"
        line += f"  inconsistencies {int(sample.get('inconsistencies', 0)):,}"
        return line

    def show(self, elapsed_s: float) -> None:
        line = self.line(elapsed_s)
        if self.tty:
            print("\r" + line.ljust(96), end="", flush=True)
        elif elapsed_s - self.last_plain_s >= self.PLAIN_EVERY_S:
            self.last_plain_s = elapsed_s
            print(line, flush=True)

    def done(self, elapsed_s: float, exit_code: int) -> None:
        line = f"fix {self.mode:<8} done in {elapsed_s:5.1f} s, exit code {exit_code}"
        print(("\r" + line.ljust(96)) if self.tty else line, flush=True)

    def read(self) -> None:
        """The newest sample; a file not there yet, or being replaced, keeps the last one."""
        try:
            sample = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(sample, dict):
            self.latest = sample


def judge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """0 only when fix on lost nothing while resolving timeouts, and fix off reproduced the
    incident."""
    by_mode = {row["mode"]: row for row in rows}
    for row in rows:
        if row["verdict"] == "missing":
            reason = f"fix {row['mode']} produced no consistency.json (exit {row['exit_code']})"
            return {"status": "fail", "exit_code": EXIT_RUN_FAILED, "reason": reason}
    on, off = by_mode.get("on"), by_mode.get("off")
    if on is not None:
        if on["inconsistencies_total"] > 0 or on["exit_code"] != 0:
            reason = (
                f"fix on is not consistent: {on['inconsistencies_total']} inconsistencies"
                f" (exit {on['exit_code']}: {on['reason']})"
            )
            return {"status": "fail", "exit_code": EXIT_NOT_PROVEN, "reason": reason}
        if on["timeouts_resolved"] < 1:
            reason = (
                f"fix on resolved no timed-out payout ({on['payouts_timed_out']} timed out):"
                " the fix was not exercised; raise --timeout-rate or --duration"
            )
            return {"status": "fail", "exit_code": EXIT_NOT_PROVEN, "reason": reason}
    if off is not None and (off["charged_not_paid"]["count"] < 1 or off["exit_code"] != 3):
        reason = (
            "fix off did not reproduce the incident: charged_not_paid is"
            f" {off['charged_not_paid']['count']}, exit {off['exit_code']} (expected 3)"
        )
        return {"status": "fail", "exit_code": EXIT_NOT_PROVEN, "reason": reason}
    parts = []
    if off is not None:
        cnp = off["charged_not_paid"]
        parts.append(
            f"fix off charged {cnp['count']:,} payouts not paid: {msat(cnp['amount_msat'])}"
        )
    rollback = by_mode.get("rollback")
    if rollback is not None:
        pnc = rollback["paid_not_charged"]
        parts.append(f"rollback paid {pnc['count']:,} not charged: {msat(pnc['amount_msat'])}")
    if on is not None:
        parts.append(
            f"fix on: 0 inconsistencies, {on['timeouts_resolved']} timed-out payouts resolved"
        )
    return {
        "status": "pass",
        "exit_code": EXIT_OK,
        "reason": "; ".join(parts) or "nothing to compare",
    }


def main(args: argparse.Namespace) -> int:
    return run(args)


# ---- the open model and Locust's time strings (issue 14) -------------------------------------


DURATION_S_MIN = 5  # a spike run needs its ramp, normal, spike and recovery phases


# Locust's time strings as -t takes them (locust.util.timespan): importing locust here would
# monkey-patch this process with gevent (it runs aiohttp children and the report), so the same
# grammar is read here: whole seconds, or hours, minutes and seconds in that order.
TIMESPAN = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


def duration_s(text: str) -> int:
    """Whole seconds from `20`, `30s` or `1m30s` (Locust's time strings, as -t takes them)."""
    text = str(text).strip()
    match = TIMESPAN.fullmatch(text) if not text.isdigit() else None
    if not text.isdigit() and (match is None or not any(match.groupdict().values())):
        raise argparse.ArgumentTypeError(
            f"must be seconds or a time string such as 30s or 1m30s, not {text!r}"
        )
    if text.isdigit():
        value = int(text)
    else:
        assert match is not None
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}
        value = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    if value < DURATION_S_MIN:
        raise argparse.ArgumentTypeError(f"must be at least {DURATION_S_MIN} s, not {text!r}")
    return value


def add_open_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arrival-rate",
        type=float,
        default=0.0,
        help="the open model: payouts/s offered in normal traffic (x --spike-factor in the "
        "spike), dropped when no payer is free; 0: the closed model (--users)",
    )
    parser.add_argument(
        "--max-payers", type=int, default=50, help="the open model: payers allocated at start"
    )
    parser.add_argument(
        "--arrivals",
        choices=("constant", "poisson"),
        default="constant",
        help="the open model: gaps between arrivals",
    )


def open_model_args(args: argparse.Namespace) -> list[str]:
    """The suite's open-model arguments (none for the closed model)."""
    rate = float(getattr(args, "arrival_rate", 0.0) or 0.0)
    if rate <= 0:
        return []
    return [
        "--arrival-rate", f"{rate:g}",
        "--max-payers", str(int(getattr(args, "max_payers", 50))),
        "--arrivals", str(getattr(args, "arrivals", "constant")),
    ]  # fmt: skip


def open_model_problem(args: argparse.Namespace) -> str | None:
    rate = float(getattr(args, "arrival_rate", 0.0) or 0.0)
    if not 0.0 <= rate <= 100_000.0:
        return "--arrival-rate must be within [0, 100000]"
    if not 1 <= int(getattr(args, "max_payers", 50)) <= 5000:
        return "--max-payers must be within [1, 5000]"
    return None


def open_model_settings(args: argparse.Namespace) -> dict[str, Any]:
    rate = float(getattr(args, "arrival_rate", 0.0) or 0.0)
    if rate <= 0:
        return {"model": "closed"}
    return {
        "model": "open",
        "arrival_rate_per_s": rate,
        "max_payers": int(getattr(args, "max_payers", 50)),
        "arrivals": getattr(args, "arrivals", "constant"),
    }
