"""`lnchaos soak`: a long rehearsal, and how the suite and the target wear over it (issue 24).

One headless run of the Locust suite (its embedded target): spike cycles repeated until the run
time (`--spike-cycle-s`), every traffic class, the crash fault (`--crash-every`), the node's
timeouts, late settles and definite failures, at saturation (the spike's users outrun what two
cores serve). While it runs, a sampler thread reads once every `interval_s`:
- each process of the run (the Locust process, its workers, the embedded target and each of
  its restarts): resident memory and CPU;
- the target's own gauges (GET /metrics): the event loop's lag behind a timer and the writes
  waiting for its journal;
- the suite's progress (progress.json): payouts so far, hence payouts/s.

At the end it reads the verdict (consistency.json) and measures the verdict's own cost: the
seconds from the end of the load (Locust's "Shape test stopping") to the suite's exit. All of it
goes to `<report-dir>/soak.json` (samples kept at most SAMPLES_MAX, thinned evenly), and a
summary is printed. The bounds it holds the run to:
- memory: after warm-up (the first spike cycle), each role's peak stays within
  `--memory-growth-max` (10 %) of its peak during warm-up;
- the verdict: at most the suite's final wait plus VERDICT_SLACK_S (5 s) after the load ends.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from target.common.child import ChildProcess

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "locustfiles" / "lnchaos_suite.py"
ADMIN_TOKEN = "lnchaos-soak-admin-token"
VERDICT_SLACK_S = 5.0  # the verdict's bound beyond the suite's final wait (issue 24)
MEMORY_GROWTH_MAX = 0.10
SAMPLES_MAX = 4000  # kept in soak.json (thinned evenly beyond); memory: one small dict each
SAMPLE_INTERVAL_S = 1.0
METRICS_TIMEOUT_S = 0.5
START_GRACE_S = 60.0  # Locust's and the target's start
STOP_GRACE_S = 120.0  # beyond the run time: the final wait (at most 600 s is refused) and exit
FINAL_WAIT_S_DEFAULT = 15.0  # the suite's --final-wait-s default (options.py)
LISTENING = re.compile(r"listening on (http://[0-9.:\[\]a-z]+)")
STOPPING = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\].*(Shape test stopping)")
TIME_UNITS_S = {"h": 3600, "m": 60, "s": 1}

EXIT_CODES = """exit codes:
  0   fix on passed (the suite's exit 0) within every bound
  3   the suite found inconsistencies (fix off or rollback must end here), 4 it proved nothing,
      5 the target failed, 1 or 2 Locust's own: the suite's code, passed on
  6   the suite passed but a bound of the soak broke: memory grew beyond --memory-growth-max
      after warm-up, or the verdict took longer than the final wait + 5 s (soak.json says which)
  2   a usage error"""


def parse_duration_s(text: str) -> float:
    """A Locust time string (1h30m, 5m, 300s, 300) in seconds; ValueError for anything else."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"not a time like 1h30m, 5m or 300s: {text!r}")
    return float(sum(int(n) * TIME_UNITS_S[u] for n, u in parts))


@dataclass
class SoakSettings:
    run_time_s: float = 300.0
    users: int = 60
    spawn_rate: float = 30.0
    fix: str = "on"
    seed: int = 1
    spike_cycle_s: float = 60.0
    crash_every_s: float = 45.0
    failure_rate: float = 0.02
    warmup_s: float | None = None  # None: one spike cycle
    memory_growth_max: float = MEMORY_GROWTH_MAX
    final_wait_s: float = FINAL_WAIT_S_DEFAULT
    report_dir: Path = field(default_factory=lambda: ROOT / "reports" / "soak")

    @property
    def warmup(self) -> float:
        return self.warmup_s if self.warmup_s is not None else self.spike_cycle_s


def locust_command(settings: SoakSettings) -> list[str]:
    s = settings
    run_dir = s.report_dir / "run"
    return [
        sys.executable, "-m", "locust", "-f", str(SUITE), "--headless", "--only-summary",
        "-t", f"{int(s.run_time_s)}s", "-u", str(s.users), "-r", str(s.spawn_rate),
        "--fix", s.fix, "--shape", "spike", "--spike-cycle-s", str(s.spike_cycle_s),
        "--seed", str(s.seed), "--crash-every", str(s.crash_every_s),
        "--failure-rate", str(s.failure_rate),
        "--final-wait-s", str(s.final_wait_s), "--admin-token", ADMIN_TOKEN,
        "--report-dir", str(run_dir), "--progress-file", str(run_dir / "progress.json"),
        "--csv", str(run_dir / "locust"),
    ]  # fmt: skip


def role_of(process: psutil.Process) -> str:
    """target, worker or locust, from a process's command line."""
    try:
        args = process.cmdline()
    except psutil.Error:
        return "gone"
    if "-m" in args and "target" in args[args.index("-m") + 1 : args.index("-m") + 2]:
        return "target"
    return "worker" if "--worker" in args else "locust"


def is_unexecuted_fork(process: psutil.Process) -> bool:
    """A child between fork and exec (a target or a worker being started): a copy of its parent,
    same command line, sharing its parent's pages. Summed with its parent it would double the
    role's memory for that sample: the hour's soak broke its bound on one such sample (Locust
    155.9 MB for one second while a restarted target was being spawned, 80-93 MB around it)."""
    try:
        parent = process.parent()
        return parent is not None and process.cmdline() == parent.cmdline()
    except psutil.Error:
        return True  # gone meanwhile: nothing to count


class Sampler:
    """A thread sampling the run's processes, the target's gauges and the suite's progress,
    once every interval_s until stopped (and at most max_samples times)."""

    def __init__(self, root_pid: int, run_dir: Path, interval_s: float, max_samples: int):
        self.root_pid = root_pid
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._procs: dict[int, psutil.Process] = {}
        self._target_url: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._last_payouts: tuple[float, int] | None = None

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        for _ in range(self.max_samples):
            if self._stop.wait(self.interval_s):
                return
            self.samples.append(self.sample())

    def sample(self) -> dict[str, Any]:
        t_s = round(time.monotonic() - self.started, 2)
        point: dict[str, Any] = {"t_s": t_s, "processes": self._processes()}
        point.update(self._target_gauges())
        point.update(self._progress(t_s))
        return point

    def _processes(self) -> list[dict[str, Any]]:
        try:
            root = psutil.Process(self.root_pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        found = []
        for process in tree:
            known = self._procs.setdefault(process.pid, process)
            try:
                if known is not root and is_unexecuted_fork(known):
                    continue  # the parent's pages, counted twice (issue 24's one-sample peak)
                with known.oneshot():
                    role = role_of(known)
                    if role != "locust" and known is root:
                        role = "locust"
                    found.append(
                        {
                            "pid": known.pid,
                            "role": role,
                            "rss_mb": round(known.memory_info().rss / 2**20, 2),
                            "cpu_pct": round(known.cpu_percent(None), 1),
                        }
                    )
            except psutil.Error:
                continue
        return [p for p in found if p["role"] in ("locust", "worker", "target")]

    def _target_gauges(self) -> dict[str, Any]:
        url = self._target_url or self._find_target_url()
        if url is None:
            return {}
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=METRICS_TIMEOUT_S) as answer:
                text = answer.read().decode()
        except (OSError, ValueError):
            return {}
        gauges = {}
        for name, key in (
            ("lnchaos_event_loop_lag_seconds", "loop_lag_ms"),
            ("lnchaos_journal_queued_writes", "journal_queued"),
            ("lnchaos_payouts_pending", "payouts_pending"),
        ):
            match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
            if match:
                value = float(match.group(1))
                gauges[key] = round(value * 1000, 2) if key.endswith("_ms") else int(value)
        return gauges

    def _find_target_url(self) -> str | None:
        log = self.run_dir / "target.log"
        try:
            match = LISTENING.search(log.read_text(errors="replace")[:4000])
        except OSError:
            return None
        if match and is_loopback_url(match.group(1)):
            self._target_url = match.group(1)
        return self._target_url

    def _progress(self, t_s: float) -> dict[str, Any]:
        try:
            progress = json.loads((self.run_dir / "progress.json").read_text())
            payouts = int(progress.get("payouts") or 0)
        except (OSError, ValueError, TypeError):
            return {}
        point: dict[str, Any] = {"payouts": payouts, "phase": progress.get("phase")}
        if self._last_payouts is not None and t_s > self._last_payouts[0]:
            last_t_s, last = self._last_payouts
            point["payouts_per_s"] = round((payouts - last) / (t_s - last_t_s), 1)
        self._last_payouts = (t_s, payouts)
        return point


def is_loopback_url(url: str) -> bool:
    host = url.split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def thin(samples: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """At most `most` samples, evenly spread, the first and last kept."""
    if len(samples) <= most:
        return samples
    step = (len(samples) - 1) / (most - 1)
    return [samples[round(i * step)] for i in range(most)]


def memory_by_role(
    samples: list[dict[str, Any]], load_start_s: float, warmup_s: float, load_end_s: float
) -> dict[str, dict[str, Any]]:
    """Per role (summing a role's processes at each sample): the peak during warm-up, the peak
    after it until the load ended, the last minute's peak, and the growth of the peak after
    warm-up over the warm-up's."""
    warm_end_s = load_start_s + warmup_s
    result: dict[str, dict[str, Any]] = {}
    roles = {p["role"] for s in samples for p in s["processes"]}
    for role in sorted(roles):
        series = [
            (s["t_s"], sum(p["rss_mb"] for p in s["processes"] if p["role"] == role))
            for s in samples
            if any(p["role"] == role for p in s["processes"])
        ]
        warm = [mb for t, mb in series if load_start_s <= t <= warm_end_s]
        after = [mb for t, mb in series if warm_end_s < t <= load_end_s]
        last = [mb for t, mb in series if load_end_s - 60 < t <= load_end_s]
        warm_peak = max(warm, default=0.0)
        after_peak = max(after, default=0.0)
        growth = after_peak / warm_peak - 1 if warm_peak and after else None
        result[role] = {
            "rss_mb_first": series[0][1] if series else None,
            "rss_mb_warmup_peak": round(warm_peak, 1),
            "rss_mb_peak_after_warmup": round(after_peak, 1),
            "rss_mb_last_minute_peak": round(max(last, default=0.0), 1),
            "growth_after_warmup": round(growth, 4) if growth is not None else None,
        }
    return result


def cpu_by_role(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Mean CPU % per role over the samples where the role ran."""
    sums: dict[str, list[float]] = {}
    for sample in samples:
        for p in sample["processes"]:
            sums.setdefault(p["role"], []).append(p["cpu_pct"])
    return {role: round(sum(v) / len(v), 1) for role, v in sorted(sums.items()) if v}


def load_stop_unix(locust_log: Path) -> float | None:
    """When the load ended: the time of Locust's "Shape test stopping" line (its log's clock,
    this machine's local time)."""
    try:
        lines = locust_log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = STOPPING.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").astimezone()
            return stamp.timestamp() + int(match.group(2)) / 1000
    return None


def verdict_of(run_dir: Path) -> dict[str, Any]:
    try:
        report = json.loads((run_dir / "consistency.json").read_text())
    except (OSError, ValueError):
        return {"verdict": None}
    return {
        "verdict": report.get("verdict"),
        "exit_code": report.get("exit_code"),
        "reason": report.get("reason"),
        "payouts_verified": report.get("payouts_verified"),
        "inconsistencies_total": report.get("inconsistencies_total"),
        "kinds": {k: v.get("count") for k, v in (report.get("inconsistencies") or {}).items()},
        "timeouts": report.get("timeouts"),
        "crashes": len((report.get("crashes") or {}).get("events") or [])
        if isinstance(report.get("crashes"), dict)
        else report.get("crashes"),
    }


def summarise(
    settings: SoakSettings,
    samples: list[dict[str, Any]],
    suite_code: int | None,
    started_unix: float,
    exited_unix: float,
) -> dict[str, Any]:
    run_dir = settings.report_dir / "run"
    stop_unix = load_stop_unix(run_dir / "locust.log")
    load_end_s = (stop_unix - started_unix) if stop_unix else settings.run_time_s
    with_payouts = [s for s in samples if s.get("payouts")]
    load_start_s = with_payouts[0]["t_s"] if with_payouts else 0.0
    memory = memory_by_role(samples, load_start_s, settings.warmup, load_end_s)
    verdict_cost_s = round(exited_unix - stop_unix, 2) if stop_unix else None
    payouts = max((s.get("payouts", 0) for s in samples), default=0)
    lags = [s["loop_lag_ms"] for s in samples if "loop_lag_ms" in s]
    queued = [s["journal_queued"] for s in samples if "journal_queued" in s]
    grew = {
        role: m["growth_after_warmup"]
        for role, m in memory.items()
        if m["growth_after_warmup"] is not None
        and m["growth_after_warmup"] > settings.memory_growth_max
    }
    verdict_bound_s = settings.final_wait_s + VERDICT_SLACK_S
    slow_verdict = verdict_cost_s is not None and verdict_cost_s > verdict_bound_s
    broken = [f"memory of {role} grew {g:.1%} after warm-up" for role, g in grew.items()]
    if slow_verdict:
        broken.append(f"the verdict took {verdict_cost_s} s > {verdict_bound_s} s")
    if suite_code is None:
        broken.append("the suite did not exit within its bound")
    code = suite_code if suite_code else (6 if broken else 0)
    if suite_code is None:
        code = 1
    return {
        "exit_code": code,
        "suite_exit_code": suite_code,
        "bounds_broken": broken,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "load_s": round(load_end_s - load_start_s, 1),
        "payouts": payouts,
        "payouts_per_s": round(payouts / max(load_end_s - load_start_s, 1e-9), 1),
        "verdict_cost_s": verdict_cost_s,
        "verdict_bound_s": verdict_bound_s,
        "memory": memory,
        "memory_growth_max": settings.memory_growth_max,
        "cpu_pct_mean": cpu_by_role(samples),
        "loop_lag_ms_max": max(lags, default=None),
        "journal_queued_max": max(queued, default=None),
        "verdict": verdict_of(run_dir),
        "samples": thin(samples, SAMPLES_MAX),
    }


def run(settings: SoakSettings) -> dict[str, Any]:
    run_dir = settings.report_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = locust_command(settings)
    bound_s = settings.run_time_s + START_GRACE_S + STOP_GRACE_S + settings.final_wait_s
    interval_s = max(SAMPLE_INTERVAL_S, settings.run_time_s / SAMPLES_MAX)
    max_samples = int(bound_s / interval_s) + 1
    started_unix = time.time()
    child = ChildProcess(command, log_path=run_dir / "locust.log", cwd=ROOT, name="soak locust")
    child.start()
    try:
        with Sampler(child.pid, run_dir, interval_s, max_samples) as sampler:
            code = child.wait(bound_s)
        exited_unix = time.time()
    finally:
        child.kill()
    summary = summarise(settings, sampler.samples, code, started_unix, exited_unix)
    summary["command"] = command
    (settings.report_dir / "soak.json").write_text(json.dumps(summary, indent=1))
    return summary


def describe(summary: dict[str, Any]) -> str:
    verdict = summary["verdict"]
    lines = [
        f"soak: exit {summary['exit_code']} (suite {summary['suite_exit_code']}, "
        f"verdict {verdict.get('verdict')}, {verdict.get('inconsistencies_total')} "
        f"inconsistencies {verdict.get('kinds') or ''})",
        f"  {summary['payouts']} payouts in {summary['load_s']} s of load "
        f"({summary['payouts_per_s']} payouts/s), {verdict.get('payouts_verified')} verified",
        f"  verdict {summary['verdict_cost_s']} s after the load (bound "
        f"{summary['verdict_bound_s']} s); loop lag max {summary['loop_lag_ms_max']} ms; "
        f"journal queue max {summary['journal_queued_max']}",
    ]
    for role, m in summary["memory"].items():
        lines.append(
            f"  {role}: RSS {m['rss_mb_first']} MB at start, {m['rss_mb_warmup_peak']} MB peak "
            f"in warm-up, {m['rss_mb_peak_after_warmup']} MB peak after "
            f"(growth {m['growth_after_warmup']}), {m['rss_mb_last_minute_peak']} MB last minute"
        )
    lines += [f"  bound broken: {b}" for b in summary["bounds_broken"]]
    return "\n".join(lines)


def add_options(parser: argparse.ArgumentParser) -> None:
    d = SoakSettings()
    parser.add_argument(
        "-t",
        "--run-time",
        default="5m",
        help="how long the load runs, a Locust time string (1h, 5m, 300s)",
    )
    parser.add_argument(
        "-u",
        "--users",
        type=int,
        default=d.users,
        help="users at normal traffic (the spike runs 4 x as many)",
    )
    parser.add_argument("-r", "--spawn-rate", type=float, default=d.spawn_rate)
    parser.add_argument("--fix", choices=("off", "rollback", "on"), default=d.fix)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--spike-cycle-s",
        type=float,
        default=d.spike_cycle_s,
        help="seconds of one spike cycle, repeated until the run time",
    )
    parser.add_argument(
        "--crash-every",
        type=float,
        default=d.crash_every_s,
        help="seconds between SIGKILLs of the target (0: no crashes)",
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=d.failure_rate,
        help="share of payments the node fails at once",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="seconds of warm-up before memory is held to its bound (default: one spike cycle)",
    )
    parser.add_argument(
        "--memory-growth-max",
        type=float,
        default=d.memory_growth_max,
        help="the share memory may grow after warm-up",
    )
    parser.add_argument(
        "--final-wait-s",
        type=float,
        default=d.final_wait_s,
        help="the suite's final wait for in-flight payouts",
    )
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where soak.json and the run's reports go "
                        "(default: reports/soak-<UTC timestamp>)")  # fmt: skip


def settings_from(args: argparse.Namespace) -> SoakSettings:
    run_time_s = parse_duration_s(args.run_time)
    if not 10 <= run_time_s <= 24 * 3600:
        raise ValueError("--run-time must be within [10s, 24h]")
    if args.users < 1 or args.spike_cycle_s < 10 or args.crash_every < 0:
        raise ValueError("-u must be >= 1, --spike-cycle-s >= 10, --crash-every >= 0")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return SoakSettings(
        run_time_s=run_time_s,
        users=args.users,
        spawn_rate=args.spawn_rate,
        fix=args.fix,
        seed=args.seed,
        spike_cycle_s=min(args.spike_cycle_s, run_time_s),
        crash_every_s=args.crash_every,
        failure_rate=args.failure_rate,
        warmup_s=args.warmup_s,
        memory_growth_max=args.memory_growth_max,
        final_wait_s=args.final_wait_s,
        report_dir=args.report_dir or ROOT / "reports" / f"soak-{stamp}",
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ValueError as err:
        print(f"lnchaos soak: {err}", file=sys.stderr)
        return 2
    summary = run(settings)
    print(describe(summary))
    print(f"  report: {settings.report_dir / 'soak.json'}")
    return int(summary["exit_code"])
