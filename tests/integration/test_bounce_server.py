"""Late bounces and complaints end to end: VERP senders out, reports back to the server.

A real worker sends through an SMTP server that records each envelope sender; reports
are then delivered with smtplib to a real ``surge bounce-server``, as a receiving MTA or a
feedback loop would, and their effects read over the API.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, surge_env
from tests.helpers import (
    Recorder,
    contact_status,
    make_audience,
    make_message,
    recording_smtp,
    suppression,
    wait_for,
)
from tests.unit.test_bounces_reports import arf, dsn

DOMAIN = "bounces.test"


@pytest.fixture(scope="module")
def outbound() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def bounce_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def env(database_url: str, outbound: Any, bounce_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{outbound.port}?tls=none",
        SURGE_SECRET_KEY="bounce-test-key",
        SURGE_BOUNCE_DOMAIN=DOMAIN,
        SURGE_BOUNCE_SERVER_PORT=str(bounce_port),
        SURGE_SUPPRESS_AFTER_SOFT_BOUNCES="1",
    )


@pytest.fixture(scope="module")
def bounce_server(env: dict[str, str], bounce_port: int) -> Iterator[int]:
    proc = Process(["bounce-server"], env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", bounce_port, timeout=2) as s:
                s.noop()
            break
        except OSError:
            time.sleep(0.2)
    yield bounce_port
    proc.stop()


@pytest.fixture(scope="module")
def sent(
    api: str, worker: Process, database_url: str, outbound: Recorder
) -> tuple[httpx.Client, dict[str, Any], dict[str, int]]:
    org = create_org(database_url, "Bouncing Org")
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"})
    list_id, ids = make_audience(client, "late", 5)
    message = make_message(client, list_id)
    wait_for(client, message["id"], "sent")
    return client, message, {f"late{i}@example.org": ids[i] for i in range(5)}


def deliver(port: int, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("MAILER-DAEMON@mx.example.com", [rcpt], data)


def eventually(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_each_delivery_goes_out_with_its_own_verp_sender(sent: Any, outbound: Recorder) -> None:
    _, message, contacts = sent
    senders = {outbound.senders[email] for email in contacts}
    assert len(senders) == 5
    assert all(s.startswith("bounces+") and s.endswith(f"@{DOMAIN}") for s in senders)


def test_a_hard_bounce_to_the_verp_address_bounces_and_suppresses_once(
    sent: Any, outbound: Recorder, bounce_server: int, database_url: str
) -> None:
    client, message, contacts = sent
    email = "late0@example.org"
    report = dsn("failed", "5.1.1", "smtp; 550 5.1.1 user unknown", "<someone-elses@x.example>")
    for _ in range(2):  # servers retry: the second report changes nothing
        deliver(bounce_server, outbound.senders[email], report)
    eventually(lambda: suppression(client, email) == "hard_bounce")
    assert contact_status(database_url, contacts[email]) == "bounced"
    progress = client.get(f"/v1/messages/{message['id']}").json()["progress"]
    assert progress["bounced"] == 1


def test_a_soft_bounce_counts_toward_suppression(
    sent: Any, outbound: Recorder, bounce_server: int, database_url: str
) -> None:
    client, _, contacts = sent
    email = "late1@example.org"
    deliver(bounce_server, outbound.senders[email], dsn("failed", "5.7.1", "smtp; 554 5.7.1 spam"))
    eventually(lambda: suppression(client, email) == "soft_bounce")  # threshold 1 here
    assert contact_status(database_url, contacts[email]) == "subscribed"


def test_a_complaint_through_the_feedback_loop_is_attributed_by_message_id(
    sent: Any, bounce_server: int, database_url: str
) -> None:
    client, message, contacts = sent
    email = "late2@example.org"
    quoted = arf().replace(b"<m12.c34@", f"<m{message['id']}.c{contacts[email]}@".encode())
    deliver(bounce_server, f"fbl@{DOMAIN}", quoted)
    eventually(lambda: suppression(client, email) == "complaint")
    assert contact_status(database_url, contacts[email]) == "complained"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select complained from message_stats where message_id = %s", [message["id"]]
        ).fetchone()
    assert row == (1,)


def test_mail_for_any_other_address_is_refused_at_rcpt(bounce_server: int) -> None:
    with smtplib.SMTP("127.0.0.1", bounce_server, timeout=10) as s:
        s.ehlo()
        s.mail("spammer@example.com")
        code, _ = s.rcpt(f"postmaster@{DOMAIN}")
        assert code == 550
        code, _ = s.rcpt(f"bounces+aaaa@{DOMAIN}")
        assert code == 550


def test_an_auto_reply_is_accepted_and_ignored(
    sent: Any, outbound: Recorder, bounce_server: int, database_url: str
) -> None:
    client, _, contacts = sent
    email = "late3@example.org"
    deliver(
        bounce_server, outbound.senders[email], b"Subject: Out of office\r\n\r\nBack Monday.\r\n"
    )
    time.sleep(0.5)
    assert suppression(client, email) is None
    assert contact_status(database_url, contacts[email]) == "subscribed"


def test_mail_to_the_list_unsubscribe_mailto_address_unsubscribes(
    sent: Any, outbound: Recorder, bounce_server: int, database_url: str
) -> None:
    client, message, contacts = sent
    email = "late4@example.org"
    head = outbound.messages[email].split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").decode()
    found = re.search(
        r"^List-Unsubscribe: <(https://[^>]+|http://[^>]+)>, <mailto:([^>]+)>", head, re.M
    )
    assert found is not None, head
    mailto = found[2]
    assert mailto.startswith("unsubscribe+") and mailto.endswith(f"@{DOMAIN}")
    assert mailto != outbound.senders[email]  # not the Return-Path
    # What a mail client sends when the recipient picks "unsubscribe".
    deliver(bounce_server, mailto.upper(), b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n")
    eventually(lambda: contact_status(database_url, contacts[email]) == "unsubscribed")
    progress = client.get(f"/v1/messages/{message['id']}").json()["progress"]
    assert progress["unsubscribed"] == 1
