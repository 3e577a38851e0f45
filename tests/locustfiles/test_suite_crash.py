"""The crash fault (`--crash-every`, locustfiles/crash.py): SIGKILL and restart of the embedded
target, and what the run makes of it.

In the README's test command: the option's bounds, the fault's bookkeeping against a stand-in
target (it restarts only what it killed; errors of the fault control inside the window are
healed; a failed restart is a target error), and one real run whose target stops by itself
(SIGTERM from outside, not the fault): it stays down and the run exits 5.

Behind the `chaos` marker (`python -m pytest -q -m chaos`, about 3 minutes): the acceptance of
issue 10, a fix-on spike run with every traffic class and crashes passes with zero
inconsistencies and at least two crashes, each recovered; fix off and rollback under the same
run still fail with 3.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import time
from typing import Any

import pytest

from locustfiles import checker, crash
from locustfiles.admin_client import TargetError

RUN_TIMEOUT_S = 90.0


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("1", 1.0), ("8.5", 8.5)])
def test_crash_every_takes_zero_or_seconds(text, value):
    assert crash._crash_every(text) == value


@pytest.mark.parametrize("text", ["0.5", "-1", "x", "7200"])
def test_crash_every_refuses_what_cannot_be_a_schedule(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--crash-every"):
        crash._crash_every(text)


class FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.alive = True
        self.returncode: int | None = None

    def running(self) -> bool:
        return self.alive


class FakeTarget:
    """The EmbeddedTarget's surface the fault uses, with no process behind it."""

    def __init__(self, restart_fails: int = 0) -> None:
        self.child: FakeChild | None = FakeChild(100)
        self.kills = 0
        self.restarts = 0
        self.restart_fails = restart_fails

    def kill(self) -> int:
        assert self.child is not None
        self.kills += 1
        self.child.alive, self.child.returncode = False, -9
        return -9

    def restart(self) -> str:
        if self.restart_fails:
            self.restart_fails -= 1
            raise TargetError("port still taken")
        self.restarts += 1
        self.child = FakeChild(100 + self.restarts)
        return "http://127.0.0.1:1"

    def exited_by_itself(self) -> int | None:
        child = self.child
        return None if child is None or child.running() else child.returncode


def _fault(target: FakeTarget, reapplied: list[int], errors: list[str]) -> crash.CrashFault:
    clock = iter(float(t) for t in range(10, 1000))
    return crash.CrashFault(
        target,  # type: ignore[arg-type]
        every_s=5.0,
        seed=1,
        elapsed_s=lambda: next(clock),
        reapply=lambda: reapplied.append(1),
        fault_errors=errors,
    )


def test_a_crash_is_a_kill_a_restart_and_the_settings_again():
    target, reapplied, errors = FakeTarget(), [], ["an error before the crash"]
    fault = _fault(target, reapplied, errors)
    assert fault._crash_and_restart()
    assert (target.kills, target.restarts, len(reapplied)) == (1, 1, 1)
    assert errors == ["an error before the crash"]  # not the fault's to heal
    section = fault.report_section()
    assert section["count"] == 1 and section["recovered"] == 1
    event = section["events"][0]
    assert event["pid_killed"] == 100 and event["pid_started"] == 101 and event["exit_code"] == -9
    assert event["recovery_s"] == event["t_up_s"] - event["t_kill_s"] > 0
    assert fault.target_error() is None
    timeline = [{"t_s": 0.0}, {"t_s": event["t_kill_s"]}, {"t_s": 999.0}]
    fault.annotate(timeline)
    assert [p["crashes"] for p in timeline] == [0, 1, 1]


def test_errors_of_the_fault_control_inside_the_window_are_healed():
    target, errors = FakeTarget(), ["before the crash"]
    fault = _fault(target, [], errors)

    def reapply() -> None:
        errors.append("a phase change while the target was down")  # then healed by the re-apply

    fault.reapply = reapply
    assert fault._crash_and_restart()
    assert errors == ["before the crash"]


def test_a_restart_is_tried_again_then_the_target_is_down_for_good():
    target = FakeTarget(restart_fails=1)
    fault = _fault(target, [], [])
    assert fault._crash_and_restart()
    assert target.restarts == 1 and not fault.errors
    target = FakeTarget(restart_fails=crash.RESTART_ATTEMPTS)
    fault = _fault(target, [], [])
    assert not fault._crash_and_restart()
    assert fault.errors and "could not restart" in (fault.target_error() or "")
    assert fault.report_section()["recovered"] == 0


