"""Across hosts: the master, the embedded target and the workers as separate processes, each on
an address of its own (127.0.0.0/8 is all loopback: the master on 127.0.0.2, the target on
127.0.0.3), each worker started from an empty folder of its own. Nothing is shared but Locust's
messages: the workers get their options, the target's URL and the phases from the master and
send back their tallies; the test checks that their folders stay empty and that the master's
report folder holds only what the master writes.

Bounded: 10 s of load per run; every process is a ChildProcess (target/common/child.py) in a
session of its own, killed at teardown, and each test asserts that nothing was left behind.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lnchaos.checker.offline import judge_dir
from locustfiles import checker, telemetry
from locustfiles.checker import Tally
from locustfiles.options import settings_from, target_bind_problem
from target.common.child import ChildProcess

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "locustfiles" / "lnchaos_suite.py"
MASTER_HOST = "127.0.0.2"
TARGET_HOST = "127.0.0.3"
LOAD = ["--headless", "-t", "10s", "-u", "6", "-r", "6", "--only-summary"]
EXIT_TIMEOUT_S = 60.0  # 10 s of load, the workers' start, the final wait, the audit, shutdown
WORKER_EXIT_TIMEOUT_S = 20.0  # after the master: Locust's quit message, or its heartbeat timeout
POLL_S = 0.2
SPAWN_WAIT_S = 30.0  # until the master says all users are spawned: the workers' start included
# The chaos schedule: the victim is SIGKILLed this long after all users are spawned, well inside
# the 10 s of load; it has sent its tally (once a second) a few times by then.
KILL_AFTER_S = 3.0


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A master (with the embedded target) and its workers, each a process of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.report_dir = root / "master" / "reports"
        self.port = _free_port(MASTER_HOST)
        self.master: ChildProcess | None = None
        self.workers: list[ChildProcess] = []
        self.worker_dirs: list[Path] = []

    def start_master(self, args: list[str]) -> ChildProcess:
        folder = self.root / "master"
        folder.mkdir(parents=True)
        command = [
            sys.executable, "-m", "locust", "-f", str(SUITE), *LOAD, *args,
            "--master", "--master-bind-host", MASTER_HOST, "--master-bind-port", str(self.port),
            "--expect-workers", "2", "--expect-workers-max-wait", "30",
            "--target-bind", TARGET_HOST, "--report-dir", str(self.report_dir),
        ]  # fmt: skip
        self.master = ChildProcess(
            command, log_path=self.root / "master.log", cwd=folder, name="master"
        ).start()
        return self.master

    def start_worker(self) -> ChildProcess:
        """A worker from an empty folder of its own; its log outside it. Only the master's
        address: its options, the target's URL and the phases come over Locust's messages."""
        n = len(self.workers) + 1
        folder = self.root / f"worker{n}"
        folder.mkdir(parents=True)
        command = [
            sys.executable, "-m", "locust", "-f", str(SUITE), "--worker",
            "--master-host", MASTER_HOST, "--master-port", str(self.port),
        ]  # fmt: skip
        worker = ChildProcess(
            command, log_path=self.root / f"worker{n}.log", cwd=folder, name=f"worker{n}"
        ).start()
        self.workers.append(worker)
        self.worker_dirs.append(folder)
        return worker

    def processes(self) -> list[ChildProcess]:
        return [p for p in (self.master, *self.workers) if p is not None]

    def finish(self) -> int:
        """The master's exit code; then the workers end too (bounded), and nothing is left."""
        assert self.master is not None
        code = self.master.wait(EXIT_TIMEOUT_S, poll_s=POLL_S)
        assert code is not None, f"the master did not exit:\n{self.master.log_tail()}"
        for worker in self.workers:
            if worker.returncode is None:
                worker.wait(WORKER_EXIT_TIMEOUT_S, poll_s=POLL_S)
            assert worker.returncode is not None, f"{worker.name} still runs:\n{worker.log_tail()}"
        self.assert_nothing_left()
        return code

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(p.leftovers() for p in self.processes()):
            time.sleep(POLL_S)
        left = [(p.pid, " ".join(p.cmdline()[:6])) for c in self.processes() for p in c.leftovers()]
        assert not left, f"processes left behind: {left}"

    def report(self) -> dict[str, Any]:
        path = self.report_dir / "consistency.json"
        assert self.master is not None
        assert path.exists(), f"no consistency.json:\n{self.master.log_tail()}"
        return json.loads(path.read_text())

    def assert_nothing_shared(self) -> None:
        """The workers wrote no file (their folders are empty) and the master's report folder
        holds the master's files only: the report, the target's log and the history, where the
        master wrote its own records and the lines each worker sent (docs/history.md)."""
        for folder in self.worker_dirs:
            assert list(folder.iterdir()) == [], f"a worker wrote into {folder}"
        found = {p.name for p in self.report_dir.iterdir()}
        assert found == {"consistency.json", "target.log", "history"}
        names = sorted(p.name for p in (self.report_dir / "history").iterdir())
        assert "master.jsonl" in names and len(names) == 1 + len(self.worker_dirs), names

    def kill_all(self) -> None:
        for process in reversed(self.processes()):
            process.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    yield made
    made.kill_all()


