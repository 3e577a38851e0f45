"""The suite as `lnchaos bench` runs it at saturation: the whole of locustfiles/lnchaos_suite.py
(options, checks, verdict, shape), with payers that take no think time.

    locust -f lnchaos/bench_suite.py --headless --host URL -u N -r N -t T --fix on \
        --traffic-mix none --checks on|off --bench-warmup-s W --bench-out window.json \
        --bench-server-pid PID

The suite's payers wait 10 to 100 ms between payouts, which caps a run near users / 55 ms
payouts per second whatever the checks cost (issue 14). Here each payer starts its next payout as
soon as the last one is judged, so either this Locust process or the target runs out of CPU.

A window after the warm-up counts the HTTP requests and the payouts answered (`POST /payouts`
requests, retries of the same payout not counted) and takes the CPU seconds this process and the
server (`--bench-server-pid`) used in it, and the seconds each ran or waited to run (which
side is the bottleneck even when other work on the machine takes CPU from both); at the stop
they go to `--bench-out` as JSON for `lnchaos.bench`. The checks' own events (type CHECK) are
not HTTP requests and are not counted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import constant, events
from locust.env import Environment

from lnchaos.bench import cpu_s
from locustfiles import lnchaos_suite, users
from locustfiles.shapes import LnchaosShape

__all__ = ["LnchaosShape", "SaturatingPayer"]
assert lnchaos_suite  # imported for its listeners: the suite runs as it always does

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"})
PAYOUT_PREFIX = "POST /payouts"
RETRY_MARK = "(retry)"


class SaturatingPayer(users.PayerUser):
    """The suite's payer, every check as it is, with no wait between payouts."""

    wait_time = constant(0)


def demand_s(pid: int) -> float | None:
    """Seconds the process's threads ran or waited to run (Linux /proc/PID/task/*/schedstat:
    time on a CPU, time runnable in a run queue), None where that is not available. On a
    machine other work shares, a process that is the bottleneck may get little CPU, but it is
    running or waiting to run nearly all the time."""
    try:
        total_ns = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            on_cpu_ns, waiting_ns, _ = (task / "schedstat").read_text().split()
            total_ns += int(on_cpu_ns) + int(waiting_ns)
    except (OSError, ValueError):
        return None
    return total_ns / 1e9


class SaturationWindow:
    """Requests, payouts and CPU seconds (this process, the server) after the warm-up."""

    def __init__(self) -> None:
        self.out_path: Path | None = None
        self.server_pid = 0
        self.started: float | None = None
        self.stopped: float | None = None
        self.cpu_start_s = 0.0
        self.cpu_end_s = 0.0
        self.server_cpu_start_s: float | None = None
        self.server_cpu_end_s: float | None = None
        self.demand_start_s: tuple[float | None, float | None] = (None, None)  # driver, server
        self.demand_end_s: tuple[float | None, float | None] = (None, None)
        self.http_requests = 0
        self.http_failures = 0
        self.payouts = 0
        self.checks = 0

    def start(self) -> None:
        self.cpu_start_s = time.process_time()
        self.server_cpu_start_s = cpu_s(self.server_pid) if self.server_pid else None
        self.demand_start_s = self._demands()
        self.started = time.monotonic()

    def stop(self) -> None:
        if self.started is None or self.stopped is not None:
            return
        self.stopped = time.monotonic()
        self.cpu_end_s = time.process_time()
        self.server_cpu_end_s = cpu_s(self.server_pid) if self.server_pid else None
        self.demand_end_s = self._demands()

    def _demands(self) -> tuple[float | None, float | None]:
        return demand_s(os.getpid()), demand_s(self.server_pid) if self.server_pid else None

    def counting(self) -> bool:
        return self.started is not None and self.stopped is None

    def result(self) -> dict[str, Any]:
        window_s = (self.stopped or time.monotonic()) - self.started if self.started else 0.0
        driver_cpu_s = self.cpu_end_s - self.cpu_start_s
        server_s = None
        if self.server_cpu_start_s is not None and self.server_cpu_end_s is not None:
            server_s = self.server_cpu_end_s - self.server_cpu_start_s
        demands = [
            end - start if start is not None and end is not None else None
            for start, end in zip(self.demand_start_s, self.demand_end_s, strict=True)
        ]
        return {
            "window_s": window_s,
            "driver_demand_s": demands[0],
            "server_demand_s": demands[1],
            "http_requests": self.http_requests,
            "http_failures": self.http_failures,
            "payouts": self.payouts,
            "check_events": self.checks,
            "driver_cpu_s": driver_cpu_s,
            "server_cpu_s": server_s,
        }


WINDOW = SaturationWindow()


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--bench-warmup-s", type=float, default=2.0, include_in_web_ui=False)
    parser.add_argument("--bench-out", default="", include_in_web_ui=False)
    parser.add_argument("--bench-server-pid", type=int, default=0, include_in_web_ui=False)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    WINDOW.out_path = Path(options.bench_out) if options.bench_out else None
    WINDOW.server_pid = int(options.bench_server_pid or 0)
    gevent.spawn_later(max(0.0, float(options.bench_warmup_s)), WINDOW.start)


@events.request.add_listener
def _on_request(request_type: str, name: str, exception: BaseException | None, **_: Any) -> None:
    if not WINDOW.counting():
        return
    if request_type not in HTTP_METHODS:
        WINDOW.checks += 1
        return
    WINDOW.http_requests += 1
    if exception is not None:
        WINDOW.http_failures += 1
    elif name.startswith(PAYOUT_PREFIX) and RETRY_MARK not in name:
        WINDOW.payouts += 1


# The window closes when the users stop, before the suite's final wait and verdict.
@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    WINDOW.stop()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    WINDOW.stop()
    if WINDOW.out_path is not None:
        WINDOW.out_path.write_text(json.dumps(WINDOW.result(), indent=1))
