"""`lnchaos bench`: how far lnchaos goes on this machine, and whether the target or the checks
are what limits a load test.

One run measures, with the same Locust `FastHttpUser` driver (`bench_locustfile.py`) pinned to
CPU 0 and the server pinned to CPU 1 (when the machine has two or more):

1. floor: a bare aiohttp JSON endpoint (`bench_floor.py`): requests per second;
2. target: the payment flow of `python -m target --fix on`, no faults: requests per second, every
   request of the flow counted (invoice, payout, status), with the target's peak RSS and the p99
   latency of the payout request;
3. suite: the full Locust suite (`locustfiles/lnchaos_suite.py`), fix on, no faults, every check
   on (verified payouts per second) and every check off (payouts per second), same users.

Runs are interleaved (floor, target, suite on, suite off, then again) so a slow moment of the
machine hits every figure alike; each figure is the median of `--repetitions`. The figures and
both ratios are printed and written to `<report-dir>/bench.json`.

`--memory-run` is the 5-minute memory check instead: one target run of `--duration` (300 s by
default) sampling the target's RSS each second; `bench-memory.json` holds the peak after the first
minute, the peak at the end and whether it stayed within 10 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from target.common.child import ChildProcess, ChildServer

from .report import time_to_detect_s

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "bench_locustfile.py"
SUITE = Path(__file__).resolve().parent / "bench_suite.py"  # the suite, payers with no wait
SUITE_SOURCES = ROOT / "locustfiles"  # where the suite's options are declared
SERVER_START_TIMEOUT_S = 20.0
SERVER_STOP_TIMEOUT_S = 5.0
DRIVER_GRACE_S = 30.0  # beyond warm-up + duration: Locust's start and stop
SUITE_GRACE_S = 60.0  # beyond the run time: the verdict's bounded final wait
RSS_SAMPLE_INTERVAL_S = 0.25
CPU_POLL_INTERVAL_S = 0.2
MEMORY_RUN_FIRST_MINUTE_S = 60.0
MEMORY_FLAT_TOLERANCE = 0.10
ADMIN_TOKEN = "lnchaos-bench-admin-token"

# No faults: nothing times out or fails; the network's ordinary latency stays.
TARGET_ARGS = ["--fix", "on", "--timeout-rate", "0", "--failure-rate", "0"]
SUITE_CHECK_ARGS = {"on": ["--checks", "on"], "off": ["--checks", "off"]}


@dataclass
class BenchSettings:
    duration_s: int = 8
    warmup_s: int = 2
    users: int = 32
    suite_users: int = 48  # payers with no think time: enough to saturate one side
    repetitions: int = 3
    report_dir: Path = Path("reports")
    suite: bool = True
    memory_run: bool = False
    arrival_rate: bool = True  # search the highest sustained --arrival-rate, when it exists
    target_args: list[str] = field(default_factory=list)  # extra `python -m target` options
    pin: bool = True
    quiet: bool = False


def cpu_plan(pin: bool = True) -> tuple[set[int] | None, set[int] | None]:
    """(driver CPUs, server CPUs): CPU 0 and CPU 1 of those this process may use, if two."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[0]}, {allowed[1]}


def start_server(command: list[str], cpus: set[int] | None, log_path: Path) -> ChildServer:
    """A server child pinned to `cpus`, in its own session (target/common/child.py), started:
    its URL is known."""
    child = ChildServer(
        command,
        log_path=log_path,
        cwd=ROOT,
        cpus=cpus,
        die_with_parent=True,
        stop_timeout_s=SERVER_STOP_TIMEOUT_S,
    )
    return child.start(start_timeout_s=SERVER_START_TIMEOUT_S)


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process used so far; None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


