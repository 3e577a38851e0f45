"""`lnchaos soak` for 5 minutes at saturation (marker `soak`, issue 24): spike cycles, every
traffic class, the target SIGKILLed every 45 s, the node's timeouts, late settles and failures.
Fix on must pass with memory flat after warm-up and the verdict within its bound; fix off must
fail with 3 (in 2 minutes). Each run is bounded by lnchaos soak itself (run time + start, final
wait, exit) and by this test's timeout; it leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_TIME = "5m"
# fix off fails within its first cycle: two minutes show it across two kills and two spike
# cycles, and the marker keeps to its share of CI's 45 minutes (the five minutes are fix on's,
# to hold flat; the markers took 46:30 with three minutes here)
FIX_OFF_RUN_TIME = "2m"
RUN_BOUND_S = 300 + 300  # the load, then start, final wait, crashes' recoveries and exit
pytestmark = [pytest.mark.soak, pytest.mark.timeout(RUN_BOUND_S + 60)]


def soak(tmp_path: Path, fix: str, seed: int, run_time: str = RUN_TIME) -> tuple[int, dict]:
    report_dir = tmp_path / f"soak-{fix}"
    command = [
        sys.executable, "-m", "lnchaos.cli", "soak", "-t", run_time, "--fix", fix,
        "--seed", str(seed), "--report-dir", str(report_dir),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=RUN_BOUND_S, check=False
    )
    summary = json.loads((report_dir / "soak.json").read_text())
    assert summary["exit_code"] == done.returncode, done.stdout[-3000:]
    return done.returncode, summary


def no_process_left() -> list[str]:
    return [
        " ".join(p.info["cmdline"] or [])[:120]
        for p in psutil.process_iter(["cmdline"])
        if "lnchaos_suite.py" in " ".join(p.info["cmdline"] or [])
        or "-m target" in " ".join(p.info["cmdline"] or [])
    ]


def test_fix_on_holds_five_minutes_flat(tmp_path: Path) -> None:
    code, summary = soak(tmp_path, "on", seed=24)
    verdict = summary["verdict"]
    assert code == 0, (summary["bounds_broken"], verdict)
    assert verdict["verdict"] == "pass" and verdict["inconsistencies_total"] == 0, verdict
    assert verdict["payouts_verified"] > 1000, verdict
    assert verdict["crashes"] >= 4, verdict  # the target was killed mid-run, every 45 s
    for role in ("locust", "target"):
        growth = summary["memory"][role]["growth_after_warmup"]
        assert growth is not None and growth <= summary["memory_growth_max"], (role, growth)
    assert summary["verdict_cost_s"] <= summary["verdict_bound_s"], summary["verdict_cost_s"]
    assert summary["loop_lag_ms_max"] is not None and summary["journal_queued_max"] is not None
    assert not no_process_left()


def test_fix_off_fails_with_three(tmp_path: Path) -> None:
    code, summary = soak(tmp_path, "off", seed=24, run_time=FIX_OFF_RUN_TIME)
    assert code == 3, summary["verdict"]
    assert summary["verdict"]["kinds"].get("charged_not_paid", 0) > 0, summary["verdict"]
    assert not no_process_left()
