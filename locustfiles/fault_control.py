"""The fault control (Jepsen's nemesis): keeps the target's faults in step with the load phase.

Runs on the master only, on a schedule of its own: it reads the phase from the shape's plan
(`shapes.py`), and on every change sets `PUT /admin/faults {"timeout_rate": ...}` (spike phases
run at --spike-timeout-rate, the rest at --timeout-rate), records the phase for the report and
tells the workers, which tag their requests with it.

Controls mid-run (the web UI's Consistency tab, locustfiles/web_ui.py): `apply_control` sets the
fix mode or a fault rate on the target at once and holds it for the rest of the run: a phase
change no longer sets a rate a control has set. Each change is recorded (`controls`: time, what,
from, to, phase, and the target's clock after it, so the verdict can judge the payouts started
after it on their own; the target keeps each payout's fix mode from its start).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import gevent.lock

from lnchaos.checker import history
from locustfiles import edge_workload
from locustfiles.admin_client import TargetAdmin, TargetError
from locustfiles.options import FIX_MODES, Settings
from locustfiles.shapes import Phase, plan_from_options
from locustfiles.telemetry import Collector, broadcast_phase

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
REBROADCAST_INTERVAL_S = 1.0
# What a control may change mid-run (the fix mode and the target's fault rates), and a bound on
# the changes one run records.
CONTROL_RATES = ("timeout_rate", "late_settle_rate", "failure_rate")
CONTROL_KEYS = ("fix", *CONTROL_RATES)
MAX_CONTROLS = 1000
# A phase's rate asked again when the target did not take it (busy at a spike's peak, or going
# down for a crash, whose restart sets the phase's rate itself): at most this many asks, this far
# apart. An admin call that cannot get through in all of them fails the run's fault control.
PHASE_SET_ATTEMPTS = 4
PHASE_SET_RETRY_S = 1.0
# Faults of the node that stop a payout from succeeding at its first answer, besides the phase's
# timeout rate: a definite failure (failure_rate), and the HTTP faults of the node's API, which a
# wallet that talks to the node over HTTP meets on each of its calls (decode, send, wait: three).
HTTP_FAULTS = ("http_error_rate", "http_reset_rate", "http_stall_rate")
NODE_CALLS_PER_PAYOUT = 3


class ControlError(ValueError):
    """A control change that is not valid: names the setting and why."""


def validate_controls(changes: dict[str, Any]) -> dict[str, Any]:
    """Typed control changes (strings from a form are accepted); ControlError names a bad one.
    Empty values are left out: a form field left blank changes nothing."""
    result: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in CONTROL_KEYS:
            raise ControlError(f"{key}: not a control (one of {', '.join(CONTROL_KEYS)})")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key == "fix":
            if value not in FIX_MODES:
                raise ControlError(f"fix: must be one of {', '.join(FIX_MODES)}, not {value!r}")
            result[key] = str(value)
            continue
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ControlError(f"{key}: must be a number within [0, 1], not {value!r}") from None
        if isinstance(value, bool) or not 0.0 <= rate <= 1.0:
            raise ControlError(f"{key}: must be within [0, 1], not {value!r}")
        result[key] = rate
    return result


class FaultControl:
    def __init__(
        self,
        admin: TargetAdmin,
        settings: Settings,
        environment: Any,
        collector: Collector,
        run_id: str,
    ) -> None:
        self.admin = admin
        self.settings = settings
        self.environment = environment
        self.collector = collector
        self.run_id = run_id
        self.phase_name: str | None = None
        self.errors: list[str] = []
        self._greenlet: gevent.Greenlet | None = None
        # the settings in force at the target now, and those a control holds for the run
        self.in_force: dict[str, Any] = {
            "fix": settings.fix,
            "timeout_rate": settings.timeout_rate,
            "late_settle_rate": settings.late_settle_rate,
        }
        self.held: set[str] = set()
        # the node's faults in force at test start (the coverage windows follow them)
        self.run_faults: dict[str, Any] = {}
        self.controls: list[dict[str, Any]] = []
        # per phase entered: the highest timeout rate in force during it
        self.rate_seen: dict[str, float] = {}
        # the highest failure_rate and HTTP_FAULTS rates in force during the run
        # (empty: the target never said; then no success is required of the run)
        self.worst_seen: dict[str, float] = {}
        # a phase change and a control never interleave their PUTs to the target
        self._lock = gevent.lock.RLock()

    def timeout_rate_for(self, phase: Phase | None) -> float:
        if phase is not None and phase.spike_faults:
            return self.settings.spike_timeout_rate
        return self.settings.timeout_rate

    def configured_rate_by_phase(self) -> dict[str, float]:
        """The plan's rate of each phase; of a phase entered, the highest rate in force during it
        (a control may have changed it)."""
        try:
            plan = plan_from_options(self.environment.parsed_options)
        except ValueError:
            plan = []
        rates = {phase.name: self.timeout_rate_for(phase) for phase in plan}
        rates.update(self.rate_seen)
        return rates or {"normal": self.settings.timeout_rate}

    def success_share_by_phase(self) -> dict[str, float] | None:
        """Per phase, the share of payouts the faults in force let succeed at their first
        answer, at the worst of each fault during the run; None if the target never said its
        faults. What the verdict expects of a wallet that pays (checker.successes_summary)."""
        if not self.worst_seen:
            return None
        failure = self.worst_seen.get("failure_rate", 0.0)
        http = sum(self.worst_seen.get(key, 0.0) for key in HTTP_FAULTS)
        through = (1.0 - min(1.0, failure)) * (1.0 - min(1.0, http)) ** NODE_CALLS_PER_PAYOUT
        return {
            phase: (1.0 - min(1.0, timeout_rate)) * through
            for phase, timeout_rate in self.configured_rate_by_phase().items()
        }

    def _note_worst(self, faults: Any) -> None:
        if not isinstance(faults, dict):
            return
        for key in ("failure_rate", *HTTP_FAULTS):
            value = faults.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.worst_seen[key] = max(self.worst_seen.get(key, 0.0), float(value))

    def apply_run_settings(self, baseline: dict[str, Any] | None = None) -> None:
        """At test start: the fix mode, the faults and the seed of this run (the web UI's start
        form may change them). baseline: fault settings a control of an earlier run may have
        changed and no option sets (failure_rate), restored to the target's own."""
        self.admin.set_fix(self.settings.fix)
        faults: dict[str, Any] = dict(baseline or {})
        faults.update(
            timeout_rate=self.settings.timeout_rate,
            late_settle_rate=self.settings.late_settle_rate,
        )
        if self.settings.failure_rate is not None:
            faults["failure_rate"] = self.settings.failure_rate
        # the edge workload's part at the node: fees up to the limit, long holds
        faults.update(
            edge_workload.node_faults(edge_workload.settings_from(self.environment.parsed_options))
        )
        in_force = self.admin.set_faults(faults)
        self.run_faults = dict(in_force) if isinstance(in_force, dict) else {}
        self.collector.note(
            {
                "type": history.FAULT,
                "what": "run_settings",
                "fix": self.settings.fix,
                "faults": in_force,
            }
        )
        self._note_worst(in_force)
        if isinstance(in_force, dict) and "failure_rate" in in_force:
            self.in_force["failure_rate"] = in_force["failure_rate"]
        try:
            log.info("target seed %d", self.admin.set_seed(self.settings.seed))
        except TargetError as err:  # a target without /admin/seed (--host): keeps its own
            log.warning("could not set the target's seed to %d: %s", self.settings.seed, err)

    def apply_control(
        self, changes: dict[str, Any], source: str = "web_ui"
    ) -> list[dict[str, Any]]:
        """Set `changes` (validated: validate_controls) on the target now and hold them for the
        rest of the run; returns the changes recorded (a value equal to the one in force is not a
        change). TargetError when the target refused or is unreachable (nothing recorded)."""
        recorded: list[dict[str, Any]] = []
        with self._lock:
            fix = changes.get("fix")
            faults = {k: v for k, v in changes.items() if k in CONTROL_RATES}
            if fix is not None and fix != self.in_force.get("fix"):
                self.admin.set_fix(fix)
                recorded.append(self._record("fix", fix, source))
            before = self.admin.get_faults() if faults else {}
            faults = {k: v for k, v in faults.items() if before.get(k) != v}
            if faults:
                self.admin.set_faults(faults)
                self._note_worst(faults)
                for key, value in faults.items():
                    self.in_force[key] = before.get(key)
                    recorded.append(self._record(key, value, source))
            if recorded:
                # the target's clock once the change is in force: payouts created from then on
                # run under it (the verdict reconciles them apart)
                marker = self.admin.clock_ms()
                for change in recorded:
                    change["target_ms"] = marker
                self._note_rate()
        return recorded

    def _record(self, what: str, to: Any, source: str) -> dict[str, Any]:
        change = {
            "t_s": round(self.collector.elapsed_s(), 3),
            "t_unix": round(time.time(), 3),
            "phase": self.phase_name,
            "what": what,
            "from": self.in_force.get(what),
            "to": to,
            "source": source,
            "target_ms": None,
        }
        self.in_force[what] = to
        self.held.add(what)
        if len(self.controls) < MAX_CONTROLS:
            self.controls.append(change)
        self.collector.note({"type": history.CONTROL, **change})
        log.info("control: %s %s -> %s (held for the rest of the run)", what, change["from"], to)
        return change

    def _note_rate(self) -> None:
        if self.phase_name is None:
            return
        rate = float(self.in_force.get("timeout_rate") or 0.0)
        self.rate_seen[self.phase_name] = max(self.rate_seen.get(self.phase_name, 0.0), rate)

    def start(self) -> None:
        """Enter the first phase now (workers learn the run before their users spawn), then
        follow the plan in a greenlet."""
        phase = self._current_phase()
        self._enter(phase.name if phase is not None else "normal", phase)
        self._greenlet = gevent.spawn(self._follow_phases)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None

    def _current_phase(self) -> Phase | None:
        shape = self.environment.shape_class
        return shape.current_phase() if shape is not None else None

    def _follow_phases(self) -> None:
        since_broadcast_s = 0.0
        while True:
            phase = self._current_phase()
            name = phase.name if phase is not None else (self.phase_name or "normal")
            if name != self.phase_name:
                self._enter(name, phase)
                since_broadcast_s = 0.0
            elif since_broadcast_s >= REBROADCAST_INTERVAL_S:
                broadcast_phase(self.environment.runner, self.run_id, name)
                since_broadcast_s = 0.0
            gevent.sleep(POLL_INTERVAL_S)
            since_broadcast_s += POLL_INTERVAL_S

    def _set_patiently(self, faults: dict[str, Any], phase_name: str) -> None:
        """Set `faults`, asked again (PHASE_SET_ATTEMPTS) while the target does not take them;
        the last TargetError raised. Asking again is safe: the same values, set twice."""
        for attempt in range(PHASE_SET_ATTEMPTS):
            try:
                self.admin.set_faults(faults)
                return
            except TargetError as err:
                if attempt + 1 == PHASE_SET_ATTEMPTS:
                    raise
                log.warning(
                    "phase %s: the target did not take its faults, again: %s", phase_name, err
                )
                gevent.sleep(PHASE_SET_RETRY_S)

    def _enter(self, name: str, phase: Phase | None) -> None:
        with self._lock:
            if "timeout_rate" in self.held:
                # a control set it: it holds for the rest of the run, whatever the phase
                log.info(
                    "phase %s: timeout_rate %s held by a control",
                    name,
                    self.in_force.get("timeout_rate"),
                )
            else:
                rate = self.timeout_rate_for(phase)
                try:
                    self._set_patiently({"timeout_rate": rate}, name)
                    self.in_force["timeout_rate"] = rate
                    self.collector.note({"type": history.FAULT, "what": "phase", "phase": name,
                                         "timeout_rate": rate})  # fmt: skip
                except TargetError as err:
                    log.error("could not set the faults of phase %s: %s", name, err)
                    self.errors.append(str(err))
                log.info("phase %s: timeout_rate %.3f", name, rate)
            self.phase_name = name
            self._note_rate()
        self.collector.enter_phase(name)
        broadcast_phase(self.environment.runner, self.run_id, name)
