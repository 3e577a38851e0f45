"""The load shapes without Locust running: phases fit -t, scale with -u, end the run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from locustfiles import options
from locustfiles.shapes import (
    RAMP_DOWN_STOP_TIMEOUT_S,
    SPAWN_RATE_MAX,
    SUDDEN_CHANGE_S,
    LnchaosShape,
    phase_at,
    plan_for,
    spike_plan,
    steady_plan,
)


def test_spike_phases_fill_the_run_time_in_order():
    plan = spike_plan(30.0, users=10, spawn_rate=10.0)
    assert [p.name for p in plan] == ["ramp", "normal", "spike", "recovery"]
    assert plan[0].start_s == 0.0 and plan[-1].end_s == 30.0
    for before, after in zip(plan, plan[1:], strict=False):
        assert before.end_s == after.start_s
    assert [p.spike_faults for p in plan] == [False, False, True, False]


@pytest.mark.parametrize("run_time_s", [5.0, 12.0, 30.0, 600.0])
def test_spike_plan_fits_any_run_time(run_time_s):
    plan = spike_plan(run_time_s, users=4, spawn_rate=1.0)
    assert plan[-1].end_s == run_time_s
    assert phase_at(plan, run_time_s - 0.01).name == "recovery"
    assert phase_at(plan, run_time_s) is None


@pytest.mark.parametrize(("users", "factor"), [(1, 4), (5, 4), (10, 3)])
def test_spike_scales_from_the_user_count(users, factor):
    plan = spike_plan(20.0, users=users, spawn_rate=1.0, spike_factor=factor)
    by_name = {p.name: p for p in plan}
    assert by_name["normal"].users == users
    assert by_name["spike"].users == users * factor
    assert by_name["recovery"].users == users
    # the jump is sudden: all spike users within about one tick
    assert by_name["spike"].spawn_rate >= users * factor - users
    # the ramp reaches -u before the ramp phase ends, even with a slow -r
    ramp = by_name["ramp"]
    assert ramp.users / ramp.spawn_rate <= ramp.end_s - ramp.start_s + 1e-9


@pytest.mark.parametrize(("users", "spawn_rate"), [(60, 30.0), (100, 10.0), (400, 50.0)])
def test_spike_asks_no_spawn_rate_locust_warns_about(users, spawn_rate):
    """Issue 24: at -u 60 each phase change asked for 180 users/s and Locust warned "spawn rate
    very high (>100)". Now the jumps are capped at Locust's limit and take a few ticks."""
    plan = spike_plan(150.0, users=users, spawn_rate=spawn_rate)
    assert all(p.spawn_rate <= SPAWN_RATE_MAX for p in plan), plan
    by_name = {p.name: p for p in plan}
    jump_s = (by_name["spike"].users - users) / by_name["spike"].spawn_rate
    assert jump_s <= max(SUDDEN_CHANGE_S, (by_name["spike"].users - users) / SPAWN_RATE_MAX)
    assert by_name["normal"].spawn_rate == spawn_rate  # holds -u: nothing to spawn


def test_a_spawn_rate_the_user_chose_is_kept():
    plan = spike_plan(60.0, users=60, spawn_rate=150.0)
    assert {p.spawn_rate for p in plan} == {150.0}


@pytest.mark.parametrize(
    ("run_time_s", "cycle_s", "spikes"), [(150.0, 60.0, 3), (3600.0, 60.0, 60)]
)
def test_spike_cycles_repeat_until_the_run_time(run_time_s, cycle_s, spikes):
    """--spike-cycle-s (the soak): the cycle repeats, contiguous, only the first one ramps, and
    every spike runs at the spike fault rate."""
    plan = plan_for("spike", run_time_s, 60, 30.0, 4, cycle_s)
    assert plan[0].start_s == 0.0 and plan[-1].end_s == run_time_s
    for before, after in zip(plan, plan[1:], strict=False):
        assert before.end_s == after.start_s and before.name != after.name
    names = [p.name for p in plan]
    assert names.count("ramp") == 1 and names.count("spike") == spikes
    assert all(p.spike_faults == (p.name == "spike") for p in plan)
    assert all(p.users == 240 for p in plan if p.name == "spike")
    assert phase_at(plan, cycle_s + 0.1).name == "normal"  # the second cycle starts normal


def test_spike_cycle_option_is_checked():
    assert options.value_problem("spike_cycle_s", "5") is not None  # shorter than a cycle
    assert options.value_problem("spike_cycle_s", "0") is None
    assert options.value_problem("spike_cycle_s", "60") is None


def test_spike_without_run_time_uses_the_default_cycle():
    assert spike_plan(None, users=2, spawn_rate=1.0)[-1].end_s == 60.0


def test_steady_runs_until_the_run_time_or_forever():
    assert steady_plan(30.0, 7, 2.0)[0].end_s == 30.0
    forever = steady_plan(None, 7, 2.0)
    assert forever[0].end_s == math.inf
    assert phase_at(forever, 1e9).users == 7


