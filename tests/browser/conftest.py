"""Browser tests: the web console in Debian's Chromium driven by Playwright, against a real server on 127.0.0.1.

Every test module here is marked ``browser``; the tests are skipped where Chromium or Playwright is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (the system one: nothing is downloaded)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