class RssSampler:
    """A thread that samples a process's RSS until the block ends."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _sample(self) -> None:
        started = time.monotonic()
        try:
            process = psutil.Process(self.pid)
            while not self._stop.is_set():
                self.rss_samples.append((time.monotonic() - started, process.memory_info().rss))
                self._stop.wait(RSS_SAMPLE_INTERVAL_S)
        except psutil.Error:
            return

    def peak_rss_mb(self, until_s: float | None = None) -> float:
        values = [rss for t, rss in self.rss_samples if until_s is None or t <= until_s]
        return max(values, default=0) / 2**20


@dataclass
class ChildUsage:
    cpu_s: float = 0.0  # user + system, at the last poll before the child ended


def run_bounded(
    command: list[str],
    cpus: set[int] | None,
    log_path: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    usage: ChildUsage | None = None,
) -> int:
    """Run a child in its own session, pinned, stopped (with its group) after `timeout_s`; -1
    if it had to be stopped. `env` adds to this environment. Its CPU seconds, polled while it
    runs, land in `usage`."""
    usage = usage if usage is not None else ChildUsage()
    child = ChildProcess(
        command,
        log_path=log_path,
        cwd=log_path.parent,
        env=env,
        cpus=cpus,
        die_with_parent=True,
        stop_timeout_s=SERVER_STOP_TIMEOUT_S,
    )
    with child:

        def poll_cpu() -> bool:
            used_s = cpu_s(child.pid)
            if used_s is not None:
                usage.cpu_s = used_s
            return False  # never stops the wait early: only the exit or the bound do

        code = child.wait(timeout_s, until=poll_cpu, poll_s=CPU_POLL_INTERVAL_S)
    return code if code is not None else -1


def driver_command(
    url: str, mode: str, users: int, run_time_s: int, warmup_s: int, out: Path
) -> list[str]:
    return [
        sys.executable, "-m", "locust",
        "-f", str(DRIVER),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", url,
        "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{run_time_s}s", "--stop-timeout", "0",
        "--bench-mode", mode, "--bench-warmup-s", str(warmup_s), "--bench-out", str(out),
    ]  # fmt: skip


def floor_command() -> list[str]:
    return [sys.executable, "-m", "lnchaos.bench_floor", "--port", "0"]


def target_command(work_dir: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "target", "--port", "0",
        *TARGET_ARGS,
        "--admin-token", ADMIN_TOKEN,
        "--db", str(work_dir / "wallet.sqlite"),
        *extra,
    ]  # fmt: skip


def drive(
    settings: BenchSettings,
    server: ChildServer,
    mode: str,
    run_dir: Path,
    driver_cpus: set[int] | None,
) -> dict[str, Any]:
    """One driver run against `server`; the driver's window plus the server's CPU use."""
    out = run_dir / f"{mode}.json"
    run_time_s = settings.warmup_s + settings.duration_s
    command = driver_command(server.url, mode, settings.users, run_time_s, settings.warmup_s, out)
    cpu_before_s = cpu_s(server.pid) or 0.0
    started = time.monotonic()
    usage = ChildUsage()
    log_path = run_dir / f"{mode}-driver.log"
    code = run_bounded(command, driver_cpus, log_path, run_time_s + DRIVER_GRACE_S, usage=usage)
    elapsed_s = time.monotonic() - started
    if not out.exists():
        raise RuntimeError(f"the {mode} driver wrote no result (exit {code}); see {run_dir}")
    result = json.loads(out.read_text())
    result["driver_exit_code"] = code
    server_cpu_s = (cpu_s(server.pid) or cpu_before_s) - cpu_before_s
    result["server_cpu_share"] = server_cpu_s / max(elapsed_s, 1e-9)
    result["driver_cpu_share"] = usage.cpu_s / max(elapsed_s, 1e-9)
    # CPU cost per request: unlike req/s, it holds when other processes share the machine.
    requests = max(1, result["requests_all_run"])
    result["server_cpu_ms_per_request"] = server_cpu_s * 1000 / requests
    result["driver_cpu_ms_per_request"] = usage.cpu_s * 1000 / requests
    return result


def measure_floor(
    settings: BenchSettings, run_dir: Path, cpus: tuple[set[int] | None, set[int] | None]
) -> dict[str, Any]:
    driver_cpus, server_cpus = cpus
    with start_server(floor_command(), server_cpus, run_dir / "floor-server.log") as floor:
        return drive(settings, floor, "floor", run_dir, driver_cpus)


def measure_target(
    settings: BenchSettings, run_dir: Path, cpus: tuple[set[int] | None, set[int] | None]
) -> dict[str, Any]:
    driver_cpus, server_cpus = cpus
    command = target_command(run_dir, settings.target_args)
    with (
        start_server(command, server_cpus, run_dir / "target-server.log") as target,
        RssSampler(target.pid) as sampler,
    ):
        result = drive(settings, target, "target", run_dir, driver_cpus)
    result["peak_rss_mb"] = sampler.peak_rss_mb()
    result["rss_mb_after_first_minute"] = sampler.peak_rss_mb(MEMORY_RUN_FIRST_MINUTE_S)
    result["rss_samples_mb"] = [
        [round(t, 2), round(rss / 2**20, 2)] for t, rss in sampler.rss_samples[::4]
    ]
    return result


def suite_command(
    url: str,
    users: int,
    run_time_s: int,
    run_dir: Path,
    check_args: list[str],
    *,
    warmup_s: int,
    server_pid: int,
    out: Path,
    extra: list[str] | None = None,
) -> list[str]:
    """The suite at saturation (`bench_suite.py`: payers with no think time), payers only (the
    traffic classes have think times of their own), fix on, no faults."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(SUITE),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", url,
        "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{run_time_s}s",
        "--shape", "steady",
        "--fix", "on", "--timeout-rate", "0", "--spike-timeout-rate", "0",
        "--traffic-mix", "none",
        "--report-dir", str(run_dir),
        "--bench-warmup-s", str(warmup_s),
        "--bench-server-pid", str(server_pid),
        "--bench-out", str(out),
        *check_args,
        *(extra or []),
    ]  # fmt: skip


