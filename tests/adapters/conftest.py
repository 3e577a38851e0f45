"""Fixtures of the adapter tests: ACME's adapter package (acme_payouts/, outside the project's
packages) installed as a package is, into a folder of the test's own, and seen by this process
and the locust runs it starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from adapters_harness import HERE, pip_install


@pytest.fixture(scope="session")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ACME's adapter installed into a folder of its own (the test's environment is this folder
    on sys.path / PYTHONPATH)."""
    return pip_install(HERE / "acme_payouts", tmp_path_factory.mktemp("acme") / "site")


@pytest.fixture
def with_site(acme_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process and the children it starts see the installed package."""
    monkeypatch.syspath_prepend(str(acme_site))
    monkeypatch.setenv("PYTHONPATH", str(acme_site))
    yield acme_site
