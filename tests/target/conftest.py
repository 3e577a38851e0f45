"""Fixtures of the target's tests: real target processes that never outlive their test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from target_harness import TargetProcess


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], TargetProcess]]:
    """Start `python -m target ARGS`; every process group started is SIGKILLed at teardown."""
    started: list[TargetProcess] = []

    def start(args: list[str]) -> TargetProcess:
        process = TargetProcess(args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill_group()
        assert not process.group_alive(), f"target {process.pid} left processes behind"
