"""Fixtures of the target's tests: real target processes that never outlive their test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from target_harness import TargetProcess


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[list[str]], TargetProcess]]:
    """Start `python -m target ARGS` and wait for its URL; every target started is killed at
    teardown (its group and every descendant seen) and must leave nothing behind."""
    started: list[TargetProcess] = []

    def start(args: list[str]) -> TargetProcess:
        process = TargetProcess(args, log_path=tmp_path / f"target-{len(started)}.log")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
        assert not process.group_alive(), f"target {process.pid} left processes behind"
        assert not process.leftovers(), f"target {process.pid} left {process.leftovers()}"
