"""Playwright driving Debian's Chromium, headless: what a user of the console and pages sees.

Playwright's own downloaded browsers are not used (nor reachable): ``/usr/bin/chromium``
(Debian's ``chromium`` package, installed by ``make test``) is launched with the flags a
sandboxed CI machine needs. One browser per test module; each test gets a fresh context (no
cookies or storage shared between tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = os.environ.get("SURGE_TEST_CHROMIUM", "/usr/bin/chromium")
#: No GPU, no sandbox (root in CI), and none of Chromium's calls home, which a closed network
#: refuses one by one and slowly.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Module scope, not session: sync Playwright keeps an event loop running in the main thread
# while it is started, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(20_000)  # a loaded 2-core machine; waits end on success
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
