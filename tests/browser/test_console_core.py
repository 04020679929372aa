"""The console's core pages in a real browser: sign in through the login page, visit every
page, axe-core on each (0 serious or critical violations), screenshots for docs/."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from surge.audit import Actor
from surge.db.pool import connect
from surge.orgs import service as orgs
from surge.users import service as users
from tests.browser.accessibility import assert_accessible, screenshot

PASSWORD = "correct horse battery staple"
PAGES = ("/console/jobs", "/console/keys", "/console/users", "/console/audit", "/console/account")


@pytest.fixture(scope="module")
def owner(database_url: str) -> str:
    """An organisation mid giving day: a message sending, events and donations today."""

    async def make() -> int:
        conn = await connect(database_url)
        try:
            org = (await orgs.create_organization(conn, "Harbour Food Bank")).id
            await users.create_user(
                conn,
                Actor.cli(org),
                email="ada@harbour.example",
                name="Ada Lovelace",
                role="owner",
                password=PASSWORD,
            )
            return org
        finally:
            await conn.close()

    # Playwright's sync API runs its own event loop in this thread.
    with ThreadPoolExecutor(1) as pool:
        org = pool.submit(asyncio.run, make()).result()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into event_counts (organization_id, type, minute, count) values"
            " (%s, 'page', date_trunc('minute', now()), 5400),"
            " (%s, 'page', date_trunc('minute', now()) - interval '1 minute', 7200)",
            [org, org],
        )
        campaign = conn.execute(
            "insert into campaigns (organization_id, name, kind, currency)"
            " values (%s, 'Giving Tuesday', 'fundraising', 'USD') returning id",
            [org],
        ).fetchone()[0]  # type: ignore[index]
        message = conn.execute(
            "insert into messages (organization_id, campaign_id, subject, from_email, list_ids,"
            " status) values (%s, %s, 'Double your gift until midnight', 'hi@harbour.example',"
            " '{}', 'sending') returning id",
            [org, campaign],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into message_stats (message_id, organization_id, total, sent, failed)"
            " values (%s, %s, 120000, 48250, 12)",
            [message, org],
        )
        conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
            " amount_minor, currency, email, status, succeeded_at)"
            " select %s, %s, 'k' || i, '\\x00', 2500 + i * 100, 'USD', 'd@example.org',"
            " 'succeeded', now() from generate_series(1, 40) i",
            [org, campaign],
        )
    return "ada@harbour.example"


def test_console_pages_are_accessible_after_a_real_login(
    api: str, owner: str, page: Page, tmp_path: Path
) -> None:
    page.goto(api + "/console/")
    expect(page).to_have_url(api + "/console/login?next=/console/")
    assert_accessible(page)
    screenshot(page, "console-login", tmp_path)

    page.get_by_label("Email address").fill(owner)
    page.get_by_label("Password").fill("not the password, sorry")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    assert_accessible(page)  # the form with its error

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # The live figures arrive over SSE (htmx's extension), not with the page.
    expect(page.locator(".figure").first).to_be_visible()
    expect(page.get_by_text("Double your gift until midnight")).to_be_visible()
    expect(page.locator(".figures")).to_contain_text("1,820.00 USD")
    assert_accessible(page)
    screenshot(page, "console-overview", tmp_path)

    for path in PAGES:
        page.goto(api + path)
        expect(page.locator("h1")).to_be_visible()
        assert_accessible(page)

    # Forms keep working with their errors shown, and enrolment shows its secret.
    page.goto(api + "/console/keys")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#name-error")).to_be_visible()
    assert_accessible(page)
    page.goto(api + "/console/account")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page.locator("#totp-secret")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(api + "/console/login")
