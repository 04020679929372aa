"""The console's campaign, composer and message pages over real HTTP, with a real worker and
SMTP sink: inline template errors, the preview, a test email arriving, scheduling, the live
view reaching "sent", pause/resume/cancel, and the role and CSRF refusals."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.campaigns.service import STATUS_SCAN
from tests.conftest import Process, create_org, surge_env
from tests.helpers import add_console_users, make_audience, make_message, signed_in
from tests.helpers import csrf_token as token_of


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=5000&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_DISPATCH_CHUNK_SIZE="10",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, Any]:
    """An organisation with an API key (to make contacts) and an editor, a viewer."""
    made: dict[str, Any] = create_org(database_url, "Composer Org")
    add_console_users(
        database_url,
        int(made["id"]),
        {"editor@composer.example": "editor", "viewer@composer.example": "viewer"},
    )
    return made


@pytest.fixture(scope="module")
def audience(api: str, org: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        list_id, _ = make_audience(client, "composer", 12)
    return list_id


@pytest.fixture(scope="module")
def editor(api: str, org: dict[str, Any], worker: Process) -> Iterator[httpx.Client]:
    client = signed_in(api, "editor@composer.example")
    yield client
    client.close()


@pytest.fixture(scope="module")
def campaign(editor: httpx.Client) -> int:
    page = editor.get("/console/campaigns/new")
    form = {
        "csrf_token": token_of(page),
        "name": "Spring appeal",
        "kind": "fundraising",
        "goal": "5,000",
        "currency": "usd",
        "presets": "10, 25, 50",
        "published": "1",
        "story": "We **feed** people.",
    }
    created = editor.post("/console/campaigns", data=form)
    assert created.status_code == 303, created.text
    return int(created.headers["location"].rsplit("/", 1)[1])


def composer_form(editor: httpx.Client, campaign: int, **values: Any) -> dict[str, Any]:
    page = editor.get(f"/console/campaigns/{campaign}/messages/new")
    assert page.status_code == 200, page.text
    return {
        "csrf_token": token_of(page),
        "subject": "Hello {{ first_name }}",
        "html": "<p>Dear {{ first_name }}, <a href='https://example.org/give'>give</a>.</p>",
        "from_email": "appeals@charity.example",
        "from_name": "The Charity",
        "track_opens": "1",
        "track_clicks": "1",
        "when": "now",
        **values,
    }


def test_campaign_is_created_edited_and_keeps_its_currency(
    editor: httpx.Client, campaign: int, database_url: str
) -> None:
    page = editor.get(f"/console/campaigns/{campaign}")
    assert "Spring appeal" in page.text and "5,000.00 USD" in page.text
    assert "/g/composer-org/spring-appeal" in page.text  # published: its public address
    form = editor.get(f"/console/campaigns/{campaign}/edit")
    assert 'value="5000.00"' in form.text and "We **feed** people." in form.text
    values = {
        "csrf_token": token_of(form),
        "name": "Spring appeal 2",
        "kind": "fundraising",
        "goal": "7500.5",
        "currency": "USD",
        "presets": "10, 25",
        "story": "New story",
    }
    assert editor.post(f"/console/campaigns/{campaign}", data=values).status_code == 303
    shown = editor.get(f"/console/campaigns/{campaign}").text
    assert "Spring appeal 2" in shown and "7,500.50 USD" in shown and "not published" in shown
    refused = editor.post(f"/console/campaigns/{campaign}", data={**values, "currency": "EUR"})
    assert refused.status_code == 400
    assert 'id="currency-error"' in refused.text and "cannot change" in refused.text
    bad_goal = editor.post(f"/console/campaigns/{campaign}", data={**values, "goal": "12.345"})
    assert bad_goal.status_code == 400 and "2 decimal places" in bad_goal.text
    with psycopg.connect(database_url) as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "select action from audit_log where subject = %s order by id",
                [f"campaign:{campaign}"],
            )
        ]
    assert actions == ["campaign.create", "campaign.update"]
    listed = editor.get("/console/campaigns")
    assert f'href="/console/campaigns/{campaign}"' in listed.text


def test_composer_shows_template_errors_next_to_their_field(
    editor: httpx.Client, campaign: int, audience: int
) -> None:
    form = composer_form(
        editor,
        campaign,
        subject="Hello {{ first_name",
        html="<p>{{ frist_name }}</p>",
        list_ids=str(audience),
    )
    headers = {"HX-Request": "true", "X-CSRF-Token": form["csrf_token"]}
    checked = editor.post(
        f"/console/campaigns/{campaign}/messages/check", data=form, headers=headers
    )
    assert checked.status_code == 200
    subject_error = re.search(r'<p class="error" id="subject-error"[^>]*>([^<]*)<', checked.text)
    html_error = re.search(r'<p class="error" id="html-error"[^>]*>([^<]*)<', checked.text)
    assert subject_error and subject_error.group(1).startswith("line 1:")
    assert html_error and "line 1: unknown variable &#39;frist_name&#39;" in html_error.group(1)
    # Scheduling with the same errors re-renders the form, the error by its field.
    refused = editor.post(f"/console/campaigns/{campaign}/messages", data=form)
    assert refused.status_code == 400 and 'aria-invalid="true"' in refused.text


def test_composer_previews_for_the_first_member_of_the_audience(
    editor: httpx.Client, campaign: int, audience: int
) -> None:
    form = composer_form(editor, campaign, list_ids=str(audience))
    headers = {"HX-Request": "true", "X-CSRF-Token": form["csrf_token"]}
    checked = editor.post(
        f"/console/campaigns/{campaign}/messages/check", data=form, headers=headers
    )
    assert "composer0@example.org" in checked.text and "Hello Name0" in checked.text
    chosen = editor.post(
        f"/console/campaigns/{campaign}/messages/check",
        data={**form, "preview_email": "composer3@example.org"},
        headers=headers,
    )
    assert "Hello Name3" in chosen.text
    unknown = editor.post(
        f"/console/campaigns/{campaign}/messages/check",
        data={**form, "preview_email": "nobody@example.org"},
        headers=headers,
    )
    assert re.search(r'id="preview_email-error"[^>]*>no contact has', unknown.text)
    frame = editor.post(f"/console/campaigns/{campaign}/messages/preview", data=form)
    assert frame.status_code == 200 and "Dear Name0" in frame.text
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"


def test_a_test_email_goes_through_the_sender_to_the_sink(
    editor: httpx.Client, campaign: int, audience: int, sink: tuple[int, Path]
) -> None:
    form = composer_form(
        editor, campaign, list_ids=str(audience), test_to="me@charity.example, you@charity.example"
    )
    headers = {"HX-Request": "true", "X-CSRF-Token": form["csrf_token"]}
    queued = editor.post(f"/console/campaigns/{campaign}/messages/test", data=form, headers=headers)
    assert queued.status_code == 200 and "me@charity.example" in queued.text
    ids = re.findall(r"id=(\d+)", queued.text)
    assert len(set(ids)) == 2
    deadline = time.monotonic() + 60
    while True:
        status = editor.get("/console/messages/tests", params={"id": ids[:2]})
        if status.text.count(">sent<") == 2:
            break
        assert time.monotonic() < deadline, status.text
        time.sleep(0.2)
    mbox = (sink[1] / "sink.mbox").read_bytes()
    assert mbox.count(b"Subject: [Test] Hello Name0") == 2
    assert b"To: me@charity.example" in mbox and b"/t/o/" not in mbox  # not tracked
    bad = editor.post(
        f"/console/campaigns/{campaign}/messages/test",
        data={**form, "test_to": "not an address"},
        headers=headers,
    )
    assert "is not an email address" in bad.text


def test_roles_and_csrf_guard_the_composer_and_the_buttons(
    api: str, editor: httpx.Client, campaign: int, audience: int
) -> None:
    viewer = signed_in(api, "viewer@composer.example")
    assert viewer.get(f"/console/campaigns/{campaign}/messages/new").status_code == 403
    assert viewer.get(f"/console/campaigns/{campaign}").status_code == 200
    form = composer_form(editor, campaign, list_ids=str(audience))
    for_viewer = {**form, "csrf_token": token_of(viewer.get("/console/messages"))}
    assert (
        viewer.post(f"/console/campaigns/{campaign}/messages", data=for_viewer).status_code == 403
    )
    no_token = {k: v for k, v in form.items() if k != "csrf_token"}
    assert editor.post(f"/console/campaigns/{campaign}/messages", data=no_token).status_code == 403
    foreign = editor.post(
        f"/console/campaigns/{campaign}/messages",
        data=form,
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert viewer.post("/console/messages/1/pause", data=for_viewer).status_code == 403
    viewer.close()


def live_figures(client: httpx.Client, message_id: int, until: str, timeout: float = 60) -> str:
    """Read the live view's stream until a figures event contains ``until``."""
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"/console/messages/{message_id}/live", timeout=timeout) as stream:
        event: list[str] = []
        for line in stream.iter_lines():
            if line:
                event.append(line.removeprefix("data: "))
                continue
            html = "\n".join(event)
            event = []
            if until in html:
                return html
            assert time.monotonic() < deadline, html
    raise AssertionError("the stream ended")


