"""The mutation runs: made once per session for the tests selected, two at a time, and the
table of what caught each mutant (and when) printed in the terminal summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mutant_patches import CONTROL, CONTROL_CRASH, CONTROL_DRAIN, CONTROLS
from mutant_runs import PARALLEL, RunResult, run_many, table, verdict_of

RESULTS: pytest.StashKey[tuple[dict[str, RunResult], Path]] = pytest.StashKey()


def _selected(session: pytest.Session) -> list[str]:
    """The runs the selected tests need: the control and the mutants named by their params."""
    names: list[str] = []
    for item in session.items:
        if item.get_closest_marker("mutants") is None:
            continue
        if getattr(item, "originalname", None) == "test_control_passes":
            names.append(CONTROL)
        if getattr(item, "originalname", None) == "test_crash_control_passes":
            names.append(CONTROL_CRASH)
        if getattr(item, "originalname", None) == "test_drain_control_passes":
            names.append(CONTROL_DRAIN)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "name" in callspec.params:
            names.append(callspec.params["name"])
    ordered = sorted(dict.fromkeys(names), key=lambda name: name not in CONTROLS)  # controls first
    return ordered


@pytest.fixture(scope="session")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunResult]]:
    workdir = tmp_path_factory.mktemp("mutants")
    results = run_many(_selected(request.session), workdir, parallel=PARALLEL)
    request.config.stash[RESULTS] = (results, workdir)
    yield results


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(RESULTS, None)
    if found is None:
        return
    results, workdir = found
    terminalreporter.write_sep("=", "what the suite catches (mutants)")
    terminalreporter.write_line(table(results))
    for name, result in results.items():
        terminalreporter.write_line(f"- {name}: {verdict_of(name, result)} ({result.wall_s:.0f} s)")
    terminalreporter.write_line(f"logs and reports: {workdir}")
