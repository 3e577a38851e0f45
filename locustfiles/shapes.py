"""Load shapes: what load, in which phases. Change the spike shape here and nowhere else.

A shape is a plan: a list of phases, each with a user count, a spawn rate and a flag saying
whether the network runs at the spike fault rate. `LnchaosShape` (a Locust `LoadTestShape`)
follows the plan chosen by `--shape` (the suite's own option; Locust's `--profile` stays a free
run label); the fault control reads the same plan to change the target's faults at phase
boundaries.

`-u` and `-t` keep their meaning (the shape opts in with `use_common_options`):
- steady: `-u` users, ramped at `-r`, for `-t` (forever without `-t`, like any Locust run);
- spike: fitted into `-t` (60 s without `-t`): ramp to `-u`, hold, a sudden jump to
  `--spike-factor` x `-u` held at the spike fault rate, back to `-u` and recovery. With
  `--spike-cycle-s S` (a soak, `lnchaos soak`) that cycle lasts S seconds and repeats until `-t`:
  normal, spike, recovery, normal, spike, ... (only the first cycle ramps).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from locust import LoadTestShape
from locust.runners import MasterRunner

log = logging.getLogger(__name__)

SHAPES = ("steady", "spike")
SPIKE_DEFAULT_RUN_TIME_S = 60.0
# Share of the run time per spike phase, in order; they sum to 1.
SPIKE_PHASE_SHARES = (("ramp", 0.15), ("normal", 0.20), ("spike", 0.35), ("recovery", 0.30))
# The jump into and out of the spike should take about one shape tick (1 s), not a ramp...
SUDDEN_CHANGE_S = 1.0
# ...but never faster than Locust handles without its warning ("spawn rate very high (>100)",
# locust/runners.py: more users a second than one process starts cleanly). A jump of more users
# than this takes a few ticks (60 -> 240 users: 1.8 s). A -r above it is the user's own choice
# and is kept (Locust then warns about it, as it would without the shape).
SPAWN_RATE_MAX = 100.0
# --spike-cycle-s: the shortest cycle (its phases last a few seconds each) and a bound on the
# cycles of one run (a day of 10 s cycles)
SPIKE_CYCLE_S_MIN = 10.0
SPIKE_CYCLES_MAX = 8640
# A ramp-down (the end of a spike) lets each user it stops finish the payout it is making, for
# at most this long (Locust's stop_timeout for that stop only; `--stop-timeout`, when larger,
# wins). Killed mid-request, a payer's payout has an unknown outcome that only the final audit
# can judge: each spike's end left ~100 of them, and an hour of cycles overflowed the audit's
# bound (AUDIT_MAX) and failed a fix-on run. The run's own end keeps Locust's behaviour (the
# audit judges what it stops). The bound covers a payer that waits out a crash's restart (the
# embedded target's start bound, 20 s) and then its payout: at 10 s an hour's soak on a busy
# machine still killed ~45 payers at the spikes' ends that met a restart.
RAMP_DOWN_STOP_TIMEOUT_S = 30.0
# master -> workers: the run's own stop_timeout again, once a ramp-down is done
STOP_TIMEOUT_MESSAGE = "lnchaos_stop_timeout"


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float  # math.inf for an open-ended steady run
    users: int
    spawn_rate: float
    spike_faults: bool  # True: the target runs at --spike-timeout-rate during this phase


def steady_plan(run_time_s: float | None, users: int, spawn_rate: float) -> list[Phase]:
    end_s = run_time_s if run_time_s else math.inf
    return [Phase("normal", 0.0, end_s, users, spawn_rate, spike_faults=False)]


def spike_plan(
    run_time_s: float | None, users: int, spawn_rate: float, spike_factor: int = 4
) -> list[Phase]:
    """Ramp, normal, spike (spike_factor x users), recovery, fitted into run_time_s."""
    total_s = run_time_s if run_time_s else SPIKE_DEFAULT_RUN_TIME_S
    users = max(users, 1)
    spike_users = max(users * max(spike_factor, 1), users + 1)
    plan: list[Phase] = []
    start_s = 0.0
    jump_rate = _rate(spawn_rate, (spike_users - users) / SUDDEN_CHANGE_S)
    for name, share in SPIKE_PHASE_SHARES:
        end_s = start_s + total_s * share
        duration_s = end_s - start_s
        if name == "ramp":
            # reach -u by the end of the ramp even when -r is too slow for that
            rate = _rate(spawn_rate, users / max(duration_s, SUDDEN_CHANGE_S))
            plan.append(Phase(name, start_s, end_s, users, rate, spike_faults=False))
        elif name == "spike":
            plan.append(Phase(name, start_s, end_s, spike_users, jump_rate, spike_faults=True))
        elif name == "recovery":  # drops back to -u at once
            plan.append(Phase(name, start_s, end_s, users, jump_rate, spike_faults=False))
        else:  # "normal" holds -u: nothing to spawn, -r as given
            plan.append(Phase(name, start_s, end_s, users, spawn_rate, spike_faults=False))
        start_s = end_s
    # float sums must not leave a gap before run_time_s
    last = plan[-1]
    plan[-1] = Phase(last.name, last.start_s, total_s, last.users, last.spawn_rate, False)
    return plan


def _rate(spawn_rate: float, wanted: float) -> float:
    """The spawn rate a phase asks for: what it wants, capped at SPAWN_RATE_MAX, never below -r."""
    return max(spawn_rate, min(wanted, SPAWN_RATE_MAX))


def spike_cycles_plan(
    run_time_s: float, cycle_s: float, users: int, spawn_rate: float, spike_factor: int = 4
) -> list[Phase]:
    """spike_plan's cycle of cycle_s repeated until run_time_s (the last one cut short); after
    the first, a cycle's ramp is one more stretch of normal traffic (-u is already running)."""
    cycle = spike_plan(cycle_s, users, spawn_rate, spike_factor)
    plan: list[Phase] = []
    cycles = math.ceil(run_time_s / cycle_s)
    assert cycles <= SPIKE_CYCLES_MAX, f"{cycles} spike cycles: more than {SPIKE_CYCLES_MAX}"
    for index in range(cycles):
        offset_s = index * cycle_s
        for phase in cycle:
            start_s, end_s = phase.start_s + offset_s, min(phase.end_s + offset_s, run_time_s)
            if start_s >= run_time_s:
                break
            name = "normal" if phase.name == "ramp" and index > 0 else phase.name
            if plan and plan[-1].name == name == "normal":  # the cycle's ramp and normal: one
                start_s = plan.pop().start_s
            rate = spawn_rate if name == "normal" else phase.spawn_rate
            plan.append(Phase(name, start_s, end_s, phase.users, rate, phase.spike_faults))
    return plan