def test_scheduled_message_is_sent_and_the_live_view_says_so(
    editor: httpx.Client, campaign: int, audience: int, sink: tuple[int, Path]
) -> None:
    form = composer_form(editor, campaign, list_ids=str(audience), subject="Now {{ first_name }}")
    scheduled = editor.post(f"/console/campaigns/{campaign}/messages", data=form)
    assert scheduled.status_code == 303, scheduled.text
    message_id = int(scheduled.headers["location"].rsplit("/", 1)[1])
    page = editor.get(scheduled.headers["location"])
    assert "Message scheduled to go now" in page.text
    assert f'sse-connect="/console/messages/{message_id}/live' in page.text
    html = live_figures(editor, message_id, ">sent<")
    assert "12 of 12" in html and "Sent per second" in html
    recipients = editor.get(f"/console/messages/{message_id}/recipients")
    assert recipients.text.count("composer") >= 12
    assert editor.get("/console/messages").text.count(f"/console/messages/{message_id}") >= 1


def test_pause_resume_and_cancel_from_the_message_view(
    editor: httpx.Client, campaign: int, audience: int
) -> None:
    form = composer_form(
        editor, campaign, list_ids=str(audience), when="later", send_at="2099-01-01T09:00"
    )
    scheduled = editor.post(f"/console/campaigns/{campaign}/messages", data=form)
    assert scheduled.status_code == 303, scheduled.text
    view = scheduled.headers["location"]
    page = editor.get(view)
    assert "scheduled for 2099-01-01 09:00 UTC" in page.text
    token = token_of(page)
    assert "Pause sending" in page.text and "Resume sending" not in page.text
    assert editor.post(view + "/pause", data={"csrf_token": token}).status_code == 303
    paused = editor.get(view).text
    assert "Message paused" in paused and "Resume sending" in paused
    assert editor.post(view + "/resume", data={"csrf_token": token}).status_code == 303
    assert "Message resumed" in editor.get(view).text
    assert editor.post(view + "/cancel", data={"csrf_token": token}).status_code == 303
    cancelled = editor.get(view).text
    assert "Message cancelled" in cancelled and "Cancel message" not in cancelled
    again = editor.post(view + "/resume", data={"csrf_token": token})
    assert again.status_code == 303
    assert "cannot resume a message that is cancelled" in editor.get(view).text
    past = editor.post(
        f"/console/campaigns/{campaign}/messages", data={**form, "send_at": "2001-01-01T09:00"}
    )
    assert past.status_code == 400 and "that time has passed" in past.text


