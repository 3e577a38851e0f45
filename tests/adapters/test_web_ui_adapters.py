"""The web UI's start form lists the installed adapters (ACME's among them), and refuses a
switch to an adapter another judge reads (the judge is built at start)."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from adapters_harness import REPO, SUITE

from locustfiles.wallets import registry
from target.common.child import ChildProcess

# the whole module under the marker: its runs install a package and start nodes and
# services, and in the default run they left the distributed runs after them unable to connect
pytestmark = pytest.mark.adapters

HTTP_TIMEOUT_S = 5.0
UI_TIMEOUT_S = 30.0
POLL_S = 0.25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, form: dict[str, str] | None = None) -> str:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data)
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return response.read().decode()


def _page(base: str) -> str:
    deadline = time.monotonic() + UI_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return _get(f"{base}/")
        except (OSError, urllib.error.URLError):
            time.sleep(POLL_S)
    raise AssertionError(f"no web UI at {base} within {UI_TIMEOUT_S} s")


@pytest.mark.adapters
def test_the_start_form_lists_installed_adapters(with_site: Path, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{(port := _free_port())}"
    command = [sys.executable, "-m", "locust", "-f", str(SUITE), "--web-host", "127.0.0.1"]
    command += ["--web-port", str(port), "--report-dir", str(tmp_path / "ui")]
    child = ChildProcess(command, log_path=tmp_path / "locust.log", cwd=REPO, name="locust")
    child.start()
    try:
        page = _page(base)
        assert '"wallet_api"' in page
        listed = json.dumps([*registry.BUILT_IN, "acme"])  # built-in first, then the installed
        assert f'"choices": {listed}' in page, child.log_tail()
        form = {"user_count": "1", "spawn_rate": "1", "wallet_api": "lnbits"}
        answer = json.loads(_get(f"{base}/swarm", form))
        assert answer["success"] is False
        assert "needs another judge" in answer["message"]
    finally:
        child.stop()
        left = [(p.pid, " ".join(p.cmdline()[:3])) for p in child.leftovers()]
        assert not left, f"locust left processes behind: {left}"