def test_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="unknown shape"):
        plan_for("tsunami", 10.0, 1, 1.0)


def make_shape(options: dict, now_s: float) -> LnchaosShape:
    shape = LnchaosShape()
    shape.runner = SimpleNamespace(
        environment=SimpleNamespace(parsed_options=SimpleNamespace(**options))
    )
    shape.get_run_time = lambda: now_s  # a fixed clock instead of waiting
    return shape


def test_shape_tick_follows_the_plan_and_ends_the_run():
    options = {"shape": "spike", "num_users": 5, "spawn_rate": 5.0, "run_time": 20}
    assert make_shape(options, 0.0).tick()[0] == 5
    assert make_shape(options, 10.0).tick()[0] == 20  # 35..70 % of 20 s: the spike, 4 x 5
    assert make_shape(options, 10.0).current_phase().name == "spike"
    assert make_shape(options, 19.9).tick()[0] == 5
    assert make_shape(options, 20.0).tick() is None


def test_locust_profile_label_does_not_choose_the_shape():
    # --profile is Locust's run label: "spike" there leaves the shape steady (options.py hints)
    options = {"profile": "spike", "num_users": 5, "spawn_rate": 5.0, "run_time": 20}
    assert make_shape(options, 10.0).current_phase().name == "normal"


def test_shape_with_a_bad_shape_stops_instead_of_crashing():
    options = {"shape": "nope", "num_users": 1, "spawn_rate": 1.0, "run_time": 5}
    assert make_shape(options, 0.0).tick() is None


@pytest.mark.parametrize("own_stop_timeout_s", [0.0, 3.0, 30.0])
def test_a_ramp_down_lets_its_users_finish_their_payout(own_stop_timeout_s):
    """Issue 24: a spike's end killed ~100 payers mid-payout a cycle, each payout left to the
    final audit, and an hour overflowed it. A ramp-down now stops its users gracefully (Locust's
    stop_timeout, for that stop only); every other stop keeps the run's own --stop-timeout."""
    options = {"shape": "spike", "num_users": 5, "spawn_rate": 5.0, "run_time": 20}
    shape = make_shape(options, 0.0)
    environment = shape.runner.environment
    environment.stop_timeout = own_stop_timeout_s
    graceful_s = max(own_stop_timeout_s, RAMP_DOWN_STOP_TIMEOUT_S)
    # (clock, users the runner counts, users the tick asks, stop_timeout while it runs)
    timeline = [
        (0.0, 0, 5, own_stop_timeout_s),  # the ramp up: nothing stopped
        (10.0, 5, 20, own_stop_timeout_s),  # the spike
        (15.0, 20, 5, graceful_s),  # its end: 15 users stopped, each finishing its payout
        (16.0, 12, 5, graceful_s),  # still stopping (Locust steps, and waits for them)
        (17.0, 5, 5, own_stop_timeout_s),  # the ramp-down done
        (18.0, 5, 5, own_stop_timeout_s),
        (20.0, 5, None, own_stop_timeout_s),  # the run's end: Locust's own stop
    ]
    for now_s, user_count, users, stop_timeout_s in timeline:
        shape.get_run_time = lambda now_s=now_s: now_s
        shape.runner.user_count = user_count
        tick = shape.tick()
        assert (tick[0] if tick else None) == users, now_s
        assert environment.stop_timeout == stop_timeout_s, now_s


def test_a_master_sends_its_workers_their_own_stop_timeout_back_after_a_ramp_down(monkeypatch):
    """A worker keeps the stop_timeout of the last spawn message it got: the ramp-down's grace
    would hold its final stop up to 30 s (a 2-process run lost a worker's last tally that way)."""
    from locustfiles import shapes

    sent: list[tuple[str, float]] = []

    class FakeMaster:
        user_count = 20

        def send_message(self, msg_type: str, data: float) -> None:
            sent.append((msg_type, data))

    monkeypatch.setattr(shapes, "MasterRunner", FakeMaster)
    shape = make_shape({"shape": "spike", "num_users": 5, "spawn_rate": 5.0, "run_time": 20}, 0)
    master = FakeMaster()
    master.environment = shape.runner.environment
    master.environment.stop_timeout = 0.0
    shape.runner = master
    for now_s, user_count in ((10.0, 5), (15.0, 20), (16.0, 12)):  # spike, its end, stopping
        shape.get_run_time = lambda now_s=now_s: now_s
        master.user_count = user_count
        shape.tick()
    assert sent == []  # the grace rides on the ramp-down's own spawn message
    master.user_count = 5
    shape.tick()  # the ramp-down done
    assert sent == [(shapes.STOP_TIMEOUT_MESSAGE, 0.0)]
    environment = SimpleNamespace(stop_timeout=30.0)
    shapes.on_stop_timeout_message(environment, SimpleNamespace(data=0.0))
    assert environment.stop_timeout == 0.0
