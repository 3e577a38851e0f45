"""The crash fault (Jepsen's nemesis, issue 10 item 2): `--crash-every S` SIGKILLs the embedded
target at seeded, jittered moments and starts it again on the same database and port.

On the master (or the local runner) only, beside the fault control, and only for the embedded
target (a target given with --host is not ours to kill). Each crash: SIGKILL (no shutdown of its
own, nothing flushed), the same command started again (same --db, same --port), its /health
awaited, then the run's settings put back (fix mode, faults, the current phase's timeout rate):
the restarted target starts with its command line's faults, not the ones the run set since.
Admin calls of the fault control that failed while the target was down are healed by that
re-apply, so they do not count as a failed fault control.

It restarts only what it killed: a target that exited on its own (its journal failed: exit 74;
or any other exit) stays down, and the verdict says the target failed (exit code 5).

The users (users.py, traffic.py) meet a crash as connection errors. With the fault on, a
connection error is the chaos, not a failure: it is a FAULT event (`target down [phase]`), and
a payer whose payout got no answer treats the outcome as unknown, the way a real client must:
it sends the same request with the same Idempotency-Key again once the target answers, then
checks the answer against the node's truth like any other.

Waits between crashes: `every_s` times a factor drawn uniformly from [1 - JITTER, 1 + JITTER]
with a generator seeded from --seed, so a run's crash schedule replays. The first crash comes
no earlier than FIRST_CRASH_MIN_S after the start (the run's marker and settings are in place).

consistency.json gets `crashes`: {every_s, count, recovery_s: {max, mean}, events: [{t_kill_s,
t_up_s, recovery_s, pid_killed, pid_started, exit_code}], self_stopped: {t_s, exit_code} | null,
errors}; each timeline point gets `crashes`, the kills so far.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import gevent
from configargparse import SUPPRESS

from lnchaos.checker import history
from locustfiles.admin_client import TargetError
from locustfiles.embedded_target import EmbeddedTarget

log = logging.getLogger(__name__)

CRASH_EVERY_S_MAX = 3600.0
CRASH_EVERY_S_MIN = 1.0  # a target needs about a second to start again
JITTER = 0.5
FIRST_CRASH_MIN_S = 2.0
WATCH_INTERVAL_S = 0.2
RESTART_ATTEMPTS = 3  # a restart that fails (e.g. the port not yet free) is tried again
RESTART_RETRY_S = 0.5
# The run's settings put on a restarted target that is up (healthy) but answers late: asked again
# this many times, RESTART_RETRY_S apart, before it counts as a failed restart. A target busy with
# its recovery while every user's retry reaches it at once answers its admin calls late on a busy
# machine; killing it for that (one attempt of RESTART_ATTEMPTS) and starting it again only made
# the next start slower: an hour's soak ended its restarts after three such attempts, down for good.
REAPPLY_ATTEMPTS = 5
EVENTS_MAX = 1000
# stop(): how long the end of the run waits for a restart in progress (the verdict needs it up)
STOP_JOIN_S = 60.0


def add_arguments(parser: Any) -> None:
    """The crash fault's option (a listener of events.init_command_line_parser)."""
    parser.add_argument(
        "--crash-every",
        type=_crash_every,
        default=0.0,
        include_in_web_ui=False,  # the embedded target is made restartable at start
        help="SIGKILL the embedded target about every S seconds (seeded jitter, +-50%%) and "
        "restart it on the same database and port; payers retry a payout that got no answer "
        "with its Idempotency-Key. 0: off.",
    )
    # hidden: for tests, the first crash no earlier than this (default FIRST_CRASH_MIN_S)
    parser.add_argument(
        "--crash-first-s",
        type=float,
        default=FIRST_CRASH_MIN_S,
        include_in_web_ui=False,
        help=SUPPRESS,
    )


