"""The master's (or local runner's) side of a run: the target, the fault control, the verdict.

- init: start the embedded target (or check the one given with --host) and point Locust at it;
- test_start: the run's marker on the target's clock (the verdict judges the payouts of this run
  only; a target reused across runs reports earlier problems apart), the run's fix mode and
  faults, a fresh collector, the fault control;
- test_stop: stop the fault control; in the web UI also judge the run (each run gets its report);
- the verdict: a bounded wait for the run's payouts, then the final audit of the payouts no payer
  could judge (from the node's truth, never the wallet's reconciliation; checker.py), then the
  target's reconciliation;
- quitting: judge the run if not done yet, write consistency.json, set the exit code (never
  over a non-zero code of Locust's own), put the verdict, the consistency results and the chart
  into Locust's --html report and write <--csv prefix>_consistency.csv, stop the target.
- controls mid-run (the web UI, locustfiles/web_ui.py): `control` sets the fix mode or a fault
  rate now and holds it (fault_control.py); at the verdict the payouts started after each change
  are reconciled on their own (`controls_after` in consistency.json);
- `live_report`: the verdict so far, for the web UI's Consistency tab (master: all workers).
Across hosts: the master alone starts the target (on --target-bind) and sets Locust's host to
its URL before any worker spawns, so the spawn messages carry it; workers write no file, and
the verdict waits (bounded) for each worker's final tally and names those that never sent it.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
import locust.log
from locust.html import get_html_report, process_html_filename
from locust.runners import STATE_RUNNING, STATE_SPAWNING
from locust.stats import CSV_STATS_INTERVAL_SEC

from lnchaos.checker import history, offline, scope
from locustfiles import (
    arrival_stats,
    checker,
    consistency_view,
    counters,
    crash,
    edge_workload,
    traffic,
)
from locustfiles.admin_client import REQUEST_TIMEOUT_S, TargetAdmin, TargetError
from locustfiles.embedded_target import EmbeddedTarget
from locustfiles.fault_control import ControlError, FaultControl, validate_controls
from locustfiles.options import (
    FINAL_WAIT_MARGIN_S,
    Settings,
    profile_hint,
    settings_from,
    wallet_api_note,
    wallet_api_problem,
)
from locustfiles.telemetry import Collector
from locustfiles.wallets import amount_max_msat
from locustfiles.wallets import registry as wallets_registry

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 10.0
# The final audit: bounded in time and in concurrent requests (3 reads per payout at most, and
# at most checker.AUDIT_MAX_TOTAL payouts); what it cannot reach in time counts as overflow.
AUDIT_TIMEOUT_S = 20.0
AUDIT_CONCURRENCY = 8
# A payout not final at the audit is asked again until the final wait is over (counted by the
# master, not by the wallet's reconciliation saying "settled"): bounded in polls too.
AUDIT_POLL_INTERVAL_S = 0.25
AUDIT_MAX_POLLS = 40
# Beyond the final wait (--final-wait-s): the audit, the reconciliation's requests, the report.
JUDGE_OVERHEAD_S = 10.0 + AUDIT_TIMEOUT_S


class Controller:
    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.settings: Settings = settings_from(environment.parsed_options)
        self.target: EmbeddedTarget | None = None
        self.admin: TargetAdmin | None = None
        self.collector = Collector(
            environment.runner,
            getattr(environment.parsed_options, "progress_file", None),
            history.history_dir(self.settings.report_dir),
        )
        self.fault_control: FaultControl | None = None
        self.target_error: str | None = None
        self.run_id: str | None = None
        self.since_ms: int | None = None
        # what the target's reconciliation held at the run's start (lnchaos/checker/scope.py)
        self.scope_at_start: dict[str, int] | None = None
        self.judged_run_id: str | None = None
        self.stopped_s: float | None = None
        self.final: dict[str, Any] | None = None
        self._judging: gevent.Greenlet | None = None
        self._last_hint: str | None = None
        self.crash: crash.CrashFault | None = None  # --crash-every (crash.py)
        # fault settings no option sets, as the target had them: a control of one run must not
        # leak into the next (each run is judged alone)
        self.baseline_faults: dict[str, Any] = {}
        # per control change of the run: the run's payouts started after it, reconciled
        self.controls_after: list[dict[str, Any]] = []

    # --- init -----------------------------------------------------------------------------
    def start_target(self) -> None:
        """Start or check the target; on failure write the verdict and exit with code 5."""
        self._hint_profile()
        try:
            judged_by = self._judged_by()
            if judged_by == "node":
                self.admin = self._wallet_judge()
            elif self.settings.host:
                if not self.settings.admin_token:
                    raise TargetError("--host needs --admin-token or $LNCHAOS_ADMIN_TOKEN")
                self.admin = TargetAdmin(self.settings.host, self.settings.admin_token)
                self.admin.wait_healthy(HEALTH_TIMEOUT_S)
                self.admin.get_fix()  # proves the admin token before any load
                log.info("using the running target at %s", self.settings.host)
                self._check_final_wait(self.admin.get_faults())
            else:
                restartable = crash.crash_every_s(self.environment.parsed_options) > 0
                edge = edge_workload.settings_from(self.environment.parsed_options)
                self.target = EmbeddedTarget(
                    self.settings,
                    restartable=restartable,
                    extra_args=edge_workload.target_args(edge),
                )
                url = self.target.start()
                self.environment.host = url
                self.admin = TargetAdmin(url, self.target.admin_token)
                self._check_final_wait(self.admin.get_faults())  # the edge's long holds
            faults = self.admin.get_faults()
            self.baseline_faults = {
                key: faults[key] for key in ("failure_rate",) if isinstance(faults.get(key), float)
            }
        except (TargetError, OSError) as err:
            self.target_error = str(err)
            log.error("the target is not usable: %s", err)
            report = self._report(locust_exit_code=0)
            checker.write_report(self.settings.consistency_path, report)
            if self.target is not None:
                self.target.stop()
            sys.exit(report["exit_code"])

    def _judged_by(self) -> str:
        """Who judges --wallet-api's service (locustfiles/wallets/base.py JUDGED_BY); an
        adapter that does not load, or lacks what its judge needs, is the target's failure."""
        problem = wallet_api_problem(self.settings)
        if problem:
            raise TargetError(problem)
        return str(wallets_registry.load(self.settings.wallet_api).judged_by)

    def _wallet_judge(self) -> TargetAdmin:
        """A service paying through a `lnchaos node` (LNbits, an installed adapter): the node
        is the judge (its faults, its truth); the adapter's `judge` reads every wallet the
        payers opened at the end (locustfiles/wallets/lnbits.py), so the run is one process."""
        name = self.settings.wallet_api
        if not self.collector.is_local:
            raise TargetError(f"--wallet-api {name} runs in one process (no workers)")
        assert self.settings.node_url and self.settings.node_admin_token and self.settings.host
        adapter = wallets_registry.load(name)
        judge = adapter.judge(
            self.settings.node_url, self.settings.node_admin_token, self.settings.host
        )
        judge.wait_healthy(HEALTH_TIMEOUT_S)
        self._check_final_wait(judge.get_faults())  # proves the node's admin token
        log.info("%s at %s, judged by the node at %s", name, self.settings.host, judge.base_url)
        return judge

    def _hint_profile(self) -> None:
        """One line, once per value: `--profile steady|spike` no longer picks the shape."""
        hint = profile_hint(self.environment.parsed_options)
        if hint and hint != self._last_hint:
            log.warning(hint)
        self._last_hint = hint

    def _check_final_wait(self, faults: dict[str, Any]) -> None:
        """Say so when the final wait cannot cover the longest hold: a target of other timing
        (--host), or the edge workload's long holds (--long-hold-ms)."""
        edge = edge_workload.settings_from(self.environment.parsed_options)
        hold_s = edge_workload.longest_hold_s(edge, float(faults.get("inflight_hold_ms", 0)))
        if self.settings.final_wait_s < hold_s + FINAL_WAIT_MARGIN_S:
            log.warning(
                "--final-wait-s %.1f is short for this target's in-flight hold of %.1f s: "
                "payouts still in flight at the end will count as unresolved",
                self.settings.final_wait_s,
                hold_s,
            )

    # --- test_start / test_stop -----------------------------------------------------------
    def _scope_at_start(self) -> dict[str, int] | None:
        """The judge's record of what the target held before the run (its whole reconciliation,
        read at the run's start): the target's own clock does not decide what is this run's."""
        assert self.admin is not None
        try:
            return scope.start_counts(self.admin.reconciliation())
        except TargetError as err:
            log.warning("the run's scope at its start could not be read: %s", err)
            return None

    def on_test_start(self) -> None:
        """Locust may kill this handler part-way (a stop right after a start kills the spawning
        greenlet it runs in): whatever waits (the previous verdict, the marker) comes before the
        new run's state is set, and that state is set with no wait in between."""
        if self._judging is not None:
            # web UI: the previous run's verdict first, so its reconciliation never sees this run
            self._judging.join(timeout=self.settings.final_wait_s + JUDGE_OVERHEAD_S)
        assert self.admin is not None
        target_error: str | None = None  # the run is the unit: an earlier failure is its own
        at_start = self._scope_at_start()  # before the marker: what is older than the run
        try:
            since_ms: int | None = self.admin.clock_ms()  # the run's marker, target's clock
        except TargetError as err:
            since_ms = None
            target_error = f"could not take the run's marker: {err}"
            log.error(target_error)
        try:
            self.settings = settings_from(self.environment.parsed_options)  # the web UI edits
        except ValueError as err:
            log.error("%s; this run keeps the previous settings", err)
        self._hint_profile()  # the web UI's profile field may say steady or spike too
        self.run_id = uuid.uuid4().hex[:12]
        self.since_ms = since_ms
        self.scope_at_start = at_start
        self.target_error = target_error
        self.stopped_s = None
        self.final = None
        self.controls_after = []
        self.collector.start_run(self.run_id)
        self.fault_control = FaultControl(
            self.admin, self.settings, self.environment, self.collector, self.run_id
        )
        try:
            self.fault_control.apply_run_settings(self.baseline_faults)
        except TargetError as err:
            self.target_error = f"could not set fix mode and faults: {err}"
            log.error(self.target_error)
        self.fault_control.start()
        self.crash = crash.start_for(self)
        log.info(
            "run %s: fix=%s shape=%s seed=%d timeout_rate=%.3f spike_timeout_rate=%.3f",
            self.run_id,
            self.settings.fix,
            self.settings.shape,
            self.settings.seed,
            self.settings.timeout_rate,
            self.settings.spike_timeout_rate,
        )

    def on_test_stop(self) -> None:
        if self.fault_control is not None:
            self.fault_control.stop()
        if self.crash is not None:
            self.crash.stop()  # a restart in progress first: the verdict reads the target
        self.collector.close_phases()
        self.collector.stop_sampling()  # the verdict adds the last sample, with late reports
        self.stopped_s = self.collector.elapsed_s()
        if not getattr(self.environment.parsed_options, "headless", False):
            # web UI: each run gets its verdict now; /stop must not wait for it
            self._judging = gevent.spawn(self.judge)

    # --- verdict --------------------------------------------------------------------------
    def judge(self) -> None:
        """Wait (bounded) for pending payouts, reconcile, record the check, write the report."""
        if self.run_id is None or self.judged_run_id == self.run_id:
            return
        self.judged_run_id = self.run_id
        reconciliation: dict[str, Any] | None = None
        started = time.perf_counter()
        # the end of the final wait by the master's own clock: the audit's deadline to settle
        settle_deadline = time.monotonic() + self.settings.final_wait_s
        try:
            assert self.admin is not None
            reconciliation = self.admin.wait_settled(
                self.settings.final_wait_s, since_ms=self.since_ms, at_start=self.scope_at_start
            )
        except TargetError as err:
            self.target_error = f"reconciliation failed: {err}"
            log.error(self.target_error)
        crash_error = self.crash.target_error() if self.crash is not None else None
        if crash_error:  # a target that stopped itself: the run's target failed, whatever follows
            self.target_error = crash_error
        self.controls_after = self._reconcile_controls()
        if self.fault_control is not None and self.fault_control.errors and not self.target_error:
            self.target_error = f"fault control failed: {self.fault_control.errors[0]}"
        # every worker's final tally (its audit entries of payouts stopped mid-way among them);
        # a worker that never sends it is lost, and counted up to its last report
        self.collector.wait_final_tallies()
        merged = self.collector.merged()
        audit = self._audit(merged, settle_deadline)
        self.collector.note({"type": history.RECONCILIATION, "answer": reconciliation})
        problems = checker.reconciliation_problems(reconciliation) if reconciliation else []
        if reconciliation is None:
            problems = ["no reconciliation"]
        checker.fire_check(
            self.environment.events.request,
            checker.RECONCILIATION,
            _reconciliation_failure(problems, reconciliation),
            started,
        )
        self.collector.sample()
        merged = self.collector.merged()
        checker.close_checks(merged, audit, reconciliation)
        workers = None if self.collector.is_local else self.collector.workers_report()
        self.final = {
            "merged": merged,
            "reconciliation": reconciliation,
            "audit": audit,
            "workers": workers,
        }
        report = self._report(locust_exit_code(self.environment), record=True)
        checker.write_report(self.settings.consistency_path, report)
        counters.write_csv_now(self.environment)
        log.info(
            "verdict %s (exit code %d): %s; %s",
            report["verdict"],
            report["exit_code"],
            report["reason"],
            self.settings.consistency_path,
        )

    def _reconcile_controls(self) -> list[dict[str, Any]]:
        """Per control change of the run: the target's reconciliation of the payouts started
        after it (by its clock; each payout runs under the fix mode it started with)."""
        controls = self.fault_control.controls if self.fault_control is not None else []
        result: list[dict[str, Any]] = []
        for marker in sorted({c["target_ms"] for c in controls if c.get("target_ms")}):
            changes = [c for c in controls if c.get("target_ms") == marker]
            try:
                assert self.admin is not None
                found = self.admin.reconciliation(since_ms=marker, stuck_after_s=0.0)
            except TargetError as err:
                log.error("could not reconcile the payouts after a control change: %s", err)
                continue
            result.append(consistency_view.after_control(changes, found))
        return result

    # --- controls and the live view (web UI) ------------------------------------------------
    def control(self, changes: dict[str, Any]) -> list[dict[str, Any]]:
        """A change from the web UI while a run goes: validated, set on the target at once,
        held for the rest of the run, recorded. ControlError (bad value, no run), TargetError."""
        valid = validate_controls(changes)
        going = self.environment.runner.state in (STATE_SPAWNING, STATE_RUNNING)
        if self.fault_control is None or self.stopped_s is not None or not going:
            raise ControlError("no run is going: set these in the start form")
        if not valid:
            raise ControlError("nothing to change: give fix or a rate")
        recorded = self.fault_control.apply_control(valid)
        if recorded:
            self.collector.sample()
            if self.collector.timeline:
                self.collector.timeline[-1]["controls"] = [
                    f"{c['what']}: {c['from']} -> {c['to']}" for c in recorded
                ]
        return recorded

    def live_report(self) -> dict[str, Any]:
        """The verdict so far: the final report once the run is judged; while it goes (or is
        being judged), the same document from the tallies so far (no audit, no
        reconciliation yet: `state` says which)."""
        if self.run_id is None:
            return {"state": "no_run"}
        if self.final is not None and self.judged_run_id == self.run_id:
            report = self._report(locust_exit_code=locust_exit_code(self.environment))
            report["state"] = "judged"
            return report
        report = self._report(locust_exit_code=0, live=True)
        report["state"] = "judging" if self.stopped_s is not None else "running"
        return report

    def _audit(self, merged: dict[str, Any], settle_deadline: float) -> checker.Audit:
        """The final audit of every payout no payer could judge, each a `final_audit` check.
        One not final yet is asked again until settle_deadline (bounded polls)."""
        entries: list[dict[str, Any]] = merged.get("audit") or []
        overflow = int(merged.get("audit_overflow", 0))
        audit = checker.Audit(entries=len(entries) + overflow, overflow=overflow)
        if self.admin is None:
            audit.not_audited(len(entries))
            self.collector.note({"type": history.AUDIT_CLOSE, **audit.summary()})
            return audit
        admin = self.admin
        kept = entries[: checker.AUDIT_MAX_TOTAL]
        audit.not_audited(len(entries) - len(kept))
        deadline = time.monotonic() + AUDIT_TIMEOUT_S
        done = [0]  # entries a greenlet finished with (audited, or skipped past the deadline)

        def one(entry: dict[str, Any]) -> None:
            if time.monotonic() >= deadline:
                audit.not_audited()
                done[0] += 1
                return
            started = time.perf_counter()
            poll_until = min(settle_deadline, deadline) - AUDIT_POLL_INTERVAL_S
            for _ in range(AUDIT_MAX_POLLS):
                kind, reads = _audit_one(admin, entry)
                if kind != checker.UNRESOLVED or time.monotonic() >= poll_until:
                    break
                gevent.sleep(AUDIT_POLL_INTERVAL_S)
            # the reads as they are judged: `lnchaos check` judges this record with audit_of too;
            # the entry without its keys (a note is written as it is: no `history.line`)
            public = history.without_secret(entry)
            record = {"type": history.AUDIT, "t": round(time.time(), 3), "entry": public, **reads}
            self.collector.note(record)
            example = checker.audit_example_of(entry, reads, kind, record["t"])
            audit.add(entry, kind, example, node=reads["node"])
            failure = checker.CheckFailed(_describe_audit(example), kind) if kind else None
            checker.fire_check(
                self.environment.events.request, checker.FINAL_AUDIT, failure, started
            )
            done[0] += 1

        pool = gevent.pool.Pool(AUDIT_CONCURRENCY)
        for entry in kept:
            pool.spawn(one, entry)
        pool.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT_S * 3)
        pool.kill(block=True, timeout=1.0)
        audit.not_audited(len(kept) - done[0])  # killed at the bound: not audited
        self.collector.note({"type": history.AUDIT_CLOSE, **audit.summary()})
        if audit.entries:
            log.info("final audit: %s", audit.summary())
        return audit

    def on_quitting(self) -> None:
        try:
            if self._judging is not None:
                self._judging.join(timeout=self.settings.final_wait_s + JUDGE_OVERHEAD_S)
            if self.run_id is not None and self.judged_run_id != self.run_id:
                if self.stopped_s is None:
                    self.on_test_stop()
                self.judge()
            # decided again now: Locust's own errors up to the very end count
            report = self._report(locust_exit_code(self.environment), record=True)
            checker.write_report(self.settings.consistency_path, report)
            self.environment.process_exit_code = report["exit_code"]
            counters.write_csv_now(self.environment)
            self._refresh_locust_reports()
        finally:
            if self.target is not None:
                self.target.stop()

    def _report(
        self, locust_exit_code: int, live: bool = False, record: bool = False
    ) -> dict[str, Any]:
        """consistency.json: checker.build_report of this run's inputs, with the sections of the
        Locust side (traffic mix, crashes, controls). `record`: the report written as the run's
        verdict, which ends the history with an `end` record (every input but the tallies, the
        audit and the reconciliation, which `lnchaos check` folds from the history itself)."""
        final = {} if live else (self.final or {})
        inputs = self._report_inputs(final, locust_exit_code, live)
        report = checker.build_report(**inputs)
        extra = self._report_extra(report)
        report.update(extra)
        if record:
            self._record_end(inputs, extra)
            self.collector.flush_history()
            if self.collector.history_dir is not None:
                self._add_witnesses(report, self.collector.history_dir)
        return report

    @staticmethod
    def _add_witnesses(report: dict[str, Any], directory: Path) -> None:
        """Each finding's witness, as lnchaos check gives it (bounded: offline.py). An addition
        to the verdict: a failure here is logged and said in the report, never the verdict's."""
        try:
            offline.add_witnesses_live(report, directory)
        except Exception as err:  # the verdict is written whatever befalls its witnesses
            log.exception("could not add the witnesses")
            report["witnesses_left_to_check"] = f"could not add them: {err!r}"

    def _coverage_settings(self) -> dict[str, Any]:
        """The run's settings the coverage windows follow (edge_workload.coverage_settings)."""
        options = self.environment.parsed_options
        faults = self.fault_control.run_faults if self.fault_control is not None else {}
        crashes = len(self.crash.events) if self.crash is not None else 0
        return edge_workload.coverage_settings(
            edge_workload.within(edge_workload.settings_from(options), amount_max_msat(options)),
            self.settings,
            faults,
            crashes,
            crash.crash_every_s(options),
        )

    def _report_inputs(
        self, final: dict[str, Any], locust_exit_code: int, live: bool
    ) -> dict[str, Any]:
        merged = final.get("merged") or self.collector.merged()
        duration_s = self.stopped_s if self.stopped_s is not None else 0.0
        audit = final.get("audit")
        if live:
            # not audited yet, and not over its bounds either: pending, so not a finding
            overflow = int(merged.get("audit_overflow", 0))
            audit = checker.Audit(entries=len(merged.get("audit") or []) + overflow, overflow=0)
            if self.stopped_s is None:
                duration_s = self.collector.elapsed_s()
        fault_control = self.fault_control
        phases = self.collector.phases
        return {
            "run": {
                "fix": self.settings.fix,
                "shape": self.settings.shape,
                "profile": self.settings.profile,
                "seed": self.settings.seed,
                "threshold": self.settings.max_inconsistencies,
                "final_wait_s": self.settings.final_wait_s,
                "coverage": self._coverage_settings(),
            },
            "merged": merged,
            "reconciliation": final.get("reconciliation"),
            "audit": audit,
            "phases": phases,
            "timeline": self.collector.timeline,
            "duration_s": duration_s,
            "configured_rate_by_phase": (
                fault_control.configured_rate_by_phase() if fault_control else {}
            ),
            "locust_exit_code": locust_exit_code,
            "target_error": self.target_error,
            "since_ms": self.since_ms,
            "scope_at_start": self.scope_at_start,
            "workers": final.get("workers") if not live else self._live_workers(),
            "counter_rows": counters.table(self.environment),
            "success_share_by_phase": (
                fault_control.success_share_by_phase() if fault_control else None
            ),
            "arrivals": arrival_stats.summary(
                merged.get(arrival_stats.ARRIVALS_KEY), phases, merged["payouts"]
            ),
        }

    def _report_extra(self, report: dict[str, Any]) -> dict[str, Any]:
        """The Locust side's sections: the wallet API, the traffic mix and each class's users
        and rounds (issue 10), the crash fault's record, the controls of the run (web UI) and
        the payouts started after each, reconciled."""
        users = int(getattr(self.environment.parsed_options, "num_users", None) or 0)
        mix = dict(self.settings.traffic_mix)
        if self.crash is not None:
            self.crash.annotate(report["timeline"])
        fault_control = self.fault_control
        return {
            "wallet_api": wallet_api_note(self.settings),
            "traffic": traffic.report_section(mix, users, report["checks"]),
            "crashes": self.crash.report_section() if self.crash is not None else None,
            "controls": list(fault_control.controls) if fault_control else [],
            "controls_after": list(self.controls_after),
            "in_force": dict(fault_control.in_force) if fault_control else {},
        }

    def _record_end(self, inputs: dict[str, Any], extra: dict[str, Any]) -> None:
        """The history's `end` record (docs/history.md): what the verdict took besides the
        records; each worker with the file its lines went to. The last one counts."""
        kept = {k: v for k, v in inputs.items() if k not in ("merged", "reconciliation", "audit")}
        workers = {}
        for node_id, worker in (inputs.get("workers") or {}).items():
            entry = {k: v for k, v in worker.items() if k != "tally"}
            workers[node_id] = {**entry, "history_file": self.collector.user_file(node_id)}
        kept["workers"] = workers if inputs.get("workers") is not None else None
        users = [self.collector.user_file("local")] if self.collector.is_local else None
        record = {"type": history.END, "t": round(time.time(), 3), **kept, "extra": extra}
        record["user_files"] = (
            users if users is not None else [w["history_file"] for w in workers.values()]
        )
        self.collector.note(record)

    def _live_workers(self) -> dict[str, dict[str, Any]] | None:
        """Per worker while the run goes (a local run has none); `lost` is decided at the end."""
        if self.collector.is_local:
            return None
        workers = self.collector.workers_report()
        for entry in workers.values():
            entry["lost"] = False
        return workers

    def _refresh_locust_reports(self) -> None:
        """Let the reconciliation's failure (in Locust's Failures) reach --html and --csv too.

        Locust writes the HTML report before `quitting`, and the CSV files once a second from
        a greenlet; the reconciliation check is made during `quitting`.
        """
        options = self.environment.parsed_options
        report = self._report(locust_exit_code=locust_exit_code(self.environment))
        if getattr(options, "html_file", None):
            process_html_filename(options)
            html = get_html_report(self.environment, show_download_link=False)
            # the money beside the traffic: verdict, consistency results, chart
            html = consistency_view.inject_html(html, report)
            Path(options.html_file).write_text(html, encoding="utf-8")
        if getattr(options, "csv_prefix", None):
            consistency_view.write_csv(Path(f"{options.csv_prefix}_consistency.csv"), report)
            gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)  # one more write of the CSV greenlet


