"""Checks every browser test can make of a page: axe-core's rules, and screenshots for docs/."""

from __future__ import annotations

import os
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

_AXE = Axe()
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def assert_accessible(page: Page) -> None:
    """Fail on any serious or critical axe-core violation of the page as it is now."""
    results = _AXE.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    if bad:
        lines = [
            f"{v['impact']}: {v['id']} — {v['help']} ({len(v['nodes'])} element(s), first: "
            f"{v['nodes'][0]['html'][:200] if v['nodes'] else '?'})"
            for v in bad
        ]
        raise AssertionError(f"axe-core on {page.url}:\n" + "\n".join(lines))


def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    """Take a screenshot; it replaces ``docs/screenshots/<name>.png`` only when
    ``SURGE_UPDATE_SCREENSHOTS=1`` (so a test run does not dirty the working tree)."""
    target = SCREENSHOTS if os.environ.get("SURGE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
