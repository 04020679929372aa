"""The console's campaign, composer, message, donation and webhook pages in a real browser:
sign in through the login page, write a message (an inline template error, then a preview,
a test email), send it to a small list and watch the live view reach "sent"; axe-core on
every page (0 serious or critical violations); screenshots for docs/screenshots/."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect

from surge.audit import Actor
from surge.db.pool import connect
from surge.users import service as users
from tests.browser.accessibility import assert_accessible, screenshot
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_audience, sink_process

PASSWORD = "correct horse battery staple"
EMAIL = "grace@harbour.example"


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[tuple[int, Path]]:
    with sink_process(tmp_path_factory.mktemp("sink"), database_url) as running:
        yield running


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
    )


@pytest.fixture(scope="module")
def org(api: str, database_url: str, worker: Process) -> dict[str, Any]:
    """An organisation with an admin, a list of three, a campaign and donations today."""
    made: dict[str, Any] = create_org(database_url, "Harbour Food Bank")

    async def person() -> None:
        conn = await connect(database_url)
        try:
            await users.create_user(
                conn,
                Actor.cli(int(made["id"])),
                email=EMAIL,
                name="Grace Hopper",
                role="admin",
                password=PASSWORD,
            )
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        pool.submit(asyncio.run, person()).result()
    headers = {"Authorization": f"Bearer {made['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        made["list_id"], _ = make_audience(client, "harbour", 3)
        body = {"name": "Winter Appeal", "kind": "fundraising", "currency": "USD", "goal": 900000}
        made["campaign"] = client.post("/v1/campaigns", json=body).json()["id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
            " amount_minor, currency, email, name, status, created_at, succeeded_at)"
            " select %s, %s, 'k' || i, '\\x00', 1000 + i * 250, 'USD', 'd' || i || '@example.org',"
            " 'Donor ' || i, 'succeeded', now() - i * interval '40 seconds',"
            " now() - i * interval '40 seconds'"
            " from generate_series(1, 30) i",
            [made["id"], made["campaign"]],
        )
    return made


def sign_in(page: Page, api: str) -> None:
    page.goto(api + "/console/")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_compose_send_and_watch_a_message_then_every_page_is_accessible(
    api: str, org: dict[str, Any], page: Page, tmp_path: Path, sink: tuple[int, Path]
) -> None:
    sign_in(page, api)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Winter Appeal").click()
    expect(page.get_by_role("heading", name="Winter Appeal")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Edit campaign").click()
    expect(page.get_by_label("Story")).to_be_visible()
    assert_accessible(page)
    page.go_back()

    page.get_by_role("link", name="Write a message").click()
    expect(page.get_by_role("heading", name="New message")).to_be_visible()
    page.get_by_label("harbour", exact=True).check()
    page.get_by_label("From address").fill("news@harbour.example")
    page.get_by_label("Subject", exact=True).fill("Hello {{ first_name")
    error = page.locator("#subject-error")
    expect(error).to_contain_text("line 1")
    expect(page.get_by_label("Subject", exact=True)).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Subject", exact=True).fill("Hello {{ first_name }}, winter is here")
    page.get_by_label("HTML body").fill(
        "<h1>Dear {{ first_name }}</h1><p>Every <b>meal</b> counts this winter."
        ' <a href="https://harbour.example/give">Give now</a>.</p>'
    )
    expect(error).to_be_hidden()
    expect(page.locator("#check")).to_contain_text("Hello Name0, winter is here")
    frame = page.frame_locator("#preview-frame")
    expect(frame.get_by_role("heading", name="Dear Name0")).to_be_visible()

    page.get_by_label("Send a test to").fill("grace@harbour.example")
    page.get_by_role("button", name="Send test email").click()
    expect(page.locator("#tests")).to_contain_text("sent", timeout=60_000)
    assert_accessible(page)
    screenshot(page, "console-composer", tmp_path)

    page.get_by_role("button", name="Schedule message").click()
    expect(page.locator(".flash")).to_contain_text("Message scheduled to go now")
    expect(page.locator(".status-line")).to_contain_text("finished", timeout=60_000)
    expect(page.locator("#live")).to_contain_text("3 of 3")
    # The stream swapped the buttons when the status changed: nothing applies to a sent one.
    expect(page.get_by_role("button", name="Pause sending")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel message")).to_have_count(0)
    assert_accessible(page)
    screenshot(page, "console-message-live", tmp_path)
    mbox = (sink[1] / "sink.mbox").read_bytes()
    assert b"Subject: [Test] Hello Name0, winter is here" in mbox
    assert b"Subject: Hello Name2, winter is here" in mbox

    page.get_by_role("link", name="Recipients and what happened to each").click()
    expect(page.get_by_role("cell", name="harbour2@example.org")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Messages").click()
    expect(page.get_by_role("link", name="Hello {{ first_name }}, winter is here")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Donations").click()
    expect(page.locator("#day svg.chart").first).to_be_visible(timeout=30_000)
    expect(page.locator("#day")).to_contain_text("30")
    assert_accessible(page)
    screenshot(page, "console-donations", tmp_path)
    page.get_by_role("link", name="#30", exact=True).click()
    expect(page.get_by_role("heading", name="Refund this donation")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("https://crm.harbour.example/hooks")
    page.get_by_label("donation.succeeded").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#new-secret")).to_contain_text("whsec_")
    assert_accessible(page)
    page.get_by_role("link", name="https://crm.harbour.example/hooks").click()
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    assert_accessible(page)
