"""The bench's driver: one `FastHttpUser` shape for the floor and for the target.

    locust -f lnchaos/bench_locustfile.py --headless --host URL -u N -r N -t T \
        --bench-mode floor|target --bench-warmup-s W --bench-out result.json

Each user loops with no wait over the three requests of a payout flow, named `invoice`,
`payout` and `status`: against the target they are `POST /node/invoices`, `POST
/api/wallets/{id}/payouts`, `GET /api/payouts/{id}` (the wallet is opened once per user in
`on_start`, named `wallet`, not counted); against the floor they are the same methods and body
sizes on `/ping`. Only requests that end after the warm-up are counted; at the stop the counts,
the window and the latencies go to `--bench-out` as JSON (read by `lnchaos.bench`).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment

FLOW_NAMES = ("invoice", "payout", "status")
WALLET_BALANCE_MSAT = 10**15  # a user never runs dry: a payout costs at most ~10^5 msat
AMOUNT_MSAT_RANGE = (1_000, 100_000)
LATENCY_SAMPLES_MAX = 2_000_000  # bounded memory for the percentiles


class Window:
    """Counts and latencies of the requests that end after the warm-up, until the stop."""

    def __init__(self) -> None:
        self.mode = "floor"
        self.warmup_s = 2.0
        self.out_path: Path | None = None
        self.started: float | None = None
        self.stopped: float | None = None
        self.requests: dict[str, int] = {name: 0 for name in FLOW_NAMES}
        self.requests_all_run = 0  # flow requests of the whole run, warm-up included
        self.failures: dict[str, int] = {name: 0 for name in FLOW_NAMES}
        self.latencies_ms: dict[str, list[float]] = {name: [] for name in FLOW_NAMES}

    def counting(self) -> bool:
        return self.started is not None and self.stopped is None

    def result(self) -> dict[str, Any]:
        window_s = 0.0
        if self.started is not None:
            window_s = (self.stopped or time.monotonic()) - self.started
        total = sum(self.requests.values())
        return {
            "mode": self.mode,
            "window_s": window_s,
            "requests": self.requests,
            "failures": self.failures,
            "rps": total / window_s if window_s > 0 else 0.0,
            "requests_all_run": self.requests_all_run,
            "flows": self.requests["status"],
            "latency_ms": {name: percentiles(values) for name, values in self.latencies_ms.items()},
        }


WINDOW = Window()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p99": at(0.99), "max": ordered[-1]}


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--bench-mode", choices=["floor", "target"], default="floor")
    parser.add_argument("--bench-warmup-s", type=float, default=2.0)
    parser.add_argument("--bench-out", default="", help="where the window's JSON goes")
    parser.add_argument(
        "--bench-flow-rate",
        type=float,
        default=0.0,
        help="payout flows per second offered by all users together (0: no wait, saturate): "
        "a fixed rate compares two targets' CPU per request at the same batching",
    )


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    WINDOW.mode = options.bench_mode
    WINDOW.warmup_s = options.bench_warmup_s
    WINDOW.out_path = Path(options.bench_out) if options.bench_out else None
    started = time.monotonic() + WINDOW.warmup_s
    # Counting begins when the warm-up is over; one timer, no loop.
    import gevent

    gevent.spawn_later(WINDOW.warmup_s, _start_window, started)


def _start_window(started: float) -> None:
    WINDOW.started = started


@events.request.add_listener
def _on_request(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    if name not in WINDOW.requests:
        return
    WINDOW.requests_all_run += 1
    if not WINDOW.counting():
        return
    if exception is not None:
        WINDOW.failures[name] += 1
        return
    WINDOW.requests[name] += 1
    samples = WINDOW.latencies_ms[name]
    if len(samples) < LATENCY_SAMPLES_MAX:
        samples.append(response_time)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if WINDOW.stopped is None:
        WINDOW.stopped = time.monotonic()
    if WINDOW.out_path is not None:
        WINDOW.out_path.write_text(json.dumps(WINDOW.result(), indent=1))


class FlowUser(FastHttpUser):
    _pace: Any = None  # constant_throughput(...) with --bench-flow-rate, else no wait

    def wait_time(self) -> float:
        return self._pace(self) if self._pace is not None else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.mode = options.bench_mode
        users = max(1, int(getattr(options, "num_users", 1) or 1))
        rate = float(options.bench_flow_rate or 0.0)
        self._pace = constant_throughput(rate / users) if rate > 0 else None
        self.wallet_path = "/ping"
        self.api_key = ""
        if self.mode == "target":
            with self.client.post(
                "/api/wallets",
                json={"balance_msat": WALLET_BALANCE_MSAT},
                name="wallet",
                catch_response=True,
            ) as response:
                if response.status_code != 201:
                    response.failure(f"wallet: HTTP {response.status_code}")
                    self.stop()
                    return
                body = response.json()
            self.wallet_path = f"/api/wallets/{body['wallet_id']}/payouts"
            self.api_key = body["api_key"]

    @task
    def flow(self) -> None:
        target = self.mode == "target"
        amount_msat = random.randint(*AMOUNT_MSAT_RANGE)
        with self.client.post(
            "/node/invoices" if target else "/ping",
            json={"amount_msat": amount_msat},
            name="invoice",
            catch_response=True,
        ) as response:
            if response.status_code != (201 if target else 200):
                response.failure(f"HTTP {response.status_code}")
                return
            payment_request = response.json().get("payment_request", "lnbcrt" + "x" * 300)
        with self.client.post(
            self.wallet_path,
            json={"payment_request": payment_request},
            headers={"X-Api-Key": self.api_key},
            name="payout",
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 202):
                response.failure(f"HTTP {response.status_code}")
                return
            payout_id = response.json().get("payout_id", "")
        with self.client.get(
            f"/api/payouts/{payout_id}" if target else "/ping",
            headers={"X-Api-Key": self.api_key},
            name="status",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
