"""Browser tests: the web console in Debian's Chromium driven by Playwright, against a real server on 127.0.0.1.

Every test module here is marked ``browser``; the tests are skipped where Chromium or Playwright is missing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (the system one: nothing is downloaded), one per test module: Playwright's sync API
    keeps an asyncio loop running on the main thread while it is open, and a session-wide one made every later
    test of that pytest worker that calls ``asyncio.run`` fail ("cannot be called from a running event loop")."""
    if CHROMIUM is None:
        pytest.skip("Chromium is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(chromium, server):
    """A logged-in tab of the module's ``server`` (the key typed into the login page, as a user does); the test
    module fails if any page logged a script error."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    tab.goto(f"{server.url}/ui/jobs")
    tab.wait_for_url(re.compile(r"/ui/login\?next="))
    tab.fill("#api-key", server.keys["acme"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/ui/jobs$"))
    yield tab
    context.close()
    assert not errors, errors  # no script error on any page