def plan_for(
    shape: str,
    run_time_s: float | None,
    users: int,
    spawn_rate: float,
    spike_factor: int = 4,
    cycle_s: float | None = None,
) -> list[Phase]:
    if shape == "steady":
        return steady_plan(run_time_s, users, spawn_rate)
    if shape == "spike" and cycle_s and run_time_s and cycle_s < run_time_s:
        return spike_cycles_plan(run_time_s, cycle_s, users, spawn_rate, spike_factor)
    if shape == "spike":
        return spike_plan(run_time_s, users, spawn_rate, spike_factor)
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def phase_at(plan: list[Phase], t_s: float) -> Phase | None:
    """The phase running at t_s since start; None once the plan is over."""
    for phase in plan:
        if phase.start_s <= t_s < phase.end_s:
            return phase
    return None


class LnchaosShape(LoadTestShape):
    """Follows the plan of `--shape`; ends the run when the plan ends."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._plan: list[Phase] | None = None
        self._users_asked = 0
        self._ramping_down_to: int | None = None  # a ramp-down's user count, while it runs
        self._own_stop_timeout_s: float | None = None  # the run's --stop-timeout

    def reset_time(self) -> None:
        super().reset_time()
        self._plan = None  # options may have changed in the web UI between runs
        self._users_asked = 0
        self._ramping_down_to = None

    def plan(self) -> list[Phase]:
        if self._plan is None:
            self._plan = plan_from_options(self.runner.environment.parsed_options)
        return self._plan

    def current_phase(self) -> Phase | None:
        try:
            return phase_at(self.plan(), self.get_run_time())
        except ValueError:
            return None

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type] | None] | None:
        try:
            phase = phase_at(self.plan(), self.get_run_time())
        except ValueError as err:
            log.error("%s; stopping the run", err)
            self._graceful_ramp_down(None)
            return None
        if phase is None:
            self._graceful_ramp_down(None)
            return None
        options = self.runner.environment.parsed_options
        if float(getattr(options, "arrival_rate", 0.0) or 0.0) > 0:
            # the open model: the payers only (the traffic classes are closed-model users)
            max_payers = int(getattr(options, "max_payers", 1) or 1)
            users, spawn_rate = arrival_tick(self.plan(), self.get_run_time(), max_payers) or (
                0,
                1.0,
            )
            payers = [c for c in self.runner.environment.user_classes if c.__name__ == "PayerUser"]
            return users, spawn_rate, payers or None
        self._graceful_ramp_down(phase.users)
        return phase.users, phase.spawn_rate

    def _graceful_ramp_down(self, users: int | None) -> None:
        """Locust's stop_timeout while a ramp-down runs: RAMP_DOWN_STOP_TIMEOUT_S from the tick
        that asks for fewer users until the runner counts no more than that (its users still
        finishing their payout count: Locust stops a local run's users in steps, reading the
        value at each step, after the tick returned); the run's own at every other time and at
        the end (users None). A master sends the grace to its workers with the ramp-down's
        spawn message, and the run's own back with STOP_TIMEOUT_MESSAGE once it is done (a
        worker keeps the last value it was sent, and would use the grace at the run's end)."""
        environment = self.runner.environment
        if self._own_stop_timeout_s is None:
            self._own_stop_timeout_s = float(getattr(environment, "stop_timeout", 0.0) or 0.0)
        if users is not None and users < self._users_asked:
            self._ramping_down_to = users
        target = self._ramping_down_to
        user_count = int(getattr(self.runner, "user_count", 0) or 0)
        if target is not None and (users is None or users > target or user_count <= target):
            self._ramping_down_to = target = None
        own_s = self._own_stop_timeout_s
        before_s = getattr(environment, "stop_timeout", own_s)
        environment.stop_timeout = own_s if target is None else max(own_s, RAMP_DOWN_STOP_TIMEOUT_S)
        if target is None and before_s != own_s and isinstance(self.runner, MasterRunner):
            self.runner.send_message(STOP_TIMEOUT_MESSAGE, own_s)
        self._users_asked = users or 0