def locust_exit_code(environment: Any) -> int:
    """The code Locust itself would exit with, with the check events left to the verdict."""
    if environment.process_exit_code is not None:
        return int(environment.process_exit_code)  # another listener decided: keep it
    runner = environment.runner
    failed_requests = sum(
        error.occurrences for error in runner.stats.errors.values() if error.method != checker.CHECK
    )
    if failed_requests or runner.exceptions:
        return int(getattr(environment.parsed_options, "exit_code_on_error", 1))
    if locust.log.unhandled_greenlet_exception:
        return 2
    return 0


def _audit_one(admin: TargetAdmin, entry: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(kind, reads) of one entry. reads, as the history's `audit` record keeps them: the node's
    truth of its hash (`node`, the node's route) and of the other invoices its round sent
    (`also_nodes`: hash -> truth, when it has any), the wallet's view (`wallet_view`; a group
    entry's views by wallet id, `wallet_views`), the payout (`payout_view`, when its id is
    known), and the read that failed (`error`)."""
    reads: dict[str, Any] = {"node": None, "wallet_view": None, "payout_view": None}
    also: dict[str, Any] = {}
    try:
        reads["node"] = admin.node_payment(str(entry["payment_hash"]))
        for other in entry.get("also") or ():
            also[str(other["payment_hash"])] = admin.node_payment(str(other["payment_hash"]))
        if entry.get("wallets"):
            reads["wallet_views"] = views = {}
            for member in entry["wallets"]:
                wallet_id = str(member["wallet_id"])
                views[wallet_id] = admin.wallet(wallet_id, str(member["api_key"]))
        else:
            reads["wallet_view"] = admin.wallet(str(entry["wallet_id"]), str(entry["api_key"]))
        if entry.get("payout_id"):
            reads["payout_view"] = admin.payout(str(entry["payout_id"]), str(entry["api_key"]))
        reads["error"] = None
    except TargetError as err:
        reads["error"] = str(err)
    if also:
        reads["also_nodes"] = also
    return checker.audit_of(entry, reads), reads


def _reconciliation_failure(
    problems: list[str], reconciliation: dict[str, Any] | None
) -> checker.CheckFailed | None:
    """The reconciliation check's failure: its kinds (a stable text in Locust's Failures), and
    in words the counts."""
    if not problems:
        return None
    if reconciliation is None:
        return checker.CheckFailed("no reconciliation", counters.NO_RECONCILIATION)
    kinds = [k for k in checker.RECONCILED_KINDS if (reconciliation.get(k) or {}).get("count")]
    if reconciliation.get("conserved") is False:
        kinds.append(checker.NOT_CONSERVED)
    return checker.CheckFailed("; ".join(problems), ",".join(kinds) or None)


def _describe_audit(example: dict[str, Any]) -> str:
    return (
        f"{example['kind']}: wallet {example['wallet_id']} payout {example['payout_id']} "
        f"(hash {str(example['payment_hash'])[:16]}, {example['why_audited']}): expected "
        f"{example['expected_msat']} msat, actual {example['actual_msat']} msat, reserved "
        f"{example['reserved_msat']} (payout {example['payout_status']}, node "
        f"{example['node_status']})"
    )
