"""The API reference page in a real browser: it renders and passes axe-core."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.accessibility import assert_accessible


def test_api_reference_page_renders_and_is_accessible(api: str, page: Page) -> None:
    response = page.goto(api + "/docs")
    assert response is not None and response.status == 200
    assert page.locator("h1").first.is_visible()
    assert_accessible(page)
