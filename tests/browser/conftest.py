"""Fixtures of the browser tests: the suite's `locust` runs (tests/locustfiles/conftest.py) and a
headless Chromium, Debian's (`apt-get install chromium`, as .ci/run does), driven by Playwright
for Python. Playwright never downloads a browser here: it is given the system's executable.
Where Chromium or Playwright is absent the tests skip, saying so."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LNCHAOS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the screenshots: the tests' report folder, kept as CI's artifact with the rest of reports/
REPORT_DIR = REPO / "reports" / "browser"

# the suite's run fixtures, shared with tests/locustfiles (one definition of a run's life)
_spec = importlib.util.spec_from_file_location(
    "lnchaos_locust_fixtures", REPO / "tests" / "locustfiles" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
locust_run = _fixtures.locust_run
free_port = _fixtures.free_port


@pytest.fixture
def browser_page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page of a headless system Chromium (skips where there is none)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install -e '.[browser]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """reports/browser/<test name>/: where the test's screenshots go."""
    folder = REPORT_DIR / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