def test_recipients_by_status_are_found_a_bounded_stretch_at_a_time(
    api: str, org: dict[str, Any], audience: int, editor: httpx.Client, database_url: str
) -> None:
    """A rare status among more recipients than one filtered page reads (STATUS_SCAN): the
    first page finds none yet and links further, the next finds it; the API pages alike."""
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        later = "2100-01-01T00:00:00Z"  # scheduled, never sent: its deliveries are ours
        message_id = make_message(client, audience, send_at=later)["id"]
        total = STATUS_SCAN + 2_000
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "insert into deliveries (message_id, contact_id, organization_id, chunk, status)"
                " select %s, 10000000 + i, %s, 0,"
                " case when i = %s then 'failed' else 'sent' end"
                " from generate_series(1, %s) i",
                [message_id, int(org["id"]), STATUS_SCAN + 1_000, total],
            )

        first = editor.get(f"/console/messages/{message_id}/recipients?status=failed")
        assert first.status_code == 200
        assert "None failed among the next 10,000 recipients" in first.text
        further = re.search(r'href="([^"]+)">Look further<', first.text)
        assert further is not None
        second = editor.get(further.group(1).replace("&amp;", "&"))
        assert str(10_000_000 + STATUS_SCAN + 1_000) in second.text
        assert "Look further" not in second.text and "Next recipients" not in second.text

        pages, found, after = 0, [], ""
        while True:
            page = client.get(
                f"/v1/messages/{message_id}/deliveries", params={"status": "failed", "after": after}
            ).json()
            pages += 1
            found += [d["contact_id"] for d in page["data"]]
            if page["next"] is None:
                break
            after = page["next"]
        assert (found, pages) == ([10_000_000 + STATUS_SCAN + 1_000], 2)
        assert (
            editor.get(f"/console/messages/{message_id}/recipients?status=nope").status_code == 400
        )
