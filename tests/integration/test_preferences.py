"""The preference centre as a recipient meets it: a signed link in every message, a page
that only shows on GET, per-list and global choices by POST, and messages that follow them."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.tracking.tokens import TokenSigner
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_message, wait_for

SECRET = "preferences-test-key"


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_SECRET_KEY=SECRET,
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, Any]:
    return create_org(database_url, "Friends of the Park")


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, Any], worker: Process) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        # Subscribed to contact events, so that they are written to the outbox.
        types = ["contact.updated", "contact.unsubscribed"]
        hook = {"url": "http://127.0.0.1:9/hook", "event_types": types}
        assert client.post("/v1/webhook-endpoints", json=hook).status_code == 201
        yield client


def contact_on_lists(staff: httpx.Client, address: str, *names: str) -> tuple[int, list[int]]:
    written = staff.post("/v1/contacts", json={"contacts": [{"email": address}]}).json()
    cid = int(written["contacts"][0]["id"])
    lists = []
    for name in names:
        list_id = int(staff.post("/v1/lists", json={"name": name}).json()["id"])
        staff.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [cid]})
        lists.append(list_id)
    return cid, lists


def link(staff: httpx.Client, cid: int) -> str:
    response = staff.get(f"/v1/contacts/{cid}/preferences-link")
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url


def lists_of(staff: httpx.Client, cid: int) -> dict[int, str]:
    data = staff.get(f"/v1/contacts/{cid}/lists").json()["data"]
    return {m["list_id"]: m["status"] for m in data}


def choose(url: str, action: str, list_id: int | None = None) -> httpx.Response:
    form = {"action": action} | ({"list_id": str(list_id)} if list_id else {})
    return httpx.post(url, data=form)


def hook_data(database_url: str, event_type: str, cid: int) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select data from webhook_events where type = %s"
            " and (data->>'contact_id')::bigint = %s order by id",
            [event_type, cid],
        ).fetchall()
    return [r[0] for r in rows]


def test_the_page_shows_the_lists_and_a_get_changes_nothing(staff: httpx.Client) -> None:
    cid, (news, events) = contact_on_lists(staff, "page@example.org", "Newsletter", "Events")
    url = link(staff, cid)
    assert "/preferences/" in url
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store, private"
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.text
    assert '<html lang="en">' in html and "<main>" in html and "<script" not in html
    assert "Friends of the Park" in html and "page@example.org" in html
    for name in ("Newsletter", "Events"):
        assert f"<h3>{name}</h3>" in html
        assert f'<button type="submit">Unsubscribe from {name}</button>' in html
    assert "Unsubscribe from all mail from Friends of the Park" in html
    assert html.count('<form method="post"') == 3
    # Link scanners only GET: nothing changed.
    assert lists_of(staff, cid) == {news: "subscribed", events: "subscribed"}
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"


def test_tampered_and_other_kinds_of_tokens_are_404(
    staff: httpx.Client, org: dict[str, Any], api: str
) -> None:
    cid, _ = contact_on_lists(staff, "tamper@example.org", "T")
    url = link(staff, cid)
    token = url.rsplit("/", 1)[1]
    assert httpx.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB")).status_code == 404
    assert httpx.post(url[:-2] + "xx", data={"action": "unsubscribe"}).status_code == 404
    signer = TokenSigner(SECRET)
    unsubscribe = signer.sign("unsubscribe", int(org["id"]), cid)
    assert httpx.get(f"{api}/preferences/{unsubscribe}").status_code == 404
    # A genuine token for an organisation the contact is not in finds nobody.
    elsewhere = signer.sign("preferences", int(org["id"]) + 1000, cid)
    assert httpx.get(f"{api}/preferences/{elsewhere}").status_code == 404
    assert httpx.get(f"{api}/preferences/{token}").status_code == 200


def test_leaving_one_list_stops_that_lists_messages_only(
    staff: httpx.Client, database_url: str
) -> None:
    cid, (left, kept) = contact_on_lists(staff, "leaver@example.org", "Appeals", "Updates")
    other = staff.post("/v1/contacts", json={"contacts": [{"email": "stayer@example.org"}]})
    staff.post(
        f"/v1/lists/{left}/members", json={"contact_ids": [other.json()["contacts"][0]["id"]]}
    )

    done = choose(link(staff, cid), "unsubscribe", left)
    assert done.status_code == 200
    assert 'role="status">You are unsubscribed from Appeals.</p>' in done.text
    assert "Subscribe to Appeals again" in done.text
    assert lists_of(staff, cid) == {left: "unsubscribed", kept: "subscribed"}
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"
    members = staff.get(f"/v1/lists/{left}/members").json()["data"]
    assert [m["email"] for m in members] == ["stayer@example.org"]
    [event] = hook_data(database_url, "contact.updated", cid)
    assert event == {"contact_id": cid, "changed": ["lists"], "via": "preferences", "list_id": left}

    appeal = wait_for(staff, make_message(staff, left)["id"], "sent")
    assert (appeal["progress"]["total"], appeal["progress"]["sent"]) == (1, 1)
    update = wait_for(staff, make_message(staff, kept)["id"], "sent")
    assert update["progress"]["sent"] == 1

    again = choose(link(staff, cid), "resubscribe", left)
    assert "You are subscribed to Appeals." in again.text
    assert lists_of(staff, cid) == {left: "subscribed", kept: "subscribed"}
    appeal = wait_for(staff, make_message(staff, left)["id"], "sent")
    assert appeal["progress"]["sent"] == 2


def test_unsubscribing_from_everything_then_rejoining_one_list(
    staff: httpx.Client, database_url: str
) -> None:
    cid, (first, second) = contact_on_lists(staff, "all@example.org", "First", "Second")
    url = link(staff, cid)
    done = choose(url, "unsubscribe")
    assert "You are unsubscribed from all mail." in done.text
    assert "Receive mail from Friends of the Park again" in done.text
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "unsubscribed"
    assert hook_data(database_url, "contact.unsubscribed", cid) == [
        {"contact_id": cid, "message_id": None, "via": "preferences"}
    ]
    assert choose(url, "unsubscribe").status_code == 200  # twice is harmless
    assert len(hook_data(database_url, "contact.unsubscribed", cid)) == 1

    # Joining one list again starts that list's mail, not every list's.
    rejoined = choose(url, "resubscribe", second)
    assert "You are subscribed to Second." in rejoined.text
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"
    assert lists_of(staff, cid) == {first: "unsubscribed", second: "subscribed"}
    assert hook_data(database_url, "contact.updated", cid)[-1]["changed"] == ["status"]


def test_receiving_all_mail_again_keeps_the_lists_left_one_by_one(staff: httpx.Client) -> None:
    cid, (left, other) = contact_on_lists(staff, "again@example.org", "Left", "Other")
    url = link(staff, cid)
    choose(url, "unsubscribe", left)
    choose(url, "unsubscribe")
    back = choose(url, "resubscribe")
    assert "You are subscribed again." in back.text
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"
    assert lists_of(staff, cid) == {left: "unsubscribed", other: "subscribed"}


def test_a_messages_preferences_url_opens_its_recipients_page(
    staff: httpx.Client, sink: tuple[int, Path]
) -> None:
    cid, (list_id,) = contact_on_lists(staff, "mailed@example.org", "Mailed")
    html = '<p>Hi</p><p><a href="{{ preferences_url }}">Your preferences</a></p>'
    message = make_message(staff, list_id, html=html, track_clicks=False)
    wait_for(staff, message["id"], "sent")
    mail = next(
        m
        for m in (sink[1] / "sink.mbox").read_bytes().split(b"From surge-sink\n")
        if f"<m{message['id']}.c{cid}@".encode() in m
    )
    parsed = email.message_from_bytes(mail, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    body = parsed.get_body(("html",))
    assert body is not None
    found = re.search(r'href="(http[^"]+/preferences/[^"]+)"', body.get_content())
    assert found is not None
    assert found[1] == link(staff, cid)  # one stable link per contact
    page = httpx.get(found[1])
    assert page.status_code == 200 and "mailed@example.org" in page.text


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({}, 400),
        ({"action": "delete"}, 400),
        ({"action": "unsubscribe", "list_id": "abc"}, 400),
        ({"action": "unsubscribe", "list_id": "99999999999999999999999"}, 400),
        ({"action": "unsubscribe", "list_id": "999999"}, 404),
    ],
)
def test_bad_choices_are_4xx_and_change_nothing(
    staff: httpx.Client, form: dict[str, str], status: int
) -> None:
    cid, (list_id,) = contact_on_lists(staff, f"bad-{uuid.uuid4().hex}@example.org", "Bad")
    response = httpx.post(link(staff, cid), data=form)
    assert response.status_code == status, response.text
    assert lists_of(staff, cid) == {list_id: "subscribed"}
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"


def test_an_oversized_form_is_413(staff: httpx.Client) -> None:
    cid, _ = contact_on_lists(staff, "big@example.org", "Big")
    response = httpx.post(link(staff, cid), data={"action": "unsubscribe", "x": "y" * 5000})
    assert response.status_code == 413


def test_names_are_escaped_and_a_blocked_address_is_told_why(staff: httpx.Client) -> None:
    cid, _ = contact_on_lists(staff, "blocked@example.org", "<script>alert(1)</script>")
    staff.post("/v1/suppressions", json={"suppressions": [{"email": "blocked@example.org"}]})
    page = httpx.get(link(staff, cid)).text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "does not send to this address at the moment" in page


def test_a_deleted_contacts_link_is_404(staff: httpx.Client) -> None:
    cid, _ = contact_on_lists(staff, "deleted@example.org", "D")
    url = link(staff, cid)
    assert staff.delete(f"/v1/contacts/{cid}").status_code == 204
    assert httpx.get(url).status_code == 404
    assert choose(url, "unsubscribe").status_code == 404
