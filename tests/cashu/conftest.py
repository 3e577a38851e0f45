"""Fixtures of the Nutshell runs (marker `cashu`): the installed Nutshell (the release in
$LNCHAOS_NUTSHELL_VERSION, 0.21.0 by default), installed once into the cache (harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nutshell_harness import install, nutshell_version


@pytest.fixture(scope="session")
def nutshell_venv() -> Iterator[Path]:
    yield install(nutshell_version())
