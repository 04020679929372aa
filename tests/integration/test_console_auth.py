"""Signing in to the console over real HTTP: passwords, sessions, CSRF, roles, TOTP, the
login throttle shared by API processes, the audit log, and `surge user create`."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator

import httpx
import psycopg
import pyotp
import pytest

from surge.db.embedded import free_port
from tests.conftest import SURGE, Process, create_org, start_api, surge_env

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    # A small per-email limit keeps the throttle test short.
    return surge_env(database_url, SURGE_CONSOLE_LOGIN_FAILURES_PER_EMAIL="3")


def add_user(database_url: str, org: str, email: str, role: str, password: str = PASSWORD) -> int:
    proc = subprocess.run(
        [SURGE, "user", "create", "--org", org, "--email", email, "--role", role, "--json"],
        input=password + "\n",
        env=surge_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return int(re.search(r'"id": (\d+)', proc.stdout).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def org(database_url: str) -> str:
    return str(create_org(database_url, "Console Org")["id"])


@pytest.fixture(scope="module")
def people(database_url: str, org: str) -> dict[str, int]:
    return {
        role: add_user(database_url, org, f"{role}@example.org", role)
        for role in ("owner", "admin", "editor", "viewer")
    }


def browser(api: str) -> httpx.Client:
    """A client that behaves like a browser on the console: same-origin, cookies kept."""
    return httpx.Client(base_url=api, headers={"Origin": api}, timeout=30)


def token_of(response: httpx.Response) -> str:
    found = CSRF.search(response.text)
    assert found, response.text
    return found.group(1)


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/console/login")
    assert page.status_code == 200
    form = {"email": email, "password": password, "csrf_token": token_of(page)}
    return client.post("/console/login", data=form)


def signed_in(api: str, email: str) -> httpx.Client:
    client = browser(api)
    response = login(client, email)
    assert response.status_code == 303, response.text
    return client


def audit_actions(database_url: str, org: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select action from audit_log where organization_id = %s order by id", [int(org)]
        ).fetchall()
    return [r[0] for r in rows]


def test_login_opens_a_session_and_the_overview(api: str, people: dict[str, int]) -> None:
    client = browser(api)
    assert client.get("/console/").status_code == 303  # to the login page
    response = login(client, "viewer@example.org")
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert "surge_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # SURGE_PUBLIC_URL is http here
    page = client.get("/console/")
    assert page.status_code == 200 and "Console Org" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_wrong_password_rerenders_the_form_with_the_error(api: str, people: dict[str, int]) -> None:
    response = login(browser(api), "editor@example.org", "not the password at all")
    assert response.status_code == 400
    assert "not right" in response.text and 'value="editor@example.org"' in response.text


def test_console_pages_stay_out_of_openapi_and_unknown_pages_are_html_404(
    api: str, people: dict[str, int]
) -> None:
    paths = httpx.get(api + "/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    client = signed_in(api, "viewer@example.org")
    missing = client.get("/console/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


def test_static_files_are_cached_by_content_hash(api: str) -> None:
    page = httpx.get(api + "/console/login")
    url = re.search(r'src="(/console/static/[0-9a-f]+/htmx\.min\.js)"', page.text).group(1)  # type: ignore[union-attr]
    first = httpx.get(api + url, headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200 and "immutable" in first.headers["cache-control"]
    assert first.headers["content-encoding"] == "gzip" and b"htmx" in first.content
    again = httpx.get(api + url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    stale = httpx.get(api + "/console/static/0000/htmx.min.js")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
