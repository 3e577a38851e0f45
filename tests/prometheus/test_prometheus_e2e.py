"""A real Prometheus (Debian's package) with the shipped rules scrapes the embedded target of a
Locust run: under fix off the charged-not-paid alert fires within 30 s of the first mismatch;
a 60 s fix-on run fires nothing.

Prometheus listens on 127.0.0.1 only, keeps its data in the test's temporary folder, and is
stopped (its whole process group) after the test; so is the Locust run and its target. The run's
target picks its own port, so Prometheus finds it through a file_sd file written once the
target's `listening on` line is in its log (file_sd watches the file: no restart).

"First mismatch" is when the target's reconciliation, asked with `since_ms=0` every 0.5 s,
first counts a charged_not_paid hash: the node's truth against the ledger, live. The scoped
query never sets the Prometheus gauges (only the background reconciliation does), so the
polling does not speed the alert up.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from target.common.child import ChildProcess

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "lnchaos-alerts.yml"
ADMIN_TOKEN = "prometheus-e2e-token"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
POLL_S = 0.5
FIRE_WITHIN_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, folder: Path):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("no prometheus: apt-get install -y --no-install-recommends prometheus")
        self.folder = folder
        folder.mkdir()
        self.targets = folder / "targets.json"
        self.targets.write_text("[]")
        config = folder / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "lnchaos",
                            "file_sd_configs": [
                                {"files": [str(self.targets)], "refresh_interval": "1s"}
                            ],
                        }
                    ],
                }
            )
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child = ChildProcess(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log_path=folder / "prometheus.log",
            die_with_parent=True,
            name="prometheus",
        )

    def start(self) -> Prometheus:
        self.child.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.child.running(), self.child.log_tail()
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"prometheus not ready: {self.child.log_tail()}")
        rules = self.api("rules")["groups"]
        assert sum(len(group["rules"]) for group in rules) == 7, rules
        return self

    def scrape(self, target_url: str) -> None:
        host_port = target_url.removeprefix("http://")
        self.targets.write_text(json.dumps([{"targets": [host_port]}]))

    def api(self, path: str, **params: str) -> Any:
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def firing(self) -> list[str]:
        return [
            alert["labels"]["alertname"]
            for alert in self.api("alerts")["alerts"]
            if alert["state"] == "firing"
        ]

    def value(self, query: str) -> float | None:
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path / "prometheus")
    server.start()
    try:
        yield server
    finally:
        server.child.kill()
        assert not server.child.group_alive(), "prometheus left processes behind"


class Run:
    """`locust --headless` with its embedded target, stopped at teardown."""

    def __init__(self, folder: Path, args: list[str]):
        self.report_dir = folder
        folder.mkdir()
        self.child = ChildProcess(
            [
                sys.executable,
                "-m",
                "locust",
                "--headless",
                "--admin-token",
                ADMIN_TOKEN,
                "--report-dir",
                str(folder),
                "--seed",
                "7",
                *args,
            ],  # fmt: skip
            log_path=folder / "locust.log",
            cwd=REPO,
            die_with_parent=True,
            name="locust",
        ).start()
        self.target_url = self._wait_target()

    def _wait_target(self) -> str:
        log = self.report_dir / "target.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.child.running(), self.child.log_tail()
            match = LISTENING.search(log.read_text()) if log.exists() else None
            if match:
                return match.group(1)
            time.sleep(0.2)
        raise AssertionError(f"no target URL in {log}: {self.child.log_tail()}")

    def charged_not_paid(self) -> int:
        answer = requests.get(
            f"{self.target_url}/admin/reconciliation",
            params={"since_ms": "0"},
            headers={"X-Admin-Token": ADMIN_TOKEN},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        return int(answer.json()["charged_not_paid"]["count"])

    def stop(self) -> None:
        self.child.kill()
        assert not self.child.group_alive(), "the run left processes behind"
        assert not self.child.leftovers(), f"the run left {self.child.leftovers()}"


def test_charged_not_paid_fires_within_30_s_of_the_first_mismatch(
    prometheus: Prometheus, tmp_path: Path
) -> None:
    run = Run(tmp_path / "off", ["-t", "60s", "--fix", "off", "--timeout-rate", "0.1"])
    try:
        prometheus.scrape(run.target_url)
        first_mismatch = fired = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and fired is None:
            assert run.child.running(), run.child.log_tail()
            run.child.sample_descendants()  # the target too is stopped at teardown
            now = time.monotonic()
            if first_mismatch is None and run.charged_not_paid() > 0:
                first_mismatch = now
            if "LnchaosChargedNotPaid" in prometheus.firing():
                fired = time.monotonic()
            time.sleep(POLL_S)
        assert first_mismatch is not None, "fix off made no charged_not_paid mismatch"
        assert fired is not None, f"the alert never fired: {prometheus.api('alerts')}"
        delay_s = fired - first_mismatch
        print(f"LnchaosChargedNotPaid fired {delay_s:.1f} s after the first mismatch")
        (tmp_path / "alert_delay_s.txt").write_text(f"{delay_s:.1f}\n")
        assert delay_s <= FIRE_WITHIN_S, delay_s
    finally:
        run.stop()


def test_a_60_s_fix_on_run_fires_nothing(prometheus: Prometheus, tmp_path: Path) -> None:
    """Without the edge workload's long holds: they hold payments past --stuck-after-s on
    purpose, and LnchaosPayoutsStuckPending then fires, truthfully, while they last."""
    args = ["-t", "60s", "--fix", "on", "--shape", "spike", "--long-hold-rate", "0"]
    run = Run(tmp_path / "on", args)
    try:
        prometheus.scrape(run.target_url)
        fired: set[str] = set()
        reconciliations = 0.0
        deadline = time.monotonic() + 180
        while run.child.running() and time.monotonic() < deadline:
            run.child.sample_descendants()
            fired.update(prometheus.firing())
            seen = prometheus.value('lnchaos_reconciliations_total{job="lnchaos"}')
            reconciliations = max(reconciliations, seen or 0.0)
            time.sleep(1.0)
        code = run.child.wait(timeout_s=10)
        assert code == 0, run.child.log_tail()
        assert reconciliations >= 5, "Prometheus saw too few reconciliations to judge"
        assert not fired, f"alerts fired under fix on: {sorted(fired)}"
    finally:
        run.stop()
