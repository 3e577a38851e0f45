"""The embedded target: `python -m target` as a child process of the Locust master.

Never inside the gevent process: the target is an asyncio server and must not compete with the
load generator's event loop. It gets its own session, so a Ctrl-C in the terminal reaches Locust
(which then runs the verdict and stops the target) rather than killing the target mid-run; on
Linux it also gets PR_SET_PDEATHSIG, so it dies with Locust even when Locust is SIGKILLed.

It listens on --target-bind (127.0.0.1 by default) and its URL, the bound address, becomes
Locust's host, which the master sends to every worker with each spawn message. Its admin token
is the one given with --admin-token, else a generated one (loopback only: options.py refuses
any other bind without an explicit token).
"""

from __future__ import annotations

import logging
import secrets
import sys

from locustfiles.admin_client import TargetError
from locustfiles.options import (
    TARGET_INFLIGHT_HOLD_MS,
    TARGET_NODE_TIMEOUT_MS,
    TARGET_RESOLVER_INTERVAL_MS,
    Settings,
    target_bind_problem,
)
from target.common.child import ChildError, ChildServer
from target.common.server import is_loopback

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
HEALTH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class EmbeddedTarget:
    def __init__(self, settings: Settings, extra_args: list[str] | None = None) -> None:
        """extra_args: appended to the command (tests start targets of other settings)."""
        self.settings = settings
        self.extra_args = list(extra_args or [])
        self.admin_token = settings.admin_token or secrets.token_hex(16)
        self.log_path = settings.report_dir / "target.log"
        self.url: str | None = None
        self.child: ChildServer | None = None

    def command(self) -> list[str]:
        """The timing is explicit, in step with the suite's --final-wait-s (options.py): the node's
        in-flight hold, the wallet's node timeout, the resolver interval; a payout pending longer
        than the final wait is what the target's own reconciler reports as stuck."""
        s = self.settings
        return [
            sys.executable,
            "-m",
            "target",
            "--bind",
            s.target_bind,
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
        problem = target_bind_problem(self.settings)
        if problem:
            raise TargetError(problem)
        if not is_loopback(self.settings.target_bind):
            log.warning(
                "the embedded target binds %s, not loopback: every host that reaches it can use "
                "its API (the admin token guards only the admin routes)",
                self.settings.target_bind,
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.child = ChildServer(
            self.command(),
            log_path=self.log_path,
            die_with_parent=True,
            stop_timeout_s=STOP_TIMEOUT_S,
            name="embedded target",
        )
        try:
            self.child.start(
                start_timeout_s=START_TIMEOUT_S,
                health_path="/health",
                health_timeout_s=HEALTH_TIMEOUT_S,
            )
        except ChildError as err:
            raise TargetError(str(err)) from None
        self.url = self.child.url
        log.info("embedded target %s (pid %d, log %s)", self.url, self.child.pid, self.log_path)
        return self.url

    def stop(self) -> int | None:
        """SIGTERM, a bounded wait, then SIGKILL. Idempotent."""
        child, self.child = self.child, None
        if child is None:
            return None
        code = child.stop()
        log.info("embedded target stopped (exit code %s)", code)
        return code