def on_stop_timeout_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    """A worker's handler of STOP_TIMEOUT_MESSAGE: the master's own stop_timeout, back."""
    environment.stop_timeout = float(msg.data)


def plan_from_options(options: object) -> list[Phase]:
    """The plan for Locust's parsed options (`-u`, `-r`, `-t`, `--shape`, `--spike-factor`)."""
    shape = getattr(options, "shape", None) or "steady"
    users = int(getattr(options, "num_users", None) or 1)
    spawn_rate = float(getattr(options, "spawn_rate", None) or 1.0)
    run_time_s = getattr(options, "run_time", None)
    spike_factor = int(getattr(options, "spike_factor", 4) or 4)
    cycle_s = float(getattr(options, "spike_cycle_s", 0.0) or 0.0)
    run_time = float(run_time_s) if run_time_s else None
    return plan_for(shape, run_time, users, spawn_rate, spike_factor, cycle_s or None)


# ---- the open model (--arrival-rate; locustfiles/arrival.py) ---------------------------------


def arrival_rate_factor(phase_name: str, spike_factor: int) -> int:
    """The arrival rate of a phase as a multiple of --arrival-rate: the spike multiplies it,
    every other phase (ramp, normal, recovery; steady's normal) keeps it."""
    return max(1, spike_factor) if phase_name == "spike" else 1


def arrival_tick(plan: list[Phase], t_s: float, max_payers: int) -> tuple[int, float] | None:
    """The open model's tick: every payer from the start (spawned at once), the plan's timing
    (phases and end); the load itself is the arrival rate, not the user count."""
    if phase_at(plan, t_s) is None:
        return None
    return max_payers, float(max(max_payers, 1))