def measure_suite(
    settings: BenchSettings,
    run_dir: Path,
    cpus: tuple[set[int] | None, set[int] | None],
    checks: str,
    check_args: list[str],
    extra: list[str] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """One suite run (checks on or off) at saturation against a fresh target. The figures come
    from the driver's window after the warm-up (`bench_suite.py`): payouts answered, HTTP
    requests, the CPU seconds of the driver and of the target; the verdict and the verified
    payouts from its consistency.json."""
    driver_cpus, server_cpus = cpus
    suite_dir = run_dir / f"suite-checks-{checks}{label}"
    suite_dir.mkdir(parents=True, exist_ok=True)
    command = target_command(suite_dir, settings.target_args)
    run_time_s = settings.warmup_s + settings.duration_s
    env = {"LNCHAOS_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONPATH": str(ROOT)}
    out = suite_dir / "window.json"
    with start_server(command, server_cpus, suite_dir / "target-server.log") as target:
        code = run_bounded(
            suite_command(
                target.url,
                settings.suite_users,
                run_time_s,
                suite_dir,
                check_args,
                warmup_s=settings.warmup_s,
                server_pid=target.pid,
                out=out,
                extra=extra,
            ),
            driver_cpus,
            suite_dir / "locust.log",
            run_time_s + SUITE_GRACE_S,
            env=env,
        )
    path = suite_dir / "consistency.json"
    if not path.exists() or not out.exists():
        raise RuntimeError(
            f"the suite (checks {checks}) wrote no consistency.json or window (exit {code}); "
            f"see {suite_dir}"
        )
    report = json.loads(path.read_text())
    figures = suite_figures(checks, code, report, json.loads(out.read_text()))
    figures.update(history_figures(suite_dir, report))
    return figures


def history_figures(suite_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The recorded history's size (docs/history.md): its bytes, and per payout of the run."""
    files = list((suite_dir / "history").glob("*.jsonl"))
    size = sum(path.stat().st_size for path in files)
    payouts = sum(int(n) for n in (report.get("payouts_by_outcome") or {}).values())
    return {
        "history_bytes": size if files else None,
        "history_bytes_per_payout": _ratio(size, payouts) if files and payouts else None,
    }


def suite_figures(
    checks: str, exit_code: int, report: dict[str, Any], window: dict[str, Any]
) -> dict[str, Any]:
    """The saturation figures of one suite run from its window and its consistency.json."""
    window_s = float(window.get("window_s") or 0.0)
    payouts = int(window.get("payouts") or 0)
    requests = int(window.get("http_requests") or 0)
    driver_cpu_s = float(window.get("driver_cpu_s") or 0.0)
    server_cpu = window.get("server_cpu_s")
    server_cpu_s = float(server_cpu) if server_cpu is not None else None
    driver_share = _ratio(driver_cpu_s, window_s)
    server_share = _ratio(server_cpu_s, window_s) if server_cpu_s is not None else None
    driver_demand = window.get("driver_demand_s")
    server_demand = window.get("server_demand_s")
    driver_busy = _ratio(driver_demand, window_s) if driver_demand is not None else None
    server_busy = _ratio(server_demand, window_s) if server_demand is not None else None
    return {
        "checks": checks,
        "exit_code": exit_code,
        "verdict": report.get("verdict"),
        "payouts_verified": int(report.get("payouts_verified", 0)),
        "window_s": window_s,
        "payouts": payouts,
        "payouts_per_s": _ratio(payouts, window_s),
        "http_requests": requests,
        "http_failures": int(window.get("http_failures") or 0),
        "requests_per_payout": _ratio(requests, payouts) if payouts else None,
        "driver_cpu_share": driver_share,
        "server_cpu_share": server_share,
        # Running or waiting to run, per second of the window (Linux schedstat).
        "driver_busy_share": driver_busy,
        "server_busy_share": server_busy,
        # One driver core's worth: payouts per CPU second of this Locust process.
        "payouts_per_driver_cpu_s": _ratio(payouts, driver_cpu_s) if driver_cpu_s > 0 else None,
        "driver_cpu_ms_per_payout": _ratio(driver_cpu_s * 1000, payouts) if payouts else None,
        "server_cpu_ms_per_request": (
            _ratio(server_cpu_s * 1000, requests) if server_cpu_s is not None and requests else None
        ),
        "saturated": saturated_side(
            driver_busy if driver_busy is not None else driver_share,
            server_busy if server_busy is not None else server_share,
        ),
    }


# A side whose process ran or waited to run this share of the window or more is saturated.
SATURATED_CPU_SHARE = 0.85


def saturated_side(driver_share: float, server_share: float | None) -> str:
    """ "driver", "target", or "neither" (both below SATURATED_CPU_SHARE: too few payers), from
    each process's share of the window running or waiting to run (its CPU share where the
    scheduler's figures are not available): on a machine other work shares, the bottleneck
    gets little CPU but is never idle."""
    shares = {"driver": driver_share, "target": server_share or 0.0}
    side = max(shares, key=lambda name: shares[name])
    return side if shares[side] >= SATURATED_CPU_SHARE else "neither"


def suite_has_option(option: str) -> bool:
    """Whether the suite declares `option` (Locust's --help does not load the locustfile, so
    its sources are read)."""
    quoted = f'"{option}"'
    return any(quoted in path.read_text() for path in sorted(SUITE_SOURCES.glob("*.py")))


def suite_has_checks_option() -> bool:
    return suite_has_option("--checks")


# The arrival-rate search: offered rates as shares of the closed model's checked payouts/s at
# saturation, then 15 % more a step, at most ARRIVAL_RATE_STEPS_MAX runs; the highest whose
# dropped iterations stay under 1 % of the offered.
ARRIVAL_RATE_FIRST_SHARES = (0.5, 0.7, 0.85, 1.0)
ARRIVAL_RATE_STEP_UP = 1.15
ARRIVAL_RATE_STEPS_MAX = 10
DROPPED_SHARE_MAX = 0.01


def arrival_rate_shares() -> list[float]:
    shares = list(ARRIVAL_RATE_FIRST_SHARES)
    while len(shares) < ARRIVAL_RATE_STEPS_MAX:
        shares.append(shares[-1] * ARRIVAL_RATE_STEP_UP)
    return shares


def dropped_share(report: dict[str, Any]) -> float | None:
    """Dropped iterations over offered of one arrival-rate run, from its consistency.json: the
    open model's `arrivals` (`dropped_share`, or `dropped_iterations` over `offered`), else a
    top-level `dropped_iterations` (a number, or one per phase) over dropped + started payouts;
    None if the run says nothing of drops."""
    arrivals = report.get("arrivals")
    if isinstance(arrivals, dict) and arrivals.get("model") == "open":
        if arrivals.get("dropped_share") is not None:
            return float(arrivals["dropped_share"])
        offered = int(arrivals.get("offered") or 0)
        return _ratio(int(arrivals.get("dropped_iterations") or 0), offered) if offered else None
    dropped = report.get("dropped_iterations")
    if dropped is None:
        return None
    if isinstance(dropped, dict):
        dropped = sum(int(v) for v in dropped.values() if isinstance(v, int | float))
    outcomes = report.get("payouts_by_outcome", {})
    started = sum(int(v) for v in outcomes.values() if isinstance(v, int | float))
    offered = started + int(dropped)
    return _ratio(int(dropped), offered) if offered else None


def highest_arrival_rate(
    settings: BenchSettings,
    run_dir: Path,
    cpus: tuple[set[int] | None, set[int] | None],
    saturated_payouts_per_s: float,
) -> dict[str, Any]:
    """The hook for issue 14's "highest arrival rate one Locust process sustains with checks on
    and dropped iterations < 1 %": offered rates stepped up from half the checked saturation
    rate; it stops at the first rate that drops 1 % or more (`limited_by` "drops"), or after
    ARRIVAL_RATE_STEPS_MAX runs (`limited_by` "steps": the figure is then a lower bound).
    Measured only when the suite has `--arrival-rate`; otherwise says why not."""
    if not suite_has_option("--arrival-rate"):
        return {"measured": False, "reason": "the suite has no --arrival-rate option"}
    if saturated_payouts_per_s <= 0:
        return {"measured": False, "reason": "no checked saturation rate to start from"}
    extra_common = ["--max-payers", str(4 * settings.suite_users)]
    if not suite_has_option("--max-payers"):
        extra_common = []
    steps: list[dict[str, Any]] = []
    best: float | None = None
    limited_by = "steps"
    for share in arrival_rate_shares():
        rate = round(saturated_payouts_per_s * share, 1)
        result = measure_suite(
            settings,
            run_dir,
            cpus,
            "on",
            SUITE_CHECK_ARGS["on"],
            extra=["--arrival-rate", str(rate), *extra_common],
            label=f"-rate-{rate}",
        )
        report_path = run_dir / f"suite-checks-on-rate-{rate}" / "consistency.json"
        report = json.loads(report_path.read_text())
        share_dropped = dropped_share(report)
        steps.append({"offered_per_s": rate, "dropped_share": share_dropped, **result})
        if share_dropped is None or share_dropped >= DROPPED_SHARE_MAX:
            limited_by = "drops" if share_dropped is not None else "no drop count"
            break
        best = rate
    return {
        "measured": best is not None,
        "highest_rate_per_s": best,
        "limited_by": limited_by,
        "steps": steps,
    }


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def summarize(runs: dict[str, list[dict[str, Any]]], settings: BenchSettings) -> dict[str, Any]:
    floor_rps = _median([r["rps"] for r in runs["floor"]])
    target_rps = _median([r["rps"] for r in runs["target"]])
    suite = _suite_at_saturation(runs)
    return {
        "floor_rps": floor_rps,
        "target_rps": target_rps,
        "suite_checked_payouts_per_s": suite["checked"],
        "suite_unchecked_payouts_per_s": suite["unchecked"],
        "ratio_target_floor": _ratio(target_rps, floor_rps),
        "ratio_suite_checked_unchecked": suite["ratio"],
        **_target_figures(runs),
        "spread": {
            name: _spread([r[key] for r in runs[kind]])
            for name, kind, key in (
                ("floor_server_cpu_ms_per_request", "floor", "server_cpu_ms_per_request"),
                ("target_server_cpu_ms_per_request", "target", "server_cpu_ms_per_request"),
                ("floor_rps", "floor", "rps"),
                ("target_rps", "target", "rps"),
            )
        },
        "saturation": suite["saturation"],
        "settings": _settings_section(settings),
        "runs": runs,
    }


def _suite_at_saturation(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The suite's payouts/s checked and unchecked, their ratio, and the saturation summary."""
    checked = _median([r["payouts_per_s"] for r in runs.get("suite_on", [])])
    unchecked = _median([r["payouts_per_s"] for r in runs.get("suite_off", [])])
    # A figure that was not measured is null, never a made-up zero.
    suite_checked = checked if runs.get("suite_on") else None
    suite_unchecked = unchecked if runs.get("suite_off") else None
    saturation = saturation_summary(runs)
    cost = saturation["checks_cost"]
    suite_ratio = 1.0 - cost if suite_checked and suite_unchecked and cost is not None else None
    return {
        "checked": suite_checked,
        "unchecked": suite_unchecked,
        "ratio": suite_ratio,
        "saturation": saturation,
    }


def _target_figures(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The target against the floor: memory, latency, flows and CPU (medians of the runs)."""
    return {
        "target_peak_rss_mb": _median([r["peak_rss_mb"] for r in runs["target"]]),
        "payout_latency_ms_p99": _median(
            [r["latency_ms"]["payout"]["p99"] for r in runs["target"]]
        ),
        "target_flows_per_s": _median([r["flows"] / r["window_s"] for r in runs["target"]]),
        "floor_server_cpu_share": _median([r["server_cpu_share"] for r in runs["floor"]]),
        "target_server_cpu_share": _median([r["server_cpu_share"] for r in runs["target"]]),
        "floor_server_cpu_ms_per_request": _median(
            [r["server_cpu_ms_per_request"] for r in runs["floor"]]
        ),
        "target_server_cpu_ms_per_request": _median(
            [r["server_cpu_ms_per_request"] for r in runs["target"]]
        ),
        "driver_cpu_ms_per_request": _median(
            [r["driver_cpu_ms_per_request"] for r in runs["floor"] + runs["target"]]
        ),
        # CPU per request is what holds while other work shares the machine; the ratio to the
        # bare endpoint is the target's own work in units of aiohttp's.
        "ratio_target_floor_cpu_per_request": _median(
            ratios_of_pairs(
                [r["server_cpu_ms_per_request"] for r in runs["target"]],
                [r["server_cpu_ms_per_request"] for r in runs["floor"]],
            )
        ),
    }


def _settings_section(settings: BenchSettings) -> dict[str, Any]:
    return {
        "duration_s": settings.duration_s,
        "warmup_s": settings.warmup_s,
        "users": settings.users,
        "suite_users": settings.suite_users,
        "repetitions": settings.repetitions,
        "suite": settings.suite,
        "target_args": TARGET_ARGS + settings.target_args,
        "pinned": cpu_plan(settings.pin) != (None, None),
        "cpu_count": os.cpu_count(),
    }


def _spread(values: list[float]) -> list[float] | None:
    """[min, max] of the repetitions (None when none)."""
    return [min(values), max(values)] if values else None


def _most_common(values: list[str]) -> str | None:
    return max(sorted(set(values)), key=values.count) if values else None


def saturation_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The suite at saturation, checks on and off: medians of the repetitions, which side ran
    out of CPU, and what the checks cost there."""
    sides: dict[str, Any] = {}
    for checks in ("on", "off"):
        results = runs.get(f"suite_{checks}", [])
        if not results:
            continue

        def median_of(key: str, results: list[dict[str, Any]] = results) -> float | None:
            values = [r[key] for r in results if r.get(key) is not None]
            return _median(values) if values else None

        sides[checks] = {
            "payouts_per_s": median_of("payouts_per_s"),
            "payouts_per_s_spread": _spread([r["payouts_per_s"] for r in results]),
            "payouts_per_driver_cpu_s": median_of("payouts_per_driver_cpu_s"),
            "requests_per_payout": median_of("requests_per_payout"),
            "driver_cpu_ms_per_payout": median_of("driver_cpu_ms_per_payout"),
            "driver_cpu_share": median_of("driver_cpu_share"),
            "server_cpu_share": median_of("server_cpu_share"),
            "driver_busy_share": median_of("driver_busy_share"),
            "server_busy_share": median_of("server_busy_share"),
            "server_cpu_ms_per_request": median_of("server_cpu_ms_per_request"),
            "history_bytes_per_payout": median_of("history_bytes_per_payout"),
            "saturated": _most_common([r["saturated"] for r in results]),
            "verdicts": [r["verdict"] for r in results],
            "exit_codes": [r["exit_code"] for r in results],
        }
    on, off = sides.get("on"), sides.get("off")
    cost = None
    driver_cost = None
    pair_ratios: list[float] = []
    if on and off and on["payouts_per_s"] and off["payouts_per_s"]:
        # The share of payouts/s the checks take away at saturation (each repetition's pair).
        pair_ratios = ratios_of_pairs(
            [r["payouts_per_s"] for r in runs["suite_on"]],
            [r["payouts_per_s"] for r in runs["suite_off"]],
        )
        cost = 1.0 - _median(pair_ratios) if pair_ratios else None
        if on["driver_cpu_ms_per_payout"] and off["driver_cpu_ms_per_payout"]:
            # What one payout costs the driver with its checks, over without.
            driver_cost = on["driver_cpu_ms_per_payout"] / off["driver_cpu_ms_per_payout"] - 1.0
    return {
        "checks": sides,
        "checks_cost": cost,
        # checks on over off, per repetition (the cost is one minus their median)
        "checks_pair_ratios": pair_ratios,
        "checks_driver_cpu_per_payout_extra": driver_cost,
    }


def render(summary: dict[str, Any]) -> str:
    lines = _endpoint_lines(summary)
    if summary["settings"]["suite"]:
        lines += ["suite at saturation (payers with no think time):"]
        for checks, side in summary["saturation"]["checks"].items():
            lines.append(_saturation_line(checks, side))
        lines += _checks_cost_lines(summary)
        lines.append(
            "  time to detect (first inconsistency of fix off): "
            + _detect_line(summary.get("time_to_detect") or {})
        )
        lines.append(_arrival_line(summary.get("arrival_rate") or {}))
    return "\n".join(lines)


def _endpoint_lines(summary: dict[str, Any]) -> list[str]:
    """The floor and the target: requests/s, and CPU per request."""
    return [
        f"floor   {summary['floor_rps']:10.0f} req/s   (bare aiohttp /ping)",
        f"target  {summary['target_rps']:10.0f} req/s   "
        f"({summary['target_flows_per_s']:.0f} payout flows/s; peak RSS "
        f"{summary['target_peak_rss_mb']:.1f} MB; payout p99 "
        f"{summary['payout_latency_ms_p99']:.1f} ms)",
        f"  target / floor                 {summary['ratio_target_floor']:.3f}",
        f"  server CPU per request: floor {summary['floor_server_cpu_ms_per_request']:.3f} ms, "
        f"target {summary['target_server_cpu_ms_per_request']:.3f} ms "
        f"({summary['ratio_target_floor_cpu_per_request']:.2f} x the floor); driver "
        f"{summary['driver_cpu_ms_per_request']:.3f} ms",
        "  spread over the repetitions (min-max): target "
        + _range(summary["spread"]["target_server_cpu_ms_per_request"], "{:.3f}")
        + " ms, floor "
        + _range(summary["spread"]["floor_server_cpu_ms_per_request"], "{:.3f}")
        + " ms per request",
    ]


def _saturation_line(checks: str, side: dict[str, Any]) -> str:
    """One side of the suite at saturation (checks on or off)."""

    def figure(value: float | None, unit: str) -> str:
        return f"{value:10.1f} {unit}" if value is not None else f"{'n/a':>10} {unit}"

    return (
        f"  checks {checks:3s} {figure(side['payouts_per_s'], 'payouts/s')} "
        f"({_range(side['payouts_per_s_spread'], '{:.0f}')}); saturated: "
        f"{side['saturated']} (CPU / busy: driver {_pct(side['driver_cpu_share'])} / "
        f"{_pct(side['driver_busy_share'])}, target {_pct(side['server_cpu_share'])} / "
        f"{_pct(side['server_busy_share'])}); "
        f"{_num(side['payouts_per_driver_cpu_s'], '{:.0f}')} payouts/s per driver core; "
        f"{_num(side['requests_per_payout'], '{:.2f}')} requests per payout; target "
        f"{_num(side['server_cpu_ms_per_request'], '{:.3f}')} ms CPU/request; history "
        f"{_num(side.get('history_bytes_per_payout'), '{:.0f}')} bytes/payout"
        + (f"; verdicts {','.join(map(str, side['verdicts']))}" if checks == "on" else "")
    )


def _checks_cost_lines(summary: dict[str, Any]) -> list[str]:
    """What the checks cost at saturation: payouts/s on over off, and driver CPU per payout."""
    ratio = summary["ratio_suite_checked_unchecked"]
    saturation = summary["saturation"]
    return [
        "  suite checks on / checks off   "
        + (f"{ratio:.3f}" if ratio is not None else "n/a (the suite has no --checks option)"),
        "  cost of the checks at saturation: "
        + _pct(saturation["checks_cost"])
        + " of payouts/s (median of the repetitions' pairs: "
        + (", ".join(_pct(1.0 - r) for r in saturation["checks_pair_ratios"]) or "n/a")
        + "); driver CPU per payout "
        + (
            f"+{saturation['checks_driver_cpu_per_payout_extra']:.0%}"
            if saturation["checks_driver_cpu_per_payout_extra"] is not None
            else "n/a"
        ),
    ]


def _arrival_line(arrival: dict[str, Any]) -> str:
    """The open model's highest sustained arrival rate, or why it was not measured."""
    if arrival.get("measured"):
        return (
            "  highest arrival rate one Locust process sustains, checks on, dropped < 1%: "
            + ("at least " if arrival.get("limited_by") == "steps" else "")
            + f"{arrival['highest_rate_per_s']:.0f} payouts/s"
        )
    return (
        "  highest arrival rate one Locust process sustains, checks on, dropped < 1%: "
        f"not measured ({arrival.get('reason', 'not run')})"
    )


def _num(value: float | None, fmt: str) -> str:
    return fmt.format(value) if value is not None else "n/a"


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "n/a"


def _range(values: list[float] | None, fmt: str) -> str:
    return f"{fmt.format(values[0])}-{fmt.format(values[1])}" if values else "n/a"


def repetition_order(kinds: list[str], repetition: int) -> list[str]:
    """The runs of one repetition: each pair (floor and target, checks on and off) in turns
    one way, then the other (ABBA), so a machine that slows down or speeds up during the bench
    favours neither side of a ratio."""
    if repetition % 2 == 0:
        return list(kinds)
    flipped: list[str] = []
    for first, second in (("floor", "target"), ("suite_on", "suite_off")):
        pair = [kind for kind in (second, first) if kind in kinds]
        flipped.extend(pair)
    return flipped + [kind for kind in kinds if kind not in flipped]


def ratios_of_pairs(numerators: list[float], denominators: list[float]) -> list[float]:
    """Each repetition's own ratio. A ratio the bench reports is their median: the two runs of a
    repetition ran side by side, so slow stretches of a shared machine cancel within a pair,
    where a ratio of the two sides' medians would pair a fast run with a slow one."""
    return [n / d for n, d in zip(numerators, denominators, strict=False) if d > 0]


def bench(settings: BenchSettings) -> dict[str, Any]:
    """The interleaved repetitions; returns the summary (also written to bench.json)."""
    cpus = cpu_plan(settings.pin)
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    kinds = ["floor", "target"] + (["suite_on", "suite_off"] if settings.suite else [])
    if settings.suite and not suite_has_checks_option():
        # Without a way to turn the checks off only the checked figure can be measured.
        print("note: the suite has no --checks option; suite checks-off not measured")
        kinds.remove("suite_off")
        check_args: dict[str, list[str]] = {"on": []}  # its checks are always on
    else:
        check_args = SUITE_CHECK_ARGS
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="lnchaos-bench-") as tmp:
        for repetition in range(settings.repetitions):
            run_dir = Path(tmp) / f"rep{repetition}"
            run_dir.mkdir()
            for kind in repetition_order(kinds, repetition):
                if kind == "floor":
                    result = measure_floor(settings, run_dir, cpus)
                elif kind == "target":
                    result = measure_target(settings, run_dir, cpus)
                else:
                    checks = kind.removeprefix("suite_")
                    result = measure_suite(settings, run_dir, cpus, checks, check_args[checks])
                runs[kind].append(result)
                if not settings.quiet:
                    print(f"  rep {repetition + 1}/{settings.repetitions} {kind}: "
                          f"{_headline(result)}", flush=True)  # fmt: skip
        detect: dict[str, Any] = {"measured": False, "reason": "the suite was not run"}
        checked = summarize(runs, settings)["suite_checked_payouts_per_s"] or 0.0
        if settings.suite:
            detect_dir = Path(tmp) / "detect"
            detect_dir.mkdir()
            detect = measure_time_to_detect(settings, detect_dir, cpus, checked)
            if not settings.quiet:
                print(f"  time to detect: {_detect_line(detect)}", flush=True)
        reason = "off (--no-arrival-rate)" if settings.suite else "the suite was not run"
        arrival: dict[str, Any] = {"measured": False, "reason": reason}
        if settings.suite and settings.arrival_rate:
            arrival_dir = Path(tmp) / "arrival-rate"
            arrival_dir.mkdir()
            arrival = highest_arrival_rate(settings, arrival_dir, cpus, checked)
    summary = summarize(runs, settings)
    summary["arrival_rate"] = arrival
    summary["time_to_detect"] = detect
    path = settings.report_dir / "bench.json"
    path.write_text(json.dumps(summary, indent=1))
    return summary


# issue 14 item 5: the seconds from the start of a fix-off run at the default 1 % timeouts until
# its first inconsistency, as `lnchaos compare` reports them, here at saturation (the bench's
# payers, checks on): how long a rehearsal of the incident takes to show the bug
DETECT_TIMEOUT_RATE = 0.01
DETECT_ARGS = ["--fix", "off", "--timeout-rate", str(DETECT_TIMEOUT_RATE)]
# The detect run lasts long enough to expect this many timed-out payouts at the checked payouts/s
# the bench just measured (none in it: a chance of e^-10), plus the time the first one takes to
# show (the node's hold of 1.5 s, the wallet's deadline, the check's poll), and at most
# DETECT_RUN_MAX_S. A fixed 4 s run at a busy machine's rate once met no timeout in time to be
# found while it ran (CI at 6aa6264): the bug was found at the end, not "while it ran".
DETECT_TIMEOUTS_EXPECTED = 10
DETECT_SHOW_S = 4
DETECT_RUN_MAX_S = 60


def detect_run_s(settings: BenchSettings, checked_payouts_per_s: float) -> int:
    """The detect run's length (warm-up included): the bench's own run length, or longer when
    that run would expect fewer than DETECT_TIMEOUTS_EXPECTED timeouts; DETECT_RUN_MAX_S at most
    (and when the rate is unknown)."""
    run_s = settings.warmup_s + settings.duration_s
    if checked_payouts_per_s <= 0:
        return max(run_s, DETECT_RUN_MAX_S)
    needed_s = DETECT_TIMEOUTS_EXPECTED / (DETECT_TIMEOUT_RATE * checked_payouts_per_s)
    return max(run_s, min(DETECT_RUN_MAX_S, math.ceil(needed_s + DETECT_SHOW_S)))


def measure_time_to_detect(
    settings: BenchSettings,
    run_dir: Path,
    cpus: tuple[set[int] | None, set[int] | None],
    checked_payouts_per_s: float,
) -> dict[str, Any]:
    """One checked suite run with fix off and 1 % timeouts (detect_run_s long); its time to
    detect from the timeline of its consistency.json (report.time_to_detect_s: sampled once a
    second)."""
    run_s = detect_run_s(settings, checked_payouts_per_s)
    settings = dataclasses.replace(settings, duration_s=run_s - settings.warmup_s)
    try:
        result = measure_suite(
            settings, run_dir, cpus, "on", SUITE_CHECK_ARGS["on"], DETECT_ARGS, "-detect"
        )
    except RuntimeError as err:
        return {"measured": False, "reason": str(err)}
    consistency = json.loads((run_dir / "suite-checks-on-detect" / "consistency.json").read_text())
    seconds = time_to_detect_s(consistency)
    return {
        "measured": True,
        "fix": "off",
        "timeout_rate": DETECT_TIMEOUT_RATE,
        "time_to_detect_s": seconds,
        "inconsistencies_total": int(consistency.get("inconsistencies_total", 0)),
        "exit_code": result["exit_code"],
        "payouts_per_s": result["payouts_per_s"],
        "run_s": settings.warmup_s + settings.duration_s,
    }


def _detect_line(detect: dict[str, Any]) -> str:
    if not detect.get("measured"):
        return f"not measured ({detect.get('reason', 'not run')})"
    seconds = detect.get("time_to_detect_s")
    found = f"{seconds:.0f} s" if seconds is not None else f"none in {detect['run_s']} s"
    return (
        f"{found} (fix off, {detect['timeout_rate']:.0%} timeouts, the suite at saturation: "
        f"{detect['inconsistencies_total']} inconsistencies, exit {detect['exit_code']})"
    )


def _headline(result: dict[str, Any]) -> str:
    if "rps" in result:
        failures = sum(result["failures"].values())
        extra = f", {failures} failures" if failures else ""
        return (
            f"{result['rps']:.0f} req/s, server CPU {result['server_cpu_share']:.0%}, "
            f"driver CPU {result['driver_cpu_share']:.0%}, "
            f"server {result['server_cpu_ms_per_request']:.3f} ms CPU/request{extra}"
        )
    return (
        f"{result['payouts_per_s']:.1f} payouts/s (checks {result['checks']}), "
        f"server CPU {_pct(result['server_cpu_share'])}, "
        f"driver CPU {_pct(result['driver_cpu_share'])}, "
        f"{_num(result['requests_per_payout'], '{:.2f}')} requests/payout, "
        f"saturated: {result['saturated']}, verdict {result['verdict']}"
    )


def memory_run(settings: BenchSettings) -> dict[str, Any]:
    """One long target run; is the target's RSS flat after the first minute?"""
    cpus = cpu_plan(settings.pin)
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lnchaos-bench-memory-") as tmp:
        result = measure_target(settings, Path(tmp), cpus)
    after_first_minute_mb = result["rss_mb_after_first_minute"]
    peak_end_mb = result["peak_rss_mb"]
    summary = {
        "duration_s": settings.duration_s,
        "users": settings.users,
        "target_rps": result["rps"],
        "target_rss_mb_after_first_minute": after_first_minute_mb,
        "target_rss_mb_peak_end": peak_end_mb,
        "rss_growth_after_first_minute": _ratio(peak_end_mb, after_first_minute_mb) - 1.0,
        "memory_flat": peak_end_mb <= after_first_minute_mb * (1 + MEMORY_FLAT_TOLERANCE),
        "payout_latency_ms_p99": result["latency_ms"]["payout"]["p99"],
        "run": result,
    }
    (settings.report_dir / "bench-memory.json").write_text(json.dumps(summary, indent=1))
    return summary


def add_options(parser: argparse.ArgumentParser) -> None:
    defaults = BenchSettings()
    parser.add_argument("--duration", type=int, default=None,
                        help=f"measured seconds per run (default {defaults.duration_s}; "
                        "300 with --memory-run)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=defaults.warmup_s,
                        help="seconds before counting starts")  # fmt: skip
    parser.add_argument("--users", type=int, default=defaults.users,
                        help="the floor's and the target's driver users")  # fmt: skip
    parser.add_argument("--suite-users", type=int, default=defaults.suite_users,
                        help="payers of the suite at saturation (no think time)")  # fmt: skip
    parser.add_argument("--no-arrival-rate", action="store_true",  # (when the suite has it)
                        help="skip the search of the highest sustained --arrival-rate")  # fmt: skip
    parser.add_argument("--repetitions", type=int, default=defaults.repetitions)
    parser.add_argument("--report-dir", type=Path, default=defaults.report_dir)
    parser.add_argument("--no-suite", action="store_true", help="floor and target only")
    parser.add_argument("--no-pin", action="store_true", help="do not pin driver and server")
    parser.add_argument(
        "--verdict-payouts",
        type=int,
        default=0,
        help="instead: what the end-of-run verdict costs the target after this many payouts "
        "(lnchaos/bench_verdict.py; writes bench-verdict.json)",
    )
    parser.add_argument(
        "--memory-run",
        action="store_true",
        help="one long target run: is its memory flat? (writes bench-memory.json)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead: the target's and the floor's instructions per payout flow, counted by "
        "valgrind (exact where timing is not; writes bench-instructions.json)",
    )
    # (imported here: bench_instructions builds on this module's commands)
    from .bench_instructions import InstructionSettings

    parser.add_argument("--instruction-flows", type=int, default=InstructionSettings.flows,
                        help="flows each counted server run serves")  # fmt: skip
    parser.add_argument("--instruction-concurrency", type=int,
                        default=InstructionSettings.concurrency,
                        help="flows at once in the counted runs")  # fmt: skip
    parser.add_argument(
        "--target-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra option for the target, e.g. --target-arg=--ledger-batch-max=1",
    )
    parser.add_argument("--quiet", action="store_true")


def instructions_main(args: argparse.Namespace) -> int:
    from . import bench_instructions
    from .bench_instructions import InstructionSettings

    try:
        settings = InstructionSettings(
            flows=args.instruction_flows,
            concurrency=args.instruction_concurrency,
            report_dir=args.report_dir,
        )
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if bench_instructions.valgrind() is None:
        print("lnchaos bench --instructions needs valgrind (Debian: apt-get install valgrind)")
        return 3
    summary = bench_instructions.measure(settings, quiet=args.quiet)
    print(bench_instructions.render(summary))
    print(f"\nwritten: {settings.report_dir / 'bench-instructions.json'}")
    return 0


def settings_from(args: argparse.Namespace) -> BenchSettings:
    duration_s = args.duration if args.duration is not None else (
        300 if args.memory_run else BenchSettings.duration_s
    )  # fmt: skip
    if (
        duration_s < 1
        or args.warmup < 0
        or args.users < 1
        or args.suite_users < 1
        or args.repetitions < 1
    ):
        raise SystemExit("--duration, --users, --suite-users and --repetitions must be positive")
    return BenchSettings(
        duration_s=duration_s,
        warmup_s=args.warmup,
        users=args.users,
        suite_users=args.suite_users,
        arrival_rate=not args.no_arrival_rate,
        repetitions=args.repetitions,
        report_dir=args.report_dir,
        suite=not args.no_suite and not args.memory_run,
        memory_run=args.memory_run,
        target_args=list(args.target_arg),
        pin=not args.no_pin,
        quiet=args.quiet,
    )


def main(args: argparse.Namespace) -> int:
    if args.instructions:
        return instructions_main(args)
    settings = settings_from(args)
    if args.verdict_payouts:
        from . import bench_verdict

        result = bench_verdict.measure(args.verdict_payouts, settings.report_dir)
        print(bench_verdict.describe(result))
        return 0
    if settings.memory_run:
        summary = memory_run(settings)
        print(
            f"target RSS after the first minute {summary['target_rss_mb_after_first_minute']:.1f}"
            f" MB, peak at the end {summary['target_rss_mb_peak_end']:.1f} MB "
            f"({summary['rss_growth_after_first_minute']:+.1%}): "
            + ("flat" if summary["memory_flat"] else "NOT flat")
        )
        return 0 if summary["memory_flat"] else 1
    summary = bench(settings)
    print()
    print(render(summary))
    print(f"\nwritten: {settings.report_dir / 'bench.json'}")
    return 0
