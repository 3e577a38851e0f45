"""The embedded target: `python -m target` as a child process of the Locust master.

Never inside the gevent process: the target is an asyncio server and must not compete with the
load generator's event loop. It gets its own session, so a Ctrl-C in the terminal reaches Locust
(which then runs the verdict and stops the target) rather than killing the target mid-run; on
Linux it also gets PR_SET_PDEATHSIG, so it dies with Locust even when Locust is SIGKILLed.

It listens on --target-bind (127.0.0.1 by default) and its URL, the bound address, becomes
Locust's host, which the master sends to every worker with each spawn message. Its admin token
is the one given with --admin-token, else a generated one (loopback only: options.py refuses
any other bind without an explicit token).

Restartable (the crash fault, locustfiles/crash.py): `kill()` SIGKILLs it, `restart()` starts it
again on the same database and port. A restartable target keeps its database in a folder of
its own (removed at stop), since the target's default is a new temporary folder per start; each
incarnation logs to a file of its own (target.log, target.1.log, ...), so the restart waits for
its own `listening on` line.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

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
    def __init__(
        self,
        settings: Settings,
        extra_args: list[str] | None = None,
        *,
        restartable: bool = False,
    ) -> None:
        """extra_args: appended to the command (tests start targets of other settings).
        restartable: a database of its own, so restart() finds the same one (the crash fault)."""
        self.settings = settings
        self.extra_args = list(extra_args or [])
        self.admin_token = settings.admin_token or secrets.token_hex(16)
        self.log_path = settings.report_dir / "target.log"
        self.url: str | None = None
        self.child: ChildServer | None = None
        self.port = 0  # 0: a free one at the first start; the same one at every restart
        self.db_dir: Path | None = None
        if restartable:
            self.db_dir = Path(tempfile.mkdtemp(prefix="lnchaos-target-"))
        self.starts = 0

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
            str(self.port),
            *(["--db", str(self.db_dir / "wallet.sqlite")] if self.db_dir is not None else []),
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
        log_path = self.log_path
        if self.starts:
            log_path = self.log_path.with_name(f"{self.log_path.stem}.{self.starts}.log")
        self.starts += 1
        self.child = ChildServer(
            self.command(),
            log_path=log_path,
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
        self.port = int(urlsplit(self.url).port or 0)
        log.info("embedded target %s (pid %d, log %s)", self.url, self.child.pid, log_path)
        return self.url

    def kill(self) -> int | None:
        """SIGKILL, now (the crash fault): no shutdown of its own, nothing flushed."""
        child = self.child
        return child.kill() if child is not None else None

    def restart(self) -> str:
        """Start it again on the same database and port (after kill()); its URL, unchanged."""
        assert self.db_dir is not None and self.port, "restart needs a restartable, started target"
        before, self.child = self.url, None
        url = self.start()
        if url != before:
            raise TargetError(f"the target came back on {url}, not {before}")
        return url

    def exited_by_itself(self) -> int | None:
        """The exit code of a target that stopped without being told (e.g. 74, its journal
        failed), else None."""
        child = self.child
        if child is None or child.running():
            return None
        return child.returncode

    def stop(self) -> int | None:
        """SIGTERM, a bounded wait, then SIGKILL. Idempotent."""
        child, self.child = self.child, None
        code = child.stop() if child is not None else None
        if child is not None:
            log.info("embedded target stopped (exit code %s)", code)
        if self.db_dir is not None:
            shutil.rmtree(self.db_dir, ignore_errors=True)
        return code
