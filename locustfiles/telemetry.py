"""What crosses processes: the phase (master -> workers) and the tallies (workers -> master).

Each process has one `LOCAL` state: the phase the users tag their requests with, and the tally
they record into. The master (or the local runner) has a `Collector`: the latest tally of each
worker, the phases as they happened, and a timeline sampled about once per second.

Messages (Locust's `runner.register_message`):
- `lnchaos_phase` {run_id, phase}: master -> workers on every phase change and once a second
  (so late workers learn it too). A new run_id resets the worker's tally: runs started one
  after another in the web UI do not mix.
- `lnchaos_tally` (Tally.to_dict()): workers -> master once a second, on test_stop, and inside
  the final `report_to_master` when the master quits. Tallies are cumulative, so the master
  keeps only the latest of each worker. They carry the audit entries (the payouts no payer could
  judge, with the wallet's api key so the master can read the wallet; checker.py): the master
  audits them after the final wait, so entries recorded as users stop still arrive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust.runners import LocalRunner, WorkerRunner

from locustfiles.checker import Tally, merge_tallies, timeline_point

log = logging.getLogger(__name__)

PHASE_MESSAGE = "lnchaos_phase"
TALLY_MESSAGE = "lnchaos_tally"
REPORT_KEY = "lnchaos_tally"
TALLY_INTERVAL_S = 1.0
TIMELINE_INTERVAL_S = 1.0
MAX_TIMELINE_SAMPLES = 24 * 3600  # one a second for a day: a bound, not a plan


@dataclass
class LocalState:
    phase: str = "normal"
    run_id: str = ""
    tally: Tally = field(default_factory=Tally)


LOCAL = LocalState()


def on_phase_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    run_id = str(msg.data.get("run_id", ""))
    if run_id != LOCAL.run_id:
        LOCAL.run_id = run_id
        LOCAL.tally = Tally(run_id)
    LOCAL.phase = str(msg.data.get("phase", LOCAL.phase))


class Collector:
    """Master side: per-worker tallies, phases and the timeline of one run."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.is_local = isinstance(runner, LocalRunner)
        self.run_id = ""
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.phases: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.started_monotonic = time.monotonic()
        self._sampler: gevent.Greenlet | None = None

    def start_run(self, run_id: str) -> None:
        self.stop_sampling()
        self.run_id = run_id
        self.snapshots = {}
        self.phases = []
        self.timeline = []
        self.started_monotonic = time.monotonic()
        self._sampler = gevent.spawn(self._sample_forever)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def on_tally(self, node_id: str, snapshot: dict[str, Any]) -> None:
        if snapshot.get("run_id") != self.run_id:
            return  # a late report of an earlier run
        known = self.snapshots.get(node_id)
        if known is None or snapshot.get("seq", 0) > known.get("seq", 0):
            self.snapshots[node_id] = snapshot

    def merged(self) -> dict[str, Any]:
        if self.is_local:
            return merge_tallies([LOCAL.tally.to_dict()])
        return merge_tallies(self.snapshots.values())

    def current_phase(self) -> str:
        return self.phases[-1]["name"] if self.phases else "normal"

    def enter_phase(self, name: str) -> None:
        t_s = round(self.elapsed_s(), 3)
        if self.phases:
            self.phases[-1]["end_s"] = t_s
        self.phases.append({"name": name, "start_s": t_s, "end_s": None})

    def close_phases(self) -> None:
        if self.phases and self.phases[-1]["end_s"] is None:
            self.phases[-1]["end_s"] = round(self.elapsed_s(), 3)

    def sample(self) -> None:
        if len(self.timeline) >= MAX_TIMELINE_SAMPLES:
            return
        point = {"t_s": round(self.elapsed_s(), 3), "phase": self.current_phase()}
        point.update(timeline_point(self.merged()))
        self.timeline.append(point)

    def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.kill(block=False)
            self._sampler = None

    def _sample_forever(self) -> None:
        while True:
            gevent.sleep(TIMELINE_INTERVAL_S)
            self.sample()


def broadcast_phase(runner: Any, run_id: str, phase: str) -> None:
    """Tell every user process the phase (the local runner delivers it to itself)."""
    runner.send_message(PHASE_MESSAGE, {"run_id": run_id, "phase": phase})


def send_tally(runner: WorkerRunner) -> None:
    runner.send_message(TALLY_MESSAGE, LOCAL.tally.to_dict())


def tally_sender(runner: WorkerRunner) -> None:
    """Worker greenlet: the cumulative tally to the master once a second."""
    while True:
        gevent.sleep(TALLY_INTERVAL_S)
        if LOCAL.run_id:
            try:
                send_tally(runner)
            except Exception as err:  # the connection to the master may be resetting
                log.warning("could not send the tally to the master: %s", err)