def _start(cluster: Cluster, args: list[str]) -> None:
    cluster.start_master(args)
    cluster.start_worker()
    cluster.start_worker()


def _assert_target_on_its_address(cluster: Cluster) -> None:
    assert cluster.master is not None
    log = cluster.master.log_text()
    assert f"embedded target http://{TARGET_HOST}:" in log, cluster.master.log_tail()
    for worker in cluster.workers:  # no worker started a target of its own
        assert "embedded target" not in worker.log_text()


def _assert_two_workers_paid(report: dict[str, Any]) -> None:
    workers = report["workers"]
    assert len(workers) == 2, workers
    assert sorted(w["index"] for w in workers.values()) == [0, 1]
    for worker_id, worker in workers.items():
        assert worker["payouts"] > 0, (worker_id, worker)
        assert worker["checks"]["passed"] > 0, (worker_id, worker)
        assert not worker["lost"], (worker_id, worker)
    assert sum(w["payouts"] for w in workers.values()) == sum(report["payouts_by_outcome"].values())
    assert report["workers_lost"] == []
    # the workers' counts of checks crossed with their tallies: the table agrees with them
    counted = {row["name"]: row for row in report["counters"] if row["type"] == "CHECK"}
    for name, checks in report["checks"]["by_name"].items():
        if name not in ("reconciliation", "final_audit"):
            assert counted[name]["count"] == checks["passed"] + checks["failed"], name
            assert counted[name]["failures"] == checks["failed"], name


def test_master_target_and_two_workers_fix_on_passes(cluster):
    _start(cluster, ["--fix", "on"])
    code = cluster.finish()
    report = cluster.report()
    assert code == 0, (report["reason"], cluster.master.log_tail())
    assert report["verdict"] == "pass"
    _assert_two_workers_paid(report)
    assert all(w["retries"] > 0 for w in report["workers"].values()), report["workers"]
    _assert_target_on_its_address(cluster)
    cluster.assert_nothing_shared()


def test_master_target_and_two_workers_fix_off_exits_3(cluster):
    # --retry-share 0 is given to the master only: the workers get it with Locust's spawn message
    _start(cluster, ["--fix", "off", "--timeout-rate", "0.05", "--retry-share", "0"])
    code = cluster.finish()
    report = cluster.report()
    assert code == 3, (report["reason"], cluster.master.log_tail())
    assert report["inconsistencies"]["charged_not_paid"]["count"] > 0
    _assert_two_workers_paid(report)
    # the workers' own checks caught it, each in its own tally
    assert sum(w["inconsistencies"] for w in report["workers"].values()) > 0
    assert all(w["retries"] == 0 for w in report["workers"].values()), report["workers"]
    cluster.assert_nothing_shared()


def test_a_worker_killed_mid_run_is_named_and_the_verdict_is_written(cluster):
    # timeouts enough that some resolve in 10 s on a busy machine: "nothing proven" (exit 4)
    # comes before a lost worker's 1, and this test is about the lost worker
    _start(cluster, ["--fix", "on", "--timeout-rate", "0.1"])
    assert cluster.master is not None
    victim = cluster.workers[1]

    # kill it once the master's log shows the load running and the victim has had time to
    # report (its tally goes out once a second): wait on the master's own word, bounded
    def spawned() -> bool:
        return "All users spawned" in cluster.master.log_text()

    cluster.master.wait(SPAWN_WAIT_S, until=spawned, poll_s=POLL_S)
    assert spawned(), f"the load did not start:\n{cluster.master.log_tail()}"
    killed_at = time.time() + KILL_AFTER_S
    victim.wait(KILL_AFTER_S, until=lambda: time.time() >= killed_at, poll_s=POLL_S)
    assert victim.returncode is None, victim.log_tail()
    victim.signal(signal.SIGKILL)
    code = cluster.finish()
    assert victim.returncode == -signal.SIGKILL
    report = cluster.report()
    # the money was fine (fix on); the lost worker alone makes the code: 1, Locust's failure
    assert code == 1, (report["reason"], cluster.master.log_tail())
    assert report["verdict"] == "fail"
    assert report["inconsistencies_total"] == 0, report["reason"]
    lost = report["workers_lost"]
    assert len(lost) == 1, lost
    name = lost[0]["worker"]
    assert report["workers"][name]["lost"] is True
    assert lost[0]["state"] in ("missing", "gone")
    assert lost[0]["payouts_reported"] > 0
    assert 0 < lost[0]["last_report_s"] < report["duration_s"]
    assert lost[0]["last_report_unix"] <= killed_at + 1.0
    assert name in report["reason"] and "lost mid-run" in report["reason"]
    survivor = [w for worker_id, w in report["workers"].items() if worker_id != name]
    assert len(survivor) == 1 and not survivor[0]["lost"]
    # the target's reconciliation covers the run's payouts, the lost worker's among them
    reconciled = sum(report["reconciliation"]["payouts"].values())
    reported = sum(w["payouts"] for w in report["workers"].values())
    assert reconciled >= reported > survivor[0]["payouts"]
    assert report["reconciliation"]["unresolved"]["count"] == 0
    cluster.assert_nothing_shared()
    # judged again from the history, the lost worker's lines up to its last report: the same
    offline = judge_dir(cluster.report_dir)
    for key in ("verdict", "exit_code", "reason", "workers_lost", "payouts_by_outcome", "checks"):
        assert offline[key] == report[key], key


