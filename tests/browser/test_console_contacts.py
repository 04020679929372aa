"""The contacts pages in a real browser: sign in through the login page, import a CSV through
the upload form and watch its progress bar reach the end, find a contact and open its
timeline, a list, an export; axe-core on every page (0 serious or critical), screenshots."""

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
from tests.conftest import Process, surge_env

PASSWORD = "correct horse battery staple"
EMAIL = "grace@harbour.example"
FIRST = ["Grace", "Ada", "Alan", "Katherine", "Dorothy", "Mary", "Edsger", "Barbara"]
LAST = ["Hopper", "Lovelace", "Turing", "Johnson", "Vaughan", "Jackson", "Dijkstra", "Liskov"]


@pytest.fixture(scope="module")
def env(database_url: str, api_port: int) -> dict[str, str]:
    # Export download links are absolute: they must point at this module's API.
    return surge_env(database_url, SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}")


@pytest.fixture(scope="module")
def editor(database_url: str) -> str:
    """An organisation with 200 contacts, a list, and a contact with a history."""

    async def make() -> int:
        conn = await connect(database_url)
        try:
            org = (await orgs.create_organization(conn, "Harbour Food Bank")).id
            await users.create_user(
                conn, Actor.cli(org), email=EMAIL, name="Grace", role="editor", password=PASSWORD
            )
            return org
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs a loop in this thread
        org = pool.submit(asyncio.run, make()).result()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into contacts (organization_id, email, first_name, last_name, attributes)"
            " select %s, lower(f) || '.' || lower(l) || i || '@harbour.example', f, l,"
            " jsonb_build_object('city', 'Leith')"
            " from generate_series(1, 200) i, lateral (select (%s::text[])[1 + i %% 8] as f,"
            "  (%s::text[])[1 + (i / 8) %% 8] as l) n",
            [org, FIRST, LAST],
        )
        listed = conn.execute(
            "insert into lists (organization_id, name) values (%s, 'Volunteers') returning id",
            [org],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into list_members (organization_id, list_id, contact_id)"
            " select %s, %s, id from contacts where organization_id = %s and id %% 3 = 0",
            [org, listed, org],
        )
        contact = conn.execute(
            "select id from contacts where email = 'grace.hopper64@harbour.example'"
        ).fetchone()[0]  # type: ignore[index]
        campaign = conn.execute(
            "insert into campaigns (organization_id, name, kind, currency)"
            " values (%s, 'Winter appeal', 'fundraising', 'GBP') returning id",
            [org],
        ).fetchone()[0]  # type: ignore[index]
        message = conn.execute(
            "insert into messages (organization_id, campaign_id, subject, from_email, list_ids,"
            " status) values (%s, %s, 'A warm meal for every neighbour', 'hi@harbour.example',"
            " '{}', 'sent') returning id",
            [org, campaign],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into deliveries (message_id, contact_id, organization_id, chunk, status,"
            " sent_at, opened_at, clicked_at) values (%s, %s, %s, 0, 'sent',"
            " now() - interval '3 days', now() - interval '3 days' + interval '1 hour',"
            " now() - interval '3 days' + interval '2 hours')",
            [message, contact, org],
        )
        conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
            " amount_minor, currency, email, status, succeeded_at) values (%s, %s, 'g1', '\\x00',"
            " 5000, 'GBP', 'grace.hopper64@harbour.example', 'succeeded',"
            " now() - interval '2 days')",
            [org, campaign],
        )
        conn.execute(
            "insert into contact_activity (organization_id, type, day, contact_id, events)"
            " values (%s, 'Page Viewed', current_date - 1, %s, 4),"
            " (%s, 'Signed Petition', current_date - 5, %s, 1)",
            [org, contact, org, contact],
        )
    return EMAIL


CSV = (
    "email,first_name,last_name,city\n"
    + "".join(f"volunteer{i}@harbour.example,Vol,Unteer{i},Leith\n" for i in range(300))
    + "not-an-address,Bad,Row,Leith\n"
)


def sign_in(page: Page, api: str) -> None:
    page.goto(api + "/console/contacts")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()


def test_contacts_pages_import_and_timeline_in_a_browser(
    api: str, editor: str, worker: Process, page: Page, tmp_path: Path
) -> None:
    sign_in(page, api)  # lands on the page it asked for
    nav = page.get_by_role("navigation", name="Console")
    assert_accessible(page)

    page.get_by_label("Find contacts whose email address or name starts with").fill("grace")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="Names starting with “grace”")).to_be_visible()
    expect(page.get_by_role("link", name="Next page")).to_be_hidden()
    assert_accessible(page)
    screenshot(page, "console-contacts", tmp_path)

    page.get_by_role("link", name="grace.hopper64@harbour.example").click()
    expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    expect(page.locator(".timeline")).to_contain_text("Page Viewed × 4")
    expect(page.locator(".timeline")).to_contain_text("Donated 50.00 GBP to Winter appeal")
    assert_accessible(page)
    page.get_by_label("Status", exact=True).select_option("unsubscribed")
    page.get_by_role("button", name="Save the status").click()
    expect(page.get_by_role("status")).to_contain_text("Status changed from subscribed")
    screenshot(page, "console-contact", tmp_path)

    # The upload form: the file streams up (htmx), then the import page follows the job.
    nav.get_by_role("link", name="Imports").click()
    assert_accessible(page)
    page.get_by_label("Add the contacts to a list (optional)").select_option(label="Volunteers")
    page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "volunteers.csv", "mimeType": "text/csv", "buffer": CSV.encode()}
    )
    page.get_by_role("button", name="Upload and import").click()
    expect(page.get_by_role("heading", name="Import of volunteers.csv")).to_be_visible()
    expect(page.locator("#import-bar")).to_have_attribute("value", "100.0", timeout=60_000)
    expect(page.locator("#import-live")).to_contain_text("completed")
    expect(page.locator("#import-announce")).to_contain_text("300 rows imported, 1 refused")
    expect(page.get_by_role("link", name="Download the bad-row report (CSV)").first).to_be_visible()
    assert_accessible(page)
    screenshot(page, "console-import", tmp_path)

    # The list the import filled, then an export of its members.
    nav.get_by_role("link", name="Lists").click()
    assert_accessible(page)
    page.get_by_role("link", name="Volunteers").click()
    expect(page.get_by_role("heading", name="Volunteers")).to_be_visible()
    expect(page.locator("main")).to_contain_text("366 members")
    assert_accessible(page)
    page.get_by_role("button", name="Export the members as CSV").click()
    expect(page.get_by_role("link", name="Download the CSV file")).to_be_visible(timeout=60_000)
    assert_accessible(page)
    nav.get_by_role("link", name="Exports").click()
    assert_accessible(page)
