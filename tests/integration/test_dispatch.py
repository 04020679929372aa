"""Campaign dispatch end to end: API → plan → send_chunk → SMTP sink → progress and tracking."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from surge.delivery.sink import count_received
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_audience, make_message, wait_for, webhook_receiver

SECRET = "test-signing-key"


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    port, _ = sink
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{port}?tls=none&rate=5000&burst=500&name=sink",
        SURGE_SECRET_KEY=SECRET,
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_DISPATCH_CHUNK_SIZE="25",
    )


@pytest.fixture(scope="module")
def client(api: str, database_url: str, worker: Process) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Dispatch Org")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as c:
        yield c


def received_for(sink_dir: Path, message_id: int) -> dict[str, int]:
    return {k: v for k, v in count_received(sink_dir).items() if k.startswith(f"<m{message_id}.")}


def mails_for(sink_dir: Path, message_id: int) -> list[email.message.EmailMessage]:
    raw = (sink_dir / "sink.mbox").read_bytes().split(b"From surge-sink\n")
    found = []
    for chunk in raw:
        if f"<m{message_id}.".encode() in chunk:
            msg = email.message_from_bytes(chunk, policy=email.policy.default)
            found.append(msg)  # type: ignore[arg-type]
    return found


def test_message_reaches_every_subscribed_recipient_once(
    client: httpx.Client, sink: tuple[int, Path], database_url: str
) -> None:
    list_id, ids = make_audience(client, "once", 60)
    # Two members unsubscribed before the send: skipped and counted.
    with psycopg.connect(database_url) as conn:
        conn.execute("update contacts set status = 'unsubscribed' where id = any(%s)", [ids[:2]])
    message = make_message(client, list_id)
    assert message["status"] == "scheduled"
    done = wait_for(client, message["id"], "sent")
    progress = done["progress"]
    assert progress["total"] == 60
    assert progress["sent"] == 58
    assert progress["skipped"] == 2
    assert progress["queued"] == 0
    counts = received_for(sink[1], message["id"])
    assert len(counts) == 58
    assert set(counts.values()) == {1}


def test_each_email_is_personalised_with_unsubscribe_headers(
    client: httpx.Client, sink: tuple[int, Path]
) -> None:
    list_id, _ = make_audience(client, "mime", 3)
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    mails = mails_for(sink[1], message["id"])
    assert len(mails) == 3
    mail = mails[0]
    assert re.fullmatch(r"Hello Name\d", str(mail["Subject"]))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in str(mail["List-Unsubscribe"])
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "Dear Name" in text.get_content()
    assert "/t/o/" in html.get_content()
    assert "/t/c/" in html.get_content()


def test_opens_clicks_and_unsubscribes_are_counted(
    client: httpx.Client, sink: tuple[int, Path], api: str
) -> None:
    list_id, _ = make_audience(client, "track", 2)
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    html = mails_for(sink[1], message["id"])[0].get_body(("html",))
    assert html is not None
    body = html.get_content()
    pixel = re.search(r'src="([^"]*/t/o/[^"]+)"', body)
    link = re.search(r'href="([^"]*/t/c/[^"]+)"', body)
    assert pixel and link
    for _ in range(3):  # repeated opens count once
        assert httpx.get(pixel[1], headers=PERSON).headers["content-type"] == "image/gif"
    redirect = httpx.get(link[1].replace("&amp;", "&"), headers=PERSON)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://example.org/give?a=1&b=2"
    tampered = link[1][:-3] + ("abc" if not link[1].endswith("abc") else "xyz")
    assert httpx.get(tampered).status_code == 404
    unsubscribe_url = re.search(
        r"<(http[^>]+/u/[^>]+)>", mails_for(sink[1], message["id"])[0]["List-Unsubscribe"]
    )
    assert unsubscribe_url
    page = httpx.get(unsubscribe_url[1])
    assert page.status_code == 200 and "<form" in page.text
    one_click = httpx.post(unsubscribe_url[1], data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    httpx.post(unsubscribe_url[1], data={"List-Unsubscribe": "One-Click"})  # counted once
    deadline = time.monotonic() + 5
    while True:
        progress = client.get(f"/v1/messages/{message['id']}").json()["progress"]
        if progress["opened"] and progress["clicked"]:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert progress["opened"] == 1
    assert progress["clicked"] == 1
    assert progress["unsubscribed"] == 1
    assert progress["machine_opened"] == 0 and progress["machine_clicked"] == 0


#: What a recipient's mail client sends when it shows an image or follows a link.
PERSON = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15"}


def test_apple_privacy_proxy_and_link_scanners_are_counted_apart(
    client: httpx.Client, sink: tuple[int, Path]
) -> None:
    list_id, _ = make_audience(client, "machines", 1)
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    html = mails_for(sink[1], message["id"])[0].get_body(("html",))
    assert html is not None
    pixel = re.search(r'src="([^"]*/t/o/[^"]+)"', html.get_content())
    link = re.search(r'href="([^"]*/t/c/[^"]+)"', html.get_content())
    assert pixel and link
    # Apple Mail Privacy Protection's proxy, then a mail gateway checking the link.
    assert httpx.get(pixel[1], headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    scan = httpx.head(link[1].replace("&amp;", "&"), headers=PERSON)
    assert scan.status_code == 302  # still redirected: the scanner must see the target
    deadline = time.monotonic() + 5
    while True:
        progress = client.get(f"/v1/messages/{message['id']}").json()["progress"]
        if progress["machine_opened"] and progress["machine_clicked"]:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert progress["opened"] == 0 and progress["clicked"] == 0
    # The recipient really reading it later still counts.
    httpx.get(pixel[1], headers=PERSON)
    deadline = time.monotonic() + 5
    while client.get(f"/v1/messages/{message['id']}").json()["progress"]["opened"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_send_at_in_the_future_waits_then_starts_within_seconds(client: httpx.Client) -> None:
    list_id, _ = make_audience(client, "later", 3)
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    message = make_message(client, list_id, send_at=send_at.isoformat())
    time.sleep(0.5)
    assert client.get(f"/v1/messages/{message['id']}").json()["status"] == "scheduled"
    done = wait_for(client, message["id"], "sent", timeout=10)
    started = datetime.fromisoformat(done["started_at"])
    assert started - send_at < timedelta(seconds=5)
    assert started >= send_at


def test_pause_resume_and_cancel(client: httpx.Client, sink: tuple[int, Path]) -> None:
    list_id, _ = make_audience(client, "pause", 10)
    send_at = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    message = make_message(client, list_id, send_at=send_at)
    paused = client.post(f"/v1/messages/{message['id']}/pause")
    assert paused.json()["status"] == "paused"
    again = client.post(f"/v1/messages/{message['id']}/pause")
    assert again.status_code == 409
    assert client.post(f"/v1/messages/{message['id']}/resume").json()["status"] == "scheduled"
    cancelled = client.post(f"/v1/messages/{message['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/v1/messages/{message['id']}/resume").status_code == 409
    assert received_for(sink[1], message["id"]) == {}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"html": "<p>\n{{ first_name </p>"}, "html", "line 2"),
        ({"subject": "Hi {{ frist_name }}"}, "subject", "unknown variable 'frist_name'"),
        ({"html": None, "text": None}, "html", "needs an html or a text body"),
        ({"list_ids": [999999]}, "list_ids[0]", "not found"),
        ({"from_email": "nobody"}, "from_email", "not an email"),
    ],
)
def test_bad_messages_are_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    list_id, _ = make_audience(client, "bad", 1)
    campaign = client.post("/v1/campaigns", json={"name": "x"}).json()
    message = {
        "subject": "s",
        "html": "<p>hi</p>",
        "from_email": "a@b.example",
        "list_ids": [list_id],
        **body,
    }
    response = client.post(f"/v1/campaigns/{campaign['id']}/messages", json=message)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]


def test_completion_and_unsubscribe_are_announced_by_webhook(
    client: httpx.Client, sink: tuple[int, Path]
) -> None:
    with webhook_receiver() as receiver:
        endpoint = client.post(
            "/v1/webhook-endpoints",
            json={
                "url": receiver.base + "/hooks",
                "event_types": ["message.completed", "contact.unsubscribed"],
            },
        )
        assert endpoint.status_code == 201, endpoint.text
        list_id, ids = make_audience(client, "hooks", 2)
        message = make_message(client, list_id)
        wait_for(client, message["id"], "sent")
        mail = mails_for(sink[1], message["id"])[0]
        unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", str(mail["List-Unsubscribe"]))
        assert unsubscribe
        httpx.post(unsubscribe[1], data={"List-Unsubscribe": "One-Click"})
        deadline = time.monotonic() + 10
        while len(receiver.at("/hooks")) < 2:
            assert time.monotonic() < deadline, receiver.requests
            time.sleep(0.1)
    events = {json.loads(r.body)["type"]: json.loads(r.body)["data"] for r in receiver.at("/hooks")}
    assert events["message.completed"]["message_id"] == message["id"]
    assert events["message.completed"]["sent"] == 2
    assert events["contact.unsubscribed"]["contact_id"] in ids
