"""The open model's parts without a run: the scheduler, its counts, its options and report."""

from __future__ import annotations

import argparse
import time

import gevent
import pytest

from lnchaos.compare import duration_s, open_model_args
from lnchaos.report import (
    chart_offered_vs_achieved,
    open_model_charts,
    open_model_lines,
    time_to_detect_s,
)
from locustfiles import arrival_stats, options, shapes
from locustfiles.arrival import ArrivalScheduler
from locustfiles.arrival_stats import ArrivalTally
from locustfiles.telemetry import LOCAL


def _scheduler(rate: float, delay_ms: int, payers: int = 4, poisson: bool = False):
    scheduler = ArrivalScheduler(rate, 4, payers, delay_ms / 1000, poisson, "t")
    for payer in range(payers):
        scheduler.join(payer)
    return scheduler


@pytest.fixture(autouse=True)
def fresh_arrivals():
    LOCAL.arrivals = ArrivalTally()
    LOCAL.phase = "normal"
    yield
    LOCAL.arrivals = ArrivalTally()


@pytest.mark.parametrize("poisson", [False, True], ids=["constant", "poisson"])
def test_no_free_payer_drops_every_arrival_past_the_delay(poisson: bool) -> None:
    scheduler = _scheduler(rate=200, delay_ms=20, poisson=poisson)
    scheduler.start()
    gevent.sleep(0.5)
    scheduler.stop()
    counts = LOCAL.arrivals.by_phase["normal"]
    # 200/s for 0.5 s, none taken: all but the last few (younger than the delay) dropped
    assert 50 <= counts["offered"] <= 150, counts
    assert counts["started"] == 0
    assert counts["dropped"] >= counts["offered"] - 10, counts


def test_free_payers_start_every_arrival_within_the_delay() -> None:
    scheduler = _scheduler(rate=100, delay_ms=200)
    scheduler.start()
    taken: list[float] = []

    def payer() -> None:
        while True:
            arrival = scheduler.take(wait_s=0.2)
            if arrival is not None:
                taken.append(time.monotonic() - arrival.scheduled)

    payers = [gevent.spawn(payer) for _ in range(2)]
    gevent.sleep(0.5)
    scheduler.stop()
    gevent.killall(payers)
    counts = LOCAL.arrivals.by_phase["normal"]
    assert counts["dropped"] == 0, counts
    assert counts["started"] == len(taken) >= 30
    assert max(taken) <= 0.2
    assert sum(LOCAL.arrivals.start_delay_ms.values()) == len(taken)


def test_the_spike_multiplies_the_rate_and_the_share_splits_it() -> None:
    scheduler = _scheduler(rate=10, delay_ms=50, payers=4)
    assert scheduler.rate_now("normal") == 10
    assert scheduler.rate_now("spike") == 40
    for payer in (0, 1):
        scheduler.leave(payer)  # half of --max-payers ready here: half of the rate
    assert scheduler.rate_now("normal") == 5
    scheduler.stop()
    assert scheduler.rate_now("normal") == 0  # stopped: no payer takes arrivals any more
    assert shapes.arrival_rate_factor("recovery", 4) == 1
    plan = shapes.spike_plan(10.0, 5, 5.0)
    assert shapes.arrival_tick(plan, 5.0, 30) == (30, 30.0)
    assert shapes.arrival_tick(plan, 10.5, 30) is None


def test_summary_per_phase_and_merge() -> None:
    one, two = ArrivalTally(), ArrivalTally()
    one.config = {"arrival_rate_per_s": 10.0}
    for tally in (one, two):
        tally.count("spike", "offered", 10)
        tally.count("spike", "dropped", 2)
        for _ in range(8):
            tally.started("spike", 0.004)
            tally.answered(0.120)
    merged = arrival_stats.merge([one.to_dict(), two.to_dict(), None])
    phases = [{"name": "spike", "start_s": 0.0, "end_s": 2.0}]
    report = arrival_stats.summary(merged, phases, {"spike": {"succeeded": 16}})
    assert report["model"] == "open" and report["arrival_rate_per_s"] == 10.0
    spike = report["by_phase"]["spike"]
    assert spike["offered"] == 20 and spike["dropped_iterations"] == 4
    assert spike["offered_per_s"] == 10.0 and spike["achieved_per_s"] == 8.0
    assert report["dropped_share"] == 0.2
    assert report["start_delay_ms"]["p99"] == 4.0
    assert report["latency_from_scheduled_ms"]["p50"] == 120.0
    closed = arrival_stats.summary({}, phases, {"spike": {"succeeded": 6}})
    assert closed["model"] == "closed" and closed["by_phase"]["spike"]["offered"] == 6


def test_options_are_bounded_and_closed_is_the_default() -> None:
    parser = argparse.ArgumentParser()
    options.add_arrival_arguments(_Parser(parser))
    parsed = parser.parse_args([])
    assert options.arrival_settings_from(parsed) is None
    parsed = parser.parse_args(["--arrival-rate", "25", "--max-start-delay", "80"])
    settings = options.arrival_settings_from(parsed)
    assert settings is not None and settings.max_start_delay_ms == 80
    for bad in (["--arrival-rate", "-1"], ["--max-payers", "0"], ["--arrival-rate", "nan"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_compare_durations_and_open_model_report() -> None:
    assert duration_s("20") == 20 and duration_s("30s") == 30 and duration_s("1m30s") == 90
    with pytest.raises(argparse.ArgumentTypeError):
        duration_s("soon")
    args = argparse.Namespace(arrival_rate=40.0, max_payers=20, arrivals="poisson")
    assert open_model_args(args) == [
        "--arrival-rate", "40", "--max-payers", "20", "--arrivals", "poisson"
    ]  # fmt: skip
    assert open_model_args(argparse.Namespace(arrival_rate=0.0)) == []
    timeline = [{"t_s": 1.0, "inconsistencies": 0}, {"t_s": 2.0, "inconsistencies": 3}]
    assert time_to_detect_s({"timeline": timeline}) == 2.0
    assert time_to_detect_s({"timeline": timeline[:1]}) is None
    by_phase = {"spike": {"offered_per_s": 40, "achieved_per_s": 30, "dropped_iterations": 5}}
    row = {
        "mode": "off",
        "time_to_detect_s": 2.0,
        "arrivals": {"model": "open", "by_phase": by_phase, "dropped_iterations": 5},
    }
    text = open_model_lines([row])
    assert "time to detect (fix off, first inconsistency): 2 s" in text
    assert "spike 40/30 (5 dropped)" in text
    assert chart_offered_vs_achieved([row])  # a PNG, base64
    assert chart_offered_vs_achieved([{"mode": "on"}]) is None
    assert list(open_model_charts([row])) == ["Offered against achieved payouts/s"]
    closed = {**row, "arrivals": {**row["arrivals"], "model": "closed"}}
    assert open_model_charts([closed]) == {}  # closed runs: the table says it


class _Parser:
    """Locust's parser takes include_in_web_ui; argparse's does not."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument_group(self, *args, **kwargs):
        return self.parser.add_argument_group(*args, **kwargs)
