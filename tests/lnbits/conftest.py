"""Fixtures of the LNbits runs (marker `lnbits`): the installed LNbits (the release in
$LNCHAOS_LNBITS_VERSION, 1.6.2 by default), installed once into the cache (harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import install, lnbits_version


@pytest.fixture(scope="session")
def lnbits_venv() -> Iterator[Path]:
    yield install(lnbits_version())
