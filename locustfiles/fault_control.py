"""The fault control (Jepsen's nemesis): keeps the target's faults in step with the load phase.

Runs on the master only, on a schedule of its own: it reads the phase from the shape's plan
(`shapes.py`), and on every change sets `PUT /admin/faults {"timeout_rate": ...}` (spike phases
run at --spike-timeout-rate, the rest at --timeout-rate), records the phase for the report and
tells the workers, which tag their requests with it.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent

from locustfiles.admin_client import TargetAdmin, TargetError
from locustfiles.options import Settings
from locustfiles.shapes import Phase, plan_from_options
from locustfiles.telemetry import Collector, broadcast_phase

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
REBROADCAST_INTERVAL_S = 1.0


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

    def timeout_rate_for(self, phase: Phase | None) -> float:
        if phase is not None and phase.spike_faults:
            return self.settings.spike_timeout_rate
        return self.settings.timeout_rate

    def configured_rate_by_phase(self) -> dict[str, float]:
        try:
            plan = plan_from_options(self.environment.parsed_options)
        except ValueError:
            plan = []
        rates = {phase.name: self.timeout_rate_for(phase) for phase in plan}
        return rates or {"normal": self.settings.timeout_rate}

    def apply_run_settings(self) -> None:
        """At test start: the fix mode and the faults of this run (the web UI may change them)."""
        self.admin.set_fix(self.settings.fix)
        self.admin.set_faults(
            {
                "timeout_rate": self.settings.timeout_rate,
                "late_settle_rate": self.settings.late_settle_rate,
            }
        )

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

    def _enter(self, name: str, phase: Phase | None) -> None:
        rate = self.timeout_rate_for(phase)
        try:
            self.admin.set_faults({"timeout_rate": rate})
        except TargetError as err:
            log.error("could not set the faults of phase %s: %s", name, err)
            self.errors.append(str(err))
        log.info("phase %s: timeout_rate %.3f", name, rate)
        self.phase_name = name
        self.collector.enter_phase(name)
        broadcast_phase(self.environment.runner, self.run_id, name)
