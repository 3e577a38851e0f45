"""Fixtures of the LNbits runs (marker `lnbits`): the installed LNbits, a node, an LNbits on it,
and the suite's run against them, each stopped with every child at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import VERSION_ENV, install, lnbits_version  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--lnbits-version",
        default=None,
        help=f"LNbits release the lnbits tests install and judge (default: ${VERSION_ENV} or "
        "1.6.2)",
    )


@pytest.fixture(scope="session")
def lnbits_venv(request: pytest.FixtureRequest) -> Iterator[Path]:
    version = request.config.getoption("--lnbits-version") or lnbits_version()
    os.environ[VERSION_ENV] = version
    yield install(version)
