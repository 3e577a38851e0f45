"""The embedded target: `python -m target` as a child process of the Locust master.

Never inside the gevent process: the target is an asyncio server and must not compete with the
load generator's event loop. It gets its own session, so a Ctrl-C in the terminal reaches Locust
(which then runs the verdict and stops the target) rather than killing the target mid-run; on
Linux it also gets PR_SET_PDEATHSIG, so it dies with Locust even when Locust is SIGKILLed.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from locustfiles.admin_client import TargetAdmin, TargetError
from locustfiles.options import (
    TARGET_INFLIGHT_HOLD_MS,
    TARGET_NODE_TIMEOUT_MS,
    TARGET_RESOLVER_INTERVAL_MS,
    Settings,
)

log = logging.getLogger(__name__)

LISTENING_RE = re.compile(r"listening on (http://\S+)")
START_TIMEOUT_S = 20.0
HEALTH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


class EmbeddedTarget:
    def __init__(self, settings: Settings, extra_args: list[str] | None = None) -> None:
        """extra_args: appended to the command (tests start targets of other settings)."""
        self.settings = settings
        self.extra_args = list(extra_args or [])
        self.admin_token = secrets.token_hex(16)
        self.log_path = settings.report_dir / "target.log"
        self.url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The timing is explicit, in step with the suite's --final-wait-s (options.py): the node's
        in-flight hold, the wallet's node timeout, the resolver interval; a payout pending longer
        than the final wait is what the target's own reconciler reports as stuck."""
        s = self.settings
        return [
            sys.executable,
            "-m",
            "target",
            "--port",
            "0",
            "--fix",
            s.fix,
            "--seed",
            str(s.seed),
            "--admin-token",
            self.admin_token,
            "--timeout-rate",
            str(s.timeout_rate),
            "--late-settle-rate",
            str(s.late_settle_rate),
            "--inflight-hold-ms",
            str(TARGET_INFLIGHT_HOLD_MS),
            "--node-timeout-ms",
            str(TARGET_NODE_TIMEOUT_MS),
            "--resolver-interval-ms",
            str(TARGET_RESOLVER_INTERVAL_MS),
            "--stuck-after-s",
            str(s.final_wait_s),
            *self.extra_args,
        ]

    def start(self) -> str:
        """Start the target, wait for its URL line and /health; return its base URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # stdout goes to a file, not a pipe: nobody has to drain it for the target to keep going
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        atexit.register(self.stop)
        self.url = self._wait_for_url(START_TIMEOUT_S)
        TargetAdmin(self.url, self.admin_token).wait_healthy(HEALTH_TIMEOUT_S)
        log.info("embedded target %s (pid %d, log %s)", self.url, self.process.pid, self.log_path)
        return self.url

    def _wait_for_url(self, timeout_s: float) -> str:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = LISTENING_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise TargetError(
                    f"target exited with {self.process.returncode}: {self._log_tail()}"
                )
            time.sleep(0.05)
        self.stop()
        raise TargetError(f"no 'listening on' line within {timeout_s:.0f} s: {self._log_tail()}")

    def _log_tail(self, max_chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("target pid %d ignored SIGTERM for %.0f s; killing it", process.pid, 5)
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        log.info("embedded target stopped (exit code %s)", process.returncode)
        return process.returncode


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            except (OSError, AttributeError):
                return
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return preexec
