"""Teeth, measured: the suite against mutants of the target, each one small money bug.

Marked `mutants` and left out of the default run (pyproject's addopts); run them with
`python -m pytest -q -m mutants` (about 4 min on 2 cores: 18 runs of ~27 s, two at a time; the
traffic classes' mutants with their class alone, each found by that class's own check).
The selected runs are made once, in parallel, by a module fixture; each test then judges one:
- every mutant: the run fails with exit code 3 and reports one of the kinds the mutant declares;
- the control (the target as it is, same settings, same seed): the run passes with exit code 0,
  and every flow was exercised, so a failure above is the mutant's doing.
The table of what caught what, and
when, is printed at the end of the module (`tests/mutants/RESULTS.md` holds a measured one).

Unmarked (in the default run, a second each): every patch target still resolves, and a missing
one makes the launcher fail loudly instead of serving an unpatched target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mutant_patches import (
    CONTROL,
    CONTROL_CRASH,
    CONTROL_DRAIN,
    CONTROL_MIXES,
    MUTANTS,
    check_all_targets,
)
from mutant_runs import EXIT_INCONSISTENT, EXIT_NOTHING_VERIFIED, HOOK, REPO, RunResult

HERE = Path(__file__).resolve().parent
SUITE_TIMEOUT_S = 900  # the first test waits for all selected runs (about 250 s)
# The `runs` fixture (conftest.py) makes the selected runs once, in parallel.


def _describe(result: RunResult) -> str:
    kinds = {kind: entry.get("count") for kind, entry in result.kinds.items()}
    return f"exit {result.exit_code}, kinds {kinds}, reason: {result.reason} (in {result.workdir})"


@pytest.mark.mutants
@pytest.mark.timeout(SUITE_TIMEOUT_S)
@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught(name: str, runs: dict[str, RunResult]) -> None:
    mutant, result = MUTANTS[name], runs[name]
    assert result.broken is None, result.broken
    if mutant.window:
        # a coverage mutant: nothing wrong with the money, a window never reached (exit 4)
        assert result.exit_code == EXIT_NOTHING_VERIFIED, _describe(result)
        assert result.window_not_reached(mutant.window), _describe(result)
        return
    if mutant.crash:
        # a crash mutant has its chance only where a restart meets an attempt the node took
        assert result.node_took > 0, f"{result.recoveries} recoveries; {_describe(result)}"
    assert result.exit_code == EXIT_INCONSISTENT, _describe(result)
    assert result.detected(mutant.expect), f"expected one of {mutant.expect}; {_describe(result)}"
    if mutant.check:
        # a traffic class's mutant: run with that class alone, found by its own check
        assert result.checks_finding(mutant.expect) == {mutant.check}, _describe(result)
    if mutant.source:
        # a source's mutant (the final audit's, rule 4): that source is among those that found it
        assert result.found_by(mutant.expect, mutant.source), _describe(result)


@pytest.mark.mutants
@pytest.mark.timeout(SUITE_TIMEOUT_S)
def test_control_passes(runs: dict[str, RunResult]) -> None:
    result = runs[CONTROL]
    assert result.broken is None, result.broken
    assert result.exit_code == 0, _describe(result)
    assert not result.kinds, _describe(result)
    report = result.report
    # the settings exercise every flow the mutants break, within the run time
    outcomes = report["payouts_by_outcome"]
    assert outcomes["succeeded"] > 0 and outcomes["failed"] > 0 and outcomes["pending"] > 0
    by_name = report["checks"]["by_name"]
    for check in ("balance_after_success", "balance_after_failure", "resolved_vs_node_truth"):
        assert by_name[check]["passed"] > 0, check
    assert by_name["idempotent_retry"]["passed"] > 0
    assert report["reconciliation"]["conserved"] is True
    # every coverage mutant's window is required and reached here: its exit 4 is its doing
    # (one run with a traffic mix of its own has its own control: test_drain_control_passes)
    _assert_windows_reached(result, mix=None)


def _assert_windows_reached(result: RunResult, mix: str | None) -> None:
    """Each window of the coverage mutants run with `mix` (None: the default) is required and
    reached in this control run."""
    for mutant in MUTANTS.values():
        if mutant.window and mutant.traffic_mix == mix:
            entry = result.report["coverage"][mutant.window]
            assert entry["required"] and entry["count"] > 0, (mutant.window, entry)


@pytest.mark.mutants
@pytest.mark.timeout(SUITE_TIMEOUT_S)
def test_drain_control_passes(runs: dict[str, RunResult]) -> None:
    """The target as it is with the drain class alone (wallet_sends_one_at_a_time's settings):
    it passes, and its drain rounds reach two_at_once as required, so that mutant's exit 4 is
    its doing."""
    result = runs[CONTROL_DRAIN]
    assert result.broken is None, result.broken
    assert result.exit_code == 0, _describe(result)
    assert not result.kinds, _describe(result)
    assert result.report["reconciliation"]["conserved"] is True
    _assert_windows_reached(result, mix=CONTROL_MIXES[CONTROL_DRAIN])


@pytest.mark.mutants
@pytest.mark.timeout(SUITE_TIMEOUT_S)
def test_crash_control_passes(runs: dict[str, RunResult]) -> None:
    """The target as it is, under the crash mutants' crashes: it passes, it was killed and
    restarted, and its restarts met payouts whose attempt the node had taken but the wallet had
    never recorded (the path the crash mutants break), so a crash mutant caught is the mutant's
    doing."""
    result = runs[CONTROL_CRASH]
    assert result.broken is None, result.broken
    assert result.exit_code == 0, _describe(result)
    assert not result.kinds, _describe(result)
    crashes = result.report["crashes"]
    assert crashes["count"] >= 2 and crashes["recovered"] == crashes["count"], crashes
    assert result.node_took > 0, (
        f"no restart met an attempt the node had taken ({result.recoveries} recoveries)"
    )
    assert result.report["reconciliation"]["conserved"] is True


def _hooked(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOK), str(REPO)]),
           "LNCHAOS_MUTANT": name}  # fmt: skip
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_crash_hook_patches_the_target_and_nothing_else() -> None:
    """The hook on the crash runs' PYTHONPATH patches `python -m target` (every start of the
    embedded target) and leaves any other process (Locust) alone."""
    name = "recovery_cancels_unrecorded_attempt"
    target = _hooked(name, "-m", "target", "--help")
    assert target.returncode == 0, target.stderr
    assert f"mutant {name} applied" in target.stderr
    other = _hooked(name, "-c", "import target.payouts")
    assert other.returncode == 0, other.stderr
    assert "applied" not in other.stderr


def test_patch_targets_resolve() -> None:
    """Every method, constant and anchor the mutants patch is still where the table says
    (after a refactor this fails first: re-aim PATCH_TARGETS / ANCHORS in mutant_patches.py)."""
    check_all_targets()
    assert len(MUTANTS) >= 12
    assert len({m.bug_class for m in MUTANTS.values()}) == len(MUTANTS), "one class per mutant"


def test_a_missing_patch_target_fails_loudly() -> None:
    """The launcher refuses to serve when a patch target is gone (exit 97), instead of serving
    the unpatched target, which would make the mutant look caught or missed for no reason."""
    code = (
        "import sys, mutant_patches, launch\n"
        "mutant_patches.PATCH_TARGETS['settle'] = 'target.payouts:PayoutService.settle_gone'\n"
        "sys.exit(launch.main(['saga_confirm_charges_fee_reserve', '--', '--port', '0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 97, done.stderr
    assert "patch target missing" in done.stderr and "settle_gone" in done.stderr
    assert "listening on" not in done.stdout


def test_every_mutant_changes_the_target() -> None:
    """Each mutant, applied, replaces at least one of the target's patch targets: a mutant whose
    patch was lost (a merge once dropped two `replace(...)` lines) would serve the unpatched
    target and fail its run for no money reason. In a fresh interpreter, each mutant applied
    and then undone."""
    code = (
        "import json, mutant_patches as m\n"
        "inert = []\n"
        "for name, mutant in sorted(m.MUTANTS.items()):\n"
        "    keys = sorted(m.PATCH_TARGETS)\n"
        "    before = {k: m.resolve(k) for k in keys}\n"
        "    m.apply(name)\n"
        "    after = {k: m.resolve(k)[2] for k in sorted(m.PATCH_TARGETS)}\n"
        "    if all(after.get(k) is before[k][2] for k in keys) and len(after) == len(keys):\n"
        "        inert.append(name)\n"
        "    for owner, attr, original in before.values():\n"
        "        setattr(owner, attr, original)\n"
        "print(json.dumps(inert))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    inert = json.loads(done.stdout.strip().splitlines()[-1])
    assert inert == [], f"mutants that change none of the target's patch targets: {inert}"