def test_the_suite_refuses_a_target_bind_beyond_loopback_without_a_token():
    def settings(**options):
        return settings_from(SimpleNamespace(**options))

    assert target_bind_problem(settings()) is None  # 127.0.0.1
    assert target_bind_problem(settings(target_bind="127.0.0.3")) is None
    problem = target_bind_problem(settings(target_bind="10.1.2.3"))
    assert problem is not None and "--target-bind 10.1.2.3 is not a loopback address" in problem
    assert target_bind_problem(settings(target_bind="10.1.2.3", admin_token="T")) is None
    wildcard = target_bind_problem(settings(target_bind="0.0.0.0", admin_token="T"))
    assert wildcard is not None and "wildcard" in wildcard


def test_a_run_with_a_target_bind_beyond_loopback_and_no_token_stops_with_5(locust_run):
    """Refused before anything is bound: the verdict says why, the exit code is the target's."""
    run = locust_run(["--headless", "-t", "2s", "--target-bind", "10.1.2.3"])
    code = run.finish(30.0)
    assert code == 5, run.log_tail()
    report = run.report()
    assert "--target-bind 10.1.2.3 is not a loopback address" in report["reason"]
    assert "needs an explicit --admin-token" in report["target_error"]


# ---- the verdict's side of it, without processes ------------------------------------------------


class _FakeWorkerNode:
    def __init__(self, state: str) -> None:
        self.state = state


class _FakeMaster:
    """What the collector reads of Locust's master: its listed workers and their indexes."""

    def __init__(self, states: dict[str, str]) -> None:
        self.clients = {node_id: _FakeWorkerNode(state) for node_id, state in states.items()}
        self.worker_indexes = {node_id: i for i, node_id in enumerate(states)}


def _tally(run_id: str, payouts: int, seq: int, *, final: bool = False) -> dict[str, Any]:
    """A worker's cumulative tally as it crosses: its `seq` orders a worker's reports."""
    tally = Tally(run_id)
    for _ in range(payouts):
        tally.record_payout("normal", "succeeded", 3.0)
        tally.record_check(checker.BALANCE_AFTER_SUCCESS, passed=True)
    return {**tally.to_dict(), "seq": seq, telemetry.FINAL_KEY: final}


def test_the_collector_names_the_workers_whose_final_tally_never_came():
    master = _FakeMaster(
        {"done": "running", "killed": "missing", "late": "ready", "silent": "missing"}
    )
    collector = telemetry.Collector(master)
    collector.run_id = "r1"
    collector.on_tally("done", _tally("r1", 3, seq=1))
    collector.on_tally("done", _tally("r1", 5, seq=2, final=True))
    collector.on_tally("done", _tally("r1", 5, seq=3))  # a periodic report after the final one
    collector.on_tally("killed", _tally("r1", 2, seq=1))
    collector.on_tally("killed", _tally("earlier run", 9, seq=2, final=True))  # not this run's
    collector.note_workers()
    report = collector.workers_report()
    assert {node_id for node_id, w in report.items() if w["lost"]} == {"killed", "silent"}
    assert report["late"]["reports"] == 0  # listed, never learned the run: not lost
    assert report["killed"]["last_report_s"] is not None and report["silent"]["reports"] == 0
    section = checker.workers_section(report)
    assert section["done"]["payouts"] == 5 and section["killed"]["payouts"] == 2
    assert section["done"]["checks"] == {"passed": 5, "failed": 0}
    lost = checker.workers_lost(section)
    assert [entry["worker"] for entry in lost] == ["killed", "silent"]
    assert lost[0]["state"] == "missing" and lost[0]["payouts_reported"] == 2


def test_a_lost_worker_fails_the_run_with_1_after_the_money_and_locust():
    base = dict(verified=10, threshold=0, target_error=None)
    lost = ["worker w (index 1, Locust state missing): its last report at 4.0 s, 7 payouts"]
    verdict, code, reason = checker.decide(
        inconsistencies_total=0, locust_exit_code=0, workers_lost=lost, **base
    )
    assert (verdict, code) == ("fail", 1)
    assert "1 worker(s) lost mid-run" in reason and "worker w" in reason
    assert (
        checker.decide(inconsistencies_total=2, locust_exit_code=0, workers_lost=lost, **base)[1]
        == 3
    )
    assert (
        checker.decide(inconsistencies_total=0, locust_exit_code=2, workers_lost=lost, **base)[1]
        == 2
    )
    assert checker.decide(inconsistencies_total=0, locust_exit_code=0, **base)[1] == 0
