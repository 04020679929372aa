"""Dispatch against an SMTP server that refuses, bounces, goes down, and comes back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, surge_env
from tests.helpers import make_audience, make_message, start_api, wait_for


@dataclass
class Mailbox:
    """Replies by the recipient's local part: temp* 451 twice, always* 451 every time,
    gone* 550 5.1.1, reject* 554."""

    received: Counter[str] = field(default_factory=Counter)
    temp_failures: Counter[str] = field(default_factory=Counter)
    #: "Slow down" replies given to slow.example (the first three RCPTs), and arrival times.
    deferrals: int = 0
    arrived: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local, _, domain = address.partition("@")
        with self.lock:
            if domain == "slow.example" and self.deferrals < 3:
                self.deferrals += 1
                return "421 4.7.0 Try again later: too many messages from your IP"
            if local.startswith("temp") and self.temp_failures[address] < 2:
                self.temp_failures[address] += 1
                return "451 4.3.0 try again later"
            if local.startswith("always"):
                self.temp_failures[address] += 1
                return "451 4.2.2 mailbox full"
        if local.startswith("gone"):
            return "550 5.1.1 no such user"
        if local.startswith("reject"):
            return "554 5.7.1 message refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt] += 1
                self.arrived[rcpt] = time.monotonic()
        return "250 2.0.0 queued"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.mailbox = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(database_url: str, smtp: SmtpServer) -> Iterator[httpx.Client]:
    api_port = free_port()
    env = surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{smtp.port}?tls=none&rate=50&burst=10",
        SURGE_SECRET_KEY="k",
        SURGE_DISPATCH_CHUNK_SIZE="10",
        SURGE_DISPATCH_CONCURRENCY="4",
        SURGE_DISPATCH_MAX_ATTEMPTS="5",
        SURGE_DISPATCH_RETRY_BASE_SECONDS="0.2",
        SURGE_SUPPRESS_AFTER_SOFT_BOUNCES="2",
        SURGE_DOMAIN_THROTTLES="throttled.example:20/s:5",
        SURGE_DOMAIN_DEFERRAL_BASE_SECONDS="0.5",
    )
    api = start_api(env, api_port)
    # Two chunks at a time, so that a pause has chunks left to hold back.
    worker = Process(["worker", "--queues", "bulk", "--concurrency", "2"], env)
    org = create_org(database_url, "Failures Org")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers) as c:
        yield c
    worker.stop()
    api.stop()


def contact_statuses(database_url: str, ids: list[int]) -> dict[int, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select id, status from contacts where id = any(%s)", [ids])
        return dict(rows.fetchall())


def test_refusals_are_retried_failed_or_bounced_as_the_reply_says(
    client: httpx.Client, smtp: SmtpServer, database_url: str
) -> None:
    list_id, _ = make_audience(client, "ok", 3)
    contacts = client.post(
        "/v1/contacts",
        json={
            "contacts": [
                {"email": "temp1@example.org"},
                {"email": "gone1@example.org"},
                {"email": "reject1@example.org"},
            ]
        },
    ).json()["contacts"]
    ids = [c["id"] for c in contacts]
    client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": ids})
    message = make_message(client, list_id)
    done = wait_for(client, message["id"], "sent", timeout=30)
    progress = done["progress"]
    assert progress["sent"] == 4  # three ok + temp after two 451s
    assert progress["failed"] == 2
    assert progress["bounced"] == 1
    assert smtp.mailbox.received["temp1@example.org"] == 1
    assert smtp.mailbox.temp_failures["temp1@example.org"] == 2
    statuses = contact_statuses(database_url, ids)
    assert statuses[ids[1]] == "bounced"  # 5.1.1: the address is bad
    assert statuses[ids[2]] == "subscribed"  # 5.7.1: this message, not the address
    with psycopg.connect(database_url) as conn:
        attempts = conn.execute(
            "select attempts, last_error from deliveries where message_id = %s and contact_id = %s",
            [message["id"], ids[0]],
        ).fetchone()
    assert attempts is not None and attempts[0] == 3
    # The hard bounce is on the organisation's suppression list; the refusal is not.
    listed = client.get("/v1/suppressions").json()["data"]
    assert [(s["email"], s["reason"]) for s in listed] == [("gone1@example.org", "hard_bounce")]


def suppressed(client: httpx.Client, email: str) -> str | None:
    data = client.get("/v1/suppressions", params={"email": email}).json()["data"]
    return str(data[0]["reason"]) if data else None


def test_repeated_soft_bounces_suppress_the_address_and_later_sends_skip_it(
    client: httpx.Client, smtp: SmtpServer
) -> None:
    list_id, _ = make_audience(client, "soft", 1)
    added = client.post("/v1/contacts", json={"contacts": [{"email": "always1@example.org"}]})
    client.post(
        f"/v1/lists/{list_id}/members", json={"contact_ids": [added.json()["contacts"][0]["id"]]}
    )
    for round_ in (1, 2):
        done = wait_for(client, make_message(client, list_id)["id"], "sent", timeout=60)
        assert done["progress"]["failed"] == 1, round_  # every retry met 451
        expected = None if round_ == 1 else "soft_bounce"  # threshold 2 in this module
        assert suppressed(client, "always1@example.org") == expected
    tried = smtp.mailbox.temp_failures["always1@example.org"]
    third = wait_for(client, make_message(client, list_id)["id"], "sent", timeout=30)
    assert third["progress"]["skipped"] == 1 and third["progress"]["sent"] == 1
    assert smtp.mailbox.temp_failures["always1@example.org"] == tried  # not even tried


def test_an_address_suppressed_by_staff_is_skipped_and_mailed_again_once_removed(
    client: httpx.Client, smtp: SmtpServer
) -> None:
    list_id, _ = make_audience(client, "staff", 2)
    target = "staff0@example.org"
    added = client.post(
        "/v1/suppressions", json={"suppressions": [{"email": "Staff0@Example.org"}]}
    )
    assert added.json() == {"added": 1, "existing": 0}
    before = smtp.mailbox.received[target]
    done = wait_for(client, make_message(client, list_id)["id"], "sent")
    assert done["progress"]["skipped"] == 1 and done["progress"]["sent"] == 1
    assert smtp.mailbox.received[target] == before
    assert client.delete("/v1/suppressions", params={"email": target}).status_code == 204
    done = wait_for(client, make_message(client, list_id)["id"], "sent")
    assert done["progress"]["sent"] == 2
    assert smtp.mailbox.received[target] == before + 1


def test_a_down_sender_delays_sending_without_burning_attempts(
    client: httpx.Client, smtp: SmtpServer, database_url: str
) -> None:
    list_id, _ = make_audience(client, "down", 12)
    smtp.stop()
    try:
        message = make_message(client, list_id)
        time.sleep(3)
        current = client.get(f"/v1/messages/{message['id']}").json()
        assert current["status"] == "sending"
        assert current["progress"]["sent"] == 0
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "select max(attempts), count(*) filter (where status = 'queued')"
                " from deliveries where message_id = %s",
                [message["id"]],
            ).fetchone()
        assert row == (0, 12)  # nobody's retries were spent on the outage
    finally:
        smtp.start()
    done = wait_for(client, message["id"], "sent", timeout=60)
    assert done["progress"]["sent"] == 12


def test_pause_stops_within_a_chunk_and_resume_finishes_each_recipient_once(
    client: httpx.Client, smtp: SmtpServer
) -> None:
    list_id, _ = make_audience(client, "pausing", 150)
    message = make_message(client, list_id)
    deadline = time.monotonic() + 20
    while client.get(f"/v1/messages/{message['id']}").json()["progress"]["sent"] < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    paused = client.post(f"/v1/messages/{message['id']}/pause").json()
    assert paused["status"] == "paused"
    time.sleep(2)  # running chunks stop at their next flush (1 s); no new chunk starts
    settled = client.get(f"/v1/messages/{message['id']}").json()["progress"]["sent"]
    time.sleep(1.5)
    still = client.get(f"/v1/messages/{message['id']}").json()["progress"]["sent"]
    assert still == settled < 150
    # At most what remained of the two running chunks (10 recipients each) goes out.
    assert settled - paused["progress"]["sent"] <= 2 * 10
    assert client.post(f"/v1/messages/{message['id']}/resume").json()["status"] == "sending"
    done = wait_for(client, message["id"], "sent", timeout=30)
    assert done["progress"]["sent"] == 150
    mine = {k: v for k, v in smtp.mailbox.received.items() if k.startswith("pausing")}
    assert len(mine) == 150
    assert set(mine.values()) == {1}


def audience_at(client: httpx.Client, domain: str, n: int) -> tuple[int, list[int]]:
    contacts = [{"email": f"r{i}@{domain}"} for i in range(n)]
    ids = [
        c["id"] for c in client.post("/v1/contacts", json={"contacts": contacts}).json()["contacts"]
    ]
    lst = client.post("/v1/lists", json={"name": domain}).json()
    client.post(f"/v1/lists/{lst['id']}/members", json={"contact_ids": ids})
    return lst["id"], ids


def test_a_provider_that_says_slow_down_is_backed_off_without_failing_anyone(
    client: httpx.Client, smtp: SmtpServer, database_url: str
) -> None:
    list_id, ids = audience_at(client, "slow.example", 6)
    done = wait_for(client, make_message(client, list_id)["id"], "sent", timeout=60)
    assert done["progress"]["sent"] == 6 and done["progress"]["failed"] == 0
    assert smtp.mailbox.deferrals == 3
    assert all(smtp.mailbox.received[f"r{i}@slow.example"] == 1 for i in range(6))
    with psycopg.connect(database_url) as conn:
        attempts = conn.execute(
            "select max(attempts) from deliveries where contact_id = any(%s)", [ids]
        ).fetchone()
        left = conn.execute("select count(*) from domain_deferrals").fetchone()
    assert attempts == (1,)  # the send that went through; a deferral is no attempt
    assert left == (0,)  # the provider accepted again: the deferral is cleared


def test_a_throttled_provider_gets_no_more_than_its_rate(
    client: httpx.Client, smtp: SmtpServer
) -> None:
    list_id, _ = audience_at(client, "throttled.example", 45)
    done = wait_for(client, make_message(client, list_id)["id"], "sent", timeout=60)
    assert done["progress"]["sent"] == 45
    times = sorted(
        t for rcpt, t in smtp.mailbox.arrived.items() if rcpt.endswith("@throttled.example")
    )
    # 20/s with a burst of 5: the last of 45 cannot arrive before (45 - 5) / 20 = 2 s.
    assert times[-1] - times[0] >= 1.8
