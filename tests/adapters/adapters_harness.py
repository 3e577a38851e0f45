"""What the adapter tests share (a module of its own name: every test folder's conftest is
`conftest`): paths, installing a package as pip does, and one headless locust run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from target.common.child import ChildProcess, ChildServer

# Importing locust monkey-patches the whole process with gevent: imported once here, unpatched,
# as tests/locustfiles/conftest.py does (the runs are subprocesses and patch themselves).
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    import locust  # noqa: F401
finally:
    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUITE = REPO / "locustfiles" / "lnchaos_suite.py"
INSTALL_TIMEOUT_S = 120.0


def pip_install(package_dir: Path, site: Path) -> Path:
    """Install a package from its source folder into `site` as pip installs it (its
    .dist-info, entry points included), offline: no index, the environment's setuptools and
    wheel build it (the test extras carry wheel)."""
    build = site.parent / f"build-{package_dir.name}"
    shutil.copytree(package_dir, build)  # pip builds in place: the copy takes the debris
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--target", str(site), str(build)],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
        capture_output=True,
    )
    return site


def run_locust(args: list[str], out: Path, timeout_s: float) -> tuple[int, dict[str, Any], str]:
    """One headless run of the suite; (exit code, consistency.json, log tail). Nothing is left
    running: the child and its descendants are stopped and checked."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "locust", "-f", str(SUITE), *args, "--report-dir", str(out)]
    child = ChildProcess(command, log_path=out / "locust.log", cwd=REPO, name="locust").start()
    try:
        code = child.wait(timeout_s)
        assert code is not None, f"locust did not end in {timeout_s} s:\n{child.log_tail()}"
        report = json.loads((out / "consistency.json").read_text())
        return code, report, child.log_tail()
    finally:
        child.stop()
        left = [(p.pid, " ".join(p.cmdline()[:3])) for p in child.leftovers()]
        assert not left, f"locust left processes behind: {left}"


@contextlib.contextmanager
def node_and_withdraw_service(
    tmp_path: Path, token: str, node_args: list[str], *, reopen_on_error: bool
) -> Iterator[tuple[str, str, Path]]:
    """A `lnchaos node` and the withdraw-link service on it: (node URL, service URL, the
    service's log). Both stopped, and checked to leave nothing behind."""
    node_command = [sys.executable, "-m", "lnchaos.cli", "node", "--port", "0"]
    node_command += ["--admin-token", token, "--seed", "7", *node_args]
    # the service pays with SendPaymentSync (withdraw_service.py), which LND 0.21 no longer
    # routes (the node's default version): the node answers as the LND 0.20 it was written for
    node_command += ["--lnd-version", "0.20"]
    node = ChildServer(node_command, log_path=tmp_path / "node.log", cwd=REPO, name="node")
    service: ChildServer | None = None
    try:
        node.start(health_path="/health")
        command = [sys.executable, str(HERE / "withdraw_service.py"), "--node-url", node.url]
        command += ["--reopen-on-error"] if reopen_on_error else []
        log_path = tmp_path / "service.log"
        service = ChildServer(command, log_path=log_path, cwd=REPO, name="withdraw")
        service.start(health_path="/health")
        yield node.url, service.url, log_path
    finally:
        for child in (service, node):
            if child is not None:
                child.stop()
                left = [(p.pid, " ".join(p.cmdline()[:3])) for p in child.leftovers()]
                assert not left, f"{child.name} left processes behind: {left}"
