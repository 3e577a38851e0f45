"""`lnchaos bench --instructions`: the counts it reads, the flows it drives, and (marker
`instructions`, with valgrind) a real count in which the target's flow costs more than the
floor's. No instruction thresholds: the figures are the command's output, not the tests'."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from lnchaos import bench, bench_instructions
from lnchaos.bench_instructions import (
    InstructionSettings,
    collected_instructions,
    count_run,
    drive,
    per_flow,
)
from target.common.child import ChildServer

ROOT = Path(__file__).resolve().parents[2]

CALLGRIND_TAIL = """==4242== Events    : Ir
==4242== Collected : 2597658166
==4242==
==4242== I   refs:      2,597,658,166
"""


def test_the_count_is_callgrinds_collected_total() -> None:
    assert collected_instructions("listening on http://127.0.0.1:1\n" + CALLGRIND_TAIL) == (
        2_597_658_166
    )
    # a child that forked prints its own total too: the last one is the server's, at its exit
    assert collected_instructions("==1== Collected : 5\n" + CALLGRIND_TAIL) == 2_597_658_166
    with pytest.raises(RuntimeError, match="no 'Collected'"):
        collected_instructions("==4242== I   refs:      12\n")


def test_a_flow_is_the_difference_of_the_two_runs_over_the_flows() -> None:
    assert per_flow(1_000, 4_000, 300) == 10.0
    with pytest.raises(AssertionError):
        per_flow(1_000, 4_000, 0)


@pytest.mark.parametrize(("flows", "concurrency"), [(0, 8), (100_001, 8), (10, 0), (10, 257)])
def test_settings_out_of_range_are_refused(flows: int, concurrency: int) -> None:
    with pytest.raises(ValueError):
        InstructionSettings(flows=flows, concurrency=concurrency)


def _server(command: list[str], tmp_path: Path, name: str) -> ChildServer:
    child = ChildServer(command, log_path=tmp_path / f"{name}.log", cwd=ROOT, die_with_parent=True)
    return child.start(start_timeout_s=30)


def test_the_target_flows_pay_and_reconcile(tmp_path: Path) -> None:
    """The driver's flows, outside valgrind: 7 payouts from 3 workers, every request answered as
    the driver expects (or it raises), all 7 paid and consistent with the node."""
    with _server(bench_instructions.target_command(tmp_path), tmp_path, "target") as target:
        asyncio.run(drive(target.url, "target", 7, 3))
        report = asyncio.run(_reconciliation(target.url))
    assert report["payouts"]["succeeded"] == 7, report["payouts"]
    assert report["charged_not_paid"]["count"] == 0 and report["paid_not_charged"]["count"] == 0
    assert report["conserved"] is True


async def _reconciliation(url: str) -> dict:
    headers = {"X-Admin-Token": bench.ADMIN_TOKEN}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/admin/reconciliation", headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


def test_the_floor_flows_are_three_requests_each(tmp_path: Path) -> None:
    with _server(bench_instructions.floor_command(), tmp_path, "floor") as floor:
        asyncio.run(drive(floor.url, "floor", 5, 2))  # raises on any failed request
        asyncio.run(drive(floor.url, "floor", 0, 2))  # none: nothing to do


def test_only_loopback_is_driven() -> None:
    with pytest.raises(AssertionError, match="loopback"):
        asyncio.run(drive("http://10.0.0.1:8080", "floor", 1, 1))


def test_without_valgrind_the_command_says_so_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_instructions.shutil, "which", lambda _name: None)
    parser = argparse.ArgumentParser()
    bench.add_options(parser)
    args = parser.parse_args(["--instructions", "--report-dir", str(tmp_path)])
    assert bench.main(args) == 3
    assert "needs valgrind" in capsys.readouterr().out
    assert not (tmp_path / "bench-instructions.json").exists()
    with pytest.raises(RuntimeError, match="valgrind is not installed"):
        count_run(["true"], "floor", 0, 1, tmp_path, "x")


@pytest.mark.instructions
@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_short_count_writes_both_figures(tmp_path: Path) -> None:
    settings = InstructionSettings(flows=20, concurrency=4, report_dir=tmp_path)
    summary = bench_instructions.measure(settings, quiet=True)
    written = json.loads((tmp_path / "bench-instructions.json").read_text())
    assert written == json.loads(json.dumps(summary))
    for mode in ("floor", "target"):
        idle, served = written["runs"][mode]["0"], written["runs"][mode]["20"]
        assert 0 < idle < served, (mode, idle, served)
    floor = written["floor_instructions_per_flow"]
    target = written["target_instructions_per_flow"]
    # A flow of the target signs an invoice and commits a payout; the floor's answers {}.
    assert 0 < floor < target
    assert written["ratio_target_floor"] == pytest.approx(target / floor)
    assert "x the floor" in bench_instructions.render(summary)