def test_a_restarted_target_that_answers_late_is_asked_again_not_killed(monkeypatch):
    """Issue 24's hour: a restarted target busy with its recovery answered its admin calls late;
    each late answer killed it and started it again, and three ended the restarts for good."""
    monkeypatch.setattr(crash, "RESTART_RETRY_S", 0.0)
    late = [crash.REAPPLY_ATTEMPTS - 1]

    def reapply() -> None:
        if late[0]:
            late[0] -= 1
            raise TargetError("PUT /admin/fix: timed out")

    target = FakeTarget()
    fault = _fault(target, [], [])
    fault.reapply = reapply
    assert fault._crash_and_restart()
    assert (target.kills, target.restarts, late[0]) == (1, 1, 0)
    late[0] = crash.REAPPLY_ATTEMPTS * crash.RESTART_ATTEMPTS  # never takes them: bounded
    assert not fault._crash_and_restart()
    assert target.restarts == 1 + crash.RESTART_ATTEMPTS and fault.errors


def test_a_target_that_stopped_by_itself_is_not_restarted():
    target = FakeTarget()
    fault = _fault(target, [], [])
    assert target.child is not None
    target.child.alive, target.child.returncode = False, 74  # its journal failed
    assert not fault._crash_and_restart()
    assert (target.kills, target.restarts) == (0, 0)
    assert fault.self_stopped is not None and fault.self_stopped["exit_code"] == 74
    assert "stopped by itself (exit code 74)" in (fault.target_error() or "")


def test_the_schedule_replays_from_the_seed():
    def first_wait_s(seed: int) -> float:
        fault = crash.CrashFault(
            FakeTarget(),  # type: ignore[arg-type]
            every_s=10,
            seed=seed,
            elapsed_s=time.monotonic,
            reapply=lambda: None,
            fault_errors=[],
        )
        return fault._wait_s()

    draws = [first_wait_s(seed) for seed in (1, 1, 2)]
    assert draws[0] == draws[1] != draws[2]
    assert all(10 * (1 - crash.JITTER) <= d <= 10 * (1 + crash.JITTER) for d in draws)


def test_a_target_that_stops_by_itself_stays_down_and_the_run_exits_5(locust_run):
    """The fault on, but its first crash far away: the target is stopped from outside (SIGTERM,
    as a journal failure would stop it); the fault does not bring it back, the run exits 5.
    The edge class alone makes the load: it leaves no payout unknown, so no money verdict (3,
    which comes first: payouts a dead target can no longer prove) hides the target's failure."""
    run = locust_run(
        ["--headless", "-t", "8s", "-u", "2", "-r", "2", "--only-summary", "--fix", "on",
         "--crash-every", "600", "--final-wait-s", "2", "--traffic-mix", "payers=0,edge=1"]
    )  # fmt: skip
    pid = _target_pid(run)
    time.sleep(2.0)  # load against it first (a pause, not a synchronisation: the kill is ours)
    os.kill(pid, signal.SIGTERM)
    code = run.finish(RUN_TIMEOUT_S)
    report = run.report()
    assert code == checker.EXIT_TARGET_FAILED, run.log_tail()
    crashes = report["crashes"]
    assert crashes["count"] == 0 and crashes["self_stopped"] is not None, crashes
    assert "stopped by itself" in (report["target_error"] or ""), report["target_error"]
    assert "crash fault: SIGKILL" not in run.log_tail(20_000)


def _target_pid(run: Any, timeout_s: float = 30.0) -> int:
    found: list[int] = []

    def started() -> bool:
        match = re.search(r"embedded target http://\S+ \(pid (\d+)", run.log_tail(20_000))
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    run.wait(timeout_s, until=started)
    assert found, f"the embedded target did not start:\n{run.log_tail()}"
    return found[0]


# ---- the acceptance run (marker `chaos`) -----------------------------------------------------

CHAOS_RUN = ["--headless", "-t", "30s", "-u", "10", "-r", "10", "--only-summary",
             "--shape", "spike", "--crash-every", "8", "--seed", "3"]  # fmt: skip
CHAOS_TIMEOUT_S = 150.0


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_crashes_under_a_spike_fix_on_passes_fix_off_and_rollback_fail(locust_run):
    on = locust_run([*CHAOS_RUN, "--fix", "on"], name="on")
    code = on.finish(CHAOS_TIMEOUT_S)
    report = on.report()
    assert code == 0, f"{report['reason']}\n{on.log_tail()}"
    assert report["inconsistencies_total"] == 0
    crashes = report["crashes"]
    assert crashes["count"] >= 2 and crashes["recovered"] == crashes["count"], crashes
    assert crashes["self_stopped"] is None and not crashes["errors"]
    assert max(point.get("crashes", 0) for point in report["timeline"]) == crashes["count"]
    by_name = report["checks"]["by_name"]
    for name in ("shared_invoice", "drain", "retry", "edge", "balance_after_success"):
        assert by_name[name]["passed"] > 0, (name, by_name)
    assert report["traffic"]["classes_without_users"] == []
    for fix in ("off", "rollback"):
        run = locust_run([*CHAOS_RUN, "--fix", fix], name=fix)
        code = run.finish(CHAOS_TIMEOUT_S)
        report = run.report()
        assert code == checker.EXIT_INCONSISTENT, f"{fix}: {report['reason']}\n{run.log_tail()}"
        assert report["crashes"]["count"] >= 2, report["crashes"]
