"""What crosses processes: the phase (master -> workers) and the tallies (workers -> master).

Each process has one `LOCAL` state: the phase the users tag their requests with, and the tally
they record into. The master (or the local runner) has a `Collector`: the latest tally of each
worker, the phases as they happened, and a timeline sampled about once per second.

With --progress-file the master also writes each timeline sample to that file (atomically),
so a program outside Locust (lnchaos compare) can show the run's progress once a second.

Messages (Locust's `runner.register_message`):
- `lnchaos_phase` {run_id, phase}: master -> workers on every phase change and once a second
  (so late workers learn it too). A new run_id resets the worker's tally: runs started one
  after another in the web UI do not mix.
- `lnchaos_tally` (Tally.to_dict() + `final`): workers -> master once a second and on test_stop
  (`final: true`: the worker's users have stopped, its tally is complete); the tally also rides
  along with each of Locust's own stats reports (`report_to_master`, never final). Each also
  carries the worker's counts of checks and faults (`counters`: counters.py), so the suite's
  own table crosses by this same path. Tallies are
  cumulative, so the master keeps only the latest of each worker. They carry the audit entries
  (the payouts no payer could judge, with the wallet's api key so the master can read the
  wallet; checker.py): the master audits them after the final wait, so entries recorded as users
  stop still arrive (in the final tally).

Nothing crosses through files: a worker (on another host, in a folder of its own) gets its
options with Locust's spawn message, the target's URL as Locust's host, the phase and run id by
`lnchaos_phase`, and sends back only its tally, with its history lines since its last message
(key `history`: lnchaos/checker/history.py); it never writes a file. The master writes each
worker's lines to `<report-dir>/history/users-<worker id>.jsonl`, its own records (phases, the
audit, the reconciliation, the end of the run) to `master.jsonl` (docs/history.md).

Workers of a run and lost workers: the collector knows each worker that sent a tally of the run
or that Locust listed while the run went on (sampled once a second), with the time of its last
report. At the verdict, a worker that reported (or that Locust calls missing) and whose final
tally never came is lost: its tally is counted up to its last report, and the report names it,
with that time and Locust's state of it (`missing` once its heartbeats stopped; `gone` once no
longer listed: a worker that stopped normally leaves the list too, so `gone` alone says nothing).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust.runners import STATE_MISSING, LocalRunner, WorkerRunner

from lnchaos.checker import history
from lnchaos.checker.history import HistoryFile, Recorder
from lnchaos.checker.tally import Tally, merge_tallies, timeline_point
from locustfiles import arrival_stats, counters
from locustfiles.arrival_stats import ARRIVALS_KEY, ArrivalTally

log = logging.getLogger(__name__)

PHASE_MESSAGE = "lnchaos_phase"
TALLY_MESSAGE = "lnchaos_tally"
REPORT_KEY = "lnchaos_tally"
COUNTERS_KEY = "counters"
HISTORY_KEY = "history"  # a worker's history lines since its last message (lnchaos/checker)
MASTER_FILE = "master" + history.SUFFIX  # the master's (or local runner's) own records
TALLY_INTERVAL_S = 1.0
TIMELINE_INTERVAL_S = 1.0
# Timeline points kept (in memory and consistency.json): past it every other point goes and the
# sampling halves its pace, so an hour keeps its shape at 2-4 s a point in flat memory (one a
# second for the whole run grew the Locust process by about 5 MB an hour).
MAX_TIMELINE_SAMPLES = 1800
# Locust counts each stats entry's requests per second of the run in dicts it never trims
# (StatsEntry.num_reqs_per_sec, num_fail_per_sec: tens of entries a second, ~15 MB an hour here);
# its own readers look back 12 s (current_rps), so older seconds are dropped once a second.
PER_SECOND_KEPT_S = 60
# Locust's own chart history (stats.history: a point every 5 s for the web UI's charts and the
# HTML report, kept for the whole run): past this many points every other one is dropped, as the
# timeline is thinned (a day's run would keep 17,280 points otherwise).
LOCUST_CHART_POINTS_MAX = 1800
# Locust copies each stats entry's whole response-time histogram once a second and keeps 20 copies
# (StatsEntry.response_times_cache), for the "current" percentiles of the last 10 s. It reads them
# only of the total (the web UI's charts, the chart history, the stats history CSV) unless
# --csv-full-history asks them of every entry. The suite names ~80 entries (a request per class,
# case and phase), and a histogram gains keys as rarer latencies come (up to ~500 each): an hour
# grew the Locust process by 13.6 MB, never flattening. So only the total keeps its copies.
FINAL_KEY = "final"
# How long the verdict waits for a final tally still on its way from a worker Locust does not
# (yet) call missing: the worker sends it on its test_stop, before it tells the master it stopped.
FINAL_TALLY_WAIT_S = 3.0
FINAL_TALLY_POLL_S = 0.1
MAX_WORKERS = 10_000  # workers one run keeps track of: a bound, not a plan


@dataclass
class LocalState:
    phase: str = "normal"
    run_id: str = ""
    tally: Tally = field(default_factory=Tally)
    arrivals: ArrivalTally = field(default_factory=ArrivalTally)  # the open model's counts
    # this process's history; its fold is `tally` (lnchaos/checker/history.py)
    history: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.history = Recorder(self.tally)

    def start_run(self, run_id: str) -> None:
        self.run_id = run_id
        self.tally = Tally(run_id)
        self.history = Recorder(self.tally)
        self.arrivals = ArrivalTally()

    def snapshot(self) -> dict[str, Any]:
        """What crosses to the master: the tally, with the arrivals beside it."""
        return {**self.tally.to_dict(), ARRIVALS_KEY: self.arrivals.to_dict()}


LOCAL = LocalState()


def on_phase_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    run_id = str(msg.data.get("run_id", ""))
    if run_id != LOCAL.run_id:
        LOCAL.start_run(run_id)
    counters.start_run(run_id)
    LOCAL.phase = str(msg.data.get("phase", LOCAL.phase))


class Collector:
    """Master side: per-worker tallies, phases and the timeline of one run."""

    def __init__(
        self,
        runner: Any,
        progress_path: str | Path | None = None,
        history_dir: str | Path | None = None,
    ) -> None:
        self.runner = runner
        # <report-dir>/history/: the master's file and one per user process (docs/history.md)
        self.history_dir = Path(history_dir) if history_dir else None
        self.history_files: dict[str, HistoryFile] = {}
        self.own = Recorder(Tally(), process="master")  # phases, audit, reconciliation, end
        # --progress-file: each sample also written there (lnchaos compare's progress line)
        self.progress_path = Path(progress_path) if progress_path else None
        self.is_local = isinstance(runner, LocalRunner)
        self.run_id = ""
        self.snapshots: dict[str, dict[str, Any]] = {}
        # per worker of the run: {index, first_report_unix, last_report_unix, reports, final}
        self.workers: dict[str, dict[str, Any]] = {}
        self.phases: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self._timeline_every = 1  # a point every this many samples (doubles when thinned)
        self._samples = 0
        self._ticks: list[int] = []  # the sample number of each timeline point
        self.started_monotonic = time.monotonic()
        self.started_unix = time.time()
        self._sampler: gevent.Greenlet | None = None

    def start_run(self, run_id: str) -> None:
        self.stop_sampling()
        self.run_id = run_id
        counters.start_run(run_id)
        self.snapshots = {}
        self.workers = {}
        self.started_unix = time.time()
        self.phases = []
        self.timeline = []
        self._timeline_every, self._samples, self._ticks = 1, 0, []
        self.started_monotonic = time.monotonic()
        self.open_history()
        self._sampler = gevent.spawn(self._sample_forever)

    # --- the history (lnchaos/checker/history.py) -----------------------------------------
    def open_history(self) -> None:
        """A new run starts a new history: the folder emptied, the master's file opened."""
        self.history_files = {}
        self.own = Recorder(Tally(self.run_id), process="master")
        if self.history_dir is None:
            return
        self.history_dir.mkdir(parents=True, exist_ok=True)
        for old in self.history_dir.glob(f"*{history.SUFFIX}"):
            old.unlink()
        self.history_files[MASTER_FILE] = HistoryFile(self.history_dir / MASTER_FILE)

    def note(self, record: dict[str, Any]) -> None:
        """One of the master's own records (a phase, a control, the audit, the end)."""
        self.own.note(record)

    def user_file(self, node_id: str) -> str:
        """The history file of a user process: `users-<its id>.jsonl` (`local` alone)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)[:120]
        return f"users-{safe}{history.SUFFIX}"

    def _append(self, name: str, lines: list[str]) -> None:
        if self.history_dir is None or not lines:
            return
        file = self.history_files.get(name)
        if file is None:
            file = self.history_files[name] = HistoryFile(self.history_dir / name)
        try:
            file.append(lines)
        except OSError as err:
            log.warning("could not write the history %s: %s", file.path, err)

    def flush_history(self) -> None:
        """The lines recorded since the last flush, to their files (once a second and at the
        end; a worker's arrive with its tally, on_tally)."""
        if self.is_local:
            self._append(self.user_file("local"), LOCAL.history.drain())
        self._append(MASTER_FILE, self.own.drain())

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def on_tally(self, node_id: str, snapshot: dict[str, Any]) -> None:
        if snapshot.get("run_id") != self.run_id:
            return  # a late report of an earlier run
        # each message carries the lines since the worker's last one: every one is kept, so
        # the worker's file folds to its latest tally (lnchaos check counts what the run did)
        self._append(self.user_file(node_id), list(snapshot.get(HISTORY_KEY) or []))
        worker = self._worker(node_id)
        if worker is None:
            return
        now = time.time()
        worker["reports"] += 1
        worker["last_report_unix"] = now
        if worker["first_report_unix"] is None:
            worker["first_report_unix"] = now
        if snapshot.get(FINAL_KEY):
            worker["final"] = True  # kept: a periodic report may follow the final one
        known = self.snapshots.get(node_id)
        if known is None or snapshot.get("seq", 0) > known.get("seq", 0):
            self.snapshots[node_id] = snapshot
            counters.on_worker(node_id, snapshot.get(COUNTERS_KEY))

    def _worker(self, node_id: str) -> dict[str, Any] | None:
        worker = self.workers.get(node_id)
        if worker is None:
            if len(self.workers) >= MAX_WORKERS:
                log.warning(
                    "more than %d workers in one run: %s is not tracked", MAX_WORKERS, node_id
                )
                return None
            worker = {
                "first_report_unix": None,
                "last_report_unix": None,
                "reports": 0,
                "final": False,
            }
            self.workers[node_id] = worker
        return worker

    def note_workers(self) -> None:
        """The workers Locust lists now belong to the run (a worker that never reports, or dies
        before its first report, is still known)."""
        clients = getattr(self.runner, "clients", None)
        if self.is_local or clients is None:
            return
        for node_id in list(clients.keys()):
            self._worker(str(node_id))

    def worker_state(self, node_id: str) -> str:
        """Locust's state of a worker: ready, spawning, running, stopped, missing; gone once it
        is no longer listed (it quit, or Locust dropped it after a long silence)."""
        clients = getattr(self.runner, "clients", None)
        node = clients.get(node_id) if clients is not None else None
        return str(node.state) if node is not None else "gone"

    def worker_index(self, node_id: str) -> int | None:
        try:
            return int(self.runner.worker_indexes[node_id])
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def wait_final_tallies(self, timeout_s: float = FINAL_TALLY_WAIT_S) -> None:
        """Bounded: until every worker of the run sent its final tally or is missing or gone."""
        if self.is_local:
            return
        self.note_workers()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            waiting = [
                node_id
                for node_id, worker in self.workers.items()
                if not worker["final"] and self.worker_state(node_id) not in (STATE_MISSING, "gone")
            ]
            if not waiting:
                return
            gevent.sleep(FINAL_TALLY_POLL_S)

    def workers_report(self) -> dict[str, dict[str, Any]]:
        """Per worker of the run: what its tally says, and whether it was lost (no final tally)."""
        report: dict[str, dict[str, Any]] = {}
        for node_id, worker in self.workers.items():
            last = worker["last_report_unix"]
            state = self.worker_state(node_id)
            # lost: it took part (reported) or Locust saw it vanish, and its final tally never
            # came; a worker that joined too late to learn the run never reports and is not lost
            took_part = worker["reports"] > 0 or state == STATE_MISSING
            report[node_id] = {
                "index": self.worker_index(node_id),
                "state": state,
                "lost": took_part and not worker["final"],
                "reports": worker["reports"],
                "last_report_unix": round(last, 3) if last is not None else None,
                "last_report_s": round(last - self.started_unix, 3) if last is not None else None,
                "tally": self.snapshots.get(node_id),
            }
        return report

    def merged(self) -> dict[str, Any]:
        snapshots = [LOCAL.snapshot()] if self.is_local else list(self.snapshots.values())
        merged = merge_tallies(snapshots)
        merged[ARRIVALS_KEY] = arrival_stats.merge(s.get(ARRIVALS_KEY) for s in snapshots)
        return merged

    def current_phase(self) -> str:
        return self.phases[-1]["name"] if self.phases else "normal"

    def enter_phase(self, name: str) -> None:
        t_s = round(self.elapsed_s(), 3)
        self.note({"type": history.PHASE, "name": name, "t_s": t_s})
        if self.phases:
            self.phases[-1]["end_s"] = t_s
        self.phases.append({"name": name, "start_s": t_s, "end_s": None})

    def close_phases(self) -> None:
        if self.phases and self.phases[-1]["end_s"] is None:
            self.phases[-1]["end_s"] = round(self.elapsed_s(), 3)

    def sample(self) -> None:
        self.note_workers()
        self.flush_history()
        trim_per_second(self.runner.stats, time.time() - PER_SECOND_KEPT_S)
        thin_chart_history(self.runner.stats)
        if not full_history_csv(self.runner):
            drop_entry_response_time_caches(self.runner.stats)
        point = {"t_s": round(self.elapsed_s(), 3), "phase": self.current_phase()}
        point.update(timeline_point(self.merged()))
        self.write_progress(point)
        tick, self._samples = self._samples, self._samples + 1
        if tick % self._timeline_every:
            return
        self.timeline.append(point)
        self._ticks.append(tick)
        if len(self.timeline) >= MAX_TIMELINE_SAMPLES:  # keep the points on the coarser grid
            self._timeline_every *= 2
            kept = [i for i, t in enumerate(self._ticks) if t % self._timeline_every == 0]
            self.timeline = [self.timeline[i] for i in kept]
            self._ticks = [self._ticks[i] for i in kept]

    def write_progress(self, point: dict[str, Any]) -> None:
        """The latest sample as JSON (atomically), for a reader outside Locust: {run_id, t_s,
        phase, payouts, timeouts, inconsistencies, drift_msat, written_unix}."""
        if self.progress_path is None:
            return
        tmp = self.progress_path.with_name(self.progress_path.name + ".tmp")
        try:
            tmp.write_text(
                json.dumps({"run_id": self.run_id, **point, "written_unix": round(time.time(), 3)})
            )
            tmp.replace(self.progress_path)
        except OSError as err:
            log.warning("could not write the progress to %s: %s", self.progress_path, err)

    def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.kill(block=False)
            self._sampler = None

    def _sample_forever(self) -> None:
        while True:
            gevent.sleep(TIMELINE_INTERVAL_S)
            self.sample()


def trim_per_second(stats: Any, before_unix: float) -> None:
    """Drop the per-second request counts of Locust's stats entries older than before_unix
    (PER_SECOND_KEPT_S): what Locust reads of them is the last 12 s."""
    oldest = int(before_unix)
    entries = [stats.total, *stats.entries.values()] if stats is not None else []
    for entry in entries:
        for per_second in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
            if per_second and min(per_second) < oldest:
                for second in [t for t in per_second if t < oldest]:
                    del per_second[second]


def full_history_csv(runner: Any) -> bool:
    """--csv-full-history: Locust writes every entry's current percentiles, from their caches."""
    options = getattr(getattr(runner, "environment", None), "parsed_options", None)
    return bool(getattr(options, "csv_full_history", False))


def drop_entry_response_time_caches(stats: Any) -> None:
    """Every named entry stops copying its response-time histogram once a second (the total
    keeps its copies: what Locust's current percentiles read). Locust's own CSV writer reads an
    entry without its cache by its whole-run percentiles, as it does a worker's."""
    for entry in list(stats.entries.values()) if stats is not None else []:
        if entry.use_response_times_cache:
            entry.use_response_times_cache = False
            entry.response_times_cache = None


def thin_chart_history(stats: Any, most: int = LOCUST_CHART_POINTS_MAX) -> None:
    """Every other point of Locust's chart history dropped once it holds more than `most`: the
    charts still span the whole run, on a coarser grid (the last point is always kept)."""
    history = getattr(stats, "history", None)
    if history is None or len(history) <= most:
        return
    last = history[-1]
    del history[1::2]
    if history[-1] is not last:
        history.append(last)


def broadcast_phase(runner: Any, run_id: str, phase: str) -> None:
    """Tell every user process the phase (the local runner delivers it to itself)."""
    runner.send_message(PHASE_MESSAGE, {"run_id": run_id, "phase": phase})


def snapshot(*, final: bool = False) -> dict[str, Any]:
    """This process's tally with its counts of checks and faults and its history lines since
    the last message: what a worker sends (the lines first drained, then the tally taken: no
    record counted in the tally is missing from the lines sent with it or before it)."""
    lines = LOCAL.history.drain()
    return {
        **LOCAL.snapshot(),
        COUNTERS_KEY: counters.LOCAL.to_dict(),
        FINAL_KEY: final,
        HISTORY_KEY: lines,
    }


def send_tally(runner: WorkerRunner, *, final: bool = False) -> None:
    """final: the worker's users have stopped (test_stop): this tally is its whole run. Lines
    that could not be sent go back to the recorder, to leave with the next message."""
    data = snapshot(final=final)
    try:
        runner.send_message(TALLY_MESSAGE, data)
    except Exception:
        LOCAL.history.restore(data[HISTORY_KEY])
        raise


def tally_sender(runner: WorkerRunner) -> None:
    """Worker greenlet: the cumulative tally to the master once a second."""
    while True:
        gevent.sleep(TALLY_INTERVAL_S)
        if LOCAL.run_id:
            try:
                send_tally(runner)
            except Exception as err:  # the connection to the master may be resetting
                log.warning("could not send the tally to the master: %s", err)
