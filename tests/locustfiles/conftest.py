"""Fixtures of the suite's tests: real `locust` runs that never leave a process behind.

Every run starts in a session of its own; its descendants (the embedded target, --processes
workers) are sampled while it runs. At teardown the group and every descendant seen are
SIGKILLed, and a test can assert that a run that ended by itself left nothing behind.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from target.common.child import ChildProcess

# The unit tests import the suite's modules, and importing locust monkey-patches the whole
# process with gevent: every other test's sockets, threads, asyncio loops and subprocesses
# would change under it. Import it once here, unpatched; the runs below are subprocesses and
# patch themselves as usual (the variable is removed again before any of them starts).
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    import locust  # noqa: F401
finally:
    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "locustfiles" / "lnchaos_suite.py"
POLL_INTERVAL_S = 0.2
LEFTOVER_TIMEOUT_S = 5.0


class LocustRun:
    """One `locust` run of the suite, a child in a session of its own (target/common/child.py):
    its descendants are sampled while it runs; at teardown the group and every descendant seen
    are killed."""

    def __init__(self, args: list[str], report_dir: Path, locustfile: Path = SUITE) -> None:
        self.report_dir = report_dir
        report_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = report_dir / "locust.log"
        command = [sys.executable, "-m", "locust", "-f", str(locustfile), *args]
        command += ["--report-dir", str(report_dir)]
        self.child = ChildProcess(command, log_path=self.log_path, cwd=REPO, name="locust").start()

    def wait(self, timeout_s: float, until: Callable[[], bool] | None = None) -> int | None:
        """Wait for the exit (or for `until`), sampling descendants; the exit code or None."""
        return self.child.wait(timeout_s, until=until, poll_s=POLL_INTERVAL_S)

    def finish(self, timeout_s: float) -> int:
        """The exit code of a run that ends by itself; fails on a hang or on leftovers."""
        code = self.wait(timeout_s)
        assert code is not None, f"locust did not exit within {timeout_s} s:\n{self.log_tail()}"
        self.assert_nothing_left()
        return code

    def leftovers(self) -> list[psutil.Process]:
        return self.child.leftovers()

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        left = [(p.pid, " ".join(p.cmdline()[:4])) for p in self.leftovers()]
        assert not left, f"processes left behind: {left}"

    def signal(self, signum: int) -> None:
        self.child.signal(signum)

    def kill_all(self) -> None:
        self.child.kill()

    def report(self) -> dict[str, Any]:
        path = self.report_dir / "consistency.json"
        assert path.exists(), f"no consistency.json:\n{self.log_tail()}"
        return json.loads(path.read_text())

    def log_tail(self, max_chars: int = 4000) -> str:
        return self.child.log_tail(max_chars)


@pytest.fixture
def locust_run(tmp_path: Path) -> Iterator[Callable[..., LocustRun]]:
    """Start `locust -f locustfiles/lnchaos_suite.py ARGS --report-dir <tmp>/<name>`."""
    runs: list[LocustRun] = []

    def start(args: list[str], name: str = "run", locustfile: Path = SUITE) -> LocustRun:
        run = LocustRun(args, tmp_path / name, locustfile)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill_all()


@pytest.fixture
def running_target(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `python -m target` (the suite's own starter, embedded_target.py) with extra
    arguments, for runs that attach with --host; returns (url, admin_token). Always stopped."""
    from locustfiles.embedded_target import EmbeddedTarget
    from locustfiles.options import settings_from

    targets: list[Any] = []

    def start(extra_args: list[str], name: str = "target") -> tuple[str, str]:
        options = SimpleNamespace(fix="on", report_dir=str(tmp_path / name))
        target = EmbeddedTarget(settings_from(options), extra_args)
        targets.append(target)
        return target.start(), target.admin_token

    yield start
    for target in targets:
        target.stop()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
