"""A person who opens the API in a browser gets a page, not a JSON 404."""

from __future__ import annotations

import httpx


def test_root_redirects_to_the_reference(api: str) -> None:
    response = httpx.get(api + "/")
    assert response.status_code == 307
    assert response.headers["location"] == "/docs"


def test_reference_lists_every_documented_operation(api: str) -> None:
    page = httpx.get(api + "/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    doc = httpx.get(api + "/openapi.json").json()
    for path, methods in doc["paths"].items():
        assert f"<code>{path}</code>" in page.text
        for method in methods:
            assert f'<span class="method">{method}</span> <code>{path}</code>' in page.text
