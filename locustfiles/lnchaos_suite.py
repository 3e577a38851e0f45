"""lnchaos: the Locust load-and-chaos suite for the Lightning payout target.

Run from the repo root (locust.conf points here and sets -u 10 -r 10; no host, so the suite
starts its own target, `python -m target`, on a free loopback port, and stops it at the end):
    locust                                           # web UI; the options are in its form
    locust --headless -t 60s --fix off               # reproduces the incident: exit code 3
    locust --headless -t 60s --fix on --shape spike     # the fix under a spike: exit code 0
    locust --headless -t 60s --fix on --processes 2  # workers use the master's target
    locust --host http://127.0.0.1:8080 --admin-token T   # a target that is already running
Across hosts (README "Distributed runs"; each worker from a folder of its own, no shared files):
    locust --headless -t 60s --fix on --master --master-bind-host 10.0.0.2 --expect-workers 2 \
        --target-bind 10.0.0.3 --admin-token "$TOKEN"     # the master and the embedded target
    locust -f <installed locustfiles/lnchaos_suite.py> --worker --master-host 10.0.0.2  # each
A worker lost mid-run (killed, unreachable) is named in consistency.json (`workers_lost`) and,
if nothing else failed, makes the exit code 1: its last checks never arrived.
The verdict is <report-dir>/consistency.json (default reports/) and the exit code, by precedence:
3 inconsistencies over --max-inconsistencies (payouts left unresolved included), 5 the target
failed, 4 nothing verified or no timed-out payout resolved, then Locust's own 2 and 1, then 1 for a
worker lost mid-run, else 0 pass
(schema and codes: lnchaos/checker/verdict.py). --shape picks the load shape; Locust's --profile is
only a run label.

CI example (a job step; checks and faults are in <csv prefix>_consistency_checks.csv and
consistency.json, failed checks also in Locust's failures CSV and HTML report):
    pip install -e .
    locust --headless -t 60s -u 10 --fix on --shape spike --seed "$GITHUB_RUN_NUMBER" \
        --csv reports/ci --html reports/ci.html --json-file reports/ci
    # the step fails on any inconsistency or unresolved payout (exit 3), on a dead target (5), on
    # a run that verified nothing or resolved no timeout (4) and on Locust's own errors (2, 1);
    # keep reports/ as the job's artifact.
    # The incident's flow must fail with 3 (inconsistencies), or the suite has lost its teeth:
    code=0; locust --headless -t 30s --fix off --report-dir reports/off || code=$?
    test "$code" -eq 3

This file only wires the parts to Locust's events; each part is a module of its own:
options, users + wallet_client (the load), traffic (shared invoices, drained wallets),
shapes (the phases), fault_control (the nemesis),
checker (checks and verdict), telemetry (data across processes), embedded_target and
controller (the target's life and the end of a run), web_ui + consistency_view (the web UI's
Consistency tab, controls mid-run, the consistency block of --html and PREFIX_consistency.csv).
"""

from __future__ import annotations

import signal
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from locustfiles import (
    counters,
    crash,
    edge_workload,
    options,
    recording,
    shapes,
    telemetry,
    traffic,
)
from locustfiles import web_ui as lnchaos_web_ui
from locustfiles.controller import Controller
from locustfiles.shapes import LnchaosShape
from locustfiles.traffic import DrainUser, EdgeUser, RetryUser, SharedInvoiceUser
from locustfiles.users import PayerUser
from locustfiles.wallets import link_user

__all__ = ["DrainUser", "EdgeUser", "LnchaosShape", "PayerUser", "RetryUser", "SharedInvoiceUser"]

events.init_command_line_parser.add_listener(options.add_arguments)
events.init_command_line_parser.add_listener(crash.add_arguments)
events.init_command_line_parser.add_listener(edge_workload.add_arguments)

_controller: Controller | None = None