def _crash_every(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--crash-every must be a number of seconds") from None
    if value != 0 and not CRASH_EVERY_S_MIN <= value <= CRASH_EVERY_S_MAX:
        raise argparse.ArgumentTypeError(
            f"--crash-every must be 0 (off) or within [{CRASH_EVERY_S_MIN:g}, "
            f"{CRASH_EVERY_S_MAX:g}] seconds"
        )
    return value


def crash_every_s(options: Any) -> float:
    """The --crash-every of these options (0: off), also on a worker (the master sends them)."""
    try:
        return max(0.0, float(getattr(options, "crash_every", 0.0) or 0.0))
    except (TypeError, ValueError):
        return 0.0


class CrashFault:
    def __init__(
        self,
        target: EmbeddedTarget,
        *,
        every_s: float,
        seed: int,
        elapsed_s: Callable[[], float],
        reapply: Callable[[], None],
        fault_errors: list[str],
        first_s: float = FIRST_CRASH_MIN_S,
        note: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """elapsed_s: the run's clock (the timeline's); reapply: puts the run's settings back on
        a restarted target (raises TargetError); fault_errors: the fault control's error list,
        whose entries from a crash window are healed by the re-apply; note: records a kill and
        a recovery in the run's history (docs/history.md: `crash`)."""
        assert every_s > 0
        self.target = target
        self.every_s = every_s
        self.rng = random.Random(f"{seed}/crash")
        self.elapsed_s = elapsed_s
        self.reapply = reapply
        self.fault_errors = fault_errors
        self.first_s = max(0.0, first_s)
        self.note = note or (lambda _record: None)
        self.events: list[dict[str, Any]] = []
        self.self_stopped: dict[str, Any] | None = None
        self.errors: list[str] = []  # a restart that failed: the target is down for good
        self.down = False
        self._stopping = False
        self._greenlet: gevent.Greenlet | None = None

    # ---- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """No new crash; a restart in progress is finished first (bounded): the verdict reads the
        target. A target that stopped itself is noticed here too."""
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=STOP_JOIN_S)
            self._greenlet.kill(block=True, timeout=1.0)
            self._greenlet = None
        self._notice_self_stop()

    def target_error(self) -> str | None:
        """Why the run's target failed because of (or despite) the crash fault, else None."""
        if self.self_stopped is not None:
            return (
                f"the target stopped by itself (exit code {self.self_stopped['exit_code']}) at "
                f"{self.self_stopped['t_s']:.1f} s; the crash fault restarts only what it killed"
            )
        if self.errors:
            return f"the crash fault could not restart the target: {self.errors[0]}"
        return None

    # ---- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        next_s = max(self.first_s, self.elapsed_s()) + self._wait_s()
        while not self._stopping and len(self.events) < EVENTS_MAX:
            if self._notice_self_stop():
                return
            if self.elapsed_s() < next_s:
                gevent.sleep(WATCH_INTERVAL_S)
                continue
            if not self._crash_and_restart():
                return  # down for good: said in errors
            next_s = self.elapsed_s() + self._wait_s()

    def _wait_s(self) -> float:
        return self.every_s * self.rng.uniform(1 - JITTER, 1 + JITTER)

    def _notice_self_stop(self) -> bool:
        if self.self_stopped is not None:
            return True
        if self.down:
            return False  # ours: killed, not yet back
        code = self.target.exited_by_itself()
        if code is None:
            return False
        self.self_stopped = {"t_s": round(self.elapsed_s(), 3), "exit_code": code}
        log.error("the target stopped by itself (exit code %s): not restarted", code)
        return True

    def _crash_and_restart(self) -> bool:
        child = self.target.child
        if child is None or not child.running():
            return not self._notice_self_stop()
        pid = child.pid
        errors_before = len(self.fault_errors)
        self.down = True
        t_kill_s = self.elapsed_s()
        code = self.target.kill()
        log.warning("crash fault: SIGKILL to the target (pid %d) at %.1f s", pid, t_kill_s)
        event: dict[str, Any] = {
            "t_kill_s": round(t_kill_s, 3),
            "t_up_s": None,
            "recovery_s": None,
            "pid_killed": pid,
            "pid_started": None,
            "exit_code": code,
        }
        self.events.append(event)
        self.note({"type": history.CRASH, "what": "killed", **event})
        last = ""
        for attempt in range(RESTART_ATTEMPTS):
            try:
                self.target.restart()
                self._reapply_while_up()
                break
            except TargetError as err:
                last = str(err)
                log.warning("crash fault: restart %d failed: %s", attempt + 1, last)
                self.target.kill()
                gevent.sleep(RESTART_RETRY_S)
        else:
            self.errors.append(last)
            self.down = False
            return False
        # the fault control's calls that failed while the target was down are healed now
        del self.fault_errors[errors_before:]
        t_up_s = self.elapsed_s()
        assert self.target.child is not None
        event.update(
            t_up_s=round(t_up_s, 3),
            recovery_s=round(t_up_s - t_kill_s, 3),
            pid_started=self.target.child.pid,
        )
        self.down = False
        self.note({"type": history.CRASH, "what": "recovered", **event})
        log.info("crash fault: the target is back after %.2f s", t_up_s - t_kill_s)
        return True

    def _reapply_while_up(self) -> None:
        """The run's settings on the restarted target, asked again (bounded) while it runs; the
        last error raised when it never took them or the target exited."""
        for attempt in range(REAPPLY_ATTEMPTS):
            try:
                self.reapply()
                return
            except TargetError as err:
                if attempt + 1 == REAPPLY_ATTEMPTS or self.target.exited_by_itself() is not None:
                    raise
                log.warning("crash fault: the restarted target's settings, again: %s", err)
                gevent.sleep(RESTART_RETRY_S)

    # ---- the report ------------------------------------------------------------------------

    def report_section(self) -> dict[str, Any]:
        recoveries = [e["recovery_s"] for e in self.events if e["recovery_s"] is not None]
        return {
            "every_s": self.every_s,
            "count": len(self.events),
            "recovered": len(recoveries),
            "recovery_s": {
                "max": max(recoveries) if recoveries else None,
                "mean": round(sum(recoveries) / len(recoveries), 3) if recoveries else None,
            },
            "events": [dict(e) for e in self.events],
            "self_stopped": self.self_stopped,
            "errors": list(self.errors),
        }

    def annotate(self, timeline: list[dict[str, Any]]) -> None:
        """Each timeline point gets `crashes`: the kills up to its time."""
        kills = sorted(e["t_kill_s"] for e in self.events)
        for point in timeline:
            point["crashes"] = sum(1 for t in kills if t <= point.get("t_s", 0))


def start_for(controller: Any) -> CrashFault | None:
    """The crash fault of a run (None when off, or the target is not ours: --host)."""
    options = controller.environment.parsed_options
    every_s = crash_every_s(options)
    if every_s <= 0:
        return None
    target: EmbeddedTarget | None = controller.target
    if target is None or target.db_dir is None:
        log.warning("--crash-every needs the embedded target (not --host): no crash this run")
        return None
    fault_control = controller.fault_control

    def reapply() -> None:
        if fault_control is None:
            return
        fault_control.apply_run_settings()
        shape = controller.environment.shape_class
        phase = shape.current_phase() if shape is not None else None
        controller.admin.set_faults({"timeout_rate": fault_control.timeout_rate_for(phase)})

    crash = CrashFault(
        target,
        every_s=every_s,
        seed=controller.settings.seed,
        elapsed_s=controller.collector.elapsed_s,
        reapply=reapply,
        fault_errors=fault_control.errors if fault_control is not None else [],
        first_s=float(getattr(options, "crash_first_s", FIRST_CRASH_MIN_S) or 0.0),
        note=controller.collector.note,
    )
    crash.start()
    return crash