def _ctrl_c_to_main_greenlet() -> None:
    """Ctrl-C (SIGINT) as Locust expects it: a KeyboardInterrupt in the main greenlet, where
    its headless run and its web UI wait for one. Python's own handler raises it in whatever
    code runs when the signal lands (a user's request, a check, a background greenlet), and a
    CI run saw one Ctrl-C go unnoticed until the run time ended. A gevent signal watcher runs
    this in the hub instead, which throws it into the main greenlet, as gevent does with a
    KeyboardInterrupt raised anywhere else."""
    hub = gevent.get_hub()
    hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)


@events.init.add_listener
def on_init(environment: Any, runner: Any, **_kwargs: Any) -> None:
    global _controller
    if runner is None:
        return
    gevent.signal_handler(signal.SIGINT, _ctrl_c_to_main_greenlet)
    counters.bind(environment)  # failed checks in Locust's Failures; the table's CSV
    parsed = environment.parsed_options
    recording.configure(str(getattr(parsed, "checks", "on") or "on") != "off")
    if isinstance(runner, WorkerRunner):
        runner.register_message(telemetry.PHASE_MESSAGE, telemetry.on_phase_message)
        runner.register_message(shapes.STOP_TIMEOUT_MESSAGE, shapes.on_stop_timeout_message)
        gevent.spawn(telemetry.tally_sender, runner)
        return
    # the traffic classes of --traffic-mix, weighted beside the payers (the master dispatches)
    mix = options.parse_traffic_mix(getattr(parsed, "traffic_mix", None) or "none")
    if (getattr(parsed, "wallet_api", None) or "lnchaos") != "lnchaos":
        mix = {}  # the classes speak lnchaos's wallet API (consistency.json: wallet_api.left_out)
    checks_on = str(getattr(parsed, "checks", "on") or "on") != "off"
    traffic.apply_mix(environment, mix, checks_on=checks_on)
    link_user.apply_accounting(environment)  # a withdraw-link service: its own payers
    if checks_on and mix:
        traffic.warn_unallocated(mix, int(getattr(parsed, "num_users", None) or 1))
        environment.events.spawning_complete.add_listener(
            lambda **_kw: traffic.PEAK_USERS.on_spawning_complete(environment)
        )
    options.guard_web_form(environment)  # a bad option in the start form starts no run
    _controller = Controller(environment)
    if isinstance(runner, MasterRunner):
        runner.register_message(telemetry.TALLY_MESSAGE, _on_tally_message)
    else:  # the local runner is master and worker at once: it sends the phase to itself
        runner.register_message(telemetry.PHASE_MESSAGE, telemetry.on_phase_message)
    _controller.start_target()
    # the Consistency tab, live and with controls mid-run (none headless; master only)
    lnchaos_web_ui.register(environment, _controller)


def _on_tally_message(environment: Any, msg: Any, **_kwargs: Any) -> None:
    if _controller is not None:
        _controller.collector.on_tally(msg.node_id, msg.data)


@events.report_to_master.add_listener
def on_report_to_master(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    # rides along with each of Locust's stats reports (every few seconds, and the last one when
    # the master quits); never marked final: only the worker's test_stop knows its users stopped
    if telemetry.LOCAL.run_id:
        data[telemetry.REPORT_KEY] = telemetry.snapshot()


@events.worker_report.add_listener
def on_worker_report(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    if _controller is not None and telemetry.REPORT_KEY in data:
        _controller.collector.on_tally(client_id, data[telemetry.REPORT_KEY])


@events.test_start.add_listener
def on_test_start(environment: Any, **_kwargs: Any) -> None:
    if _controller is not None:
        _controller.on_test_start()


@events.test_stop.add_listener
def on_test_stop(environment: Any, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        if telemetry.LOCAL.run_id:
            telemetry.send_tally(environment.runner, final=True)
        return
    if _controller is not None:
        _controller.on_test_stop()


@events.quitting.add_listener
def on_quitting(environment: Any, **_kwargs: Any) -> None:
    if _controller is not None:
        _controller.on_quitting()
